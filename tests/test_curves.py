"""metrics.curves: one crossing time, one power-law slope, one capped loss, with one "never" value."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.metrics import NEVER, capped_loss, crossing_time, first_index, loglog_slope


def test_first_index_is_never_where_the_condition_never_holds():
    cond = np.array([[False, False], [True, False], [True, False]])
    assert first_index(cond).tolist() == [1.0, NEVER]


def test_crossing_below_interpolates_in_log_space():
    curve = torch.tensor([[1.0, 1.0], [0.1, 1.0], [0.01, 1.0]])
    t = crossing_time(curve, torch.tensor([10 ** -0.5, 0.5]))
    assert t[0] == pytest.approx(0.5)
    assert math.isinf(t[1])


def test_crossing_above_on_recorded_steps_linear_or_not():
    curve = np.array([[0.1, 0.0], [0.96, 0.2], [1.0, 0.5]])
    steps = np.array([0, 10, 20])
    assert crossing_time(curve, 0.95, direction="above", steps=steps, interpolate=None).tolist() == [10.0, NEVER]
    lin = crossing_time(curve, 0.53, direction="above", steps=steps, interpolate="linear")
    assert lin[0] == pytest.approx(5.0) and lin[1] == NEVER  # (0.53 - 0.1) / (0.96 - 0.1) of the way to step 10


def test_a_diverged_member_never_crosses_and_bad_arguments_raise():
    curve = np.array([[1.0], [np.nan], [np.nan]])
    assert crossing_time(curve, 0.5).tolist() == [NEVER]
    with pytest.raises(ValueError, match="direction"):
        crossing_time(curve, 0.5, direction="up")
    with pytest.raises(ValueError, match="one step per record"):
        crossing_time(curve, 0.5, steps=[0, 1])


def test_loglog_slope_strict_or_dropping_invalid_points():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert loglog_slope(x, 3.0 * x**-0.5) == pytest.approx(-0.5)
    y = np.array([-1.0, 0.0, 2.0, 8.0])
    assert np.isnan(loglog_slope(x, y))
    assert loglog_slope(x, y, drop_invalid=True) == pytest.approx(2.0)
    assert np.isnan(loglog_slope([1.0], [1.0]))


def test_capped_loss_counts_a_diverged_or_worse_run_as_its_start():
    assert capped_loss([0.5, np.nan, 3.0], 2.0).tolist() == [0.5, 2.0, 2.0]
