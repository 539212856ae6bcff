"""Reading numbers off curves: when a curve first crosses a level, the exponent of a power law, a capped loss.

One home for the small routines every chapter needs on a loss or accuracy curve, with one
convention each: a crossing that never happens is ``inf`` (a time that is later than any
recorded one, so comparisons and ratios stay meaningful), a fit with too few usable points is
``nan``, and a diverged run's loss counts as its initial loss wherever a loss is capped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def ema(curve: Sequence[float] | np.ndarray, decay: float, *, axis: int = 0) -> np.ndarray:
    """Exponential moving average along ``axis``, bias-corrected as in Adam: ``m_t / (1 − decay^{t+1})``.

    A smoothed loss curve whose first points are not pulled towards zero; ``decay = 0`` returns
    the curve itself.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"decay must lie in [0, 1), got {decay}")
    c = np.moveaxis(np.asarray(curve, float), axis, 0)
    out = np.empty_like(c)
    m = np.zeros(c.shape[1:])
    for t in range(c.shape[0]):
        m = decay * m + (1 - decay) * c[t]
        out[t] = m / (1 - decay ** (t + 1))
    return np.moveaxis(out, 0, axis)


def mape(predicted: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray) -> float:
    """Mean absolute percentage error ``100 · mean |predicted / measured − 1|`` (in %)."""
    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if p.shape != m.shape or p.size == 0:
        raise ValueError(f"predicted and measured need one shape and at least one point, got {p.shape}, {m.shape}")
    if (m == 0).any():
        raise ValueError("a measured value is 0: the percentage error is undefined there")
    return float(100 * np.mean(np.abs(p / m - 1)))


def kendall_tau(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Kendall's rank correlation τ-b of two sequences (1: the same order, −1: reversed), ties allowed.

    ``(concordant − discordant) / √((pairs − ties in x)(pairs − ties in y))``; ``nan`` if either
    sequence is constant.
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of one length, got {x.shape}, {y.shape}")
    i, j = np.triu_indices(x.size, k=1)
    sx, sy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
    nx, ny = np.count_nonzero(sx), np.count_nonzero(sy)
    if nx == 0 or ny == 0:
        return float("nan")
    return float((sx * sy).sum() / np.sqrt(nx * ny))


@dataclass(frozen=True)
class OffsetPowerLaw:
    """``y ≈ offset + scale · x^{−exponent}``, and how straight ``log(y − offset)`` is against ``log x``."""

    offset: float
    scale: float
    exponent: float
    r2: float
    """R² of the straight line ``log(y − offset)`` against ``log x`` (1: a perfect power law)."""

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        return self.offset + self.scale * np.asarray(x, float) ** (-self.exponent)


def fit_offset_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                         offset: float | None = None) -> OffsetPowerLaw:
    """Fit ``y = offset + scale·x^{−exponent}`` by least squares on ``log y`` (a learning curve with a floor).

    The offset is fitted (within ``[0, min y)``, from several starting points, best kept) unless
    given. ``r2`` measures the power law itself: R² of ``log(y − offset)`` against ``log x``.
    Points must have ``x > 0`` and ``y > 0``.
    """
    from scipy.optimize import minimize

    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.shape != y.shape or x.size < 3:
        raise ValueError(f"need at least 3 points of one shape, got {x.shape}, {y.shape}")
    if not ((x > 0).all() and (y > 0).all() and np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite and positive")
    lx, ly, ymin = np.log(x), np.log(y), float(y.min())

    def loss(p: np.ndarray) -> float:
        pred = p[0] * ymin + np.exp(p[1]) * x ** (-p[2])
        return float(((np.log(pred) - ly) ** 2).sum())

    if offset is None:
        best = None
        for f0 in (0.0, 0.5, 0.9, 0.99):
            for e0 in (0.3, 1.0, 2.0):
                c0 = float(np.median(np.log(np.clip(y - f0 * ymin, 1e-300, None)) + e0 * lx))
                res = minimize(loss, np.array([f0, c0, e0]), method="L-BFGS-B",
                               bounds=[(0.0, 0.9999), (-50, 50), (1e-3, 10.0)])
                if best is None or res.fun < best.fun:
                    best = res
        off, scale, expo = best.x[0] * ymin, float(np.exp(best.x[1])), float(best.x[2])
    else:
        if not 0 <= offset < ymin:
            raise ValueError(f"offset must lie in [0, min y = {ymin:g}), got {offset}")
        slope, intercept = np.polyfit(lx, np.log(y - offset), 1)
        off, scale, expo = float(offset), float(np.exp(intercept)), float(-slope)
    resid = np.log(y - off) - (np.log(scale) - expo * lx)
    total = np.log(y - off) - np.log(y - off).mean()
    r2 = float(1 - (resid**2).sum() / max((total**2).sum(), 1e-300))
    return OffsetPowerLaw(offset=float(off), scale=scale, exponent=expo, r2=r2)
