import pytest

from phenomena import scales


def test_resolve_names_and_env(monkeypatch):
    monkeypatch.delenv("PHENOMENA_SCALE", raising=False)
    assert scales.resolve(None) == "default"
    assert scales.resolve("SMOKE") == "smoke"
    monkeypatch.setenv("PHENOMENA_SCALE", "full")
    assert scales.resolve(None) == "full"
    assert scales.resolve("smoke") == "smoke"  # an explicit scale wins over the environment


def test_unknown_scale_names_valid_ones(monkeypatch):
    with pytest.raises(ValueError, match="smoke, default, full"):
        scales.resolve("huge")
    monkeypatch.setenv("PHENOMENA_SCALE", "tiny")
    with pytest.raises(ValueError, match=r"\$PHENOMENA_SCALE"):
        scales.resolve(None)
    with pytest.raises(TypeError):
        scales.resolve(3)  # type: ignore[arg-type]


def test_order():
    assert scales.at_least("full", "default") and not scales.at_least("smoke", "default")


def test_preset_picks_and_overrides():
    p = scales.preset("default", smoke={"n": 1, "w": [1]}, default={"n": 2, "w": [2]}, full={"n": 3, "w": [3]},
                      n=None, w=[5, 6])
    assert p.n == 2 and p.w == [5, 6]


def test_preset_rejects_mismatched_or_unknown_sizes():
    with pytest.raises(ValueError, match="same names"):
        scales.preset("smoke", smoke={"n": 1}, default={"m": 2}, full={"n": 3})
    with pytest.raises(ValueError, match="not a size"):
        scales.preset("smoke", smoke={"n": 1}, default={"n": 2}, full={"n": 3}, k=4)
