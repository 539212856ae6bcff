"""Closed forms for residual networks at initialisation: how the residual stream's norm grows with depth.

For ``h^{ℓ+1} = h^ℓ + b · n^{-1/2} W^ℓ φ(h^ℓ)`` with ``W^ℓ`` i.i.d. ``N(0, 1)`` and independent
of ``h^ℓ``, the cross term ``E⟨h^ℓ, W^ℓφ(h^ℓ)⟩`` vanishes and ``E‖W^ℓφ(h^ℓ)‖²/n = E‖φ(h^ℓ)‖²``.
For ReLU and coordinates of ``h^ℓ`` symmetric about zero (Gaussian at infinite width),
``E φ(h)² = E h²/2``. Hence ``E‖h^{ℓ+1}‖² = (1 + b²/2) E‖h^ℓ‖²`` and, after ``L`` blocks,

    E‖h^{L+1}‖² / E‖h¹‖² = (1 + b²/2)^L .

With Bordelon et al.'s branch scale ``b = β₀/√L`` this is ``(1 + β₀²/(2L))^L``, which increases
to ``e^{β₀²/2}`` as ``L → ∞`` (bounded in depth, Hayou & Yang 2023); with an unscaled branch
(``b = β₀ = 1``) it is ``(3/2)^L``, exponential in depth. The finite-width correction is
``O(1/n)``: the ``1/n`` self-coupling makes a coordinate's law slightly asymmetric.
"""

from __future__ import annotations

import math

import numpy as np


def branch_multiplier(depth: int, beta0: float = 1.0, alpha: float = 0.5) -> float:
    """``b_L = β₀ / L^α``: the multiplier of every residual branch in a depth-``L`` network."""
    if int(depth) < 1:
        raise ValueError(f"depth (residual blocks) must be >= 1, got {depth}")
    if not beta0 > 0:
        raise ValueError(f"beta0 must be positive, got {beta0}")
    return float(beta0) / int(depth) ** float(alpha)


def init_norm_ratio(depth: int | np.ndarray, beta0: float = 1.0, alpha: float = 0.5) -> float | np.ndarray:
    """``E‖h^{L+1}‖² / E‖h¹‖² = (1 + β₀²/(2L^{2α}))^L`` for a ReLU resnet at init (infinite width)."""
    depth_arr = np.asarray(depth, dtype=float)
    if (depth_arr < 1).any():
        raise ValueError(f"depth (residual blocks) must be >= 1, got {depth}")
    if not beta0 > 0:
        raise ValueError(f"beta0 must be positive, got {beta0}")
    out = (1.0 + float(beta0) ** 2 / (2.0 * depth_arr ** (2 * float(alpha)))) ** depth_arr
    return float(out) if np.ndim(depth) == 0 else out


def init_norm_limit(beta0: float = 1.0) -> float:
    """``lim_{L→∞} (1 + β₀²/(2L))^L = e^{β₀²/2}``: the depth-independent bound under the ``1/√L`` branch."""
    return math.exp(float(beta0) ** 2 / 2.0)
