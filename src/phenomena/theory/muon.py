"""What Muon's Newton-Schulz iteration does to singular values, in closed form.

Muon (Jordan et al. 2024) replaces the momentum matrix ``G = U S Vᵀ`` of a hidden layer by an
approximately orthogonal matrix before the step. It divides ``G`` by its Frobenius norm (so every
singular value lies in ``[0, 1]``) and applies ``steps`` times the odd quintic

    X ← a·X + b·(X Xᵀ) X + c·(X Xᵀ)² X,    (a, b, c) = (3.4445, −4.7750, 2.0315).

An odd matrix polynomial acts on the singular values alone: ``X = U p(S) Vᵀ`` with the scalar
``p(x) = a x + b x³ + c x⁵``. So the output is ``U · p∘steps(S/‖G‖_F) · Vᵀ``, and the spread of its
singular values is the image of an interval under ``p∘steps``. Since the image of an interval
under a continuous map is an interval, that image is found exactly by propagating the interval
through ``p`` one step at a time, each time taking the extremes of ``p`` over the end points and
its critical points (the real roots of ``p'(x) = a + 3b x² + 5c x⁴``, a quadratic in ``x²``).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

NS5_COEFFICIENTS: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
"""Muon's quintic Newton-Schulz coefficients ``(a, b, c)`` (``zeropower_via_newtonschulz5``)."""

NS5_STEPS: int = 5
"""Muon's default number of Newton-Schulz iterations."""

NS_EPS: float = 1e-7
"""Muon adds this to ``‖G‖_F`` before dividing by it (``zeropower_via_newtonschulz5``)."""


def _check(steps: int, coefficients: tuple[float, float, float]) -> tuple[float, float, float]:
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    if len(coefficients) != 3 or not all(math.isfinite(float(v)) for v in coefficients):
        raise ValueError(f"coefficients must be three finite numbers (a, b, c), got {coefficients!r}")
    a, b, c = (float(v) for v in coefficients)
    return a, b, c


def ns_polynomial(x: ArrayLike, steps: int = 1,
                  coefficients: tuple[float, float, float] = NS5_COEFFICIENTS) -> NDArray[np.float64]:
    """``p∘steps(x)`` with ``p(x) = a x + b x³ + c x⁵``, elementwise in float64.

    ``ns_polynomial(σ / ‖G‖_F, 5)`` is the singular value that Muon's NS5 makes of a singular value
    ``σ`` of its input ``G`` (before the ``√max(1, rows/cols)`` factor).
    """
    a, b, c = _check(steps, coefficients)
    y = np.asarray(x, dtype=np.float64).copy()
    for _ in range(steps):
        y2 = y * y
        y = y * (a + y2 * (b + c * y2))
    return y


def critical_points(coefficients: tuple[float, float, float] = NS5_COEFFICIENTS) -> NDArray[np.float64]:
    """The real ``x ≥ 0`` with ``p'(x) = 0``, sorted (``p`` is odd, so the negative ones are their mirror)."""
    a, b, c = _check(1, coefficients)
    # p'(x) = a + 3b·y + 5c·y² with y = x²
    roots = np.roots([5 * c, 3 * b, a]) if c != 0 else np.roots([3 * b, a])
    ys = [r.real for r in np.atleast_1d(roots) if abs(r.imag) < 1e-12 and r.real >= 0]
    return np.sort(np.sqrt(np.asarray(ys, dtype=np.float64)))


def ns_image(lo: float, steps: int = NS5_STEPS, hi: float = 1.0,
             coefficients: tuple[float, float, float] = NS5_COEFFICIENTS) -> tuple[float, float]:
    """The exact image ``p∘steps([lo, hi])`` as ``(min, max)``.

    ``ns_image(3e-3, 5)`` is the interval in which NS5 puts every singular value ``σ`` of its input
    with ``σ/‖G‖_F ∈ [3·10⁻³, 1]``; ``ns_image(0, 5)[1]`` bounds them all, hence the spectral norm
    of Muon's update (``‖ΔW‖₂ ≤ lr·√max(1, rows/cols)·ns_image(0, 5)[1]``) whatever the gradient's size.
    """
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
        raise ValueError(f"need finite lo <= hi, got lo={lo}, hi={hi}")
    _check(steps, coefficients)
    crit = critical_points(coefficients)
    crit = np.concatenate([-crit[::-1], crit])
    low, high = float(lo), float(hi)
    for _ in range(steps):
        inside = crit[(crit > low) & (crit < high)]
        values = ns_polynomial(np.concatenate([[low, high], inside]), 1, coefficients)
        low, high = float(values.min()), float(values.max())
    return low, high


def ns_bound(steps: int = NS5_STEPS, coefficients: tuple[float, float, float] = NS5_COEFFICIENTS) -> float:
    """``max |p∘steps|`` over ``[0, 1]``: the largest singular value NS can output (about 1.2025 for NS5)."""
    low, high = ns_image(0.0, steps, 1.0, coefficients)
    return max(abs(low), abs(high))
