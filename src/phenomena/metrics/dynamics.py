"""Measures of how well a model's free-running orbit reproduces a dynamical system's attractor.

``state_space_divergence`` is the binned D_stsp of the GTF paper's code (Hess et al. 2023, after
Koppe et al. 2019 and Brenner et al. 2022): the Kullback-Leibler divergence ``KL(p ‖ q)`` between the
visitation frequencies ``p`` of the data and ``q`` of the model's orbit over a grid of ``bins`` cells
per axis spanning the data's range (± 0.1 std), both with Laplace smoothing. It looks at geometry
only: it is 0 when the orbit fills the same cells as often as the data, whatever their timing.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike


def _laplace(hist: np.ndarray, alpha: float) -> np.ndarray:
    return (hist + alpha) / (hist.sum() + alpha * hist.size)


def state_space_divergence(data: ArrayLike, orbit: ArrayLike, *, bins: int = 30, alpha: float = 1e-5) -> float:
    """Binned ``KL(p_data ‖ q_orbit)`` over ``bins`` cells per axis; ``inf`` if the orbit never enters the box.

    ``data (T, N)`` and ``orbit (T', N)`` are states in the same units (e.g. standardised). Orbit
    states outside the data's box, or non-finite, are not counted.
    """
    x = np.asarray(data, dtype=np.float64)
    y = np.asarray(orbit, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"data and orbit must be (time, N) arrays of the same N, got {x.shape} and {y.shape}")
    if bins < 1 or alpha <= 0:
        raise ValueError("bins must be ≥ 1 and the Laplace smoothing alpha > 0")
    sd = x.std(0)
    lo, hi = x.min(0) - 0.1 * sd, x.max(0) + 0.1 * sd
    edges = [np.linspace(a, b, bins + 1) for a, b in zip(lo, hi)]
    y = y[np.isfinite(y).all(1)]
    hx, _ = np.histogramdd(x, bins=edges)
    hy, _ = np.histogramdd(y, bins=edges) if len(y) else (np.zeros_like(hx), None)
    if hy.sum() == 0:
        return math.inf
    p, q = _laplace(hx, alpha).ravel(), _laplace(hy, alpha).ravel()
    return float(np.sum(p * np.log(p / q)))
