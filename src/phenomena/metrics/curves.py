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


def crossing_time(curve: Tensor | np.ndarray, threshold: float | Tensor | np.ndarray, *,
                  direction: str = "below", interpolate: bool = True) -> Tensor:
    """When each column of ``curve`` (steps × members) first reaches ``threshold``; :data:`NEVER` if it never does.

    ``direction="below"`` (a loss falling to a level) or ``"above"`` (an accuracy rising to one).
    With ``interpolate`` (falling curves only) the step is refined by interpolating ``log curve``
    linearly between the last step above and the first step at or below the threshold, so that
    learning times of a few steps are not rounded to whole steps. Non-finite values (a diverged
    member) never count as crossing. Times are in units of the curve's rows.
    """
    if direction not in ("below", "above"):
        raise ValueError(f"direction must be 'below' or 'above', got {direction!r}")
    c = torch.as_tensor(curve, dtype=torch.float64)
    thr = torch.as_tensor(threshold, dtype=torch.float64).expand(c.shape[1:])
    hit_mask = ((c <= thr) if direction == "below" else (c >= thr)) & torch.isfinite(c)
    hit = hit_mask.any(0)
    k = hit_mask.to(torch.int8).argmax(0)
    if direction == "above" or not interpolate:
        t = k.to(torch.float64)
    else:
        prev = (k - 1).clamp(min=0)
        log_prev = torch.log(c.gather(0, prev.unsqueeze(0)).squeeze(0).clamp_min(1e-300))
        log_k = torch.log(c.gather(0, k.unsqueeze(0)).squeeze(0).clamp_min(1e-300))
        frac = torch.where(
            (k > 0) & (log_prev > log_k), (log_prev - torch.log(thr)) / (log_prev - log_k), torch.zeros_like(log_k)
        )
        t = torch.where(k > 0, prev.to(torch.float64) + frac.clamp(0, 1), torch.zeros_like(frac))
    return torch.where(hit, t, torch.full_like(t, NEVER))


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
