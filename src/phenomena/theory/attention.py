"""Zhai et al. (2023)'s lower bound on attention entropy, as a function of the logits' spectral norm.

One attention row is ``softmax(z)`` with logits ``z_j = x_iᵀ W x_j`` over ``T`` keys, ``W`` the
head's query-key matrix (``W_Q W_Kᵀ``, the ``1/√d_h`` folded in). The argument has two steps:

1. *a ball of logits*: among all logit vectors of Euclidean norm at most ``r`` in ``ℝᵀ``, the
   smallest softmax entropy is reached by one logit above the ``T − 1`` others, all equal, with
   the largest gap the norm allows, ``δ = r√(T/(T−1))`` (the vector ``r(√((T−1)/T), −1/√(T(T−1)), …)``).
   Its entropy is, with ``β = e^{−δ}``,

   .. math:: f(r, T) = \\log\\bigl(1 + (T-1)β\\bigr) + \\frac{r\\sqrt{T(T-1)}\\,β}{1 + (T-1)β};

2. *the logits' norm*: ``‖z‖ = ‖X W x_i‖ ≤ ‖W‖₂ ‖X‖₂ ‖x_i‖ ≤ σ σ_x`` with ``σ = ‖W‖₂`` and
   ``σ_x = ‖XXᵀ‖₂ = ‖X‖₂²`` (``X`` the ``T × d`` input rows).

Hence their Theorem 3.1: ``Ent(A_i) ≥ f(σσ_x, T)`` for every row ``i``. ``f(0, T) = log T`` and ``f``
falls like ``T·r·e^{−r}``: exponentially in the spectral norm. The bound is attained (for ``d ≥ T``)
by orthogonal inputs of equal norm and a ``W`` that maps ``x_i`` onto the extremal logit vector.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _keys(n: ArrayLike) -> np.ndarray:
    t = np.asarray(n, dtype=float)
    if np.any(t < 1) or np.any(t != np.floor(t)):
        raise ValueError(f"the number of keys must be an integer >= 1, got {n}")
    return t


def entropy_lower_bound(radius: ArrayLike, keys: ArrayLike) -> np.ndarray:
    """``f(r, T)``: the smallest entropy (nats) of ``softmax(z)`` over logits ``z ∈ ℝᵀ`` with ``‖z‖₂ ≤ r``.

    Broadcasts over ``radius`` and ``keys``; one key gives 0 (a one-point distribution).
    Stable for large ``r`` (``β`` underflows to 0 and so does the bound).
    """
    r = np.asarray(radius, dtype=float)
    t = _keys(keys)
    if np.any(r < 0) or not np.all(np.isfinite(r)):
        raise ValueError("radius must be finite and >= 0")
    r, t = np.broadcast_arrays(r, t)
    out = np.zeros(r.shape)
    many = t > 1
    rm, tm = r[many], t[many]
    beta = np.exp(-rm * np.sqrt(tm / (tm - 1)))
    spread = (tm - 1) * beta
    out[many] = np.log1p(spread) + rm * np.sqrt(tm * (tm - 1)) * beta / (1 + spread)
    return out if out.ndim else out[()]


def attention_entropy_bound(sigma: ArrayLike, sigma_x: ArrayLike, keys: ArrayLike) -> np.ndarray:
    """Theorem 3.1 of Zhai et al. (2023): ``Ent(A_i) ≥ f(σ·σ_x, T)``.

    ``sigma`` is ``‖W_Q W_Kᵀ‖₂`` of the head *as applied* (any ``1/√d_h`` included), ``sigma_x`` is
    ``‖XXᵀ‖₂`` of the inputs the head sees (after any LayerNorm in front of it), ``keys`` is ``T``.
    For a causal row ``i``, take ``X`` = the rows ``≤ i`` and ``T = i + 1``: that row is the last row
    of unmasked attention over the prefix, to which the theorem applies as stated.
    """
    s, sx = np.asarray(sigma, dtype=float), np.asarray(sigma_x, dtype=float)
    if np.any(s < 0) or np.any(sx < 0):
        raise ValueError("sigma and sigma_x are norms: they must be >= 0")
    return entropy_lower_bound(s * sx, keys)


def extremal_logits(radius: float, keys: int) -> np.ndarray:
    """The logit vector of norm ``radius`` whose softmax entropy is ``f(radius, keys)``.

    One logit ``r√((T−1)/T)`` and ``T − 1`` logits ``−r/√(T(T−1))``: zero mean, norm ``r``, gap
    ``r√(T/(T−1))``, the largest gap between one entry and all others that the norm allows.
    """
    t = int(_keys(keys))
    if t == 1:
        return np.array([float(radius)])
    z = np.full(t, -radius / np.sqrt(t * (t - 1)))
    z[0] = radius * np.sqrt((t - 1) / t)
    return z


def softmax_entropy(logits: ArrayLike) -> np.ndarray:
    """Entropy (nats) of ``softmax`` over the last axis, computed stably from the logits."""
    z = np.asarray(logits, dtype=float)
    z = z - z.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=-1)
