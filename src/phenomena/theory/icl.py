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


# ----------------------------------------------------------------------------- Bayes predictors
# Panwar, Ahuja & Goyal (2023): tasks w ~ π·N(+μ, Σ₁) + (1−π)·N(−μ, Σ₁), μ = c·e₁, Σ₁ = I except
# (Σ₁)₁₁ = 10⁻⁸, isotropic inputs, noiseless labels. Everything below is batched over leading axes:
# contexts x (..., k, d), labels y (..., k); predictions are x_qᵀŵ for the returned ŵ (..., d).


def gmm_component_covariance(d: int, jitter: float = 1e-8) -> NDArray[np.float64]:
    """``Σ₁``: the identity with ``(Σ₁)₁₁ = jitter`` (the paper's 10⁻⁸ pins ``w₁`` to ``±c``)."""
    if int(d) != d or d < 1:
        raise ValueError(f"d must be a positive integer, got {d!r}")
    if not jitter > 0:
        raise ValueError(f"jitter must be > 0 (a zero variance makes the posterior singular), got {jitter!r}")
    s = np.eye(int(d))
    s[0, 0] = jitter
    return s


def gmm_centre(d: int, centre: float = 3.0) -> NDArray[np.float64]:
    """``μ = c·e₁``, the mean of the ``+`` component."""
    mu = np.zeros(int(d))
    mu[0] = centre
    return mu


def _context(x: ArrayLike, y: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.ndim < 2 or x.shape[:-1] != y.shape:
        raise ValueError(f"contexts must be x (..., k, d) and y (..., k); got {x.shape} and {y.shape}")
    return x, y


def _evidence_covariance(x: NDArray[np.float64], cov: NDArray[np.float64], noise: float, jitter: float) -> NDArray:
    """``C = X Σ Xᵀ + (σ² + jitter) I``: the covariance of the labels ``y`` given one Gaussian component.

    Noiseless labels make ``XΣXᵀ`` singular once ``k > d``; the jitter keeps the solve defined there
    (and changes nothing measurable below: it is 10⁻⁸ against eigenvalues of order 1).
    """
    k = x.shape[-2]
    return x @ cov @ x.swapaxes(-1, -2) + (noise + jitter) * np.eye(k)


def gaussian_posterior_mean(x: ArrayLike, y: ArrayLike, mean: ArrayLike, cov: ArrayLike, *, noise: float = 0.0,
                            jitter: float = 1e-8) -> NDArray[np.float64]:
    """``E[w | X, y]`` under the prior ``w ~ N(m, S)`` and labels ``y = Xw + ε``, ``ε ~ N(0, σ² I)``.

    ``ŵ = m + S Xᵀ (X S Xᵀ + (σ² + jitter) I)⁻¹ (y − X m)``. This is ridge regression with the penalty
    ``(w − m)ᵀ S⁻¹ (w − m)`` (scaled by ``σ²``); with ``S = E[wwᵀ]`` of any prior and ``m = 0`` it is
    the best predictor *linear in the labels*, since the risk of a linear predictor depends on the
    prior only through its second moment. ``mean`` may carry leading axes matching the batch.
    """
    x, y = _context(x, y)
    s = np.asarray(cov, dtype=np.float64)
    m = np.asarray(mean, dtype=np.float64)
    d = x.shape[-1]
    if s.shape != (d, d) or m.shape[-1] != d:
        raise ValueError(f"mean (..., {d}) and cov ({d}, {d}) must match the inputs' dimension, got {m.shape}, {s.shape}")
    _check(1, noise)
    batch = np.broadcast_shapes(x.shape[:-2], m.shape[:-1])
    if x.shape[-2] == 0:
        return np.broadcast_to(m, (*batch, d)).copy()
    c = _evidence_covariance(x, s, noise, jitter)
    resid = y - np.einsum("...kd,...d->...k", x, m)
    alpha = np.linalg.solve(c, resid[..., None])[..., 0]
    return m + np.einsum("de,...ke,...k->...d", s, x, alpha)


def gmm_posterior(x: ArrayLike, y: ArrayLike, *, centre: float = 3.0, mixing: float = 0.5, noise: float = 0.0,
                  jitter: float = 1e-8, floor: float = 1e-8) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Posterior of the two-component mixture prior: ``(ŵ_PME (..., d), p₊ (...))``.

    Each component is Gaussian, so given the component the posterior mean ``ŵ_±`` is
    :func:`gaussian_posterior_mean` and the evidence is ``N(y; ±Xμ, C)`` with the *same* ``C`` for both
    (:func:`_evidence_covariance`). The log-odds of ``+`` is therefore linear in ``y``,

        log p₊/p₋ = 2 (Xμ)ᵀ C⁻¹ y + log π/(1−π),

    and the posterior-mean estimator is ``ŵ_PME = p₊ ŵ₊ + p₋ ŵ₋``, non-linear in ``y`` through ``p₊``.
    ``jitter`` is ``(Σ₁)₁₁``; ``floor`` the variance added to ``C`` to keep it invertible for noiseless
    labels at ``k > d`` (both 10⁻⁸ by default).
    """
    x, y = _context(x, y)
    if not 0 < mixing < 1:
        raise ValueError(f"mixing must lie in (0, 1), got {mixing!r}")
    d = x.shape[-1]
    s, mu = gmm_component_covariance(d, jitter), gmm_centre(d, centre)
    w_plus = gaussian_posterior_mean(x, y, mu, s, noise=noise, jitter=floor)
    w_minus = gaussian_posterior_mean(x, y, -mu, s, noise=noise, jitter=floor)
    if x.shape[-2] == 0:
        logit = np.full(x.shape[:-2], np.log(mixing / (1 - mixing)))
    else:
        c = _evidence_covariance(x, s, noise, floor)
        a = x @ mu  # (..., k): the label shift X μ
        logit = 2 * np.einsum("...k,...k->...", a, np.linalg.solve(c, y[..., None])[..., 0])
        logit = logit + np.log(mixing / (1 - mixing))
    p_plus = 0.5 * (1 + np.tanh(logit / 2))  # the logistic function, without overflow
    w = p_plus[..., None] * w_plus + (1 - p_plus[..., None]) * w_minus
    return w, p_plus


def min_norm_least_squares(x: ArrayLike, y: ArrayLike) -> NDArray[np.float64]:
    """``X⁺ y``: the least-squares fit of smallest norm (it interpolates the context when ``k ≤ d``).

    A learner with no prior at all: the prior-free baseline the paper's figures call OLS.
    """
    x, y = _context(x, y)
    if x.shape[-2] == 0:
        return np.zeros((*x.shape[:-2], x.shape[-1]))
    return np.einsum("...dk,...k->...d", np.linalg.pinv(x), y)


def min_norm_least_squares_risk(d: int, k: int, second_moment_trace: float) -> float:
    """``E(x_qᵀ(w − X⁺y))²`` for noiseless labels, isotropic Gaussian inputs and any prior independent of X.

    ``w − X⁺Xw = (I − P)w`` with ``P`` the projection on the ``min(k, d)`` context directions, and
    ``E[P] = (min(k, d)/d) I`` by rotation invariance, so the risk is ``(1 − min(k, d)/d)·tr E[wwᵀ]``.
    For the mixture prior ``tr E[wwᵀ] = c² + d − 1`` (+ the jitter).
    """
    if int(d) != d or d < 1 or int(k) != k or k < 0:
        raise ValueError(f"d must be >= 1 and k >= 0 integers, got d={d!r}, k={k!r}")
    return float((1 - min(k, d) / d) * second_moment_trace)


PREDICTORS: tuple[str, ...] = ("pme", "ridge", "ols")


def mixture_predictions(x: ArrayLike, y: ArrayLike, x_query: ArrayLike, *, centre: float = 3.0, mixing: float = 0.5,
                        jitter: float = 1e-8) -> dict[str, NDArray[np.float64]]:
    """The three reference predictions ``x_qᵀŵ`` for noiseless mixture tasks, keyed by :data:`PREDICTORS`:

    ``"pme"`` the Bayes posterior mean (:func:`gmm_posterior`); ``"ridge"`` the Gaussian posterior mean
    under the moment-matched prior ``N(0, diag(c² + jitter, 1, …, 1))`` (the best predictor linear in
    ``y``); ``"ols"`` the min-norm least-squares fit (no prior).
    """
    x, y = _context(x, y)
    xq = np.asarray(x_query, dtype=np.float64)
    d = x.shape[-1]
    second = np.eye(d)
    second[0, 0] = centre**2 + jitter
    w = {
        "pme": gmm_posterior(x, y, centre=centre, mixing=mixing, jitter=jitter)[0],
        "ridge": gaussian_posterior_mean(x, y, np.zeros(d), second, jitter=jitter),
        "ols": min_norm_least_squares(x, y),
    }
    return {name: np.einsum("...d,...d->...", v, xq) for name, v in w.items()}
