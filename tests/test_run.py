import json

import numpy as np
import pytest
import torch

import phenomena
from phenomena.run import pick_device


def test_setup_seeds_and_prints_provenance(capsys, results_tmp):
    run = phenomena.setup("smoke", 3, "cpu", chapter="unit")
    line = capsys.readouterr().out.strip()
    assert line.startswith("[phenomena] unit | scale=smoke | seed=3 | device=cpu | torch ")
    assert "git " in line
    a = torch.rand(3)
    phenomena.setup("smoke", 3, "cpu", chapter="unit", quiet=True)
    assert torch.equal(a, torch.rand(3))
    assert run.device == torch.device("cpu")


def test_generators_are_seeded_streams():
    run = phenomena.setup("smoke", 1, "cpu", quiet=True)
    assert torch.equal(torch.rand(4, generator=run.generator(0)), torch.rand(4, generator=run.generator(0)))
    assert not torch.equal(torch.rand(4, generator=run.generator(0)), torch.rand(4, generator=run.generator(1)))


@pytest.mark.parametrize("bad", ["tpu", "gpu", "cuda:x"])
def test_unknown_device(bad):
    with pytest.raises(ValueError, match="valid devices|bad device|not available"):
        pick_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_missing_cuda_is_clear():
    with pytest.raises(ValueError, match="not available on this machine; available here: cpu"):
        pick_device("cuda")


def test_bad_scale_and_seed():
    with pytest.raises(ValueError, match="valid scales are: smoke, default, full"):
        phenomena.setup("medium", 0, "cpu", quiet=True)
    with pytest.raises(TypeError, match="seed"):
        phenomena.setup("smoke", 1.5, "cpu", quiet=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seed"):
        phenomena.setup("smoke", -1, "cpu", quiet=True)


def test_finish_writes_results_and_raises_on_failure(results_tmp, capsys):
    run = phenomena.setup("smoke", 2, "cpu", chapter="unit", params={"lr": np.float64(0.1)}, quiet=True)
    run.check("ok", 1.0, expected=1.0, rtol=0.01, law="x = 1", reason="exact")
    run.check("bad", 2.0, upper=1.0, law="x ≤ 1", reason="bound")
    with pytest.raises(phenomena.ClaimsFailed, match="bad: measured 2"):
        run.finish()
    data = json.loads((results_tmp / "unit" / "smoke-seed2.json").read_text())
    assert data["chapter"] == "unit" and data["seed"] == 2 and data["scale"] == "smoke"
    assert data["device"] == "cpu" and data["complete"] and not data["passed"]
    assert data["params"] == {"lr": 0.1}
    assert {"python", "torch", "numpy", "phenomena"} <= set(data["versions"])
    assert [c["status"] for c in data["claims"]] == ["pass", "fail"]
    assert not list(results_tmp.rglob("*.tmp"))


def test_set_threads_sets_the_cpu_threads_once_and_reads_the_environment(monkeypatch):
    import torch

    from phenomena.run import set_threads

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("PHENOMENA_THREADS", raising=False)
        assert set_threads(torch.device("cpu")) == 1
        monkeypatch.setenv("PHENOMENA_THREADS", "2")
        assert set_threads(torch.device("cpu")) == 2
        assert set_threads(torch.device("cpu"), 1) == 1  # the argument wins over the environment
        monkeypatch.setenv("PHENOMENA_THREADS", "two")
        with pytest.raises(ValueError, match="PHENOMENA_THREADS must be a positive integer"):
            set_threads(torch.device("cpu"))
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            set_threads(torch.device("cpu"), 0)
        torch.set_num_threads(3)
        assert set_threads(torch.device("meta"), 1) == 3  # not the CPU: leaves the setting alone
    finally:
        torch.set_num_threads(before)



def test_setup_records_the_knobs_and_the_resolved_sizes_without_retyping(results_tmp, monkeypatch):
    from phenomena import run as run_module

    # a chapter found in _toc.yml: its parameters cell names the knobs, read from the caller's namespace
    monkeypatch.setattr(run_module, "chapter_parameters",
                        lambda chapter, ns: {k: ns[k] for k in ("lr", "steps", "members") if k in ns})
    namespace = {"lr": 0.5, "steps": None, "members": 3, "unrelated": object()}
    exec("import phenomena\nrun = phenomena.setup('smoke', 1, 'cpu', chapter='unit', quiet=True)", namespace)
    run = namespace["run"]
    assert run.params == {"lr": 0.5, "steps": None, "members": 3}
    size = run.sizes(smoke=dict(steps=10, members=8), default=dict(steps=100, members=8),
                     full=dict(steps=1000, members=64))
    assert (size.steps, size.members) == (10, 3)  # members = 3 overrides the preset, steps = None keeps it
    run.check("c", 1.0, expected=1.0, atol=0.1, law="one is one", reason="exact")
    data = json.loads(run.finish().read_text())
    assert data["params"] == {"lr": 0.5, "steps": None, "members": 3}
    assert data["sizes"] == {"steps": 10, "members": 3} and data["threads"] == 1


def test_chapter_parameters_outside_the_book_take_the_plain_values(monkeypatch, tmp_path):
    from phenomena.run import chapter_parameters

    monkeypatch.setenv("PHENOMENA_ROOT", str(tmp_path))  # no _toc.yml: a chapter downloaded on its own
    ns = {"scale": "smoke", "seed": 0, "lr": 0.1, "widths": [2, 4], "np": np, "_hidden": 1, "In": [], "flag": None}
    assert chapter_parameters("some-chapter", ns) == {"lr": 0.1, "widths": [2, 4], "flag": None}


def test_inline_figures_changes_nothing_outside_a_kernel():
    """Only a Jupyter kernel switches to the inline backend; scripts and tests keep theirs
    (the switch inside a kernel is pinned by the notebook tests: every executed chapter has figures)."""
    import matplotlib

    from phenomena.run import inline_figures

    before = matplotlib.get_backend()
    assert inline_figures() is False
    assert matplotlib.get_backend() == before
