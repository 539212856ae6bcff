"""Spectral comparison of a fine-tuned weight with its pretrained version: intruder dimensions and surgery.

Shuttleworth et al. (2024) compare the singular vectors of a fine-tuned matrix with those of the
pretrained one. Their official counting script (``find_intruder_dimensions.py``) takes the SVD of
each ``(out, in)`` weight, ``W = U diag(σ) Vᵀ`` (thin), and for each of the top ``k = 10`` *left*
singular vectors ``u_j`` of the tuned matrix the largest absolute cosine with any left singular
vector of the base matrix,

    c_j = max_i |⟨u_j^tuned, u_i^base⟩|,

and counts ``u_j`` as an *intruder dimension* when ``c_j < ε`` (default ``ε = 0.5``). Absolute
values, because a singular vector's sign is arbitrary; all base vectors, not only the top ``k``,
so that a vector that merely moved down the ranking is not an intruder.

Singular-value surgery (the paper's intervention) rescales the singular values of chosen
singular directions of the tuned matrix, ``W' = W + Σ_j (λ − 1) σ_j u_j v_jᵀ``, leaving every
singular vector in place.

Every function takes one matrix ``(out, in)`` or a stack ``(members, out, in)`` and computes in
float64 (near-degenerate singular values make float32 singular vectors noisy).
"""

from __future__ import annotations

import torch
from torch import Tensor

K_TOP = 10
"""Top singular vectors of the tuned matrix that the official script inspects."""
EPSILON = 0.5
"""The official script's default threshold on the max |cos| (``--intruder_dimension_threshold``)."""


def _stack(w: Tensor, name: str) -> tuple[Tensor, bool]:
    if not isinstance(w, Tensor) or w.dim() not in (2, 3):
        shape = tuple(w.shape) if isinstance(w, Tensor) else type(w).__name__
        raise ValueError(f"{name} must be a matrix (out, in) or a stack (members, out, in), got {shape}")
    return (w.unsqueeze(0) if w.dim() == 2 else w).to(torch.float64), w.dim() == 2


def _check_k(k: int, w: Tensor) -> int:
    k = int(k)
    if not 1 <= k <= min(w.shape[-2:]):
        raise ValueError(f"k must lie in 1 … min(out, in) = {min(w.shape[-2:])}, got {k}")
    return k


def max_cosines(tuned: Tensor, base: Tensor, k: int = K_TOP) -> Tensor:
    """``c_j = max_i |⟨u_j^tuned, u_i^base⟩|`` for the top ``k`` left singular vectors of ``tuned``.

    Returns ``(k,)`` for one matrix or ``(members, k)`` for a stack, ordered by the tuned singular
    values (largest first).
    """
    t, single = _stack(tuned, "tuned")
    b, _ = _stack(base, "base")
    if t.shape != b.shape:
        raise ValueError(f"tuned and base must have the same shape, got {tuple(tuned.shape)} and {tuple(base.shape)}")
    k = _check_k(k, t)
    u_t = torch.linalg.svd(t, full_matrices=False).U[..., :k]
    u_b = torch.linalg.svd(b, full_matrices=False).U
    c = (u_t.transpose(-2, -1) @ u_b).abs().amax(-1)
    return c[0] if single else c


def intruder_mask(tuned: Tensor, base: Tensor, k: int = K_TOP, epsilon: float = EPSILON) -> Tensor:
    """Which of the top ``k`` tuned left singular vectors are intruders (``max |cos| < epsilon``)."""
    if not 0.0 < float(epsilon) <= 1.0:
        raise ValueError(f"epsilon must lie in (0, 1], got {epsilon}")
    return max_cosines(tuned, base, k) < float(epsilon)


def intruder_count(tuned: Tensor, base: Tensor, k: int = K_TOP, epsilon: float = EPSILON) -> Tensor:
    """Number of intruder dimensions among the top ``k`` (the official count), per member (``int64``)."""
    return intruder_mask(tuned, base, k, epsilon).sum(-1)


def singular_gaps(w: Tensor, k: int = K_TOP + 1) -> Tensor:
    """Ratios ``σ_i / σ_{i+1}`` of the top ``k`` singular values, ``(k − 1,)`` or ``(members, k − 1)``.

    A ratio near 1 means two nearly equal singular values, whose singular vectors may rotate into
    each other under a tiny perturbation: a full fine-tune could then show "intruders" that are
    only relabelled pretrained directions.
    """
    x, single = _stack(w, "w")
    k = _check_k(k, x)
    if k < 2:
        raise ValueError("k must be >= 2 to form a ratio")
    s = torch.linalg.svdvals(x)[..., :k]
    g = s[..., :-1] / s[..., 1:]
    return g[0] if single else g


def scale_singular_values(w: Tensor, mask: Tensor, factor: float) -> Tensor:
    """``W + Σ_{j ∈ mask} (factor − 1) σ_j u_j v_jᵀ``: the top singular directions picked by ``mask``
    (``(k,)`` or ``(members, k)`` bool, ordered by singular value) get their singular value times ``factor``.

    Returns a tensor of ``w``'s dtype and shape. ``factor = 1`` or an all-false mask gives ``w`` back.
    """
    x, single = _stack(w, "w")
    m = mask.unsqueeze(0) if mask.dim() == 1 else mask
    if m.dtype != torch.bool or m.shape[0] != x.shape[0] or m.dim() != 2:
        raise ValueError(f"mask must be a bool tensor (k,) or (members, k) matching w, got {tuple(mask.shape)} {mask.dtype}")
    k = _check_k(m.shape[1], x)
    svd = torch.linalg.svd(x, full_matrices=False)
    u, s, vh = svd.U[..., :k], svd.S[..., :k], svd.Vh[..., :k, :]
    coef = (float(factor) - 1.0) * s * m.to(s.dtype)
    out = x + (u * coef.unsqueeze(-2)) @ vh
    out = out.to(w.dtype)
    return out[0] if single else out
