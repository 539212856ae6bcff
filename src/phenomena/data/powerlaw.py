"""A Gaussian regression task with power-law eigenstructure: the solvable model of scaling laws.

Inputs ``x ~ N(0, Λ)`` in ``modes`` dimensions with ``Λ = diag(λ_k)``, ``λ_k = k^−α`` (``k = 1 … modes``);
a linear teacher ``y = x·w* + ε`` with ``ε ~ N(0, σ²)``. The teacher is fixed through its
*eigen-coefficients* ``v_k = √λ_k · w*_k`` (the target's coefficients on the orthonormal basis
``x_k/√λ_k``), with ``v_k² = k^−β``. A linear model ``w`` then has risk

    E (x·w − y)² = ‖Λ^{1/2}(w − w*)‖² + σ² = Σ_k (√λ_k w_k − v_k)² + σ²,

exactly, with no test set. ``α`` sets how fast the kernel's (covariance's) eigenvalues fall, ``β`` how
fast the target's power falls along them; Caponnetto & De Vito's "capacity" and "source" in another
notation. Chapters that need a kernel instead of inputs use the same ``λ_k`` as kernel eigenvalues:
with whitened inputs ``s = Λ^{−1/2}x ~ N(0, I)``, the features ``Λ^{1/2}s`` have kernel ``Λ``.

The task has exactly ``modes`` modes: nothing beyond. An infinite power law differs from it once
``n`` (or the number of features) is no longer small against ``modes``; :attr:`PowerLawTask.tail`
gives the target power ``Σ_{k > modes} k^−β`` the truncation dropped, to judge that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PowerLawTask:
    """``x ~ N(0, diag(k^−alpha))``, ``y = x·w* + N(0, noise)`` with target eigen-coefficients ``v_k² = k^−beta``.

    Make it with :func:`powerlaw_task`. ``eigenvalues`` and ``coefficients`` are float64 numpy
    arrays (for closed forms); :meth:`sample` returns torch tensors.
    """

    modes: int
    alpha: float
    beta: float
    noise: float
    eigenvalues: np.ndarray
    coefficients: np.ndarray

    @property
    def teacher(self) -> np.ndarray:
        """``w*`` in input coordinates: ``w*_k = v_k/√λ_k``."""
        return self.coefficients / np.sqrt(self.eigenvalues)

    @property
    def tail(self) -> float:
        """``Σ_{k > modes} k^−beta``: the target power an infinite power law has beyond the last mode."""
        from scipy.special import zeta

        return float(zeta(self.beta, self.modes + 1)) if self.beta > 1 else float("inf")

    def sample(
        self,
        n: int,
        generator: torch.Generator,
        *,
        batch: tuple[int, ...] = (),
        whitened: bool = False,
        dtype: torch.dtype = torch.float64,
    ) -> tuple[Tensor, Tensor]:
        """``n`` i.i.d. pairs ``(x, y)``: ``x`` of shape ``(*batch, n, modes)``, ``y`` of shape ``(*batch, n)``.

        ``batch`` adds leading axes (seeds, say) drawn independently in one call. With
        ``whitened=True``, ``x`` is returned as ``s = Λ^{−1/2}x ~ N(0, I)`` (same ``y``): random-feature
        models that build ``Λ^{1/2}`` into their features want this form.
        """
        if int(n) < 1:
            raise ValueError(f"n must be a positive number of samples, got {n}")
        shape = (*batch, int(n), self.modes)
        s = torch.randn(shape, generator=generator, dtype=dtype, device=generator.device)
        v = torch.as_tensor(self.coefficients, dtype=dtype, device=s.device)
        y = s @ v
        if self.noise > 0:
            eps = torch.randn(y.shape, generator=generator, dtype=dtype, device=generator.device)
            y = y + self.noise**0.5 * eps
        if whitened:
            return s, y
        return s * torch.as_tensor(np.sqrt(self.eigenvalues), dtype=dtype, device=s.device), y

    def risk(self, w: Tensor | np.ndarray) -> Tensor:
        """Exact test risk ``‖Λ^{1/2}(w − w*)‖² + σ²`` of linear predictors ``w`` (last axis: modes)."""
        w = torch.as_tensor(w, dtype=torch.float64)
        if w.shape[-1] != self.modes:
            raise ValueError(f"w must end in an axis of {self.modes} modes, got shape {tuple(w.shape)}")
        sq = torch.as_tensor(np.sqrt(self.eigenvalues), dtype=w.dtype, device=w.device)
        v = torch.as_tensor(self.coefficients, dtype=w.dtype, device=w.device)
        return ((sq * w - v) ** 2).sum(-1) + self.noise


def powerlaw_task(modes: int, alpha: float, beta: float, noise: float = 0.0) -> PowerLawTask:
    """A :class:`PowerLawTask` with ``λ_k = k^−alpha``, ``v_k = k^−beta/2`` (all positive), noise variance ``noise``.

    The signs of ``v_k`` do not matter for any rotation-invariant learner (ridge regression on
    Gaussian inputs, random features with Gaussian weights): flipping ``x_k`` is a symmetry of the
    input distribution. ``alpha > 0`` and ``beta > 0``; ``beta ≤ 1`` is allowed but has an infinite
    :attr:`~PowerLawTask.tail`.
    """
    if isinstance(modes, bool) or int(modes) != modes or modes < 1:
        raise ValueError(f"modes must be a positive integer, got {modes!r}")
    if not alpha > 0 or not beta > 0:
        raise ValueError(f"alpha and beta must be positive exponents, got alpha={alpha}, beta={beta}")
    if not noise >= 0:
        raise ValueError(f"noise is a variance and must be >= 0, got {noise}")
    k = np.arange(1, int(modes) + 1, dtype=np.float64)
    return PowerLawTask(
        modes=int(modes),
        alpha=float(alpha),
        beta=float(beta),
        noise=float(noise),
        eigenvalues=k**-alpha,
        coefficients=k ** (-beta / 2),
    )
