"""The scoreboard page: an overview with text badges, then per claim the paper's law and the measured spread."""

from __future__ import annotations

from phenomena.scoreboard import badge, render


def record(seed: int, scale: str, measured: float, status: str) -> dict:
    return {
        "chapter": "toy", "scale": scale, "seed": seed, "device": "cpu", "seconds": 2.0, "complete": True,
        "claims": [
            {"name": "slope", "law": "the slope is -1/2", "tolerance": "[-0.6, -0.4]", "measured": measured,
             "status": status, "min_scale": "smoke"},
            {"name": "big", "law": "needs size", "tolerance": "≥ 1", "measured": None, "status": "skipped",
             "min_scale": "default"},
        ],
    }


def test_overview_counts_claims_passing_on_every_seed_and_links_the_chapter():
    recs = [record(0, "smoke", -0.5, "pass"), record(1, "smoke", -0.45, "pass"), record(2, "smoke", -0.7, "fail")]
    text = render(recs, {"toy": "A toy"}, {"toy": "/book/toy"})
    overview = text.split("## A toy")[0]
    assert "{doc}`A toy </book/toy>`" in overview
    assert badge("fail", "0/1 pass") in overview and badge("fail", "1 fail") in overview
    assert badge("skipped", "1 skipped") in overview and "(3 seeds)" in overview
    # per claim: the law, what it accepts, the median and range over seeds, the verdicts; no emoji anywhere
    assert "| slope | the slope is -1/2 | [-0.6, -0.4] | -0.5 [-0.7, -0.45]<br>" in text
    assert badge("pass", "pass 2/3") in text and badge("fail", "fail 1/3") in text
    assert badge("skipped", "skipped: needs default") in text
    assert not any(ch in text for ch in "✅❌⚠⏭")


def test_all_seeds_passing_is_a_pass_badge():
    text = render([record(s, "smoke", -0.5, "pass") for s in range(3)], {"toy": "A toy"})
    assert badge("pass", "1/1 pass") in text


def test_a_claim_not_reproduced_on_some_seed_counts_against_the_pass_share_in_amber():
    """A claim that passes on most seeds and is reported as not reproduced on one is not a pass of every
    seed: the overview says 0/1 pass (amber, not the 0/0 it would be if the claim left the count) and
    1 not reproduced."""
    text = render([record(0, "smoke", -0.5, "pass"), record(1, "smoke", -0.9, "not reproduced")], {"toy": "A toy"})
    overview = text.split("## A toy")[0]
    assert badge("not reproduced", "0/1 pass") in overview
    assert badge("not reproduced", "1 not reproduced") in overview
