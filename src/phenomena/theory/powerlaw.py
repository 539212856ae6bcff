"""Power-law learning curves of linear regression: the exponent, its constant, and SGD's exact mean loss.

The solvable model behind scaling laws (e.g. Bordelon & Pehlevan 2022, Paquette et al. 2024):
inputs ``x ~ N(0, Λ)`` with eigenvalues ``λ_k = k^{-a}``, a linear teacher whose coefficients
carry power ``λ_k w*_k² = k^{-b}``, label noise of variance ``σ²``. A linear student trained from
zero by gradient flow learns mode ``k`` at rate ``λ_k``; after "time" ``S₁ = Σ η`` (the area under
the learning-rate curve) the loss is ``½Σ k^{-b} e^{-2k^{-a}S₁}``, which for large ``S₁`` is a power
law with exponent ``α* = (b−1)/a`` and constant ``Γ(α*)/(2a)·2^{-α*}``. Online SGD adds a noise
floor, which depends on the current learning rate: that is the "annealing bonus" a schedule
earns when it lowers the rate. :func:`sgd_expected_loss` gives the *exact* expected loss of
minibatch SGD on Gaussian data for any schedule, so that curve shapes can be compared with the
law without Monte-Carlo noise.
"""

from __future__ import annotations

import math

import numpy as np


def alpha_star(a: float, b: float) -> float:
    """The learning-curve exponent ``(b − 1)/a`` of the gradient-flow loss in ``S₁`` (needs ``b > 1``)."""
    if not (a > 0 and b > 1):
        raise ValueError(f"need a > 0 and b > 1 for a power law, got a={a}, b={b}")
    return (b - 1) / a


def powerlaw_constant(a: float, b: float) -> float:
    """``Γ(α*)/(2a)·2^{−α*}``: the gradient-flow loss is ≈ this × ``S₁^{−α*}`` for large ``S₁``."""
    alpha = alpha_star(a, b)
    return math.gamma(alpha) / (2 * a) * 2.0 ** (-alpha)


def gradient_flow_asymptote(s1: np.ndarray | float, a: float, b: float) -> np.ndarray:
    """``Γ((b−1)/a)/(2a)·(2S₁)^{−(b−1)/a}``: the continuum (infinitely many modes) limit of
    :func:`gradient_flow_loss`, from ``∫ k^{-b} e^{-2k^{-a}S} dk`` with ``u = 2S k^{-a}``."""
    s1 = np.asarray(s1, float)
    return powerlaw_constant(a, b) * s1 ** (-alpha_star(a, b))


def spectrum(dim: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """``(λ_k, w*_k)`` for ``k = 1 … dim``: eigenvalues ``k^{-a}`` and teacher coefficients with
    ``λ_k w*_k² = k^{-b}`` (all positive)."""
    if int(dim) != dim or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    k = np.arange(1, int(dim) + 1, dtype=float)
    return k ** (-a), k ** ((a - b) / 2)


def gradient_flow_loss(s1: np.ndarray | float, a: float, b: float, dim: int) -> np.ndarray:
    """The gradient-flow excess loss ``½ Σ_{k≤dim} k^{-b} e^{−2 k^{-a} S₁}`` of a student started at zero."""
    k = np.arange(1, int(dim) + 1, dtype=float)
    s1 = np.asarray(s1, float)
    return 0.5 * (k ** (-b) * np.exp(-2 * np.multiply.outer(s1, k ** (-a)))).sum(-1)


def sgd_expected_loss(
    lrs: np.ndarray,
    eigenvalues: np.ndarray,
    teacher: np.ndarray,
    *,
    noise: float,
    batch: int,
    capacity: int | None = None,
) -> np.ndarray:
    """The exact expected population loss ``E[½(y − w·x)²]`` of minibatch SGD on linear regression.

    Data ``x ~ N(0, diag(eigenvalues))``, ``y = teacher·x + ξ`` with ``Var ξ = noise``; the
    student starts at ``w = 0`` and takes ``w ← w − η_t g``, ``g = (1/B) Σ_i x_i(w·x_i − y_i)`` with
    ``B = batch`` fresh samples per step. With a diagonal ``Λ`` the diagonal of ``M = E[ee^T]``,
    ``e = w − w*``, closes on itself (Gaussian fourth moment ``E[xx^T M xx^T] = 2ΛMΛ + tr(ΛM)Λ``):

        m_k ← m_k (1 − 2ηλ_k + η²(1 + 1/B) λ_k²) + η² λ_k (Σ_j λ_j m_j + σ²) / B,

    and the loss is ``½ Σ λ_k m_k + σ²/2``. A student of ``capacity`` N learns only the first N
    coordinates; the others keep ``m_k = w*_k²`` and act as extra label noise.

    ``lrs`` is ``(steps,)`` or ``(steps, members)``; returns ``(steps + 1,)`` or
    ``(steps + 1, members)``: the loss before each step and after the last (row t after t steps).
    """
    lam = np.asarray(eigenvalues, float)
    w = np.asarray(teacher, float)
    if lam.shape != w.shape or lam.ndim != 1:
        raise ValueError(f"eigenvalues and teacher must be 1-d of one length, got {lam.shape}, {w.shape}")
    if batch < 1 or noise < 0:
        raise ValueError(f"need batch >= 1 and noise >= 0, got batch={batch}, noise={noise}")
    eta = np.asarray(lrs, float)
    single = eta.ndim == 1
    eta = eta[:, None] if single else eta
    steps, members = eta.shape
    learn = np.ones(lam.size, bool)
    if capacity is not None:
        if not 1 <= capacity <= lam.size:
            raise ValueError(f"capacity must lie in 1 … {lam.size}, got {capacity}")
        learn[int(capacity):] = False
    m = np.repeat((w**2)[:, None], members, axis=1)  # (dim, members)
    lam_c = lam[:, None]
    out = np.empty((steps + 1, members))
    out[0] = 0.5 * (lam_c * m).sum(0) + noise / 2
    for t in range(steps):
        e = eta[t][None, :]
        residual = (lam_c * m).sum(0, keepdims=True) + noise
        new = m * (1 - 2 * e * lam_c + e**2 * (1 + 1 / batch) * lam_c**2) + e**2 * lam_c * residual / batch
        m = np.where(learn[:, None], new, m)
        out[t + 1] = 0.5 * (lam_c * m).sum(0) + noise / 2
    return out[:, 0] if single else out
