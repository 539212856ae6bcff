"""Low-rank adapters (LoRA and rank-stabilized LoRA) on the linears of a batched :class:`~phenomena.models.mlp.MLP`.

LoRA (Hu et al. 2022) freezes a pretrained weight ``W₀`` (``out × in``) and learns a low-rank update

    W = W₀ + γ · B A,     A: (r, in),  B: (out, r),  γ = α / r   (LoRA)  or  α / √r   (rsLoRA),

with ``A`` drawn at random and ``B = 0``, so training starts exactly at the pretrained network.
Rank-stabilized LoRA (Kalajdzievski 2023) divides by ``√r`` instead of ``r`` so that the update
does not shrink as the rank grows. The initialisation follows Hugging Face ``peft``'s default,
which the official code of Shuttleworth et al. (2024) uses: ``A`` uniform on ``±1/√in`` (PyTorch's
Kaiming-uniform with ``a = √5``) and ``B = 0``.

Why a wrapper and not a new model: the book's MLPs hold ``(members, out, in)`` weights, so every
member (seed, learning rate) gets its own ``A`` and ``B`` along the same leading ensemble axis and
all members train as one batched model. The forward pass computes the effective weights
``W₀ + γBA`` and runs the frozen base network with them (``torch.func.functional_call``), so the
adapted network is the base network, bit for bit, at initialisation. ``merge`` writes the update
into the frozen weights (as ``peft``'s ``merge_and_unload`` does before the official intruder
count); ``unmerge`` takes it out again.

The read-out layer is trained densely by default, as in the official fine-tuning script (its
classifier head is "always" dense-tuned and carries no adapter).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .mlp import MLP


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, α, scaling rule and placement of the adapters.

    ``layers`` lists the weight matrices (0 = first) that get an adapter; ``None`` means every
    layer but the read-out. ``train_head`` trains the read-out densely when it has no adapter
    (``False`` freezes it).
    """

    rank: int
    alpha: float
    rank_stabilized: bool = False
    layers: tuple[int, ...] | None = None
    train_head: bool = True

    def __post_init__(self) -> None:
        if int(self.rank) < 1:
            raise ValueError(f"rank must be >= 1, got {self.rank}")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"alpha must be a positive number, got {self.alpha}")

    @property
    def scaling(self) -> float:
        """``γ = α/r`` (LoRA) or ``α/√r`` (rsLoRA)."""
        return self.alpha / (math.sqrt(self.rank) if self.rank_stabilized else self.rank)

    def adapted_layers(self, depth: int) -> tuple[int, ...]:
        """The adapted weight indices for a network with ``depth`` weight matrices, checked."""
        layers = tuple(range(depth - 1)) if self.layers is None else tuple(int(i) for i in self.layers)
        if not layers:
            raise ValueError("no layer to adapt: give layers=(...) or a network with a hidden layer")
        bad = [i for i in layers if not 0 <= i < depth]
        if bad or len(set(layers)) != len(layers):
            raise ValueError(f"layers must be distinct indices in 0 … {depth - 1}, got {list(layers)}")
        return layers


class LoRAMLP(nn.Module):
    """A frozen copy of ``base`` with LoRA adapters on the layers of ``config``, one adapter per member.

    Trainable parameters: ``A[j]`` ``(members, r, in)``, ``B[j]`` ``(members, out, r)`` for the j-th
    adapted layer, and the read-out weight when ``train_head`` (and it has no adapter). The base
    network passed in is not modified.
    """

    def __init__(self, base: MLP, config: LoRAConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, MLP):
            raise TypeError(f"LoRAMLP adapts a phenomena.models.MLP, got {type(base).__name__}")
        self.config = config
        self.base = copy.deepcopy(base)
        for p in self.base.parameters():
            p.requires_grad_(False)
        depth = base.config.depth
        self.layers = config.adapted_layers(depth)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        r = int(config.rank)
        self.A = nn.ParameterList()
        self.B = nn.ParameterList()
        for i in self.layers:
            w = self.base.weights[i]
            e, out_dim, in_dim = w.shape
            if r > min(out_dim, in_dim):
                raise ValueError(f"rank {r} exceeds min(out, in) = {min(out_dim, in_dim)} of layer {i}")
            bound = 1.0 / math.sqrt(in_dim)  # kaiming_uniform_(a=√5): sqrt(6 / ((1 + 5)·fan_in))
            a = (torch.rand(e, r, in_dim, generator=gen, dtype=w.dtype) * 2 - 1) * bound
            self.A.append(nn.Parameter(a.to(w.device)))
            self.B.append(nn.Parameter(torch.zeros(e, out_dim, r, dtype=w.dtype, device=w.device)))
        last = depth - 1
        self.head: nn.Parameter | None = None
        if config.train_head and last not in self.layers:
            self.head = nn.Parameter(self.base.weights[last].detach().clone())
        self.merged = False

    @property
    def scaling(self) -> float:
        return self.config.scaling

    def delta(self, layer: int) -> Tensor:
        """The update ``γ·B A`` of weight ``layer`` for every member, ``(members, out, in)``."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer} has no adapter; adapted layers are {list(self.layers)}")
        j = self.layers.index(layer)
        return self.scaling * torch.bmm(self.B[j], self.A[j])

    def weights(self) -> list[Tensor]:
        """The effective weights ``W₀ + γBA`` (and the trained read-out), differentiable in the adapters."""
        out: list[Tensor] = []
        depth = self.base.config.depth
        for i in range(depth):
            w = self.base.weights[i]
            if i in self.layers and not self.merged:
                w = w + self.delta(i)
            elif i == depth - 1 and self.head is not None:
                w = self.head
            out.append(w)
        return out

    def forward(self, x: Tensor) -> Tensor:
        params = {f"weights.{i}": w for i, w in enumerate(self.weights())}
        return functional_call(self.base, params, (x,))

    @torch.no_grad()
    def merge(self) -> None:
        """Write ``γBA`` into the frozen weights; the forward pass then uses them alone (idempotent)."""
        if self.merged:
            return
        for i in self.layers:
            self.base.weights[i].add_(self.delta(i))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ``γBA`` out of the frozen weights again (the inverse of :meth:`merge`)."""
        if not self.merged:
            return
        for i in self.layers:
            self.base.weights[i].sub_(self.delta(i))
        self.merged = False

    @torch.no_grad()
    def merged_weights(self) -> list[Tensor]:
        """Detached copies of the effective weights, the matrices whose spectrum the intruder count reads."""
        return [w.detach().clone() for w in self.weights()]


def adapter_parameters(model: LoRAMLP) -> Sequence[Tensor]:
    """The trainable tensors of ``model``: every ``A``, ``B`` and the dense read-out if trained."""
    return [p for p in model.parameters() if p.requires_grad]
