"""Imbalanced multi-domain regression: a few domains with plenty of data, others with little.

A stand-in for multilingual training data (Li et al. 2024, "Upsample or Upweight?"): domain ``k``
holds ``n_k`` examples ``(x, y)`` with ``x ~ N(0, I_d)`` and ``y = w*_k · x + σ ε``. The teachers
share a common part, ``w*_k = a + b_k`` with ``‖a‖² ≈ 1`` and ``‖b_k‖² ≈ spread²``, so that what is
learned on a large domain helps a small one, as a shared language model transfers between languages.

The student sees one feature vector per example, ``φ(x, k) = [x, e_k ⊗ x]`` (``(K + 1)·d`` numbers):
a shared linear map plus one linear map per domain (the linear model's *domain embedding*). Its
prediction on domain ``k`` is ``v_k · x`` with ``v_k = w + u_k``. The loss is quadratic in the
parameters, so the SGD noise floor has a closed form (:mod:`phenomena.theory.mixture`), and with
Gaussian inputs each domain's population (validation) loss is exact, ``½(‖v_k − w*_k‖² + σ²)``
(:func:`population_loss`): no validation sample, no validation noise.

Examples are stored domain by domain (domain 0 first), so that domain ``k`` occupies the index
range ``offsets[k] : offsets[k] + sizes[k]``; the samplers (:mod:`phenomena.samplers`) rely on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["DomainData", "domain_features", "imbalanced_domains", "population_loss", "zipf_sizes"]


@dataclass
class DomainData:
    """Training examples of ``K`` domains, stored domain by domain, and the teachers behind them."""

    x: Tensor
    """``(N, d)`` inputs."""
    y: Tensor
    """``(N,)`` noisy targets."""
    domain: Tensor
    """``(N,)`` long: the domain of each example (non-decreasing)."""
    sizes: tuple[int, ...]
    """``n_k``, examples per domain."""
    teachers: Tensor
    """``(K, d)`` the teachers ``w*_k``."""
    noise: float
    """``σ``, the standard deviation of the label noise."""

    @property
    def domains(self) -> int:
        return len(self.sizes)

    @property
    def dim(self) -> int:
        return self.x.shape[1]

    @property
    def n_total(self) -> int:
        return self.x.shape[0]

    @property
    def offsets(self) -> tuple[int, ...]:
        """Index of each domain's first example."""
        out, start = [], 0
        for n in self.sizes:
            out.append(start)
            start += n
        return tuple(out)

    @property
    def features(self) -> Tensor:
        """``(N, (K + 1)·d)``: ``φ(x, k) = [x, e_k ⊗ x]`` (:func:`domain_features`)."""
        return domain_features(self.x, self.domain, self.domains)


def domain_features(x: Tensor, domain: Tensor, domains: int) -> Tensor:
    """``[x, e_k ⊗ x]`` per row: the shared block, then ``domains`` blocks of which only block ``k`` is ``x``."""
    n, d = x.shape
    out = x.new_zeros(n, (domains + 1) * d)
    out[:, :d] = x
    cols = d + domain[:, None] * d + torch.arange(d, device=x.device)[None, :]
    out.scatter_(1, cols, x)
    return out


def imbalanced_domains(
    sizes: Sequence[int],
    dim: int,
    *,
    noise: float = 0.5,
    spread: float = 0.3,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> DomainData:
    """Draw ``sizes[k]`` examples for every domain ``k`` from teachers ``w*_k = a + b_k``.

    ``a`` has ``‖a‖² ≈ 1`` and each ``b_k`` has ``‖b_k‖² ≈ spread²`` (Gaussian coordinates of
    variance ``1/d`` and ``spread²/d``); labels carry Gaussian noise of standard deviation ``noise``.
    """
    sizes = tuple(int(n) for n in sizes)
    if len(sizes) < 2:
        raise ValueError(f"need at least two domains, got sizes={sizes}")
    if min(sizes) < 1:
        raise ValueError(f"every domain needs at least one example, got sizes={sizes}")
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    if noise < 0 or spread < 0:
        raise ValueError(f"noise and spread must be non-negative, got noise={noise}, spread={spread}")
    g = generator
    shared = torch.randn(dim, generator=g, dtype=dtype) / math.sqrt(dim)
    own = torch.randn(len(sizes), dim, generator=g, dtype=dtype) * (spread / math.sqrt(dim))
    teachers = shared[None, :] + own
    domain = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x = torch.randn(sum(sizes), dim, generator=g, dtype=dtype)
    y = (x * teachers[domain]).sum(-1) + noise * torch.randn(sum(sizes), generator=g, dtype=dtype)
    return DomainData(x=x, y=y, domain=domain, sizes=sizes, teachers=teachers, noise=float(noise))


def population_loss(theta: Tensor, data: DomainData) -> Tensor:
    """Each domain's expected loss ``½ E(y − v_k·x)² = ½(‖v_k − w*_k‖² + σ²)`` over fresh ``x ~ N(0, I)``.

    ``theta`` is ``(..., (K + 1)·d)`` (the student's ``[w, u_1, …, u_K]``); returns ``(..., K)``.
    """
    d, k = data.dim, data.domains
    if theta.shape[-1] != (k + 1) * d:
        raise ValueError(f"theta has {theta.shape[-1]} coordinates; the model of {k} domains in {d} dims has {(k + 1) * d}")
    w = theta[..., :d]
    u = theta[..., d:].reshape(*theta.shape[:-1], k, d)
    v = w.unsqueeze(-2) + u
    return 0.5 * ((v - data.teachers.to(theta)).pow(2).sum(-1) + data.noise**2)


def zipf_sizes(domains: int, largest: int, exponent: float = 1.0, smallest: int = 1) -> list[int]:
    """``n_k = max(smallest, round(largest / k^exponent))`` for ``k = 1 … domains``: a long tail of domain sizes."""
    if domains < 2 or largest < 1:
        raise ValueError(f"need domains >= 2 and largest >= 1, got {domains}, {largest}")
    return [max(int(smallest), round(largest / (k**exponent))) for k in range(1, domains + 1)]
