"""Deep linear networks, many at once.

``y = W_L ··· W_2 W_1 x``: no nonlinearity, yet nonlinear learning dynamics (Saxe et al. 2013).
The network holds an *ensemble* of independent members along a leading axis, so that seeds
and learning rates train as one batched matmul instead of a Python loop over models.

Initialisations (``init``):

``gaussian``
    entries ``N(0, init_scale² / fan_in)``. With ``init_scale=1`` this is the "scaled Gaussian"
    init that preserves the norm of a vector on average, but not its direction spectrum.
``orthogonal``
    every layer ``init_scale`` times a random (semi-)orthogonal matrix: all singular values of
    the end-to-end map equal ``init_scale**depth`` (dynamical isometry for ``init_scale=1``).
``decoupled``
    every layer aligned with the target's singular vectors, ``W_l = a·R_{l+1}R_lᵀ`` with
    ``R_1 = V``, ``R_{L+1} = U`` and random orthonormal frames in between, so that each mode of
    the end-to-end map starts with strength ``init_scale`` and the modes never interact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

Init = Literal["gaussian", "orthogonal", "decoupled"]
INITS: tuple[str, ...] = ("gaussian", "orthogonal", "decoupled")


@dataclass(frozen=True)
class DeepLinearConfig:
    """Shape and init of a deep linear network.

    ``widths`` lists the layer sizes from input to output, so ``[8, 16, 8]`` has two weight
    matrices (``depth = len(widths) - 1``). ``members`` independent members are stored together.
    """

    widths: Sequence[int]
    init: Init = "gaussian"
    init_scale: float = 1.0
    members: int = 1
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must list at least an input and an output size >= 1, got {list(self.widths)}")
        if self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; valid inits are: {', '.join(INITS)}")
        if not self.init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")

    @property
    def depth(self) -> int:
        return len(self.widths) - 1


def random_orthogonal(
    e: int, rows: int, cols: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``e`` random (semi-)orthogonal ``rows × cols`` matrices, Haar-distributed (QR with sign fix)."""
    big, small = max(rows, cols), min(rows, cols)
    a = torch.randn(e, big, small, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    return (q if rows >= cols else q.transpose(-1, -2)).to(dtype)


class DeepLinearNetwork(nn.Module):
    """An ensemble of deep linear networks; ``weights[l]`` has shape ``(members, out, in)``.

    ``modes=(U, V)`` (output and input singular vectors of the target, columns orthonormal) is
    required for ``init="decoupled"`` and ignored otherwise.
    """

    def __init__(
        self,
        config: DeepLinearConfig,
        *,
        generator: torch.Generator | None = None,
        modes: tuple[Tensor, Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.weights = nn.ParameterList(
            nn.Parameter(w) for w in self._initial_weights(gen, modes)
        )

    def _initial_weights(self, gen: torch.Generator, modes: tuple[Tensor, Tensor] | None) -> list[Tensor]:
        cfg, e, w, dt = self.config, self.config.members, list(self.config.widths), self.config.dtype
        if cfg.init == "gaussian":
            return [
                torch.randn(e, w[i + 1], w[i], generator=gen, dtype=dt) * (cfg.init_scale / w[i] ** 0.5)
                for i in range(cfg.depth)
            ]
        if cfg.init == "orthogonal":
            return [random_orthogonal(e, w[i + 1], w[i], gen, dt) * cfg.init_scale for i in range(cfg.depth)]
        # decoupled
        if modes is None:
            raise ValueError("init='decoupled' needs modes=(U, V), the target's singular vectors")
        u, v = (m.to(dt) for m in modes)
        r = u.shape[1]
        if v.shape[1] != r or u.shape[0] != w[-1] or v.shape[0] != w[0]:
            raise ValueError(
                f"modes must be U ({w[-1]}×r) and V ({w[0]}×r) with the same r; got {tuple(u.shape)}, {tuple(v.shape)}"
            )
        if any(width < r for width in w[1:-1]):
            raise ValueError(f"every hidden width must hold the {r} modes; widths are {w}")
        a = cfg.init_scale ** (1.0 / cfg.depth)  # equal per-layer strength: the product is init_scale
        frames = [v.expand(e, -1, -1)]
        frames += [random_orthogonal(e, width, r, gen, dt) for width in w[1:-1]]
        frames += [u.expand(e, -1, -1)]
        return [a * frames[i + 1] @ frames[i].transpose(-1, -2) for i in range(cfg.depth)]

    def forward(self, x: Tensor) -> Tensor:
        """``x`` of shape ``(batch, in)`` (shared by all members) or ``(members, batch, in)``."""
        h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.config.members, -1, -1)
        for w in self.weights:
            h = h @ w.transpose(-1, -2)
        return h

    def end_to_end(self) -> Tensor:
        """The product ``W_L ··· W_1``, shape ``(members, out, in)``."""
        prod = self.weights[0]
        for w in list(self.weights)[1:]:
            prod = w @ prod
        return prod

    def mode_strengths(self, u: Tensor, v: Tensor) -> Tensor:
        """Strength of each target mode in the end-to-end map, ``uₐᵀ W vₐ``: shape ``(members, r)``."""
        m = self.end_to_end()
        return torch.einsum("or,eoi,ir->er", u.to(m.dtype), m, v.to(m.dtype))
