"""Where is the best learning rate, and how far does it move: η* from a grid scan.

A learning-rate scan gives a loss per grid point ``log2 η``. The optimum ``η*`` is the vertex
of the parabola through the best grid point and its two neighbours (in ``log2 η``), which
resolves it below the grid spacing; the *shift* between two scans is the difference of their
``log2 η*`` in grid steps. Two rules keep the number honest:

* a run that diverged counts as loss ``+inf`` (it is the worst, never skipped);
* an optimum on the edge of the grid is not an optimum: the vertex is not fitted, the edge
  value is returned and :attr:`LrOptimum.at_edge` says so (widen the grid).
If a neighbour of the best point diverged, the parabola is not defined either, and the best
grid point itself is returned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LrOptimum:
    """``log2_lr``: the estimate of ``log2 η*``; ``index``: the best grid point; ``at_edge``: it is the
    first or last point of the grid (so the true optimum may lie outside)."""

    log2_lr: float
    index: int
    at_edge: bool


def _losses(log2_lrs: Sequence[float], losses: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(log2_lrs, dtype=float)
    y = np.asarray(losses, dtype=float)
    if x.ndim != 1 or x.shape != y.shape or len(x) < 3:
        raise ValueError(f"need one loss per grid point and at least 3 points, got {x.shape} and {y.shape}")
    if not np.all(np.diff(x) > 0):
        raise ValueError("log2_lrs must be strictly increasing")
    if not np.allclose(np.diff(x), x[1] - x[0]):
        raise ValueError("log2_lrs must be evenly spaced (a grid 2^{k·step})")
    y = np.where(np.isnan(y), np.inf, y)  # a NaN loss is a diverged run
    if not np.isfinite(y).any():
        raise ValueError("every run of the scan diverged: lower the learning-rate grid")
    return x, y


def optimal_log2_lr(log2_lrs: Sequence[float], losses: Sequence[float]) -> LrOptimum:
    """``log2 η*``: vertex of the parabola through the best grid point and its neighbours (see module)."""
    x, y = _losses(log2_lrs, losses)
    i = int(np.argmin(y))
    if i == 0 or i == len(x) - 1:
        return LrOptimum(float(x[i]), i, True)
    ym, y0, yp = y[i - 1], y[i], y[i + 1]
    curvature = ym - 2 * y0 + yp
    if not (np.isfinite(ym) and np.isfinite(yp)) or curvature <= 0:
        return LrOptimum(float(x[i]), i, False)
    step = x[1] - x[0]
    return LrOptimum(float(x[i] + step * (ym - yp) / (2 * curvature)), i, False)


def lr_shift(log2_a: float, log2_b: float, step: float = 0.5) -> float:
    """``(log2 η*_a − log2 η*_b) / step``: how far the optimum moved, in grid steps (default ``√2`` grid)."""
    if not step > 0:
        raise ValueError(f"step must be positive, got {step}")
    return (float(log2_a) - float(log2_b)) / float(step)
