"""Low-rank adapters (LoRA and rank-stabilized LoRA) on the linears of a batched MLP or GPT.

LoRA (Hu et al. 2022) freezes a pretrained weight ``W₀`` (``out × in``) and learns a low-rank update

    W = W₀ + γ · B A,     A: (r, in),  B: (out, r),  γ = α / r   (LoRA)  or  α / √r   (rsLoRA),

with ``A`` drawn at random and ``B = 0``, so training starts exactly at the pretrained network.
Rank-stabilized LoRA (Kalajdzievski 2023) divides by ``√r`` instead of ``r`` so that the update
does not shrink as the rank grows. The initialisation follows Hugging Face ``peft``'s default,
which the official code of Shuttleworth et al. (2024) uses: ``A`` uniform on ``±1/√in`` (PyTorch's
Kaiming-uniform with ``a = √5``) and ``B = 0``.

Why a wrapper and not a new model: the book's models hold ``(members, ...)`` weights, so every
member (seed, learning rate) gets its own ``A`` and ``B`` along the same leading ensemble axis and
all members train as one batched model. The forward pass computes the effective weights
``W₀ + γBA`` and runs the frozen base network with them (``torch.func.functional_call``), so the
adapted network is the base network, bit for bit, at initialisation. ``merge`` writes the update
into the frozen weights (as ``peft``'s ``merge_and_unload`` does before the official intruder
count); ``unmerge`` takes it out again.

Two wrappers share one :class:`LoRAConfig` and one :class:`Adapters` (init, update, merge):

* :class:`LoRAMLP` adapts the hidden linears of a :class:`~phenomena.models.mlp.MLP`; its read-out
  is trained densely by default, as in the official fine-tuning script (the classifier head is
  "always" dense-tuned and carries no adapter).
* :class:`LoRAGPT` adapts the attention (query, key, value, output) and MLP (fc, proj) linears of a
  :class:`~phenomena.models.gpt.GPT`; by default the token and position embeddings, the LayerNorms
  and the language-model head stay frozen, which is ``peft``'s default for a causal language model
  (only the adapters train). A language model keeps its vocabulary and its read-out when it is
  fine-tuned on new text, and the pretraining loss is then read through the read-out it was
  pretrained with, so forgetting is what the adapters did to the blocks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .gpt import GPT
from .mlp import MLP

TARGET_GROUPS: dict[str, tuple[str, ...]] = {
    "attn": ("attention.query", "attention.key", "attention.value", "attention.out"),
    "mlp": ("fc", "proj"),
}
"""The GPT linears each target name stands for, relative to a block (``blocks.{l}.``)."""
GPT_LINEARS: tuple[str, ...] = TARGET_GROUPS["attn"] + TARGET_GROUPS["mlp"]


@dataclass(frozen=True)
class LoRAConfig:
    """Rank, α, scaling rule and placement of the adapters.

    MLP: ``layers`` lists the weight matrices (0 = first) that get an adapter; ``None`` means every
    layer but the read-out. GPT: ``targets`` names the linears of every block that get an adapter,
    ``"attn"`` (query, key, value, output), ``"mlp"`` (fc, proj) or single linears such as
    ``"attention.query"`` or ``"fc"``; ``None`` means ``("attn", "mlp")``, every linear in the blocks.

    ``train_head`` trains the read-out densely (when it has no adapter); ``None`` is each model's
    default: trained for the MLP's classifier head (the official script), frozen for the GPT's
    language-model head (``peft``'s default for a causal LM). ``train_embeddings`` trains the GPT's
    token and position embeddings densely (default frozen, for the same reason).
    """

    rank: int
    alpha: float
    rank_stabilized: bool = False
    layers: tuple[int, ...] | None = None
    train_head: bool | None = None
    targets: tuple[str, ...] | None = None
    train_embeddings: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.rank, bool) or int(self.rank) != self.rank or int(self.rank) < 1:
            raise ValueError(f"rank must be an integer >= 1, got {self.rank}")
        if not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"alpha must be a positive number, got {self.alpha}")
        if isinstance(self.targets, str):
            raise ValueError(f"targets must be a tuple of names, e.g. ({self.targets!r},), not a string")

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

    def adapted_linears(self, blocks: int) -> tuple[str, ...]:
        """The adapted GPT linears, full names such as ``blocks.0.attention.query``, in forward order."""
        wanted: set[str] = set()
        for t in self.targets if self.targets is not None else ("attn", "mlp"):
            if t in TARGET_GROUPS:
                wanted.update(TARGET_GROUPS[t])
            elif t in GPT_LINEARS:
                wanted.add(t)
            else:
                raise ValueError(f"unknown target {t!r}; valid targets are {', '.join([*TARGET_GROUPS, *GPT_LINEARS])}")
        if not wanted:
            raise ValueError("targets is empty: name at least one of 'attn', 'mlp' or a single linear")
        return tuple(f"blocks.{b}.{n}" for b in range(blocks) for n in GPT_LINEARS if n in wanted)


class Adapters(nn.Module):
    """``A[j]`` ``(members, r, in)`` and ``B[j]`` ``(members, out, r)`` for a list of ``(members, out, in)``
    shapes, with ``peft``'s init, and the update ``γ B A`` of each: what every LoRA wrapper shares."""

    def __init__(self, shapes: Sequence[tuple[int, int, int]], config: LoRAConfig, *, names: Sequence[str],
                 generator: torch.Generator, dtype: torch.dtype, device: torch.device | str) -> None:
        super().__init__()
        self.scaling = config.scaling
        r = int(config.rank)
        self.A = nn.ParameterList()
        self.B = nn.ParameterList()
        for name, (e, out_dim, in_dim) in zip(names, shapes):
            if r > min(out_dim, in_dim):
                raise ValueError(f"rank {r} exceeds min(out, in) = {min(out_dim, in_dim)} of {name} ({out_dim} × {in_dim}); "
                                 "lower the rank or adapt larger matrices")
            bound = 1.0 / math.sqrt(in_dim)  # kaiming_uniform_(a=√5): sqrt(6 / ((1 + 5)·fan_in))
            a = (torch.rand(e, r, in_dim, generator=generator, dtype=dtype) * 2 - 1) * bound
            self.A.append(nn.Parameter(a.to(device)))
            self.B.append(nn.Parameter(torch.zeros(e, out_dim, r, dtype=dtype, device=device)))

    def delta(self, j: int) -> Tensor:
        """The update ``γ·B A`` of the j-th adapted matrix for every member, ``(members, out, in)``."""
        return self.scaling * torch.bmm(self.B[j], self.A[j])


class _Adapted(nn.Module):
    """What every LoRA wrapper shares once it holds ``self.adapters``: the views of ``A``, ``B`` and ``γ``,
    and merging the updates into (and out of) the frozen weights. A wrapper says where the j-th
    adapted matrix is stored (:meth:`_frozen`) and in which orientation (:meth:`_stored_delta`)."""

    adapters: Adapters
    config: LoRAConfig
    merged: bool

    @property
    def A(self) -> nn.ParameterList:
        return self.adapters.A

    @property
    def B(self) -> nn.ParameterList:
        return self.adapters.B

    @property
    def scaling(self) -> float:
        return self.config.scaling

    def _frozen(self, j: int) -> Tensor:
        """The frozen base weight that the j-th adapter updates, as stored."""
        raise NotImplementedError

    def _stored_delta(self, j: int) -> Tensor:
        """The j-th update ``γBA`` in the orientation of :meth:`_frozen` (``(members, out, in)`` by default)."""
        return self.adapters.delta(j)

    @torch.no_grad()
    def merge(self) -> None:
        """Write ``γBA`` into the frozen weights; the forward pass then uses them alone (idempotent)."""
        if self.merged:
            return
        for j in range(len(self.adapters.A)):
            self._frozen(j).add_(self._stored_delta(j))
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ``γBA`` out of the frozen weights again (the inverse of :meth:`merge`)."""
        if not self.merged:
            return
        for j in range(len(self.adapters.A)):
            self._frozen(j).sub_(self._stored_delta(j))
        self.merged = False


class LoRAMLP(_Adapted):
    """A frozen copy of ``base`` with LoRA adapters on the layers of ``config``, one adapter per member.

    Trainable parameters: ``A[j]`` ``(members, r, in)``, ``B[j]`` ``(members, out, r)`` for the j-th
    adapted layer, and the read-out weight when ``train_head`` (and it has no adapter). The base
    network passed in is not modified.
    """

    def __init__(self, base: MLP, config: LoRAConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, MLP):
            raise TypeError(f"LoRAMLP adapts a phenomena.models.MLP, got {type(base).__name__}; use LoRAGPT for a GPT")
        if config.targets is not None or config.train_embeddings:
            raise ValueError("targets and train_embeddings place adapters in a GPT; an MLP's adapters are placed by layers")
        self.config = config
        self.base = copy.deepcopy(base)
        for p in self.base.parameters():
            p.requires_grad_(False)
        depth = base.config.depth
        self.layers = config.adapted_layers(depth)
        w0 = self.base.weights[0]
        self.adapters = Adapters([tuple(self.base.weights[i].shape) for i in self.layers], config,
                                 names=[f"layer {i}" for i in self.layers],
                                 generator=generator if generator is not None else torch.Generator().manual_seed(0),
                                 dtype=w0.dtype, device=w0.device)
        last = depth - 1
        self.head: nn.Parameter | None = None
        train_head = True if config.train_head is None else config.train_head
        if train_head and last not in self.layers:
            self.head = nn.Parameter(self.base.weights[last].detach().clone())
        self.merged = False

    def delta(self, layer: int) -> Tensor:
        """The update ``γ·B A`` of weight ``layer`` for every member, ``(members, out, in)``."""
        if layer not in self.layers:
            raise ValueError(f"layer {layer} has no adapter; adapted layers are {list(self.layers)}")
        return self.adapters.delta(self.layers.index(layer))

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

    def _frozen(self, j: int) -> Tensor:
        return self.base.weights[self.layers[j]]

    @torch.no_grad()
    def merged_weights(self) -> list[Tensor]:
        """Detached copies of the effective weights, the matrices whose spectrum the intruder count reads."""
        return [w.detach().clone() for w in self.weights()]


def gpt_weights(model: GPT, names: Sequence[str] | None = None) -> dict[str, Tensor]:
    """The GPT's linears as ``(members, out, in)`` matrices (views), by name, in forward order.

    Why the transpose: the GPT stores ``(members, in, out)`` and computes ``x @ W``; the official
    intruder count reads the left singular vectors of PyTorch's ``(out, in)`` weight, so every
    spectral measurement takes this orientation. ``names`` defaults to every linear in the blocks.
    """
    if not isinstance(model, GPT):
        raise TypeError(f"gpt_weights reads a phenomena.models.GPT, got {type(model).__name__}")
    names = LoRAConfig(1, 1.0).adapted_linears(model.config.layers) if names is None else names
    return {n: model.get_submodule(n).weight.transpose(1, 2) for n in names}


class LoRAGPT(_Adapted):
    """A frozen copy of a :class:`~phenomena.models.gpt.GPT` with LoRA adapters on the linears that
    ``config.targets`` names, one adapter per member.

    Trainable parameters: ``A[j]`` ``(members, r, in)`` and ``B[j]`` ``(members, out, r)`` for the
    j-th adapted linear (``self.names[j]``), plus, when asked for, the embeddings and the
    language-model head, which then train in place in the copy. The GPT passed in is not modified.
    ``forward`` takes what :meth:`GPT.forward` takes and returns its logits.
    """

    def __init__(self, base: GPT, config: LoRAConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(base, GPT):
            raise TypeError(f"LoRAGPT adapts a phenomena.models.GPT, got {type(base).__name__}; use LoRAMLP for an MLP")
        if config.layers is not None:
            raise ValueError("layers places adapters in an MLP; a GPT's adapters are placed by targets=('attn', 'mlp')")
        if base.config.sigma_reparam:
            raise ValueError("LoRAGPT adapts plain linears; a σReparam GPT rescales W by γ/σ(W), which an additive "
                             "update would change: build the base with sigma_reparam=False")
        self.config = config
        self.base = copy.deepcopy(base)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.names = config.adapted_linears(base.config.layers)
        shapes = [tuple(w.shape) for w in gpt_weights(self.base, self.names).values()]
        w0 = self.base.head.weight
        self.adapters = Adapters(shapes, config, names=self.names,
                                 generator=generator if generator is not None else torch.Generator().manual_seed(0),
                                 dtype=w0.dtype, device=w0.device)
        if config.train_head:
            self.base.head.weight.requires_grad_(True)
        if config.train_embeddings:
            self.base.token_embedding.requires_grad_(True)
            self.base.position_embedding.requires_grad_(True)
        self.merged = False

    def delta(self, name: str) -> Tensor:
        """The update ``γ·B A`` of linear ``name`` for every member, ``(members, out, in)``."""
        if name not in self.names:
            raise ValueError(f"{name!r} has no adapter; adapted linears are {list(self.names)}")
        return self.adapters.delta(self.names.index(name))

    def weights(self) -> dict[str, Tensor]:
        """The adapted matrices ``W₀ + γBA`` as ``(members, out, in)``, by name, differentiable in the adapters."""
        base = gpt_weights(self.base, self.names)
        if self.merged:
            return base
        return {n: w + self.adapters.delta(j) for j, (n, w) in enumerate(base.items())}

    def forward(self, idx: Tensor) -> Tensor:
        if self.merged:
            return self.base(idx)
        params = {f"{n}.weight": w.transpose(1, 2) for n, w in self.weights().items()}
        return functional_call(self.base, params, (idx,), strict=False)

    def _frozen(self, j: int) -> Tensor:
        return self.base.get_submodule(self.names[j]).weight

    def _stored_delta(self, j: int) -> Tensor:
        return self.adapters.delta(j).transpose(1, 2)  # the GPT's linears store (members, in, out)

    @torch.no_grad()
    def merged_weights(self) -> dict[str, Tensor]:
        """Detached copies of the adapted matrices ``(members, out, in)``, the ones the intruder count reads."""
        return {n: w.detach().clone() for n, w in self.weights().items()}


def adapter_parameters(model: LoRAMLP | LoRAGPT) -> Sequence[Tensor]:
    """The trainable tensors of ``model``: every ``A``, ``B`` and the dense parts it trains."""
    return [p for p in model.parameters() if p.requires_grad]
