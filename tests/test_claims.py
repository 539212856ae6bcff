import json
import math

import pytest

from phenomena.claims import ClaimsFailed, Report, write_json_atomic


def report(scale="smoke"):
    return Report("unit", scale)


def test_expected_with_tolerance():
    r = report()
    assert r.check("a", 1.04, expected=1.0, rtol=0.05, law="l", reason="r").status == "pass"
    assert r.check("b", 1.06, expected=1.0, rtol=0.05, law="l", reason="r").status == "fail"
    assert r.check("c", 0.5, expected=0.0, atol=0.5, law="l", reason="r").status == "pass"


def test_bands():
    r = report()
    assert r.check("in", -0.5, lower=-0.6, upper=-0.4, law="l", reason="r").status == "pass"
    assert r.check("out", -0.3, lower=-0.6, upper=-0.4, law="l", reason="r").status == "fail"
    assert r.check("le", 0.1, upper=0.1, law="l", reason="r").status == "pass"
    assert r.check("ge", math.inf, lower=4, law="l", reason="r").status == "fail"  # non-finite never passes


def test_min_scale_is_skipped_not_passed():
    r = report("smoke")
    c = r.check("big", 100.0, upper=1.0, min_scale="default", law="l", reason="r")
    assert c.status == "skipped"
    r.check("real", 0.0, upper=1.0, law="l", reason="r")
    r.raise_if_failed()  # skipped claims do not fail the run
    assert Report("unit", "default").check("big", 100.0, upper=1.0, min_scale="default", law="l",
                                           reason="r").status == "fail"


def test_not_reproduced_does_not_raise_but_is_reported():
    r = report()
    c = r.check("nr", 5.0, upper=1.0, law="l", reason="r", not_reproduced="needs width 4096")
    assert c.status == "not reproduced"
    r.check("real", 0.0, upper=1.0, law="l", reason="r")
    r.raise_if_failed()
    assert r.counts()["not reproduced"] == 1


def test_raise_lists_every_failed_claim():
    r = report()
    r.check("first", 3.0, upper=1.0, law="x ≤ 1", reason="r")
    r.check("second", 3.0, lower=4.0, law="x ≥ 4", reason="r")
    with pytest.raises(ClaimsFailed) as err:
        r.raise_if_failed()
    assert "first" in str(err.value) and "second" in str(err.value) and "2 claim(s) failed" in str(err.value)


def test_a_chapter_must_check_something_real():
    with pytest.raises(ClaimsFailed, match="no claim"):
        report().raise_if_failed()
    r = report()
    r.check("big", 0.0, upper=1.0, min_scale="full", law="l", reason="r")
    with pytest.raises(ClaimsFailed, match="every claim was skipped"):
        r.raise_if_failed()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(law="l", reason="r"), "either `expected`"),
        (dict(law="l", reason="r", expected=1.0, upper=2.0), "either `expected`"),
        (dict(law="", reason="r", upper=1.0), "law"),
        (dict(law="l", reason=" ", upper=1.0), "reason"),
        (dict(law="l", reason="r", lower=2.0, upper=1.0), "above upper"),
        (dict(law="l", reason="r", upper=1.0, min_scale="huge"), "valid scales"),
        (dict(law="l", reason="r", expected=1.0, rtol=-1), "non-negative"),
    ],
)
def test_malformed_claims(kwargs, match):
    with pytest.raises(ValueError, match=match):
        report().check("x", 1.0, **kwargs)


def test_measured_must_be_a_number_and_names_unique():
    r = report()
    with pytest.raises(TypeError, match="real number"):
        r.check("x", "fast", upper=1.0, law="l", reason="r")
    r.check("y", 0.0, upper=1.0, law="l", reason="r")
    with pytest.raises(ValueError, match="unique"):
        r.check("y", 0.0, upper=1.0, law="l", reason="r")


def test_table_is_rounded_and_stable():
    r = report()
    r.check("a", 1 / 3, upper=1.0, law="l", reason="r")
    table = r.table()
    assert table.loc["a", "measured"] == "0.3333"
    assert list(table.columns) == ["paper says", "accepts", "measured", "status", "why this tolerance"]


def test_atomic_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "x" / "r.json"
    write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"a": object.__new__(type("Unserialisable", (), {"__str__": None}))})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
