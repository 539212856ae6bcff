"""Temperature sampling versus scalarization: mixture weights, minibatch-gradient variance, SGD noise floor.

Two ways to train on a target mixture ``p`` of ``K`` domains of sizes ``n_k`` (Li et al. 2024):

* **Temperature Sampling (TS)** draws a domain ``k ~ p``, then an example uniformly within it;
* **Scalarization (S)** draws an example uniformly from all ``N = Σ n_k`` (domain ``k`` with
  probability ``q_k = n_k/N``) and multiplies its loss by ``w_k = p_k/q_k``.

Both have the expected minibatch gradient ``ḡ = Σ_k p_k g_k`` of the objective ``Σ_k p_k L_k``,
so full-batch gradient descent cannot tell them apart. Their variance differs. With
``s_k = E_{x∈k}‖∇ℓ(x)‖²`` (the mean squared per-example gradient norm of domain ``k``), one draw
has ``E‖g‖² = Σ_k p_k s_k`` under TS and ``Σ_k q_k w_k² s_k = Σ_k p_k² s_k/q_k`` under S, and
``B`` independent draws (sampling *with* replacement) divide the covariance by ``B``:

    tr Cov_TS = (Σ_k p_k s_k − ‖ḡ‖²)/B,     tr Cov_S = (Σ_k p_k² s_k/q_k − ‖ḡ‖²)/B.

By Cauchy–Schwarz, ``Σ p_k²/q_k ≥ (Σ p_k)² = 1``, so with equal ``s_k`` S is never less noisy.
In the stationary state of SGD with a small step ``η`` on a quadratic loss with Hessian ``H``,
the iterates' covariance ``C`` solves ``HC + CH = η Σ_g`` (Σ_g the minibatch-gradient
covariance at the minimum), whose trace gives the excess loss ``E[L − L*] = ½ tr(HC) = (η/4) tr Σ_g``
(:func:`sgd_noise_floor`): the sampler with the larger gradient variance sits higher.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np

__all__ = [
    "minibatch_gradient_variance", "scalarization_weights", "sgd_noise_floor", "sgd_stationary_excess",
    "temperature_weights",
]


def temperature_weights(n: Sequence[float] | np.ndarray, tau: float) -> np.ndarray:
    """The target mixture ``p_k(τ) ∝ n_k^{1/τ}``: ``τ = 1`` is proportional to size, ``τ = ∞`` uniform.

    ``tau`` must be positive (``math.inf`` is allowed); ``n`` holds the domain sizes (all positive).
    """
    sizes = np.asarray(n, dtype=float)
    if sizes.ndim != 1 or sizes.size < 1 or not np.all(sizes > 0):
        raise ValueError(f"n must be a 1-d list of positive domain sizes, got {n!r}")
    if not (tau > 0):
        raise ValueError(f"tau must be positive (math.inf for uniform), got {tau}")
    if math.isinf(tau):
        return np.full(sizes.size, 1.0 / sizes.size)
    logw = np.log(sizes) / tau
    w = np.exp(logw - logw.max())
    return w / w.sum()


def scalarization_weights(n: Sequence[float] | np.ndarray, p: Sequence[float] | np.ndarray) -> np.ndarray:
    """Loss weights ``w_k = p_k/q_k`` with ``q_k = n_k/N``: uniform sampling plus these weights has mixture ``p``."""
    sizes = np.asarray(n, dtype=float)
    target = _mixture(p, sizes.size)
    return target / (sizes / sizes.sum())


def minibatch_gradient_variance(
    s: Sequence[float] | np.ndarray,
    gbar: Sequence[float] | np.ndarray,
    p: Sequence[float] | np.ndarray,
    q: Sequence[float] | np.ndarray,
    batch: int,
    *,
    sampler: Literal["temperature", "scalarization"] = "temperature",
) -> float:
    """The trace of the covariance of a minibatch gradient of ``batch`` examples drawn with replacement.

    ``s[k]`` is the mean squared per-example gradient norm of domain ``k``, ``gbar`` the full
    gradient ``Σ p_k g_k`` (a vector, or a scalar taken as its norm), ``p`` the target mixture and
    ``q`` the natural one (``n_k/N``). ``sampler="temperature"``: ``(Σ p_k s_k − ‖ḡ‖²)/B``;
    ``"scalarization"``: ``(Σ p_k² s_k/q_k − ‖ḡ‖²)/B``.
    """
    s_arr = np.asarray(s, dtype=float)
    if s_arr.ndim != 1 or np.any(s_arr < 0):
        raise ValueError(f"s must be a 1-d list of non-negative mean squared gradient norms, got {s!r}")
    target = _mixture(p, s_arr.size)
    natural = _mixture(q, s_arr.size)
    if batch < 1:
        raise ValueError(f"batch must be a positive integer, got {batch}")
    g = np.asarray(gbar, dtype=float)
    gsq = float(g * g) if g.ndim == 0 else float(g @ g)
    if sampler == "temperature":
        second = float(target @ s_arr)
    elif sampler == "scalarization":
        if np.any((natural == 0) & (target > 0)):
            raise ValueError("scalarization needs q_k > 0 wherever p_k > 0 (a domain never drawn cannot be upweighted)")
        keep = target > 0
        second = float(np.sum(target[keep] ** 2 * s_arr[keep] / natural[keep]))
    else:
        raise ValueError(f"sampler must be 'temperature' or 'scalarization', got {sampler!r}")
    return (second - gsq) / batch


def sgd_noise_floor(lr: float, trace_cov: float) -> float:
    """Stationary excess loss of small-step SGD on a quadratic: ``E[L − L*] ≈ (η/4)·tr Σ_g``.

    From the stationary covariance ``C`` of ``θ − θ*``: ``HC + CH − ηHCH = ηΣ_g``; its trace gives
    ``tr(HC) = (η/2) tr Σ_g + (η/2) tr(HCH)``, and the second term is ``O(η²)``. Exact to first
    order in ``η`` for any ``H`` (no commuting assumption); the gradient covariance must be taken at
    the minimum. Returns ``½ tr(HC)`` to that order.
    """
    if lr < 0 or trace_cov < 0:
        raise ValueError(f"lr and trace_cov must be non-negative, got {lr}, {trace_cov}")
    return lr * trace_cov / 4


def sgd_stationary_excess(
    features: np.ndarray,
    probs: np.ndarray,
    weights: np.ndarray,
    residuals: np.ndarray,
    lr: float,
    batch: int,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
) -> float:
    """The exact stationary excess loss ``E[L − L*] = ½ tr(HC)`` of minibatch SGD on weighted least squares.

    Example ``i`` (features ``φ_i``, residual ``r_i = φ_i·θ* − y_i`` at the minimum) is drawn with
    probability ``probs[i]`` and carries the loss weight ``weights[i]``; ``batch`` draws with
    replacement per step. The objective's Hessian is ``H = Σ_i π_i w_i φ_iφ_iᵀ``. With
    ``δ = θ − θ*``, the second moment ``C = E[δδᵀ]`` of the stationary state solves exactly

        HC + CH = η [ (1 − 1/B)·HCH + (1/B)·Σ_i π_i w_i² (φ_iᵀCφ_i) φ_iφ_iᵀ + Σ_g ],

    ``Σ_g = (1/B) Σ_i π_i w_i² r_i² φ_iφ_iᵀ`` the minibatch-gradient covariance at ``θ*`` (the
    per-example gradient is linear in ``δ``, and ``E[δ] = 0`` in the stationary state). Dropping the
    two ``C`` terms on the right gives :func:`sgd_noise_floor`; they are the finite-step
    corrections, large when one example's weighted step ``η·w_i‖φ_i‖²/B`` is not small. Solved by
    fixed-point iteration on the Lyapunov operator in ``H``'s eigenbasis (directions where ``H``
    vanishes carry no noise and are left out); raises if the iteration does not converge, which
    means the step is too large for the second moments to be stable.
    """
    phi = np.asarray(features, dtype=float)
    pi = np.asarray(probs, dtype=float)
    w = np.asarray(weights, dtype=float)
    r = np.asarray(residuals, dtype=float)
    n = phi.shape[0]
    if phi.ndim != 2 or pi.shape != (n,) or w.shape != (n,) or r.shape != (n,):
        raise ValueError("features must be (N, P) and probs, weights, residuals (N,) each")
    if lr <= 0 or batch < 1:
        raise ValueError(f"need lr > 0 and batch >= 1, got {lr}, {batch}")
    hess = phi.T @ (phi * (pi * w)[:, None])
    noise = phi.T @ (phi * (pi * w * w * r * r)[:, None]) / batch
    lam, u = np.linalg.eigh(hess)
    denom = lam[:, None] + lam[None, :]
    live = denom > 1e-12 * max(float(lam.max()), 1e-300)
    fourth = pi * w * w / batch

    def solve(rhs: np.ndarray) -> np.ndarray:
        t = u.T @ rhs @ u
        t = np.where(live, t / np.where(live, denom, 1.0), 0.0)
        return u @ t @ u.T

    c = solve(lr * noise)
    with np.errstate(over="ignore", invalid="ignore"):  # an unstable step makes the iterates blow up: reported below
        converged = _iterate(c, phi, hess, noise, fourth, lr, batch, solve, tol, max_iter)
    if converged is not None:
        return converged
    raise ValueError(
        f"the stationary second moment did not converge at lr={lr}: the step is too large for SGD's "
        "fluctuations to settle (lower lr, or raise batch)"
    )


def _iterate(c, phi, hess, noise, fourth, lr, batch, solve, tol, max_iter) -> float | None:
    """The fixed-point iteration of :func:`sgd_stationary_excess`; ``None`` if it does not converge."""
    for _ in range(max_iter):
        quad = ((phi @ c) * phi).sum(1)
        rhs = lr * (noise + (1 - 1 / batch) * hess @ c @ hess + phi.T @ (phi * (fourth * quad)[:, None]))
        new = solve(rhs)
        if not np.all(np.isfinite(new)):
            break
        change = np.abs(new - c).max()
        c = new
        if change <= tol * max(np.abs(c).max(), 1e-300):
            return 0.5 * float(np.sum(hess * c))
    return None


def _mixture(p: Sequence[float] | np.ndarray, k: int) -> np.ndarray:
    arr = np.asarray(p, dtype=float)
    if arr.shape != (k,):
        raise ValueError(f"a mixture over {k} domains needs {k} weights, got shape {arr.shape}")
    if np.any(arr < 0) or not math.isclose(float(arr.sum()), 1.0, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(f"a mixture must be non-negative and sum to 1, got {arr.tolist()}")
    return arr
