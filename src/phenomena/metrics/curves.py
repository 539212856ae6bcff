"""Reading numbers off curves: when a curve first crosses a level, the exponent of a power law, a capped loss.

One home for the small routines every chapter needs on a loss or accuracy curve, with one
convention each: a crossing that never happens is ``inf`` (a time that is later than any
recorded one, so comparisons and ratios stay meaningful), a fit with too few usable points is
``nan``, and a diverged run's loss counts as its initial loss wherever a loss is capped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

NEVER = math.inf
"""The crossing time of a curve that never reaches its level."""


def first_index(condition: Tensor | np.ndarray) -> np.ndarray:
    """The first index along axis 0 where ``condition`` holds, per column; :data:`NEVER` where it never does."""
    c = np.asarray(condition, dtype=bool)
    return np.where(c.any(axis=0), c.argmax(axis=0).astype(float), NEVER)


def crossing_time(curve: Tensor | np.ndarray, threshold: float | Tensor | np.ndarray, *,
                  direction: str = "below", steps: np.ndarray | Tensor | None = None,
                  interpolate: str | None = "log") -> np.ndarray:
    """When each column of ``curve`` (records × members ...) first reaches ``threshold``; :data:`NEVER` if it never does.

    ``direction="below"`` (a loss falling to a level: ``curve <= threshold``) or ``"above"`` (an
    accuracy or a mode strength rising to one: ``curve >= threshold``). ``steps`` gives the step of
    each record (default: the record index). ``interpolate`` refines the time between the last
    record before and the first at the crossing: ``"log"`` interpolates ``log curve`` (a loss
    falling exponentially, so that learning times of a few steps are not rounded to whole steps),
    ``"linear"`` the curve itself, ``None`` takes the first record at the crossing. Non-finite
    values (a diverged member) never count as crossing. ``threshold`` broadcasts against one record.
    """
    if direction not in ("below", "above"):
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    if interpolate not in ("log", "linear", None):
        raise ValueError(f"interpolate must be 'log', 'linear' or None, got {interpolate!r}")
    c = np.asarray(torch.as_tensor(curve, dtype=torch.float64).cpu())
    thr = np.broadcast_to(np.asarray(torch.as_tensor(threshold, dtype=torch.float64).cpu()), c.shape[1:])
    t = np.arange(len(c), dtype=float) if steps is None else np.asarray(torch.as_tensor(steps).cpu(), dtype=float)
    if t.shape != (len(c),):
        raise ValueError(f"steps must hold one step per record ({len(c)}), got shape {t.shape}")
    hit = ((c <= thr) if direction == "below" else (c >= thr)) & np.isfinite(c)
    k = first_index(hit)
    found = np.isfinite(k)
    k = np.where(found, k, 0).astype(int)
    out = t[k]
    if interpolate is not None:
        prev = np.clip(k - 1, 0, None)
        a = np.take_along_axis(c, prev[None], 0)[0]
        b = np.take_along_axis(c, k[None], 0)[0]
        if interpolate == "log":
            with np.errstate(divide="ignore", invalid="ignore"):
                a, b, level = np.log(np.clip(a, 1e-300, None)), np.log(np.clip(b, 1e-300, None)), np.log(thr)
        else:
            level = thr
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.where((k > 0) & (a != b) & np.isfinite(a), (level - a) / (b - a), 0.0)
        out = np.where(k > 0, t[prev] + np.clip(frac, 0, 1) * (t[k] - t[prev]), out)
    return np.where(found, out, NEVER)


def loglog_slope(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                 drop_invalid: bool = False) -> float:
    """Least-squares slope of ``log y`` against ``log x``: the exponent ``p`` of a power law ``y ∝ x^p``.

    A point with ``y`` non-finite or ``≤ 0`` has no logarithm: by default it makes the slope
    ``nan`` (a fit that silently drops the width where a run diverged would be a different
    claim); with ``drop_invalid=True`` such points are left out. ``nan`` with fewer than two points.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(y) & (y > 0) & np.isfinite(x) & (x > 0)
    if not drop_invalid and not ok.all():
        return float("nan")
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)[0])


def capped_loss(final: float | np.ndarray, initial: float | np.ndarray) -> np.ndarray:
    """A final loss for comparing runs, where a run that diverged or ended above its start counts as its start.

    Wortsman et al. (2023) cap every final loss at the initial loss for their learning-rate
    sensitivity, so that one diverged run does not dominate a mean over learning rates.
    """
    final, initial = np.asarray(final, float), np.asarray(initial, float)
    return np.where(np.isfinite(final), np.minimum(final, initial), initial)
