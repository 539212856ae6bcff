"""Closed forms for neural collapse in the unconstrained-features model with a deep linear head.

The model (Dang et al., 2023): free last-layer features ``H = [h_1 … h_N]`` (``d × N``), a linear
head ``W_M ⋯ W_1`` of ``M`` layers, optionally a last-layer bias ``b`` (not regularised), and

    L = 1/(2N) ‖W_M ⋯ W_1 H + b 1ᵀ − Y‖²_F + λ_W/2 Σ_m ‖W_m‖²_F + λ_H/2 ‖H‖²_F,

with one-hot targets ``Y`` and ``n_k`` samples in class ``k`` (``N = Σ n_k``).

At a global minimum every feature equals its class mean ``h̄_k`` and, without bias, the class
means are orthogonal (a *general orthogonal frame*): each class lives on its own direction and
the problem splits into one scalar problem per class. For class ``k`` every layer has the same
singular value ``s_k`` on that direction, the end-to-end map sends ``h̄_k`` to ``p_k e_k`` and

    p_k = s_k^{2M} / (s_k^{2M} + N λ_H),        ‖h̄_k‖ = s_k^M / (s_k^{2M} + N λ_H),

where ``s_k^{2M} = N λ_H x_k^M`` and ``x_k`` solves the paper's equation

    N λ_W (N λ_H)^{1/M} / n_k = x^{M−1} / (x^M + 1)²                                   (★)

(its largest root), or ``s_k = 0`` (*minority collapse*: class ``k``'s mean and classifier row
vanish) when no root gives a lower loss than zero. For ``M = 1`` (★) is solved by hand:
``x_k = √(n_k / (N² λ_W λ_H)) − 1``, so class ``k`` collapses exactly when ``n_k ≤ N² λ_W λ_H``.
For ``M ≥ 2`` zero is always a local minimum (the penalty ``∝ p^{2/(M+1)}`` is steeper than the
loss near ``p = 0``) and the transition is discontinuous: the nonzero branch exists up to an
*existence* threshold, but is the global minimum only below a lower, *global* threshold.

With a last-layer bias and balanced classes the bias absorbs the mean target ``1/K``, the centred
target has ``K − 1`` unit singular values, and the same scalar problem gives the class-mean Gram
matrix ``‖h̄‖²·K/(K−1) · (I − 11ᵀ/K)``: a simplex ETF instead of an orthogonal frame.

Everything is derived in the chapter *neural-collapse*; numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

THRESHOLD_KINDS: tuple[str, ...] = ("global", "existence")


def _check(depth: int, weight_decay: float, feature_decay: float) -> None:
    if isinstance(depth, bool) or not isinstance(depth, (int, np.integer)) or depth < 1:
        raise ValueError(f"depth (number of linear layers M) must be an integer >= 1, got {depth!r}")
    if not (weight_decay > 0 and feature_decay > 0):
        raise ValueError(
            f"weight_decay and feature_decay must be > 0 (without them there is no unique minimum), "
            f"got {weight_decay}, {feature_decay}"
        )


def _g(x: np.ndarray | float, m: int) -> np.ndarray | float:
    """Right-hand side of (★): ``x^{M−1}/(x^M + 1)²``."""
    return x ** (m - 1) / (x**m + 1) ** 2


def _largest_root(c: float, m: int) -> float:
    """Largest positive root of ``g(x) = c`` (★), or ``nan`` if there is none.

    ``g`` rises from ``g(0)`` to its peak at ``x^M = (M−1)/(M+1)`` and then decreases to 0, so the
    largest root lies on the decreasing side and bisection finds it.
    """
    if m == 1:
        x = 1 / np.sqrt(c) - 1
        return float(x) if x > 0 else float("nan")
    peak = ((m - 1) / (m + 1)) ** (1 / m)
    if c > _g(peak, m):
        return float("nan")
    lo, hi = peak, max(2 * peak, 1.0)
    while _g(hi, m) > c:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if _g(mid, m) > c:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ufm_singular_values(
    class_sizes: Sequence[int], depth: int, weight_decay: float, feature_decay: float, *, branch: str = "global"
) -> np.ndarray:
    """The singular value ``s_k`` of every head layer on class ``k``'s direction at the minimum.

    ``branch="global"`` (default) returns the global minimiser: ``0`` for a class whose nonzero
    solution costs more than collapsing it. ``branch="nonzero"`` returns the nonzero stationary
    solution wherever it exists (a local minimum for ``M ≥ 2`` between the two thresholds),
    ``0`` where it does not.
    """
    _check(depth, weight_decay, feature_decay)
    if branch not in ("global", "nonzero"):
        raise ValueError(f"branch must be 'global' or 'nonzero', got {branch!r}")
    n = np.asarray(class_sizes, dtype=float)
    if n.ndim != 1 or n.size < 2 or (n <= 0).any():
        raise ValueError(f"class_sizes must list at least two positive class sizes, got {class_sizes!r}")
    big_n, m = n.sum(), int(depth)
    out = np.zeros_like(n)
    for k, nk in enumerate(n):
        c = big_n * weight_decay * (big_n * feature_decay) ** (1 / m) / nk
        x = _largest_root(c, m)
        if not np.isfinite(x):
            continue
        s2m = big_n * feature_decay * x**m
        s = s2m ** (1 / (2 * m))
        if branch == "global" and _class_objective(s, nk, big_n, m, weight_decay, feature_decay) >= nk / (2 * big_n):
            continue
        out[k] = s
    return out


def _class_objective(s: float, nk: float, big_n: float, m: int, weight_decay: float, feature_decay: float) -> float:
    """Class ``k``'s share of the loss at singular value ``s`` with the optimal feature norm.

    ``n_k/(2N)(1 − p)² + (M+1)/2·λ_W s²``: at the optimum the feature penalty ``λ_H n_k ‖h̄_k‖²``
    equals one layer's penalty ``λ_W s²`` (the balance every stationary point of a product has).
    """
    s2m = s ** (2 * m)
    p = s2m / (s2m + big_n * feature_decay)
    return nk / (2 * big_n) * (1 - p) ** 2 + (m + 1) / 2 * weight_decay * s**2


def class_mean_norms(
    class_sizes: Sequence[int], depth: int, weight_decay: float, feature_decay: float, *, branch: str = "global"
) -> np.ndarray:
    """``‖h̄_k‖ = s_k^M / (s_k^{2M} + N λ_H)`` for every class, bias-free (Dang et al., imbalanced MSE)."""
    s = ufm_singular_values(class_sizes, depth, weight_decay, feature_decay, branch=branch)
    big_n = float(np.sum(class_sizes))
    return s**depth / (s ** (2 * depth) + big_n * feature_decay)


def classifier_row_norms(
    class_sizes: Sequence[int], depth: int, weight_decay: float, feature_decay: float, *, branch: str = "global"
) -> np.ndarray:
    """``‖(W_M ⋯ W_1)_k‖ = s_k^M``: the norm of the end-to-end classifier's row for class ``k``."""
    return ufm_singular_values(class_sizes, depth, weight_decay, feature_decay, branch=branch) ** depth


def class_mean_gram(
    class_sizes: Sequence[int], depth: int, weight_decay: float, feature_decay: float, *, bias: bool = False
) -> np.ndarray:
    """The Gram matrix ``H̄ᵀH̄`` of the (uncentred) class means at the global minimum, ``K × K``.

    Bias-free: ``diag(‖h̄_k‖²)``, an orthogonal frame (any class sizes). With an unregularised
    last-layer bias: ``‖h̄‖²·K/(K−1)·(I − 11ᵀ/K)``, a simplex ETF centred at the origin; Dang et al.
    prove this for balanced classes only, so imbalanced sizes with ``bias=True`` raise.
    """
    n = np.asarray(class_sizes, dtype=float)
    k = n.size
    if not bias:
        return np.diag(class_mean_norms(n, depth, weight_decay, feature_decay) ** 2)
    if not np.all(n == n[0]):
        raise ValueError(
            "with a bias the closed form holds for balanced classes only (Dang et al. treat the imbalanced case "
            f"bias-free); got class sizes {list(class_sizes)}; use bias=False"
        )
    # every one of the K − 1 centred directions solves the class problem with n_k = n
    norm2 = class_mean_norms(n, depth, weight_decay, feature_decay)[0] ** 2
    return norm2 * (np.eye(k) - np.ones((k, k)) / k)


def simplex_etf_gram(k: int) -> np.ndarray:
    """``K/(K−1)·(I − 11ᵀ/K)``: the Gram matrix of a unit-norm simplex ETF (cosines ``−1/(K−1)``)."""
    if k < 2:
        raise ValueError(f"a simplex ETF needs K >= 2 classes, got {k}")
    return k / (k - 1) * (np.eye(k) - np.ones((k, k)) / k)


def collapse_threshold(
    class_size: int, total: int, depth: int, *, kind: str = "global", ratio: float = 1.0
) -> float:
    """The regularisation ``λ`` (with ``λ_W = λ, λ_H = ratio·λ``) above which a class of ``class_size``
    samples out of ``total`` collapses to zero.

    ``M = 1``: ``λ* = √(n_k / ratio) / N`` in closed form (``n_k = N² λ_W λ_H``). ``M ≥ 2``:
    ``kind="existence"`` is where the nonzero branch of (★) disappears, ``kind="global"`` where it
    stops being the global minimum (found by bisection on ``λ``; the class sizes of the other
    classes do not enter, only ``N``).
    """
    if kind not in THRESHOLD_KINDS:
        raise ValueError(f"kind must be one of {THRESHOLD_KINDS}, got {kind!r}")
    if not (0 < class_size <= total):
        raise ValueError(f"need 0 < class_size <= total, got {class_size}, {total}")
    if depth == 1:
        return float(np.sqrt(class_size / ratio) / total)
    sizes = [class_size, total - class_size] if total > class_size else [class_size, class_size]
    if total == class_size:
        raise ValueError("the class must not hold every sample")
    branch = "global" if kind == "global" else "nonzero"

    def alive(lam: float) -> bool:
        return ufm_singular_values(sizes, depth, lam, ratio * lam, branch=branch)[0] > 0

    lo, hi = 1e-12, 1.0
    while alive(hi):
        hi *= 10
    if not alive(lo):
        raise ValueError("the class is collapsed at every regularisation strength tried")
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        if alive(mid):
            lo = mid
        else:
            hi = mid
    return float(np.sqrt(lo * hi))


__all__ = [
    "THRESHOLD_KINDS",
    "class_mean_gram",
    "class_mean_norms",
    "classifier_row_norms",
    "collapse_threshold",
    "simplex_etf_gram",
    "ufm_singular_values",
]
