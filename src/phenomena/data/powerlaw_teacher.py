"""A Gaussian task with power-law spectra: the solvable model of learning curves and scaling laws.

Inputs ``x ~ N(0, Λ)`` with ``Λ = diag(k^{-a})``, ``k = 1 … dim``; labels ``y = w*·x + ξ`` with a
teacher whose coefficients carry power ``λ_k w*_k² = k^{-b}`` and noise ``ξ ~ N(0, σ²)``. The
exponents set the learning curve: a linear student's loss falls as a power of the data seen
with exponent ``(b − 1)/a`` (:mod:`phenomena.theory.powerlaw`). For a linear student the
population loss is exact, ``½‖Λ^{1/2}(w − w*)‖² + σ²/2``, so no test set is needed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PowerLawTeacher:
    """The task: ``dim`` input coordinates, eigenvalue exponent ``a``, target exponent ``b``, noise variance ``noise``."""

    dim: int
    a: float = 2.0
    b: float = 2.5
    noise: float = 0.05

    def __post_init__(self) -> None:
        if int(self.dim) != self.dim or self.dim < 1:
            raise ValueError(f"dim must be a positive integer, got {self.dim}")
        if not (self.a > 0 and self.b > 0):
            raise ValueError(f"the exponents a and b must be positive, got a={self.a}, b={self.b}")
        if not self.noise >= 0:
            raise ValueError(f"noise is a variance and must be >= 0, got {self.noise}")

    def eigenvalues(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """``λ_k = k^{-a}``, ``(dim,)``."""
        k = torch.arange(1, self.dim + 1, dtype=dtype)
        return k ** (-self.a)

    def coefficients(self, dtype: torch.dtype = torch.float64) -> Tensor:
        """The teacher ``w*_k = k^{(a−b)/2}``, so that ``λ_k w*_k² = k^{-b}``; ``(dim,)``."""
        k = torch.arange(1, self.dim + 1, dtype=dtype)
        return k ** ((self.a - self.b) / 2)

    def sample(self, batch: int, generator: torch.Generator, *, groups: int | None = None,
               dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """``batch`` fresh pairs ``(x, y)``: ``x`` is ``(batch, dim)``, ``y`` is ``(batch,)``; with
        ``groups`` a leading axis of independent draws, ``(groups, batch, dim)`` and ``(groups, batch)``."""
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        shape = (batch,) if groups is None else (int(groups), batch)
        z = torch.randn(*shape, self.dim, generator=generator, dtype=dtype, device=generator.device)
        xi = torch.randn(*shape, generator=generator, dtype=dtype, device=generator.device)
        scale, teacher = self._cached(dtype, z.device)
        x = z * scale
        y = x @ teacher + self.noise**0.5 * xi
        return x.to(device), y.to(device)

    def _cached(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """``(√λ, w*)`` in ``dtype`` on ``device``, computed once (sampling runs at every step)."""
        cache = self.__dict__.setdefault("_cache", {})
        key = (dtype, str(device))
        if key not in cache:
            cache[key] = (self.eigenvalues(dtype).to(device).sqrt(), self.coefficients(dtype).to(device))
        return cache[key]

    def population_loss(self, weights: Tensor) -> Tensor:
        """The exact expected loss ``½ Σ_k λ_k (w_k − w*_k)² + σ²/2`` of linear students ``(..., dim)``."""
        if weights.shape[-1] != self.dim:
            raise ValueError(f"weights must end in dim={self.dim}, got shape {tuple(weights.shape)}")
        sqrt_lam, teacher = self._cached(weights.dtype, weights.device)
        err = sqrt_lam * (weights - teacher)
        return 0.5 * (err * err).sum(-1) + self.noise / 2

    def tail_loss(self, capacity: int) -> float:
        """The part of the loss a student of the first ``capacity`` coordinates can never learn: ``½ Σ_{k>N} k^{-b}``."""
        k = torch.arange(int(capacity) + 1, self.dim + 1, dtype=torch.float64)
        return float(0.5 * (k ** (-self.b)).sum())
