"""Multi-layer perceptrons in three parameterisations, many at once.

Every layer computes ``h_{l} = φ(m_l · W_l h_{l-1} + b_l)`` with a *multiplier* ``m_l`` and
weights drawn with std ``s_l``. The parameterisation fixes ``(m_l, s_l)`` so that plain SGD with
one global learning rate behaves as that parameterisation prescribes (fan-in ``n_in``, layer
width ``n``, input dimension ``d``, init scale ``σ``):

============  ==========================  ==========================  ===========================
layer         ``standard``                ``ntk``                     ``mup`` (Yang & Hu 2021)
============  ==========================  ==========================  ===========================
input         m=1, s=σ/√d                 m=σ/√d, s=1                 m=√(n/d), s=σ/√n
hidden        m=1, s=σ/√n_in              m=σ/√n_in, s=1              m=1, s=σ/√n_in
output        m=1, s=σ/√n_in              m=σ/√n_in, s=1              m=1/√n_in, s=1/√n_in
============  ==========================  ==========================  ===========================

At init the three compute the same distribution of functions except ``mup``, whose output
starts ``O(1/√n)``; they differ in how SGD moves them as width grows (``ntk``: lazy, the kernel
freezes; ``mup``: features move ``O(1)`` at every width; ``standard``: the largest stable step
shrinks with width).

``output_scale`` (α) multiplies the network's output: large α makes training lazy (Chizat,
Oyallon & Bach 2019), the knob of the lazy-to-rich chapters.

The ensemble axis is leading: ``weights[l]`` is ``(ensemble, out, in)``, so seeds or learning
rates of many small networks train as one batched matmul.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Parameterization = Literal["standard", "ntk", "mup"]
PARAMETERIZATIONS: tuple[str, ...] = ("standard", "ntk", "mup")

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "sigmoid": torch.sigmoid,
    "erf": torch.erf,
    "linear": lambda x: x,
    "quadratic": lambda x: x * x,
    "poly": lambda x: x + 0.5 * x * x,  # a smooth polynomial activation with a linear part
}
"""Activation functions by name; chapters may add entries (one name per function, book-wide)."""


@dataclass(frozen=True)
class MLPConfig:
    """Shape, activation, parameterisation and init of an MLP ensemble.

    ``widths`` lists sizes from input to output: ``[16, 1024, 1]`` is a two-layer network.
    """

    widths: Sequence[int]
    activation: str = "relu"
    parameterization: Parameterization = "standard"
    init_scale: float = 1.0
    output_scale: float = 1.0
    bias: bool = False
    ensemble: int = 1
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or any(int(w) < 1 for w in self.widths):
            raise ValueError(f"widths must list at least an input and an output size >= 1, got {list(self.widths)}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid activations are: {', '.join(ACTIVATIONS)}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {self.parameterization!r}; valid ones are: {', '.join(PARAMETERIZATIONS)}"
            )
        if not self.init_scale > 0 or not math.isfinite(self.init_scale):
            raise ValueError(f"init_scale must be a positive number, got {self.init_scale}")
        if not math.isfinite(self.output_scale) or self.output_scale == 0:
            raise ValueError(f"output_scale must be a non-zero number, got {self.output_scale}")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1, got {self.ensemble}")

    @property
    def depth(self) -> int:
        """Number of weight matrices."""
        return len(self.widths) - 1

    def layer_scales(self) -> list[tuple[float, float]]:
        """``(multiplier, init std)`` for every layer, from the table in the module docstring."""
        w, sigma, p = list(self.widths), self.init_scale, self.parameterization
        out = []
        for layer in range(self.depth):
            fan_in, fan_out = w[layer], w[layer + 1]
            first, last = layer == 0, layer == self.depth - 1
            if p == "standard":
                out.append((1.0, sigma / math.sqrt(fan_in)))
            elif p == "ntk":
                out.append((sigma / math.sqrt(fan_in), 1.0))
            elif last:  # mup output
                out.append((1.0 / math.sqrt(fan_in), 1.0 / math.sqrt(fan_in)))
            elif first:  # mup input
                out.append((math.sqrt(fan_out / fan_in), sigma / math.sqrt(fan_out)))
            else:  # mup hidden
                out.append((1.0, sigma / math.sqrt(fan_in)))
        return out


class MLP(nn.Module):
    """An ensemble of MLPs; input ``(batch, in)`` (shared) or ``(ensemble, batch, in)``, output ``(ensemble, batch, out)``."""

    def __init__(self, config: MLPConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        e, w, dt = config.ensemble, list(config.widths), config.dtype
        scales = config.layer_scales()
        self.multipliers: list[float] = [m for m, _ in scales]
        self.weights = nn.ParameterList(
            nn.Parameter(torch.randn(e, w[i + 1], w[i], generator=gen, dtype=dt) * scales[i][1])
            for i in range(config.depth)
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(e, w[i + 1], dtype=dt)) for i in range(config.depth) if config.bias
        )
        self.act = ACTIVATIONS[config.activation]

    def features(self, x: Tensor) -> Tensor:
        """Activations of the last hidden layer, ``(ensemble, batch, width)``."""
        h = x
        for layer in range(self.config.depth - 1):
            h = self.act(self._linear(h, layer))
        if h.dim() == 2:  # a depth-1 network: no hidden layer, the input is shared by every member
            h = h.unsqueeze(0).expand(self.config.ensemble, -1, -1)
        return h

    def forward(self, x: Tensor) -> Tensor:
        out = self._linear(self.features(x), self.config.depth - 1)
        return out if self.config.output_scale == 1.0 else self.config.output_scale * out

    def _linear(self, h: Tensor, layer: int) -> Tensor:
        """``m·hWᵀ + b`` for every member: one GEMM when the input is shared, else one batched GEMM."""
        w, m = self.weights[layer], self.multipliers[layer]
        bias = self.biases[layer] if self.config.bias else None
        if h.dim() == 2:  # shared input (batch, in): all members' weights side by side in one matmul
            e, out_dim, in_dim = w.shape
            y = (h @ w.reshape(e * out_dim, in_dim).T).reshape(h.shape[0], e, out_dim).transpose(0, 1)
            if m != 1.0:
                y = m * y
            return y if bias is None else y + bias.unsqueeze(-2)
        if bias is None:
            y = torch.bmm(h, w.transpose(-1, -2))
            return y if m == 1.0 else m * y
        return torch.baddbmm(bias.unsqueeze(-2), h, w.transpose(-1, -2), alpha=m)
