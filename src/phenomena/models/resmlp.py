"""Residual MLPs in standard, μP and depth-μP parameterisation, many at once.

One layer per residual block (Bordelon, Noci, Li, Hanin & Pehlevan 2023, §2):

    h¹ = m_in · W⁰ x,   h^{ℓ+1} = h^ℓ + b_L · m_hid · W^ℓ φ(h^ℓ)  (ℓ = 1..L),   f = m_out · wᵀ φ(h^{L+1}),

with ReLU ``φ``, input dimension ``D``, width ``n`` and depth ``L`` (residual blocks). The
parameterisation fixes where the scale sits (in a fixed forward *multiplier* ``m`` or in the
init std ``s``), the branch multiplier ``b_L`` and the learning-rate multiplier that turns the
base rate ``η₀`` into the rate plain SGD uses:

=================  =================  =================  ==================  ==========  ==========
parameterisation   input (m, s)       hidden (m, s)      readout (m, s)      ``b_L``     SGD rate
=================  =================  =================  ==================  ==========  ==========
``sp``             (1, 1/√D)          (1, √(2/n))        (1, 1/√n)           1           η₀
``mup``            (1/√D, 1)          (1/√n, 1)          (1/(γ₀n), 1)        β₀          η₀γ₀²n
``mup_depth``      (1/√D, 1)          (1/√n, 1)          (1/(γ₀n), 1)        β₀/√L       η₀γ₀²n
=================  =================  =================  ==================  ==========  ==========

``sp`` is He init with a global rate; ``mup`` is the mean-field (μP) network of Bordelon et
al. with unscaled residual branches; ``mup_depth`` adds their ``1/√L`` branch scale. The
exponent of ``L`` in ``b_L = β₀/L^α`` can be set directly (``alpha_depth``). Why the
multipliers live in the forward pass and not in the init: SGD's step on a weight depends on
where the scale sits, and μP's width-independent feature updates come from exactly this
placement plus the ``γ₀²n`` rate.

Parameters carry a leading ensemble axis (``members``), so learning rates and seeds of many
networks train as one batched model: ``w_in`` is ``(members, n, D)``, ``w_hidden``
``(members, L, n, n)`` and ``w_out`` ``(members, n, out)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

ResParameterization = Literal["sp", "mup", "mup_depth"]
RES_PARAMETERIZATIONS: tuple[str, ...] = ("sp", "mup", "mup_depth")


@dataclass(frozen=True)
class ResMLPConfig:
    """Shape and parameterisation of a residual-MLP ensemble.

    ``depth`` counts residual blocks (one hidden layer each); ``alpha_depth`` is the exponent
    ``α`` of the branch multiplier ``β₀/L^α`` (``None``: 0 for ``sp`` and ``mup``, ½ for
    ``mup_depth``).
    """

    dim: int
    width: int
    depth: int
    out: int = 1
    parameterization: ResParameterization = "mup_depth"
    beta0: float = 1.0
    gamma0: float = 1.0
    alpha_depth: float | None = None
    members: int = 1
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.parameterization not in RES_PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {self.parameterization!r}; valid ones are: {', '.join(RES_PARAMETERIZATIONS)}"
            )
        for name in ("dim", "width", "out", "members"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if int(self.depth) < 0:
            raise ValueError(f"depth (residual blocks) must be >= 0, got {self.depth}")
        for name in ("beta0", "gamma0"):
            v = float(getattr(self, name))
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"{name} must be a positive number, got {v}")

    @property
    def alpha(self) -> float:
        """The exponent ``α`` of the branch multiplier ``β₀/L^α``."""
        if self.alpha_depth is not None:
            return float(self.alpha_depth)
        return 0.5 if self.parameterization == "mup_depth" else 0.0

    @property
    def branch_multiplier(self) -> float:
        """``b_L``: 1 for ``sp`` (unless ``alpha_depth`` is given), ``β₀/L^α`` otherwise."""
        if self.parameterization == "sp" and self.alpha_depth is None:
            return 1.0
        return float(self.beta0) / max(self.depth, 1) ** self.alpha

    @property
    def lr_multiplier(self) -> float:
        """The factor from base rate ``η₀`` to the SGD rate: ``γ₀²n`` under μP, 1 under ``sp``."""
        return 1.0 if self.parameterization == "sp" else float(self.gamma0) ** 2 * self.width

    def multipliers(self) -> tuple[float, float, float]:
        """Forward multipliers ``(m_in, m_hid, m_out)`` (see the module table)."""
        if self.parameterization == "sp":
            return 1.0, 1.0, 1.0
        return 1.0 / math.sqrt(self.dim), 1.0 / math.sqrt(self.width), 1.0 / (float(self.gamma0) * self.width)

    def init_stds(self) -> tuple[float, float, float]:
        """Init standard deviations ``(s_in, s_hid, s_out)`` (see the module table)."""
        if self.parameterization == "sp":
            return 1.0 / math.sqrt(self.dim), math.sqrt(2.0 / self.width), 1.0 / math.sqrt(self.width)
        return 1.0, 1.0, 1.0


class ResMLP(nn.Module):
    """An ensemble of residual MLPs; input ``(batch, dim)`` (shared) or ``(members, batch, dim)``,
    output ``(members, batch, out)``."""

    def __init__(self, config: ResMLPConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        c, dt = config, config.dtype
        s_in, s_hid, s_out = config.init_stds()
        self.w_in = nn.Parameter(torch.randn(c.members, c.width, c.dim, generator=gen, dtype=dt) * s_in)
        self.w_hidden = nn.Parameter(
            torch.randn(c.members, c.depth, c.width, c.width, generator=gen, dtype=dt) * s_hid
        )
        self.w_out = nn.Parameter(torch.randn(c.members, c.width, c.out, generator=gen, dtype=dt) * s_out)

    def lr_multipliers(self) -> list[float]:
        """One learning-rate multiplier per parameter tensor (in ``parameters()`` order): the rate of
        each is ``η₀`` times it. All layers share ``γ₀²n`` here (Bordelon et al.'s SGD rule)."""
        return [self.config.lr_multiplier] * 3

    def _check_input(self, x: Tensor) -> None:
        c = self.config
        if x.dim() not in (2, 3) or x.shape[-1] != c.dim or (x.dim() == 3 and x.shape[0] != c.members):
            raise ValueError(f"input must be (batch, {c.dim}) or ({c.members}, batch, {c.dim}), got {tuple(x.shape)}")

    def preactivations(self, x: Tensor) -> list[Tensor]:
        """Every residual stream ``h¹, …, h^{L+1}``, each ``(members, batch, width)``."""
        self._check_input(x)
        m_in, m_hid, _ = self.config.multipliers()
        b = self.config.branch_multiplier
        if x.dim() == 2:
            h = torch.einsum("bd,end->ebn", x, self.w_in)
        else:
            h = torch.bmm(x, self.w_in.transpose(1, 2))
        h = m_in * h
        out = [h]
        for layer in range(self.config.depth):
            h = h + (b * m_hid) * torch.bmm(torch.relu(h), self.w_hidden[:, layer].transpose(1, 2))
            out.append(h)
        return out

    def forward(self, x: Tensor) -> Tensor:
        h = self.preactivations(x)[-1]
        return self.config.multipliers()[2] * torch.bmm(torch.relu(h), self.w_out)
