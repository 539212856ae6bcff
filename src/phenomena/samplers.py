"""Minibatch samplers for a mixture of domains: upsampling (temperature) or upweighting (scalarization).

Both draw, for every step and every member of an ensemble, ``batch`` example indices *with
replacement* and one loss weight per example (the closed forms in :mod:`phenomena.theory.mixture`
assume independent draws; epoch shuffling would need a finite-population correction):

* :func:`temperature_sampler`: domain ``k ~ p``, then an example uniform within ``k``; weight 1;
* :func:`scalarization_sampler`: an example uniform over all ``N``; weight ``w_k = p_k/q_k``.

A step's weighted mean loss ``(1/B) Σ_b weight_b·ℓ(index_b)`` is then an unbiased estimate of
``Σ_k p_k L_k`` under either sampler. ``p`` may change from step to step (a ``(steps, K)`` array):
:func:`temperature_schedule` builds the Cooldown schedule of Li et al. (2024), which upsamples the
small domains hard at first and lowers the temperature later.

Domains are stored contiguously, domain 0 first (:class:`phenomena.data.domains.DomainData`), so a
sampler needs only the domain sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .theory.mixture import temperature_weights

__all__ = ["Minibatches", "scalarization_sampler", "stack_minibatches", "temperature_sampler", "temperature_schedule"]


@dataclass
class Minibatches:
    """``index`` (``(steps, members, batch)`` long) and ``weight`` (same shape, float) of every draw."""

    index: Tensor
    weight: Tensor

    @property
    def steps(self) -> int:
        return self.index.shape[0]

    @property
    def members(self) -> int:
        return self.index.shape[1]


def _mixtures(p: Sequence[float] | np.ndarray | Tensor, steps: int, k: int) -> Tensor:
    """``p`` as a ``(steps, K)`` float64 tensor of mixtures, or a clear error."""
    arr = torch.as_tensor(np.asarray(p, dtype=float), dtype=torch.float64)
    if arr.dim() == 1:
        arr = arr[None, :].expand(steps, -1)
    if arr.shape != (steps, k):
        raise ValueError(f"p must be one mixture over {k} domains, or one per step ({steps}, {k}); got shape {tuple(arr.shape)}")
    if bool((arr < 0).any()) or not torch.allclose(arr.sum(1), torch.ones(steps, dtype=torch.float64)):
        raise ValueError("every mixture in p must be non-negative and sum to 1")
    return arr


def _check(sizes: Sequence[int], batch: int, steps: int, members: int) -> tuple[Tensor, Tensor]:
    n = torch.as_tensor([int(v) for v in sizes], dtype=torch.long)
    if n.dim() != 1 or len(n) < 1 or bool((n < 1).any()):
        raise ValueError(f"sizes must list at least one positive domain size, got {list(sizes)}")
    if batch < 1 or steps < 0 or members < 1:
        raise ValueError(f"need batch >= 1, steps >= 0, members >= 1; got {batch}, {steps}, {members}")
    offsets = torch.cumsum(n, 0) - n
    return n, offsets


def temperature_sampler(
    sizes: Sequence[int],
    p: Sequence[float] | np.ndarray | Tensor,
    *,
    batch: int,
    steps: int,
    members: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Minibatches:
    """Upsampling: each draw picks domain ``k`` with probability ``p_k`` (``p`` fixed or ``(steps, K)``), then
    one of its ``n_k`` examples uniformly; every weight is 1."""
    n, offsets = _check(sizes, batch, steps, members)
    mix = _mixtures(p, steps, len(n))
    cdf = torch.cumsum(mix, 1)
    cdf[:, -1] = 1.0 + 1e-12  # never let roundoff push a uniform draw past the last domain
    u = torch.rand(steps, members * batch, generator=generator, dtype=torch.float64)
    dom = torch.searchsorted(cdf.contiguous(), u, right=True).clamp_(max=len(n) - 1)
    within = (torch.rand(steps, members * batch, generator=generator, dtype=torch.float64) * n[dom]).long()
    within = torch.minimum(within, n[dom] - 1)
    index = (offsets[dom] + within).view(steps, members, batch)
    return Minibatches(index=index, weight=torch.ones(steps, members, batch, dtype=dtype))


def scalarization_sampler(
    sizes: Sequence[int],
    p: Sequence[float] | np.ndarray | Tensor,
    *,
    batch: int,
    steps: int,
    members: int = 1,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Minibatches:
    """Upweighting: each draw is one of all ``N`` examples uniformly; an example of domain ``k`` carries the
    weight ``p_k/q_k`` (``q_k = n_k/N``; ``p`` fixed or ``(steps, K)``)."""
    n, offsets = _check(sizes, batch, steps, members)
    mix = _mixtures(p, steps, len(n))
    total = int(n.sum())
    index = torch.randint(total, (steps, members, batch), generator=generator)
    domain_of = torch.repeat_interleave(torch.arange(len(n)), n)
    q = n.to(torch.float64) / total
    w = (mix / q[None, :]).to(dtype)  # (steps, K)
    weight = torch.gather(w, 1, domain_of[index].view(steps, -1)).view(steps, members, batch)
    return Minibatches(index=index, weight=weight)


def stack_minibatches(parts: Sequence[Minibatches]) -> Minibatches:
    """Concatenate samplers' draws along the members axis: one ensemble, each member with its own sampler."""
    if not parts:
        raise ValueError("nothing to stack")
    steps = {m.steps for m in parts}
    if len(steps) != 1:
        raise ValueError(f"every part must have the same number of steps, got {sorted(steps)}")
    return Minibatches(index=torch.cat([m.index for m in parts], 1), weight=torch.cat([m.weight for m in parts], 1))


def temperature_schedule(
    sizes: Sequence[int],
    steps: int,
    *,
    start_tau: float = math.inf,
    end_tau: float = 1.0,
    switch: float = 0.25,
) -> np.ndarray:
    """Cooldown's ``(steps, K)`` mixtures: ``p(start_tau)`` for the first ``switch`` fraction of steps, then ``p(end_tau)``.

    Li et al. (2024) start at a high temperature, which upsamples the small domains and speeds
    them up, and lower it later, so that the small domains are not overfitted.
    """
    if not 0 <= switch <= 1:
        raise ValueError(f"switch must be a fraction of the steps in [0, 1], got {switch}")
    first = int(round(switch * steps))
    out = np.empty((steps, len(sizes)))
    out[:first] = temperature_weights(sizes, start_tau)
    out[first:] = temperature_weights(sizes, end_tau)
    return out
