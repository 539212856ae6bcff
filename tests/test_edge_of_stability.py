"""The opposing-groups statistic of the edge-of-stability chapter, on hand-made loss curves."""

import numpy as np

from phenomena.experiments.edge_of_stability import EoSResult, group_anticorrelation


def _result(sharpness_ratio: np.ndarray, group_loss: np.ndarray) -> EoSResult:
    lrs = np.array([0.2])
    steps = np.arange(0, group_loss.shape[0], 25)
    return EoSResult(lrs=lrs, loss=group_loss.mean(2), group_loss=group_loss, sharpness_steps=steps,
                     sharpness=(sharpness_ratio[steps] * 2 / lrs)[:, None], initial_sharpness=np.array([1.0]))


def test_anti_phase_at_the_edge_gives_minus_one_and_windows_off_the_edge_are_skipped():
    t = np.arange(801)
    ratio = np.where(t < 100, 0.5, 1.0)   # onset at step 100
    ratio[100:500] = 1.3                  # overshoot: not at the edge
    rng = np.random.default_rng(0)
    common = rng.normal(size=t.size)       # in-phase jumps, only while the sharpness overshoots
    swing = 0.01 * (-1.0) ** t
    plus = 1.0 + swing + np.where(ratio > 1.1, common, 0.0)
    minus = 1.0 - swing + np.where(ratio > 1.1, common, 0.0)
    loss = np.stack([plus, minus, np.ones_like(plus)], 1)[:, None, :]
    assert np.allclose(group_anticorrelation(_result(ratio, loss)), -1.0)
    # the same curves judged over every window from the onset on: the in-phase part shows
    assert group_anticorrelation(_result(ratio, loss), band=1.0)[0] > -0.9


def test_never_at_the_edge_is_nan():
    t = np.arange(401)
    loss = np.stack([1.0 + 0.01 * (-1.0) ** t, 1.0 - 0.01 * (-1.0) ** t, np.ones(t.size)], 1)[:, None, :]
    assert np.isnan(group_anticorrelation(_result(np.full(t.size, 0.5), loss))[0])
