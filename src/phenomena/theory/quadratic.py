"""Bayes-optimal error of an extensive-width quadratic network (Maillard, Troiani, Martin, Krzakala, Zdeborová 2024).

The target is ``f*(x) = (xᵀS*x − Tr S*)/√d`` with ``S* = W*ᵀW*/m``, ``W*`` an ``m × d`` Gaussian
matrix, width ``m = κd`` and ``n = αd²`` samples. The output is linear in the ``d × d`` matrix
``S*``, so learning the network is a generalised linear model in ``d²`` unknowns whose prior is
the Wishart (Marchenko–Pastur) law. The paper's state evolution reduces the Bayes-optimal error
to a *matrix denoising* problem: estimate ``S*`` from ``Y = S* + √Δ Z`` (``Z`` a GOE matrix whose
spectrum is the semicircle on ``[−2, 2]``). Its error is the rotationally-invariant-estimator
(RIE) error

    mmse(Δ) = Δ − (4π²/3) Δ² ∫ ρ_Δ(x)³ dx,     ρ_Δ = MP(κ) ⊞ semicircle(Δ),

and the noise level of the equivalent denoising problem is fixed by ``Δ = mmse(Δ)/(2α)``.
The Bayes-optimal test error, normalised so that the prior mean ``Ŝ = I`` scores 1, is
``ε_BO = κ·mmse(Δ*)``; it vanishes for ``α ≥ α_PR = κ − κ²/2`` (``1/2`` for ``κ ≥ 1``), the
perfect-recovery threshold: the number of degrees of freedom of a rank-``m`` symmetric matrix,
``md − m(m−1)/2``, divided by ``d²``.

Everything here is numpy; the unit tests check each piece against a second method (a dense
eigen-solve of sampled matrices, the RIE applied to a sampled matrix, the paper's published curve).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

__all__ = [
    "bayes_error",
    "bayes_error_curve",
    "free_convolution_density",
    "free_convolution_stieltjes",
    "mp_edges",
    "mp_stieltjes",
    "perfect_recovery_threshold",
    "rie_mmse",
    "state_evolution_delta",
]


def _check_kappa(kappa: float) -> float:
    kappa = float(kappa)
    if not (kappa > 0 and math.isfinite(kappa)):
        raise ValueError(f"kappa (width/dim) must be a positive number, got {kappa}")
    return kappa


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not (delta > 0 and math.isfinite(delta)):
        raise ValueError(f"delta (noise variance of the denoising problem) must be positive and finite, got {delta}")
    return delta


def mp_edges(kappa: float) -> tuple[float, float]:
    """Edges ``(1 ∓ 1/√κ)²`` of the continuous part of the spectrum of ``S = WᵀW/m`` (mean 1, variance 1/κ).

    For ``κ < 1`` the spectrum also has an atom of mass ``1 − κ`` at 0 (``S`` has rank ``m < d``).
    """
    c = 1.0 / _check_kappa(kappa)
    return (1 - math.sqrt(c)) ** 2, (1 + math.sqrt(c)) ** 2


def mp_stieltjes(z: complex | np.ndarray, kappa: float) -> np.ndarray:
    """Resolvent ``G(z) = ∫ ρ_MP(λ)/(z − λ) dλ`` of ``S = WᵀW/m`` (``W`` is ``m × d`` standard Gaussian, ``κ = m/d``).

    ``G`` solves ``c z G² − (z + c − 1) G + 1 = 0`` with ``c = 1/κ``; the physical root is the one
    with ``Im G < 0`` for ``Im z > 0`` (``G ~ 1/z`` at infinity). ``z`` must be off the real axis.
    """
    c = 1.0 / _check_kappa(kappa)
    z = np.asarray(z, dtype=complex)
    if np.any(z.imag == 0):
        raise ValueError("mp_stieltjes needs z off the real axis (add a small imaginary part)")
    b = z + c - 1
    root = np.sqrt(b * b - 4 * c * z)
    g1, g2 = (b - root) / (2 * c * z), (b + root) / (2 * c * z)
    sign = np.sign(z.imag)
    # the physical branch: Im G has the opposite sign of Im z
    return np.where(g1.imag * sign <= 0, np.where(g2.imag * sign <= 0, _closest_to_inverse(g1, g2, z), g1), g2)


def _closest_to_inverse(g1: np.ndarray, g2: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Tie-break between two roots with the same sign of Im: the one nearer 1/z (large-|z| behaviour)."""
    return np.where(np.abs(g1 - 1 / z) <= np.abs(g2 - 1 / z), g1, g2)


def free_convolution_stieltjes(z: np.ndarray, kappa: float, delta: float) -> np.ndarray:
    """Resolvent of ``MP(κ) ⊞ semicircle(Δ)``, the spectrum of ``S + √Δ Z``, at ``z`` (real or complex).

    Subordination: adding a free semicircle of variance ``Δ`` shifts the argument,
    ``G(z) = G_MP(z − Δ G(z))``. For the Marchenko–Pastur ``G_MP`` this is the cubic
    ``−Δ G³ + (z + κΔ) G² − (κz + 1 − κ) G + κ = 0`` (multiplying through by ``κ``); on the real
    axis its complex pair gives the density, and the physical root is the one with the most
    negative imaginary part (0 outside the support, where all roots are real).
    """
    kappa, delta = _check_kappa(kappa), _check_delta(delta)
    z = np.atleast_1d(np.asarray(z, dtype=complex))
    # companion matrices of the monic cubic G³ + a G² + b G + c (coefficients divided by −Δ)
    a = -(z + kappa * delta) / delta
    b = (kappa * z + 1 - kappa) / delta
    c = -kappa / delta * np.ones_like(z)
    comp = np.zeros(z.shape + (3, 3), dtype=complex)
    comp[..., 0, :] = np.stack([-a, -b, -c], axis=-1)
    comp[..., 1, 0] = 1
    comp[..., 2, 1] = 1
    roots = np.linalg.eigvals(comp)
    pick = np.argmin(roots.imag, axis=-1)
    return np.take_along_axis(roots, pick[..., None], axis=-1)[..., 0]


def free_convolution_density(x: np.ndarray, kappa: float, delta: float) -> np.ndarray:
    """Density of ``MP(κ) ⊞ semicircle(Δ)`` at real points ``x``: ``−Im G(x + i0)/π``."""
    g = free_convolution_stieltjes(np.asarray(x, dtype=float), kappa, delta)
    return np.maximum(-g.imag, 0.0) / math.pi


def _support_grid(kappa: float, delta: float, points: int) -> np.ndarray:
    """A grid that resolves the density: the bulk, and (for κ < 1) the narrow bump that the atom at 0 becomes."""
    lo, hi = mp_edges(kappa)
    r = 2 * math.sqrt(delta)
    bulk = np.linspace(min(lo, 0.0) - r - 1e-9, hi + r + 1e-9, points)
    if kappa < 1:
        atom = np.linspace(-1.05 * r, 1.05 * r, points // 2)
        bulk = np.union1d(bulk, atom)
    return bulk


def rie_mmse(delta: float, kappa: float, *, points: int = 2_001) -> float:
    """Error ``(1/d) E‖Ŝ − S‖²_F`` of the optimal rotationally invariant estimator of ``S`` from ``S + √Δ Z``.

    ``mmse(Δ) = Δ − (4π²/3) Δ² ∫ρ_Δ³``: ``Δ`` is the error of the raw observation, the integral
    is what the RIE's eigenvalue shrinkage ``ξ(λ) = λ − 2Δ·Re G(λ)`` wins back. For a Wishart
    prior the RIE is the Bayes-optimal denoiser, so this is the MMSE. It goes from 0 (``Δ → 0``)
    to the prior's spectral variance ``1/κ`` (``Δ → ∞``).
    """
    kappa, delta = _check_kappa(kappa), _check_delta(delta)
    x = _support_grid(kappa, delta, points)
    rho = free_convolution_density(x, kappa, delta)
    integral = float(np.trapezoid(rho**3, x))
    return max(delta - (4 * math.pi**2 / 3) * delta**2 * integral, 0.0)


def perfect_recovery_threshold(kappa: float) -> float:
    """``α_PR = κ − κ²/2`` for ``κ < 1``, else ``1/2``: above it the noiseless MMSE is 0.

    It is the dimension of the set of rank-``m`` symmetric ``d × d`` matrices, ``md − m(m−1)/2``,
    over ``d²``, and the point where the small-``Δ`` slope of ``mmse(Δ)``, ``2κ − κ²``, equals ``2α``.
    """
    kappa = _check_kappa(kappa)
    return kappa - kappa**2 / 2 if kappa < 1 else 0.5


def state_evolution_delta(alpha: float, kappa: float) -> float:
    """The fixed point ``Δ* = mmse(Δ*)/(2α)`` of the state evolution (noiseless data); 0 at or above ``α_PR``.

    ``mmse(Δ)/Δ`` decreases from ``2κ − κ²`` (``Δ → 0``; 1 for ``κ ≥ 1``) to 0, so below
    ``α_PR`` there is exactly one positive solution, found by bracketing in ``log Δ``.
    """
    kappa = _check_kappa(kappa)
    alpha = float(alpha)
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha (samples/dim²) must be a positive number, got {alpha}")
    if alpha >= perfect_recovery_threshold(kappa):
        return 0.0

    def gap(log_delta: float) -> float:
        delta = math.exp(log_delta)
        return rie_mmse(delta, kappa) / delta - 2 * alpha

    lo, hi = math.log(1e-8), math.log(1e6)
    if gap(lo) <= 0:  # numerically at the threshold
        return 0.0
    return math.exp(brentq(gap, lo, hi, xtol=1e-9, rtol=1e-9))


def bayes_error(alpha: float | np.ndarray, kappa: float) -> float | np.ndarray:
    """Bayes-optimal test error ``ε_BO = κ·mmse(Δ*) = 2ακΔ*``, normalised so that the prior mean scores 1.

    The test error of a predictor ``Ŝ`` on Gaussian inputs is ``E(f̂ − f*)² = 2‖Ŝ − S*‖²_F/d``; the
    prior mean ``Ŝ = I`` has ``‖I − S*‖²_F/d → 1/κ``, hence the factor ``κ``.
    """
    alphas = np.asarray(alpha, dtype=float)
    out = np.array([2 * a * kappa * state_evolution_delta(a, kappa) for a in alphas.ravel()]).reshape(alphas.shape)
    return float(out) if out.ndim == 0 else out


def bayes_error_curve(kappa: float, points: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """The whole curve ``(α, ε_BO(α))`` for ``0 < α < α_PR``, cheaply, parametrised by the noise ``Δ``.

    Each ``Δ`` on a log grid gives one point: ``α = mmse(Δ)/(2Δ)`` and ``ε = κ·mmse(Δ)``; one RIE
    integral per point instead of one root search per ``α``. Sorted by ``α``; the end point
    ``(α_PR, 0)`` is appended.
    """
    kappa = _check_kappa(kappa)
    deltas = np.logspace(-3.5, 2.5, int(points))
    mmse = np.array([rie_mmse(d, kappa) for d in deltas])
    alphas, eps = mmse / (2 * deltas), kappa * mmse
    order = np.argsort(alphas)
    return np.append(alphas[order], perfect_recovery_threshold(kappa)), np.append(eps[order], 0.0)
