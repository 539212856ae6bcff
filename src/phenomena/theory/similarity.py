"""The rotation null for one-to-one unit matching: how well do units match when only the subspace is shared?

Suppose net A's layer computes exactly net B's features, but in a random basis: ``a = Rᵀ b`` for a
Haar-random orthogonal ``R`` (uniform on O(width)). The layers then span the same space and a
dense linear map relates them perfectly, yet no unit of A need equal a unit of B. If B's units are
whitened (uncorrelated, equal variance), the correlation of unit ``i`` of B with unit ``j`` of A is
``R_ij`` itself, and the best one-to-one matching scores

    m(width) = E_R [ max_σ (1/width) Σ_i |R_{i,σ(i)}| ],

the mean matched ``|corr|`` that a "same subspace, arbitrary basis" pair of layers reaches by
chance. It depends on the width only and falls with it, roughly like ``√(2 log width / width)``
(an entry of ``R`` is about ``N(0, 1/width)``; the assignment picks large ones). A measured matched
correlation far above ``m(width)`` says the basis itself is shared: the units are privileged.

There is no closed form for the expected optimal assignment, so :func:`haar_matching_null` estimates
it by Monte-Carlo and returns its standard error, and :data:`HAAR_NULL` tabulates it (tested against
a fresh Monte-Carlo). Real units are correlated, which raises the null (a rotation mixes fewer
effective directions): :func:`covariance_matching_null` computes it for a given unit covariance
``Σ``, where ``corr(b_i, (Rᵀb)_j) = (ΣR)_ij / √(Σ_ii (RᵀΣR)_jj)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def haar_orthogonal(width: int, samples: int, *, generator: torch.Generator) -> np.ndarray:
    """``samples`` Haar-random orthogonal ``width × width`` matrices, ``(samples, width, width)``.

    QR of a Gaussian matrix with the signs of ``R``'s diagonal moved into ``Q`` (Mezzadri 2007):
    without the sign fix ``Q`` is not uniform.
    """
    if width < 1 or samples < 1:
        raise ValueError(f"width and samples must be >= 1, got {width}, {samples}")
    g = torch.randn(samples, width, width, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    d = torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))
    d = torch.where(d == 0, torch.ones_like(d), d)
    return (q * d.unsqueeze(-2)).numpy()


def _matched_mean(abs_corr: np.ndarray) -> float:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(abs_corr, maximize=True)
    return float(abs_corr[rows, cols].mean())


@dataclass(frozen=True)
class NullEstimate:
    """A Monte-Carlo estimate: ``mean`` over ``samples`` draws, its standard error ``stderr``, and the
    draws' standard deviation ``spread`` (the scatter of a single pair of layers)."""

    mean: float
    stderr: float
    spread: float
    samples: int


def _estimate(values: np.ndarray) -> NullEstimate:
    v = np.asarray(values, dtype=np.float64)
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return NullEstimate(float(v.mean()), sd / np.sqrt(v.size), sd, int(v.size))


def haar_matching_null(width: int, samples: int = 400, *, generator: torch.Generator) -> NullEstimate:
    """Mean bipartite-matched ``|R_ij|`` of Haar-random orthogonal ``width × width`` matrices, by Monte-Carlo."""
    rs = haar_orthogonal(width, samples, generator=generator)
    return _estimate(np.array([_matched_mean(np.abs(r)) for r in rs]))


def covariance_matching_null(cov: np.ndarray, samples: int = 200, *, generator: torch.Generator) -> NullEstimate:
    """The rotation null for units with covariance ``cov``: mean bipartite-matched ``|corr(b, Rᵀb)|``.

    Equals :func:`haar_matching_null` when ``cov`` is a multiple of the identity. Units with zero
    variance must be dropped first.
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be a square (units, units) covariance, got shape {c.shape}")
    var = np.diag(c)
    if not (var > 0).all():
        raise ValueError("cov has units with zero variance: drop dead units before computing the null")
    rs = haar_orthogonal(c.shape[0], samples, generator=generator)
    vals = []
    for r in rs:
        cross = c @ r  # cov(b, Rᵀb)
        var_rot = np.einsum("ij,ik,kj->j", r, c, r)  # diag(Rᵀ Σ R)
        corr = cross / np.sqrt(np.outer(var, var_rot))
        vals.append(_matched_mean(np.abs(corr)))
    return _estimate(np.array(vals))


HAAR_NULL: dict[int, tuple[float, float]] = {
    8: (0.6356, 0.0009),
    16: (0.5088, 0.0005),
    32: (0.4010, 0.0002),
    64: (0.3120, 0.0001),
    128: (0.2402, 0.0001),
}
"""``width → (mean, standard error)`` of :func:`haar_matching_null`, 2,000 draws per width (seed 0;
``tests/test_similarity.py`` checks every entry against a fresh, independent Monte-Carlo)."""


def haar_null(width: int) -> tuple[float, float]:
    """The tabulated rotation null ``(mean, standard error)`` at ``width``; other widths by
    :func:`haar_matching_null`."""
    if width not in HAAR_NULL:
        raise ValueError(f"width {width} is not tabulated (have {sorted(HAAR_NULL)}); "
                         "use haar_matching_null(width, generator=...) for others")
    return HAAR_NULL[width]
