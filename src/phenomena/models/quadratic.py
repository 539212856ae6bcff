"""A one-hidden-layer network with quadratic activation and a trace-centred output, many at once.

``f(x) = (1/(m√d)) Σ_k [(w_k·x)² − ‖w_k‖²] = (xᵀSx − Tr S)/√d`` with ``S = WᵀW/m``: the architecture
of the teacher in :mod:`phenomena.data.teacher`, centred the same way. The second layer is fixed
(all ``1/m``), as in Maillard et al. 2024, so the network is a function of ``S`` alone, which is
what makes its Bayes-optimal error computable. The weights of ``members`` networks are stacked
on a leading ensemble axis, ``(members, width, dim)``, and trained as one model.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["QuadraticNetwork"]


class QuadraticNetwork(nn.Module):
    """``members`` quadratic networks of width ``width`` on ``dim`` inputs, weights ``N(0, init_scale²)``.

    ``init_scale = 1`` draws the init from the teacher's prior, which is what lets gradient
    descent from random inits behave like a posterior sampler in the noiseless problem.
    """

    def __init__(self, members: int, width: int, dim: int, *, generator: torch.Generator,
                 init_scale: float = 1.0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        if min(int(members), int(width), int(dim)) < 1:
            raise ValueError(f"members, width and dim must be positive integers, got {members}, {width}, {dim}")
        if not (init_scale > 0 and math.isfinite(init_scale)):
            raise ValueError(f"init_scale must be a positive number, got {init_scale}")
        w = torch.randn(int(members), int(width), int(dim), generator=generator, dtype=dtype) * init_scale
        self.weight = nn.Parameter(w)

    @property
    def width(self) -> int:
        return self.weight.shape[1]

    @property
    def dim(self) -> int:
        return self.weight.shape[2]

    def forward(self, x: Tensor) -> Tensor:
        """Outputs ``(members, n)`` for inputs ``(n, dim)`` shared by all members, or ``(members, n, dim)``."""
        if x.shape[-1] != self.dim or x.dim() not in (2, 3):
            raise ValueError(f"expected inputs (n, {self.dim}) or (members, n, {self.dim}), got {tuple(x.shape)}")
        z = x @ self.weight.transpose(1, 2)  # (members, n, width)
        norms = (self.weight * self.weight).sum((1, 2))
        return ((z * z).sum(-1) - norms[:, None]) / (self.width * math.sqrt(self.dim))

    def matrix(self) -> Tensor:
        """``S = WᵀW/m`` per member, ``(members, dim, dim)``."""
        w = self.weight.detach()
        return w.transpose(1, 2) @ w / self.width
