"""Coherence of per-example gradients: the identities of Chatterjee & Zielinski (2022, §4).

For a distribution ``V`` of vectors (per-example gradients at the current weights), the paper's
coherence is the ratio of the expected dot product of two independent draws to that of one draw
with itself,

    α(V) = E_{v,v'}[v·v'] / E_v[v·v] = ‖E v‖² / E‖v‖²,

the first-order loss reduction of one gradient step on the whole distribution relative to the
reduction each example would get from a step along its own gradient. ``0 ≤ α ≤ 1``; ``α = 1`` iff
all vectors are equal, ``α = 0`` iff their mean is zero; scaling all vectors leaves it unchanged.

The paper's propositions, each a one-liner here and each checked in ``tests/test_coherence.py``
against exact enumeration or Monte-Carlo:

* stylized mini-batching: the mean of ``k`` i.i.d. draws has ``α_k = kα / (1 + (k-1)α)``;
* zero vectors: drawing from ``V`` with probability ``p`` and the zero vector otherwise gives ``p·α``;
* orthogonal limit: ``m`` mutually orthogonal vectors (the empirical distribution of a sample of
  ``m``) have ``α⊥_m = 1/m``, so ``α_m / α⊥_m = m·α_m``, the *m-coherence* of a sample;
* expected difference: ``E‖v - v'‖ ≤ sqrt(2(1-α)·E[v·v])``, the step that turns coherence into a
  stability (hence generalization) bound;
* decomposition: over orthogonal subspaces (the layers of a network), ``α = Σ f_i α_i`` with
  ``f_i`` the share of ``E‖v‖²`` in subspace ``i``.

Numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def _alpha_array(alpha: ArrayLike) -> NDArray[np.float64]:
    a = np.asarray(alpha, dtype=np.float64)
    if np.any(~np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        raise ValueError(f"a coherence α must lie in [0, 1], got {alpha!r}")
    return a


def alpha_of(vectors: ArrayLike, weights: ArrayLike | None = None) -> float:
    """Exact ``α`` of the finite distribution that draws row ``i`` of ``vectors`` with probability
    ``weights[i]`` (uniform when ``None``): ``‖Σ pᵢvᵢ‖² / Σ pᵢ‖vᵢ‖²``.

    For the uniform distribution over a sample of ``m`` per-example gradients this is the paper's
    ``α_m``; ``m·α_m`` is the sample's m-coherence.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2 or v.shape[0] < 1:
        raise ValueError(f"vectors must be a (count, dim) array with at least one row, got shape {v.shape}")
    p = np.full(v.shape[0], 1.0 / v.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if p.shape != (v.shape[0],) or np.any(p < 0) or not np.isclose(p.sum(), 1.0):
        raise ValueError("weights must be one non-negative probability per row, summing to 1")
    second = float(p @ np.einsum("ij,ij->i", v, v))
    if second == 0.0:
        raise ValueError("α is undefined when every vector is zero (E[v·v] = 0)")
    mean = p @ v
    return float(mean @ mean) / second


def minibatch_alpha(alpha: ArrayLike, k: ArrayLike) -> NDArray[np.float64]:
    """Coherence of the mean of ``k`` i.i.d. draws: ``kα / (1 + (k-1)α)`` (the paper's stylized mini-batching).

    Why: ``E‖w‖² = ‖μ‖² + (E‖v‖² - ‖μ‖²)/k`` for ``w`` the mean of ``k`` draws, while ``E w = μ``.
    For ``α ≪ 1/k`` averaging multiplies coherence by almost ``k``; near ``α = 1`` there is no room.
    """
    a = _alpha_array(alpha)
    k_ = np.asarray(k, dtype=np.float64)
    if np.any(k_ < 1) or np.any(k_ != np.round(k_)):
        raise ValueError(f"k must be a positive integer batch size, got {k!r}")
    return k_ * a / (1.0 + (k_ - 1.0) * a)


def zero_mixture_alpha(alpha: ArrayLike, p: ArrayLike) -> NDArray[np.float64]:
    """Coherence after replacing each draw by the zero vector with probability ``1 - p``: ``p·α``.

    Why it matters: examples already fitted contribute (nearly) zero gradients, so coherence
    measured over the whole training set falls as training fits more of it, even when the
    examples still being learned stay as coherent as before.
    """
    a = _alpha_array(alpha)
    p_ = np.asarray(p, dtype=np.float64)
    if np.any(p_ <= 0) or np.any(p_ > 1):
        raise ValueError(f"p must lie in (0, 1], got {p!r}")
    return p_ * a


def orthogonal_alpha(m: ArrayLike) -> NDArray[np.float64]:
    """``α⊥_m = 1/m``: the coherence of a sample of ``m`` mutually orthogonal (non-zero) vectors."""
    m_ = np.asarray(m, dtype=np.float64)
    if np.any(m_ < 1):
        raise ValueError(f"m must be a positive sample size, got {m!r}")
    return 1.0 / m_


def m_coherence(alpha_m: ArrayLike, m: ArrayLike) -> NDArray[np.float64]:
    """``α_m / α⊥_m = m·α_m``: how many examples of the sample a step along one example's gradient
    helps, on average (1 for orthogonal gradients, ``m`` for identical ones)."""
    return _alpha_array(alpha_m) / orthogonal_alpha(m)


def difference_bound(alpha: ArrayLike, second_moment: ArrayLike) -> NDArray[np.float64]:
    """``sqrt(2(1-α)·E[v·v])``: the paper's upper bound on ``E‖v - v'‖`` for two independent draws."""
    a = _alpha_array(alpha)
    s = np.asarray(second_moment, dtype=np.float64)
    if np.any(s < 0):
        raise ValueError("the second moment E[v·v] cannot be negative")
    return np.sqrt(2.0 * (1.0 - a) * s)


def decomposed_alpha(shares: ArrayLike, alphas: ArrayLike) -> float:
    """``Σ f_i α_i``: coherence from orthogonal parts (layers), ``f_i`` their shares of ``E‖v‖²``."""
    f = np.asarray(shares, dtype=np.float64)
    a = _alpha_array(alphas)
    if f.shape != a.shape or np.any(f < 0) or not np.isclose(f.sum(), 1.0):
        raise ValueError("shares must be non-negative, sum to 1 and match alphas in shape")
    return float(f @ a)
