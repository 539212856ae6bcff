"""A GPT that reads real-valued tokens: the in-context regression transformer of Garg et al. (2022).

The prompt ``(x_1, y_1), …, (x_m, y_m)`` enters as the interleaved sequence ``x_1, ỹ_1, x_2, ỹ_2, …``
(:func:`phenomena.data.icl.interleave`, ``ỹ_i = (y_i, 0, …, 0)``). A linear read-in (with bias) maps
each ``d``-dimensional token to the model width, the transformer blocks of
:mod:`phenomena.models.gpt` (pre-LN, causal attention, GELU MLP) process the sequence, and a linear
read-out (with bias) of the final LayerNorm gives one number per token. The prediction of ``y_i`` is
the read-out at ``x_i``'s token (position ``2i``): causal attention lets it see ``x_i`` and the ``i``
pairs before it, so one sequence of ``m`` pairs trains all context lengths ``0 … m−1`` at once.

Positions: Panwar, Ahuja & Goyal (2023) train their mixture-prior models without a positional
encoding (``pos_encode: False`` in their configuration), and so does this model by default; causal
attention still lets a token tell how many came before it. ``positional=True`` adds learned
position embeddings, as in Garg et al.

The ensemble axis leads, as everywhere in :mod:`phenomena.models`: every parameter is
``(members, ...)``, so seeds or learning rates train as one batched model with the optimizers of
:mod:`phenomena.ensemble`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.icl import interleave
from .gpt import Block, GPTConfig, LayerNorm, Linear


@dataclass(frozen=True)
class ICLGPTConfig:
    """Shape of an in-context regression GPT ensemble.

    ``dim``: the inputs' dimension ``d`` (also the token width before the read-in); ``points``: the most
    ``(x, y)`` pairs a prompt may hold (the sequence is twice as long); ``positional``: learned position
    embeddings (off, as in the paper this model reproduces).
    """

    dim: int
    points: int
    layers: int = 3
    heads: int = 2
    width: int = 64
    mlp_ratio: int = 4
    positional: bool = False
    label_channel: bool = False
    members: int = 1
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("dim", "points", "layers", "heads", "width", "mlp_ratio", "members"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ICLGPTConfig.{name} must be an integer >= 1, got {value!r}")
        self.gpt()  # validates width against heads

    def gpt(self) -> GPTConfig:
        """The :class:`GPTConfig` of the transformer blocks (the vocabulary is unused)."""
        return GPTConfig(vocab_size=1, context=2 * self.points, layers=self.layers, heads=self.heads,
                         width=self.width, mlp_ratio=self.mlp_ratio, norm="pre", members=self.members,
                         dtype=self.dtype)


class ICLGPT(nn.Module):
    """``members`` independent in-context regression transformers, evaluated as one batched model.

    ``forward(x, y)`` takes the points ``x (B, m, d)``, ``y (B, m)`` shared by all members, or one batch
    per member ``(members, B, m, d)``, ``(members, B, m)``, and returns the predictions
    ``(members, B, m)``: entry ``i`` is the prediction of ``y_i`` from ``x_i`` and the pairs before it.
    """

    def __init__(self, config: ICLGPTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        gpt = config.gpt()
        e, w, dtype = config.members, config.width, config.dtype
        self.read_in = Linear(config.dim + int(config.label_channel), w, gpt, g)
        self.read_in_bias = nn.Parameter(torch.zeros(e, 1, w, dtype=dtype))
        self.position_embedding = (
            nn.Parameter(torch.randn(e, 2 * config.points, w, generator=g, dtype=dtype) * 0.02)
            if config.positional else None
        )
        self.blocks = nn.ModuleList(Block(gpt, g) for _ in range(config.layers))
        self.final_norm = LayerNorm(w, gpt)
        self.read_out = Linear(w, 1, gpt, g)
        self.read_out_bias = nn.Parameter(torch.zeros(e, 1, 1, dtype=dtype))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        c = self.config
        if x.dim() == 3:
            x, y = x.unsqueeze(0).expand(c.members, *x.shape), y.unsqueeze(0).expand(c.members, *y.shape)
        if x.dim() != 4 or x.shape[0] != c.members or x.shape[-1] != c.dim or y.shape != x.shape[:-1]:
            raise ValueError(f"expected x (B, m, {c.dim}) and y (B, m), or with a leading axis of {c.members} "
                             f"members; got {tuple(x.shape)} and {tuple(y.shape)}")
        m = x.shape[2]
        if m > c.points:
            raise ValueError(f"{m} points exceed the model's {c.points}; raise ICLGPTConfig.points")
        tokens = interleave(x, y, label_channel=c.label_channel).to(c.dtype)  # (E, B, 2m, d)
        h = self.read_in(tokens) + self.read_in_bias.unsqueeze(1)
        if self.position_embedding is not None:
            h = h + self.position_embedding[:, None, : 2 * m]
        for block in self.blocks:
            h = block(h)[0]
        out = self.read_out(self.final_norm(h)) + self.read_out_bias.unsqueeze(1)  # (E, B, 2m, 1)
        return out[:, :, 0::2, 0]

    def loss(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-member mean squared error over every prediction of every prompt, ``(members,)``.

        The training loss of Garg et al.: all context lengths ``0 … m−1`` weigh equally.
        """
        return ((self.forward(x, y) - y.to(self.config.dtype)) ** 2).flatten(1).mean(1)
