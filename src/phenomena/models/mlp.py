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
        """Activations of the last hidden layer, ``(ensemble, batch, width)`` (a transposed view)."""
        return self._hidden(x).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        out = self._readout(self._hidden(x))
        return out if self.config.output_scale == 1.0 else self.config.output_scale * out

    # Inside, activations are *feature-major*, ``(ensemble, features, batch)``: every layer is then
    # one GEMM (shared input) or one batched GEMM writing a contiguous result, and the activation
    # and its backward run on contiguous memory. Batch-major ``(ensemble, batch, features)`` with a
    # shared input needs a transpose after the first layer, and the element-wise kernels on that
    # strided tensor cost more than the matmuls (benchmarks/ensemble.py: about 1.8x per step).
    def _hidden(self, x: Tensor) -> Tensor:
        """The last hidden layer, feature-major ``(ensemble, width, batch)``; the input itself for depth 1."""
        if x.dim() not in (2, 3) or (x.dim() == 3 and x.shape[0] != self.config.ensemble):
            raise ValueError(
                f"input must be (batch, {self.config.widths[0]}) or ({self.config.ensemble}, batch, "
                f"{self.config.widths[0]}), got {tuple(x.shape)}"
            )
        if self.config.depth == 1:  # no hidden layer: the input, one copy per member
            h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.config.ensemble, -1, -1)
            return h.transpose(1, 2)
        h = self.act(self._linear(x.T if x.dim() == 2 else x.transpose(1, 2), 0))
        for layer in range(1, self.config.depth - 1):
            h = self.act(self._linear(h, layer))
        return h

    def _linear(self, h: Tensor, layer: int) -> Tensor:
        """``m·W h + b`` for every member, feature-major: ``h`` is ``(in, batch)`` shared by all members
        or ``(ensemble, in, batch)``; the result is ``(ensemble, out, batch)``, contiguous."""
        w, m = self.weights[layer], self.multipliers[layer]
        bias = self.biases[layer].unsqueeze(-1) if self.config.bias else None
        e, out_dim, in_dim = w.shape
        if h.dim() == 2:  # shared input: all members' weights stacked into one GEMM
            w2 = w.reshape(e * out_dim, in_dim)
            y = torch.mm(w2, h) if bias is None else torch.addmm(bias.reshape(e * out_dim, 1), w2, h, alpha=m)
            y = y.view(e, out_dim, -1)
            return m * y if bias is None and m != 1.0 else y
        if bias is None:
            y = torch.bmm(w, h)
            return y if m == 1.0 else m * y
        return torch.baddbmm(bias, w, h, alpha=m)

    def _readout(self, h: Tensor) -> Tensor:
        """The last layer, from feature-major ``h`` to the batch-major output ``(ensemble, batch, out)``.

        Computed feature-major too, so that the gradient reaching the last hidden layer is
        contiguous (a transposed one sends the activation's backward down a slow strided path).
        """
        y = self._linear(h, self.config.depth - 1).transpose(1, 2)
        return y if y.shape[-1] == 1 else y.contiguous()
