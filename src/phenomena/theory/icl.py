"""In-context linear regression: the best one-step preconditioned GD predictor, in closed form.

A task is a weight vector ``w ~ N(0, I_d)``; its context holds ``n`` pairs ``(x_i, y_i)`` with
``x_i ~ N(0, Σ)`` and ``y_i = wᵀx_i + ε_i``, ``ε_i ~ N(0, σ²)``; the query ``x_q`` has the label
``y_q = wᵀx_q + ε_q``. One step of gradient descent from ``w = 0`` on ``(1/2n)Σ(y_i − wᵀx_i)²`` with
preconditioner ``Γ`` predicts

    ŷ = x_qᵀ Γ g,      g = (1/n) Σ_i y_i x_i .

Gaussian moments (Isserlis: ``E[x xᵀ A x xᵀ] = Σ(A + Aᵀ)Σ + tr(AΣ)Σ``) give

    E[g wᵀ] = Σ,     H := E[g gᵀ] = ((n+1)/n) Σ² + ((tr Σ + σ²)/n) Σ,

and the test risk (query noise included) is the quadratic

    R(Γ) = E(ŷ − y_q)² = tr(Σ Γ H Γᵀ) − 2 tr(Σ Γ Σ) + tr Σ + σ².

Setting its gradient ``2Σ(ΓH − Σ)`` to zero gives the optimal preconditioner

    Γ* = Σ H⁻¹ = ( ((n+1)/n) Σ + ((tr Σ + σ²)/n) I )⁻¹,

with ``R(Γ*) = tr Σ − tr(Σ Γ* Σ) + σ²``. For ``σ = 0`` this is the preconditioner Ahn et al. (2023)
prove optimal for one layer of linear self-attention; for ``Σ = I`` it is plain GD with step
``n / (n + 1 + d + σ²)`` (Mahankali et al. 2023). It is *not* ``Σ⁻¹``: the ``tr Σ/n`` term shrinks
the steps along the small-variance directions, which a finite context cannot estimate well.

Numpy in, numpy out (``one_step_gd_prediction`` also accepts torch tensors).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _covariance(cov: ArrayLike) -> NDArray[np.float64]:
    s = np.asarray(cov, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"the input covariance must be a square matrix, got shape {s.shape}")
    if not np.allclose(s, s.T) or np.linalg.eigvalsh(s).min() <= 0:
        raise ValueError("the input covariance must be symmetric positive definite")
    return s


def _check(n: int, noise: float) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"the context length n must be a positive integer, got {n!r}")
    if not np.isfinite(noise) or noise < 0:
        raise ValueError(f"the label-noise variance must be >= 0, got {noise!r}")


def gradient_second_moment(cov: ArrayLike, n: int, noise: float) -> NDArray[np.float64]:
    """``H = E[g gᵀ] = ((n+1)/n)Σ² + ((tr Σ + σ²)/n)Σ`` for ``g = (1/n)Σ y_i x_i`` and ``w ~ N(0, I)``.

    Given ``w``: ``E[ggᵀ|w] = ((n−1)/n)Σwwᵀ Σ + (1/n)E[x xᵀwwᵀx xᵀ] + (σ²/n)Σ``; the fourth moment is
    ``2Σwwᵀ Σ + (wᵀΣw)Σ``; averaging over ``w`` turns ``wwᵀ`` into ``I``.
    """
    s = _covariance(cov)
    _check(n, noise)
    return (n + 1) / n * s @ s + (np.trace(s) + noise) / n * s


def optimal_preconditioner(cov: ArrayLike, n: int, noise: float) -> NDArray[np.float64]:
    """``Γ* = ((n+1)/n Σ + (tr Σ + σ²)/n I)⁻¹``: the preconditioner of the best one-step GD predictor."""
    s = _covariance(cov)
    _check(n, noise)
    d = s.shape[0]
    return np.linalg.inv((n + 1) / n * s + (np.trace(s) + noise) / n * np.eye(d))


def one_step_risk(gamma: ArrayLike, cov: ArrayLike, n: int, noise: float) -> NDArray[np.float64]:
    """Test risk ``E(x_qᵀΓg − y_q)²`` of one-step GD with preconditioner ``Γ`` (query noise included).

    ``gamma`` may carry leading batch axes ``(..., d, d)``; returns one risk per matrix.
    """
    s = _covariance(cov)
    h = gradient_second_moment(s, n, noise)
    g = np.asarray(gamma, dtype=np.float64)
    if g.shape[-2:] != s.shape:
        raise ValueError(f"gamma must end in shape {s.shape}, got {g.shape}")
    quad = np.einsum("ij,...jk,kl,...il->...", s, g, h, g)  # tr(Σ Γ H Γᵀ)
    lin = np.einsum("ij,...jk,ki->...", s, g, s)  # tr(Σ Γ Σ)
    return quad - 2 * lin + np.trace(s) + noise


def optimal_one_step_risk(cov: ArrayLike, n: int, noise: float) -> float:
    """``R(Γ*) = tr Σ − tr(Σ Γ* Σ) + σ²``: the lowest test risk any one-step GD predictor reaches."""
    s = _covariance(cov)
    g = optimal_preconditioner(s, n, noise)
    return float(np.trace(s) - np.trace(s @ g @ s) + noise)


def least_squares_risk(d: int, n: int, noise: float) -> float:
    """Test risk of ordinary least squares on the context: ``σ²(1 + d/(n − d − 1))`` for ``n > d + 1``.

    ``E[x_qᵀ(XᵀX)⁻¹x_q] = d/(n − d − 1)`` (inverse-Wishart mean); the same for every Σ, because least
    squares is invariant to a linear change of the inputs. Infinite for ``n ≤ d + 1``.
    """
    _check(n, noise)
    if n <= d + 1:
        return float("inf")
    return float(noise * (1 + d / (n - d - 1)))


def one_step_gd_prediction(x, y, x_query, gamma):
    """``ŷ = x_qᵀ Γ (1/n) Σ_i y_i x_i`` for contexts ``x (..., n, d)``, ``y (..., n)``, queries ``(..., d)``.

    ``gamma`` is ``(d, d)`` or carries leading axes that broadcast against the batch.
    Works with numpy arrays and torch tensors alike (only ``@`` and ``swapaxes``).
    """
    n = x.shape[-2]
    g = (x.swapaxes(-1, -2) @ y[..., None]) / n  # (..., d, 1)
    return (x_query[..., None, :] @ (gamma @ g))[..., 0, 0]


def preconditioner_isotropy_gap(gamma: ArrayLike) -> NDArray[np.float64]:
    """``‖Γ − cI‖_F / ‖cI‖_F`` with ``c = tr Γ / d``: how far ``Γ`` is from a multiple of the identity.

    Off-diagonal mass and unequal diagonal entries both count; 0 for plain (unpreconditioned) GD.
    """
    g = np.asarray(gamma, dtype=np.float64)
    d = g.shape[-1]
    c = np.trace(g, axis1=-2, axis2=-1) / d
    dev = g - c[..., None, None] * np.eye(d)
    return np.linalg.norm(dev, axis=(-2, -1)) / (np.abs(c) * np.sqrt(d))


def relative_error(gamma: ArrayLike, target: ArrayLike) -> NDArray[np.float64]:
    """``‖Γ − Γ_target‖_F / ‖Γ_target‖_F`` (leading axes of ``gamma`` kept)."""
    g, t = np.asarray(gamma, dtype=np.float64), np.asarray(target, dtype=np.float64)
    return np.linalg.norm(g - t, axis=(-2, -1)) / np.linalg.norm(t)


def condition_number(gamma: ArrayLike) -> NDArray[np.float64]:
    """Ratio of the largest to the smallest eigenvalue of the symmetric part of ``Γ``."""
    g = np.asarray(gamma, dtype=np.float64)
    ev = np.linalg.eigvalsh((g + g.swapaxes(-1, -2)) / 2)
    return ev[..., -1] / ev[..., 0]
