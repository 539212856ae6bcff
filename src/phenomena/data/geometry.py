"""Tasks whose input and target geometries are set by hand, for the nonlinearity-geometry chapter.

* :func:`unstructured_dichotomy`: ``P`` inputs with no structure (orthogonal, norm ``√N``) and a
  balanced random ``±1`` label: the task of Alleman, Lindsey & Fusi (2024), Fig. 1.
* :func:`latent_cube_task`: ``k`` binary latent variables make ``2^k`` conditions; the target is
  a subset of the latents, and the inputs code the conditions with a prescribed *input–target
  alignment*, the centred kernel alignment between the Gram matrix of the condition means and
  that of the targets.

How the alignment is set: over the ``2^k`` conditions, the centred functions are spanned by the
Walsh functions (products of latents). The input's condition means are ``μ_c = E φ(c)``, with
``φ`` the ``2^k − 1`` Walsh functions, weight 1 on each target latent and weight ``√r`` on every
other one, and ``E`` a random orthonormal embedding in ``N`` dimensions. Then the centred Gram
matrix of the means is ``Σ_j λ_j w_j w_jᵀ`` (``λ = 1`` or ``r``) with orthogonal ``w_j`` of equal
norm, and for ``m`` target latents and ``n_o`` other functions its alignment with the targets' Gram
matrix ``Σ_{targets} w_j w_jᵀ`` is ``Σ_t λ_t / (√m·√(Σ_j λ_j²)) = √m / √(m + n_o r²)``, which
:func:`cube_weight` inverts. Alignment 1: the inputs are the targets;
small alignment: the inputs code mostly the other latent and the latents' interactions (XOR-like
features), which the target ignores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Dichotomy:
    """Inputs ``x`` ``(P, N)`` and labels ``y`` ``(P, 1)`` of ``±1``."""

    x: Tensor
    y: Tensor


def orthonormal_rows(n: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` random orthonormal vectors in ``dim`` dimensions, as rows (Haar-distributed)."""
    if not 1 <= n <= dim:
        raise ValueError(f"need 1 <= n <= dim for orthonormal rows, got n={n}, dim={dim}")
    g = torch.randn(dim, n, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r))  # Haar: fix the signs QR leaves arbitrary
    return q.T.to(dtype)


def unstructured_dichotomy(
    n_train: int, dim: int, generator: torch.Generator, *, dtype: torch.dtype = torch.float64
) -> Dichotomy:
    """``n_train`` orthogonal inputs of norm ``√dim`` and a balanced random ``±1`` label.

    Orthogonal rather than merely random: the inter-class energy fraction of
    :mod:`phenomena.theory.geometry` is exact for orthogonal inputs, and Gaussian points in
    ``N ≫ P`` dimensions are orthogonal up to ``O(N^{-1/2})`` anyway. With standard-parameterised
    first-layer weights of std ``σ/√N`` the pre-activations are then exactly ``N(0, σ²)``.
    """
    if n_train < 2 or n_train % 2:
        raise ValueError(f"n_train must be an even number >= 2 (balanced labels), got {n_train}")
    x = orthonormal_rows(n_train, dim, generator, dtype) * math.sqrt(dim)
    y = torch.ones(n_train, dtype=dtype)
    y[n_train // 2:] = -1
    y = y[torch.randperm(n_train, generator=generator)]
    return Dichotomy(x, y[:, None])


def cube_conditions(n_latents: int) -> Tensor:
    """All ``2^k`` conditions of ``k`` binary latents, ``(2^k, k)`` of ``±1``."""
    if n_latents < 1:
        raise ValueError(f"n_latents must be >= 1, got {n_latents}")
    return torch.tensor(list(itertools.product([1.0, -1.0], repeat=n_latents)), dtype=torch.float64)


def walsh_functions(conditions: Tensor) -> tuple[Tensor, list[tuple[int, ...]]]:
    """Every non-constant product of latents on the conditions: ``(2^k, 2^k − 1)`` and the subsets."""
    k = conditions.shape[1]
    subsets = [s for order in range(1, k + 1) for s in itertools.combinations(range(k), order)]
    cols = [conditions[:, list(s)].prod(1) for s in subsets]
    return torch.stack(cols, 1), subsets


def cube_alignment(weight: float, n_targets: int, n_other: int) -> float:
    """Centred alignment ``√m / √(m + n_o r²)`` of the condition-mean Gram with the target Gram (module docstring)."""
    return math.sqrt(n_targets / (n_targets + n_other * weight**2))


def cube_weight(alignment: float, n_targets: int, n_other: int) -> float:
    """The variance ``r`` on each non-target Walsh function that gives the wanted alignment."""
    if not 0 < alignment <= 1:
        raise ValueError(f"alignment must be in (0, 1], got {alignment}")
    if n_other == 0 and alignment < 1:
        raise ValueError("with every Walsh function a target the alignment is 1; use more latents than targets")
    return 0.0 if alignment == 1 else math.sqrt(n_targets * (1 / alignment**2 - 1) / n_other)


@dataclass(frozen=True)
class LatentCubeTask:
    """Samples of a latent-cube task.

    ``x`` ``(n, N)`` inputs, ``y`` ``(n, m)`` targets (the target latents, ``±1``), ``condition``
    ``(n,)`` condition index, ``latents`` ``(2^k, k)`` the conditions, ``means`` ``(2^k, N)`` the
    noise-free inputs, ``targets`` the indices of the target latents, ``alignment`` the prescribed
    centred alignment of the condition means with the targets.
    """

    x: Tensor
    y: Tensor
    condition: Tensor
    latents: Tensor
    means: Tensor
    targets: tuple[int, ...]
    alignment: float


def latent_cube_task(
    alignment: float,
    *,
    n_latents: int = 3,
    targets: Sequence[int] = (0, 1),
    dim: int = 64,
    samples_per_condition: int = 8,
    noise: float = 0.5,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> LatentCubeTask:
    """A latent-cube task with input–target alignment ``alignment`` (module docstring).

    The condition means have norm ``√dim`` (so standard-parameterised pre-activations have unit
    variance); each sample adds isotropic Gaussian noise of std ``noise`` per coordinate.
    """
    latents = cube_conditions(n_latents)
    targets = tuple(int(t) for t in targets)
    if not targets or len(set(targets)) != len(targets) or not all(0 <= t < n_latents for t in targets):
        raise ValueError(f"targets must be distinct latent indices in [0, {n_latents}), got {targets}")
    phi, subsets = walsh_functions(latents)
    if phi.shape[1] > dim:
        raise ValueError(f"{phi.shape[1]} Walsh functions do not fit in dim={dim}; raise dim or use fewer latents")
    is_target = torch.tensor([len(s) == 1 and s[0] in targets for s in subsets])
    r = cube_weight(alignment, len(targets), int((~is_target).sum()))
    weight = torch.where(is_target, torch.tensor(1.0, dtype=torch.float64), torch.tensor(math.sqrt(r), dtype=torch.float64))
    feats = phi * weight
    feats = feats / feats[0].norm()  # every condition has the same norm: ±1 entries
    means = feats @ orthonormal_rows(phi.shape[1], dim, generator) * math.sqrt(dim)
    if samples_per_condition < 1:
        raise ValueError(f"samples_per_condition must be >= 1, got {samples_per_condition}")
    if noise < 0:
        raise ValueError(f"noise must be non-negative, got {noise}")
    condition = torch.arange(len(latents)).repeat_interleave(samples_per_condition)
    x = means[condition] + noise * torch.randn(len(condition), dim, generator=generator, dtype=torch.float64)
    y = latents[condition][:, list(targets)]
    return LatentCubeTask(x.to(dtype), y.to(dtype), condition, latents.to(dtype), means.to(dtype), targets, float(alignment))
