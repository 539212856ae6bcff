"""The largest stable learning rate of a grid, by the monotone rule.

Why a rule and not a bisection: under cross-entropy "stable" is not monotone in the learning
rate. A huge rate can still lower the loss (the logits blow up in the right direction, the
softmax saturates) while the activations explode; a rate a little smaller may fail. A search that
assumes monotonicity (bisection, "largest rate that worked") then reports a spurious maximum
far above the edge. The monotone rule asks more: a rate counts only if it *and every smaller
rate of the grid* trained stably. It returns the edge of the first contiguous stable range.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def max_stable_lr(grid: Sequence[float] | np.ndarray, ok: Sequence[bool] | np.ndarray) -> float:
    """Largest rate of ``grid`` such that it and every smaller rate of ``grid`` are ``ok``.

    ``grid`` need not be sorted; ``ok[i]`` says whether the run at ``grid[i]`` was stable.
    Returns ``nan`` when the smallest rate already fails (the grid starts above the edge: extend
    it downwards); returns ``max(grid)`` when every rate is stable (the edge lies above the grid:
    :func:`censored` tells the two apart).
    """
    rates = np.asarray(grid, dtype=float)
    good = np.asarray(ok, dtype=bool)
    if rates.ndim != 1 or rates.shape != good.shape or rates.size == 0:
        raise ValueError(f"grid and ok must be 1-d of one non-zero length, got shapes {rates.shape} and {good.shape}")
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError("learning rates must be finite and positive")
    order = np.argsort(rates)
    rates, good = rates[order], good[order]
    if not good[0]:
        return float("nan")
    first_bad = np.flatnonzero(~good)
    return float(rates[-1] if first_bad.size == 0 else rates[first_bad[0] - 1])


def censored(grid: Sequence[float] | np.ndarray, ok: Sequence[bool] | np.ndarray) -> str:
    """Where :func:`max_stable_lr` hit the grid's edge: ``"below"`` (the smallest rate failed),
    ``"above"`` (every rate was stable), or ``""`` (the edge lies inside the grid)."""
    good = np.asarray(ok, dtype=bool)
    value = max_stable_lr(grid, ok)
    if np.isnan(value):
        return "below"
    return "above" if bool(good.all()) else ""
