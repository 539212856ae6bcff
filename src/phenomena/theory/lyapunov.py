"""Lyapunov exponents along an orbit, and the forcing strength that keeps gradients bounded.

Lyapunov exponents (Benettin et al. 1980, the QR form of Eckmann & Ruelle 1985): the growth rates
of perturbations along an orbit ``z_{t+1} = F(z_t)``. With ``J_t = DF(z_t)``, iterate
``Q_{t+1}R_{t+1} = J_t Q_t`` (a QR decomposition that keeps the tangent vectors apart) and average
``log|diag R_t|``: ``λ_i = (1/(T·Δt)) Σ_t log|R_t[i, i]|``. For a map ``Δt = 1``; for a flow sampled
by an integrator with step ``Δt`` the exponents of the step map divided by ``Δt`` are the flow's.

Gradients and chaos: the loss gradient of a recurrent model over ``T`` steps contains products of
``T`` Jacobians, which grow like ``e^{λ₁T}`` on a chaotic orbit — the exploding gradients of
Hess et al. (2023). Generalized teacher forcing (GTF) feeds the model ``z̃_t = (1 − α)z_t + αx_t``
(``x_t`` the data), so each Jacobian in the product is ``(1 − α)J_t``; with
``α ≥ 1 − 1/‖J‖`` every factor has norm ≤ 1 and the product stays bounded for all ``T``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _jacobians(jacobians: ArrayLike) -> NDArray[np.float64]:
    J = np.asarray(jacobians, dtype=np.float64)
    if J.ndim < 3 or J.shape[-1] != J.shape[-2]:
        raise ValueError(f"jacobians must have shape (T, ..., d, d) with square d×d matrices, got {J.shape}")
    if not np.isfinite(J).all():
        raise ValueError("jacobians contain NaN or inf: the orbit diverged; check the model or shorten it")
    return J


def lyapunov_spectrum(
    jacobians: ArrayLike, *, dt: float = 1.0, discard: int = 0, block: int = 1
) -> NDArray[np.float64]:
    """All Lyapunov exponents from the Jacobians ``(T, ..., d, d)`` along an orbit, largest first.

    ``discard`` leading steps let the tangent frame align before averaging. ``block > 1``
    multiplies that many consecutive Jacobians (vectorised) before each QR, which is exact as long
    as the block product stays well conditioned (keep ``block·Δt·|λ|`` ≲ 5 for every exponent).
    Returns ``(..., d)`` exponents per unit time (``Δt`` per step).
    """
    J = _jacobians(jacobians)
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    if block < 1 or discard < 0:
        raise ValueError("block must be ≥ 1 and discard ≥ 0")
    d = J.shape[-1]
    Q = np.broadcast_to(np.eye(d), J.shape[1:]).copy()
    for t in range(discard):
        Q, _ = np.linalg.qr(J[t] @ Q)
    J = J[discard:]
    n = (J.shape[0] // block) * block
    if n == 0:
        raise ValueError(f"need at least one block of {block} Jacobians after discarding {discard}")
    J = J[:n].reshape((n // block, block) + J.shape[1:])
    P = J[:, 0]
    for k in range(1, block):
        P = J[:, k] @ P
    total = np.zeros(J.shape[2:-1])
    for t in range(P.shape[0]):
        Q, R = np.linalg.qr(P[t] @ Q)
        total += np.log(np.abs(np.diagonal(R, axis1=-2, axis2=-1)))
    return -np.sort(-total / (n * dt), axis=-1)


def largest_lyapunov(jacobians: ArrayLike, *, dt: float = 1.0, discard: int = 0) -> NDArray[np.float64]:
    """The largest exponent only, by renormalised vector iteration (Benettin's original form)."""
    J = _jacobians(jacobians)
    v = np.ones(J.shape[1:-1]) / np.sqrt(J.shape[-1])
    total = np.zeros(J.shape[1:-2])
    for t in range(J.shape[0]):
        v = np.einsum("...ij,...j->...i", J[t], v)
        norm = np.linalg.norm(v, axis=-1)
        if t >= discard:
            total += np.log(norm)
        v = v / norm[..., None]
    return total / ((J.shape[0] - discard) * dt)


def spectral_norms(jacobians: ArrayLike) -> NDArray[np.float64]:
    """``‖J‖₂`` (largest singular value) of every matrix in ``(..., d, d)``."""
    J = np.asarray(jacobians, dtype=np.float64)
    return np.linalg.svd(J, compute_uv=False)[..., 0]


def gtf_alpha(jac_norms: ArrayLike, mode: Literal["max", "geomean"] = "max") -> float:
    """The forcing strength ``α* = max(0, 1 − 1/N)`` from Jacobian norms ``(..., T)`` along sequences.

    ``mode="max"``: ``N`` is the largest norm of all, so every forced factor ``(1 − α)‖J_t‖ ≤ 1``
    (the strict bound). ``mode="geomean"``: ``N`` is the largest over sequences of the geometric
    mean over time (last axis), which bounds the *product* ``(1 − α)^T Π‖J_t‖ ≤ 1`` of each
    sequence but not every factor (the GTF code's default, ``product_upper_bound``).
    """
    n = np.asarray(jac_norms, dtype=np.float64)
    if n.size == 0 or not np.isfinite(n).all() or (n <= 0).any():
        raise ValueError("jac_norms must be a non-empty array of positive, finite spectral norms")
    if mode == "max":
        N = float(n.max())
    elif mode == "geomean":
        N = float(np.exp(np.log(n).mean(axis=-1)).max())
    else:
        raise ValueError(f"mode must be 'max' or 'geomean', got {mode!r}")
    return max(0.0, 1.0 - 1.0 / N)


def norm_upper_bound(A: ArrayLike, W1: ArrayLike, W2: ArrayLike) -> NDArray[np.float64]:
    """``max|A| + ‖W₁‖₂‖W₂‖₂`` ≥ ``‖J(z)‖₂`` for every state of a shPLRNN (batched over members).

    The shPLRNN Jacobian is ``diag(A) + W₁ D(z) W₂`` with ``D`` a 0/1 diagonal, so the triangle
    inequality gives this bound without looking at any state. ``A (..., M)``, ``W₁ (..., M, L)``,
    ``W₂ (..., L, M)``.
    """
    A, W1, W2 = (np.asarray(v, dtype=np.float64) for v in (A, W1, W2))
    return np.abs(A).max(-1) + spectral_norms(W1) * spectral_norms(W2)
