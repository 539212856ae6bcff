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

The ensemble axis is leading: ``weights[l]`` is ``(members, out, in)``, so seeds or learning
rates of many small networks train as one batched matmul.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

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
    members: int = 1
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
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")

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
    """An ensemble of MLPs; input ``(batch, in)`` (shared) or ``(members, batch, in)``, output ``(members, batch, out)``."""

    def __init__(self, config: MLPConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        e, w, dt = config.members, list(config.widths), config.dtype
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
        """Activations of the last hidden layer, ``(members, batch, width)`` (a transposed view)."""
        return self._hidden(x).transpose(1, 2)

    def hidden(self, x: Tensor, layer: int, *, activated: bool = True) -> Tensor:
        """Hidden layer ``layer`` (``1 … depth − 1``) for every member, batch-major ``(members, batch, width)``.

        ``activated=False`` gives the pre-activation ``h^l = m_l·W_l x^{l−1} + b_l``, ``True`` (default)
        ``x^l = φ(h^l)``. Why: width-scaling arguments (how far a layer's features move after a step
        at a given learning rate) are about one layer's pre-activations, which :meth:`features` (the
        last layer's activations only) does not expose. Computed layer by layer, without the one-node
        ReLU path; meant for measurements (call it under ``torch.no_grad()``).
        """
        depth = self.config.depth
        if not 1 <= int(layer) <= depth - 1:
            raise ValueError(
                f"layer must name a hidden layer, 1 … {depth - 1} for widths {list(self.config.widths)}; got {layer}"
            )
        self._check_input(x)
        h = x.T if x.dim() == 2 else x.transpose(1, 2)
        pre = h
        for index in range(int(layer)):
            pre = self._linear(h, index)
            h = self.act(pre)
        return (h if activated else pre).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        if self._fused():
            self._check_input(x)
            params = [t for pair in zip(self.weights, self.biases) for t in pair] if self.config.bias else list(self.weights)
            h0 = x.T if x.dim() == 2 else x.transpose(1, 2)
            out = _batch_major(_ReluMLP.apply(h0, tuple(self.multipliers), self.config.bias, *params))
        else:
            out = self._readout(self._hidden(x))
        return out if self.config.output_scale == 1.0 else self.config.output_scale * out

    def _fused(self) -> bool:
        """Whether ``forward`` takes the one-node path of :class:`_ReluMLP`: a ReLU network with a hidden
        layer, under ordinary autograd (``torch.func`` transforms such as the NTK's ``jacrev`` trace the
        layer-by-layer ops instead)."""
        return (
            self.config.activation == "relu"
            and self.config.depth >= 2
            and torch.is_grad_enabled()
            and not torch._C._are_functorch_transforms_active()
        )

    def _check_input(self, x: Tensor) -> None:
        if x.dim() not in (2, 3) or (x.dim() == 3 and x.shape[0] != self.config.members):
            raise ValueError(
                f"input must be (batch, {self.config.widths[0]}) or ({self.config.members}, batch, "
                f"{self.config.widths[0]}), got {tuple(x.shape)}"
            )

    # Inside, activations are *feature-major*, ``(members, features, batch)``: every layer is then
    # one GEMM (shared input) or one batched GEMM writing a contiguous result, and the activation
    # and its backward run on contiguous memory. Batch-major ``(members, batch, features)`` with a
    # shared input needs a transpose after the first layer, and the element-wise kernels on that
    # strided tensor cost more than the matmuls (benchmarks/ensemble.py: about 1.8x per step).
    def _hidden(self, x: Tensor) -> Tensor:
        """The last hidden layer, feature-major ``(members, width, batch)``; the input itself for depth 1."""
        self._check_input(x)
        if self.config.depth == 1:  # no hidden layer: the input, one copy per member
            h = x if x.dim() == 3 else x.unsqueeze(0).expand(self.config.members, -1, -1)
            return h.transpose(1, 2)
        h = self.act(self._linear(x.T if x.dim() == 2 else x.transpose(1, 2), 0))
        for layer in range(1, self.config.depth - 1):
            h = self.act(self._linear(h, layer))
        return h

    def _linear(self, h: Tensor, layer: int) -> Tensor:
        """``m·W h + b`` for every member, feature-major: ``h`` is ``(in, batch)`` shared by all members
        or ``(members, in, batch)``; the result is ``(members, out, batch)``, contiguous."""
        bias = self.biases[layer] if self.config.bias else None
        return _affine(h, self.weights[layer], bias, self.multipliers[layer])

    def _readout(self, h: Tensor) -> Tensor:
        """The last layer, from feature-major ``h`` to the batch-major output ``(members, batch, out)``.

        Computed feature-major too, so that the gradient reaching the last hidden layer is
        contiguous (a transposed one sends the activation's backward down a slow strided path).
        """
        return _batch_major(self._linear(h, self.config.depth - 1))


def _batch_major(y: Tensor) -> Tensor:
    """The read-out ``(members, out, batch)`` as ``(members, batch, out)``: a view for one output unit
    (already contiguous in that order), else a contiguous copy, as a batch-major output is expected to be."""
    y = y.transpose(1, 2)
    return y if y.shape[-1] == 1 else y.contiguous()


# ----------------------------------------------------------------------------- one-node ReLU path
def _affine(h: Tensor, w: Tensor, bias: Tensor | None, m: float) -> Tensor:
    """``m·W h + b`` for every member, feature-major: ``h`` is ``(in, batch)`` shared by all members or
    ``(members, in, batch)``, ``w`` is ``(members, out, in)``; the result is ``(members, out, batch)``."""
    e, out_dim, in_dim = w.shape
    if h.dim() == 2:  # shared input: all members' weights stacked into one GEMM
        w2 = w.reshape(e * out_dim, in_dim)
        y = torch.mm(w2, h) if bias is None else torch.addmm(bias.reshape(e * out_dim, 1), w2, h, alpha=m)
        y = y.view(e, out_dim, -1)
        return m * y if bias is None and m != 1.0 else y
    if bias is None:
        y = torch.bmm(w, h)
        return y if m == 1.0 else m * y
    return torch.baddbmm(bias.unsqueeze(-1), w, h, alpha=m)


def _affine_backward(
    dz: Tensor, h: Tensor, w: Tensor, has_bias: bool, m: float, need_input: bool
) -> tuple[Tensor | None, Tensor, Tensor | None]:
    """Gradients of :func:`_affine` with respect to its input, weights and bias, computed with the same
    kernels, in the same order, as autograd's formulas for ``mm``/``addmm``/``bmm``/``baddbmm`` (so the
    two paths agree bit for bit; ``tests/test_models.py`` pins it). One exception, also exact: with one
    output unit the input gradient is an outer product, done as a broadcast multiply instead of a
    ``bmm`` with an inner dimension of 1 (a single product per entry either way, and 5-10x faster)."""
    e, out_dim, in_dim = w.shape
    if not has_bias and m != 1.0:
        dz = dz * m  # autograd's order: the scalar multiply's backward comes first
    alpha = m if has_bias else 1.0
    db = dz.sum(-1) if has_bias else None
    if h.dim() == 2:
        d2 = dz.reshape(e * out_dim, -1)
        dw = d2.mm(h.t()).view(e, out_dim, in_dim)
        if not need_input:
            dh = None
        elif h.stride(0) == 1 and h.stride(1) == h.shape[0]:  # a column-major input (``x.T``): autograd's branch
            dh = d2.t().mm(w.reshape(e * out_dim, in_dim)).t()
        else:
            dh = w.reshape(e * out_dim, in_dim).t().mm(d2)
    else:
        dw = dz.bmm(h.transpose(1, 2))
        if not need_input:
            dh = None
        elif out_dim == 1:
            dh = torch.mul(w.transpose(1, 2), dz)
        else:
            dh = w.transpose(1, 2).bmm(dz)
    if alpha != 1.0:
        dw = dw * alpha
        dh = None if dh is None else dh * alpha
    return dh, dw, db


def _relu_stack(h0: Tensor, params: Sequence[Tensor], has_bias: bool, multipliers: Sequence[float],
                *, in_place: bool) -> tuple[Tensor, list[Tensor]]:
    """The ReLU network on feature-major ``h0``: its output and every layer's input (``h0`` first).

    ``params`` alternate weight and bias when ``has_bias``. ``in_place`` runs the ReLU on the fresh
    pre-activation (the one-node forward, untracked); ``False`` keeps every op differentiable."""
    weights = params[0::2] if has_bias else params
    biases = params[1::2] if has_bias else (None,) * len(weights)
    inputs, h = [h0], h0
    for layer, (w, b) in enumerate(zip(weights, biases)):
        h = _affine(h, w, b, multipliers[layer])
        if layer < len(weights) - 1:
            h = h.clamp_min_(0.0) if in_place else torch.relu(h)
            inputs.append(h)
    return h, inputs


class _ReluMLP(torch.autograd.Function):
    """A ReLU MLP ensemble's forward pass as one autograd node, with a hand-written backward.

    Why: the tiny networks of the book are bound by overhead and memory traffic, not FLOPs. As one
    node, the ReLU runs in place on the fresh pre-activation, its backward masks the incoming
    gradient in place, the read-out's outer product is a broadcast multiply, and autograd keeps one
    node instead of two or three per layer (``benchmarks/ensemble.py``). The gradients are the ones
    autograd computes for :meth:`MLP._hidden`/``_readout``, bit for bit.

    Only first derivatives are hand-written. Under ``create_graph=True`` (a Hessian-vector product)
    the backward recomputes the forward with ordinary differentiable ops and differentiates that,
    so higher derivatives stay exact, at the cost of one extra forward.
    """

    @staticmethod
    def forward(ctx, h0: Tensor, multipliers: tuple[float, ...], has_bias: bool, *params: Tensor) -> Tensor:  # type: ignore[override]
        out, inputs = _relu_stack(h0, params, has_bias, multipliers, in_place=True)
        ctx.multipliers, ctx.has_bias = multipliers, has_bias
        ctx.save_for_backward(*inputs, *params)
        ctx.depth = len(inputs)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        saved = ctx.saved_tensors
        depth, has_bias, mult = ctx.depth, ctx.has_bias, ctx.multipliers
        inputs, params = saved[:depth], saved[depth:]
        if torch.is_grad_enabled():  # create_graph=True: differentiate an ordinary recomputation
            return _ReluMLP._differentiable_backward(ctx, inputs[0], params, grad)
        weights = params[0::2] if has_bias else params
        grads: list[Tensor | None] = [None] * len(params)
        dz = grad
        dh0 = None
        for layer in reversed(range(depth)):
            need_input = layer > 0 or ctx.needs_input_grad[0]
            dh, dw, db = _affine_backward(dz, inputs[layer], weights[layer], has_bias, mult[layer], need_input)
            slot = 2 * layer if has_bias else layer
            grads[slot] = dw
            if has_bias:
                grads[slot + 1] = db
            if layer > 0:
                dz = torch.ops.aten.threshold_backward.grad_input(dh, inputs[layer], 0.0, grad_input=dh)
            else:
                dh0 = dh
        return (dh0, None, None, *grads)

    @staticmethod
    def _differentiable_backward(ctx, h0: Tensor, params: Sequence[Tensor], grad: Tensor) -> tuple[Tensor | None, ...]:
        h, _ = _relu_stack(h0, params, ctx.has_bias, ctx.multipliers, in_place=False)
        wanted = [h0, *params]
        need = [ctx.needs_input_grad[0], *ctx.needs_input_grad[3:]]
        got = iter(torch.autograd.grad(h, [t for t, n in zip(wanted, need) if n], grad, create_graph=True, allow_unused=True))
        out = [next(got) if n else None for n in need]
        return (out[0], None, None, *out[1:])

