"""High-dimensional XOR clusters with flipped labels (Xu, Wang, Frei, Vardi & Hu 2023).

Two orthogonal means ``μ₁ ⊥ μ₂`` of equal norm span four clusters. The clean label is ``+1`` on the
clusters ``±μ₁`` and ``−1`` on ``±μ₂``: an XOR of the signs of ``⟨x, μ₁ + μ₂⟩`` and
``⟨x, μ₁ − μ₂⟩``, so no linear classifier beats chance. A point is its cluster mean plus isotropic
Gaussian noise ``ξ ~ N(0, I_d)``; each training label is flipped independently with probability
``η``. In the paper's regime the dimension ``d`` is much larger than the number of samples.

Because the noise and (in the chapter) the initial weights are isotropic, the direction of the
means does not matter; they are ``μ₁ = ‖μ‖e₁`` and ``μ₂ = ‖μ‖e₂``, so a weight's projection on
a feature is read off two coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class XorClusters:
    """Inputs ``x`` ``(..., n, d)``, clean labels ``y_clean``, observed labels ``y`` (``±1``), the flip
    mask ``flipped`` (``y ≠ y_clean``) and the two means ``means`` ``(2, d)``."""

    x: Tensor
    y_clean: Tensor
    y: Tensor
    flipped: Tensor
    means: Tensor

    @property
    def mu_norm(self) -> float:
        return float(self.means[0].norm())


def xor_means(dim: int, mu_norm: float, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """The two orthogonal cluster means ``(2, dim)``: ``‖μ‖e₁`` (label +1) and ``‖μ‖e₂`` (label −1)."""
    if dim < 2:
        raise ValueError(f"dim must be at least 2 (two orthogonal means), got {dim}")
    if not mu_norm > 0:
        raise ValueError(f"mu_norm must be positive, got {mu_norm}")
    means = torch.zeros(2, dim, dtype=dtype)
    means[0, 0] = means[1, 1] = float(mu_norm)
    return means


def xor_clusters(
    n: int,
    dim: int,
    mu_norm: float,
    flip_fraction: float,
    generator: torch.Generator,
    *,
    sets: int | None = None,
    exact_flips: bool = False,
    dtype: torch.dtype = torch.float64,
) -> XorClusters:
    """``n`` points of the noisy XOR cluster distribution; ``sets`` independent data sets stacked on a
    leading axis (one per ensemble member), or one data set when ``sets`` is ``None``.

    Each point picks one of the four clusters ``±μ₁, ±μ₂`` uniformly, adds ``N(0, I_dim)`` noise, and
    has its label flipped with probability ``flip_fraction`` (``flip_fraction = 0``: clean data, e.g. a test set).
    ``exact_flips=True`` flips exactly ``round(flip_fraction·n)`` labels of each set, chosen uniformly: the
    same distribution conditioned on the number of flips, so that a small set is never left
    without flipped points to watch.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= flip_fraction < 0.5:
        raise ValueError(f"flip_fraction (the label-flip rate) must be in [0, 0.5), got {flip_fraction}")
    if sets is not None and sets < 1:
        raise ValueError(f"sets must be >= 1 or None, got {sets}")
    means = xor_means(dim, mu_norm, dtype=dtype)
    shape = (n,) if sets is None else (sets, n)
    cluster = torch.randint(0, 2, shape, generator=generator)  # 0: ±μ₁ (label +1), 1: ±μ₂ (label −1)
    sign = torch.randint(0, 2, shape, generator=generator).to(dtype) * 2 - 1
    x = torch.randn(*shape, dim, generator=generator, dtype=dtype)
    x += sign.unsqueeze(-1) * means[cluster]
    y_clean = (1 - 2 * cluster).to(dtype)
    if exact_flips:
        ranks = torch.rand(shape, generator=generator).argsort(-1).argsort(-1)
        flipped = ranks < round(flip_fraction * n)
    else:
        flipped = torch.rand(shape, generator=generator, dtype=dtype) < flip_fraction
    y = torch.where(flipped, -y_clean, y_clean)
    return XorClusters(x=x, y_clean=y_clean, y=y, flipped=flipped, means=means)
