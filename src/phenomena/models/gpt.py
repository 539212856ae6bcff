"""A small GPT, many at once, with the switches the stability chapters turn.

One decoder-only transformer in the spirit of nanoGPT's ``model.py``: token and position
embeddings, ``layers`` blocks of causal self-attention and a GELU MLP, a linear read-out. What
it adds are the knobs of the Part III chapters:

* ``norm="pre"`` or ``"post"``: where the LayerNorms sit. Pre-LN (``x + f(LN(x))``, final LN)
  is the modern default and trains without warm-up at moderate learning rates; post-LN
  (``LN(x + f(x))``) is the original transformer and the setting in which Zhai et al. (2023)
  watch attention entropy collapse.
* ``qk_layernorm``: LayerNorm on queries and keys before their dot product (Dehghani et al.
  2023; Wortsman et al. 2023): it bounds the attention logits, whose growth is the
  instability Wortsman et al. reproduce at small scale.
* ``sigma_reparam``: every linear layer uses ``Ŵ = γ / σ(W) · W`` with ``σ(W)`` the spectral
  norm estimated by one power-iteration step per training step and ``γ`` a learned scalar
  (Zhai et al. 2023). ``σ(Ŵ) = |γ|`` up to the power iteration's error.
* z-loss is a term of the *loss*, not of the model: :func:`lm_loss` with ``z_loss > 0`` adds
  ``z_loss · (log Z)²`` per token (Chowdhery et al. 2022), which keeps the output logits'
  normaliser near 1.
* probes: ``forward(idx, probe=True)`` also returns the attention probabilities of every layer
  and the largest attention logit of every head, from the same forward pass.

The ensemble axis is leading, as in :class:`phenomena.models.MLP`: every parameter is
``(members, ...)``, so a learning-rate grid of small transformers trains as one batched model
with the per-member optimizers of :mod:`phenomena.ensemble`. Members share nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS: tuple[str, ...] = ("pre", "post")


@dataclass(frozen=True)
class GPTConfig:
    """Shape and switches of a GPT ensemble (see the module docstring for what each switch does)."""

    vocab_size: int = 32
    context: int = 32
    layers: int = 2
    heads: int = 2
    width: int = 64
    mlp_ratio: int = 4
    norm: Literal["pre", "post"] = "pre"
    qk_layernorm: bool = False
    sigma_reparam: bool = False
    power_iterations: int = 1
    embedding_std: float = 1.0
    members: int = 1
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context", "layers", "heads", "width", "mlp_ratio", "members",
                     "power_iterations"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be an integer >= 1, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; valid choices are: {', '.join(NORMS)}")
        if not self.embedding_std > 0:
            raise ValueError(f"embedding_std must be positive, got {self.embedding_std}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass
class Probes:
    """What one forward pass saw inside its attention layers.

    ``attention[l]``: the attention probabilities of layer ``l``, ``(members, batch, heads, T, T)``
    (rows sum to 1 over the causal keys). ``max_logit``: the largest pre-softmax attention logit
    of each head over the batch and the causal positions, ``(members, layers, heads)``.
    """

    attention: list[Tensor]
    max_logit: Tensor


def _normal(generator: torch.Generator, *shape: int, std: float, dtype: torch.dtype) -> Tensor:
    return torch.randn(*shape, generator=generator, dtype=dtype) * std


class Linear(nn.Module):
    """``E`` independent linear maps ``x @ W[e]`` (no bias), optionally σ-reparameterised.

    With ``sigma_reparam`` the effective weight is ``γ/σ(W) · W``: ``σ(W)`` is ``uᵀ W v`` with the
    singular vectors ``u, v`` kept as buffers and refined by ``power_iterations`` steps on every
    forward pass that builds a graph (the training steps); the vectors themselves carry no
    gradient, as in Zhai et al. (2023). Init: ``W ~ N(0, 1/fan_in)``, ``γ = 1``.
    """

    def __init__(self, fan_in: int, fan_out: int, config: GPTConfig, generator: torch.Generator,
                 std: float | None = None) -> None:
        super().__init__()
        e, dtype = config.members, config.dtype
        std = 1.0 / math.sqrt(fan_in) if std is None else std
        self.weight = nn.Parameter(_normal(generator, e, fan_in, fan_out, std=std, dtype=dtype))
        self.sigma_reparam = config.sigma_reparam
        self.power_iterations = config.power_iterations
        if self.sigma_reparam:
            self.gamma = nn.Parameter(torch.ones(e, dtype=dtype))
            self.register_buffer("u", F.normalize(_normal(generator, e, fan_in, std=1.0, dtype=dtype), dim=-1))
            self.register_buffer("v", F.normalize(_normal(generator, e, fan_out, std=1.0, dtype=dtype), dim=-1))
            self.power_iterate(30)  # start from an accurate σ(W): one step per training step keeps it so

    @torch.no_grad()
    def power_iterate(self, steps: int) -> None:
        """Refine the top singular vectors of every member's ``W`` (``(E, in, out)``) in place."""
        w = self.weight
        for _ in range(steps):
            self.v.copy_(F.normalize(torch.einsum("eio,ei->eo", w, self.u), dim=-1))
            self.u.copy_(F.normalize(torch.einsum("eio,eo->ei", w, self.v), dim=-1))

    def sigma(self) -> Tensor:
        """The power-iteration estimate of each member's top singular value ``σ(W)``, ``(E,)``."""
        return torch.einsum("ei,eio,eo->e", self.u, self.weight, self.v)

    def effective_weight(self) -> Tensor:
        """The weight the layer applies, ``(E, in, out)``: ``W``, or ``γ/σ(W) · W`` with σReparam."""
        if not self.sigma_reparam:
            return self.weight
        return (self.gamma / self.sigma()).view(-1, 1, 1) * self.weight

    def forward(self, x: Tensor) -> Tensor:
        if self.sigma_reparam and self.training and torch.is_grad_enabled():
            self.power_iterate(self.power_iterations)
        w = self.effective_weight()
        shape = x.shape
        return torch.bmm(x.reshape(shape[0], -1, shape[-1]), w).view(*shape[:-1], w.shape[-1])


class LayerNorm(nn.Module):
    """LayerNorm over the last axis with a per-member gain and bias, ``(E, ..., dim)`` in and out."""

    def __init__(self, dim: int, config: GPTConfig) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(config.members, dim, dtype=config.dtype))
        self.bias = nn.Parameter(torch.zeros(config.members, dim, dtype=config.dtype))

    def forward(self, x: Tensor) -> Tensor:
        view = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return F.layer_norm(x, x.shape[-1:]) * self.weight.view(view) + self.bias.view(view)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that can report its probabilities and largest logits."""

    def __init__(self, config: GPTConfig, generator: torch.Generator) -> None:
        super().__init__()
        d = config.width
        self.heads, self.head_dim = config.heads, config.head_dim
        self.query = Linear(d, d, config, generator)
        self.key = Linear(d, d, config, generator)
        self.value = Linear(d, d, config, generator)
        self.out = Linear(d, d, config, generator, std=1.0 / math.sqrt(2 * d * config.layers))
        self.q_norm = LayerNorm(self.head_dim, config) if config.qk_layernorm else None
        self.k_norm = LayerNorm(self.head_dim, config) if config.qk_layernorm else None

    def _split(self, x: Tensor) -> Tensor:
        e, b, t, _ = x.shape
        return x.view(e, b, t, self.heads, self.head_dim).transpose(2, 3)  # (E, B, H, T, hd)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``x`` ``(E, B, T, d)`` → output ``(E, B, T, d)``, probabilities ``(E, B, H, T, T)``, max logit ``(E, H)``."""
        e, b, t, d = x.shape
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        logits = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()  # key j visible to query i iff j <= i
        logits = logits.masked_fill(~causal, -math.inf)
        max_logit = logits.detach().amax(dim=(1, 3, 4))
        probs = torch.softmax(logits, dim=-1)
        y = (probs @ v).transpose(2, 3).reshape(e, b, t, d)
        return self.out(y), probs, max_logit


class Block(nn.Module):
    """One transformer block: attention then MLP, each with a residual and a LayerNorm (pre or post)."""

    def __init__(self, config: GPTConfig, generator: torch.Generator) -> None:
        super().__init__()
        d, hidden = config.width, config.mlp_ratio * config.width
        self.pre = config.norm == "pre"
        self.norm1, self.norm2 = LayerNorm(d, config), LayerNorm(d, config)
        self.attention = CausalSelfAttention(config, generator)
        self.fc = Linear(d, hidden, config, generator)
        self.proj = Linear(hidden, d, config, generator, std=1.0 / math.sqrt(2 * hidden * config.layers))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if self.pre:
            a, probs, max_logit = self.attention(self.norm1(x))
            x = x + a
            x = x + self.proj(F.gelu(self.fc(self.norm2(x))))
        else:
            a, probs, max_logit = self.attention(x)
            x = self.norm1(x + a)
            x = self.norm2(x + self.proj(F.gelu(self.fc(x))))
        return x, probs, max_logit


class GPT(nn.Module):
    """``ensemble`` independent small GPTs evaluated as one batched model.

    ``forward(idx)`` takes token ids ``(batch, T)`` shared by all members or ``(members, batch, T)``
    one batch per member, ``T ≤ context``, and returns next-token logits ``(members, batch, T,
    vocab)``; with ``probe=True`` it returns ``(logits, Probes)``.
    """

    def __init__(self, config: GPTConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        e, d, dtype = config.members, config.width, config.dtype
        self.token_embedding = nn.Parameter(_normal(g, e, config.vocab_size, d, std=config.embedding_std, dtype=dtype))
        self.position_embedding = nn.Parameter(_normal(g, e, config.context, d, std=config.embedding_std, dtype=dtype))
        self.blocks = nn.ModuleList(Block(config, g) for _ in range(config.layers))
        self.final_norm = LayerNorm(d, config) if config.norm == "pre" else None
        self.head = Linear(d, config.vocab_size, config, g)

    @torch.no_grad()
    def share_init(self, member: int = 0) -> GPT:
        """Copy one member's parameters (and σReparam's power-iteration vectors) into every member.

        A learning-rate grid on the ensemble axis then differs in its learning rate only, not in
        its random initial weights. Returns the model, so ``GPT(config, g).share_init()`` reads.
        """
        if not 0 <= member < self.config.members:
            raise ValueError(f"member must be in [0, {self.config.members}), got {member}")
        for t in list(self.parameters()) + list(self.buffers()):
            t.copy_(t[member : member + 1].expand_as(t))
        return self

    def linears(self) -> list[Linear]:
        """Every linear layer (the ones σReparam reparameterises), in forward order."""
        return [m for m in self.modules() if isinstance(m, Linear)]

    def forward(self, idx: Tensor, *, probe: bool = False) -> Tensor | tuple[Tensor, Probes]:
        c = self.config
        if idx.dim() == 2:
            idx = idx.unsqueeze(0).expand(c.members, -1, -1)
        if idx.dim() != 3 or idx.shape[0] != c.members:
            raise ValueError(f"idx must be (batch, T) or ({c.members}, batch, T) token ids, got {tuple(idx.shape)}")
        t = idx.shape[-1]
        if t > c.context:
            raise ValueError(f"sequence length {t} exceeds the model's context {c.context}; raise GPTConfig.context")
        members = torch.arange(c.members, device=idx.device).view(-1, 1, 1)
        x = self.token_embedding[members, idx] + self.position_embedding[:, None, :t]
        attention, max_logits = [], []
        for block in self.blocks:
            x, probs, max_logit = block(x)
            if probe:
                attention.append(probs.detach())
                max_logits.append(max_logit)
        if self.final_norm is not None:
            x = self.final_norm(x)
        logits = self.head(x)
        if probe:
            return logits, Probes(attention=attention, max_logit=torch.stack(max_logits, 1))
        return logits


def lm_loss(logits: Tensor, targets: Tensor, *, z_loss: float = 0.0) -> tuple[Tensor, Tensor]:
    """Per-member next-token loss and mean ``log Z``: ``((E,), (E,))``.

    The loss is the mean cross-entropy (nats per token) plus ``z_loss · mean((log Z)²)``, where
    ``log Z = logsumexp(logits)`` is the log of the softmax normaliser of each prediction;
    ``targets`` is ``(batch, T)`` shared or ``(E, batch, T)``. The second output is the mean
    ``log Z`` per member, the quantity z-loss pulls towards 0.
    """
    if z_loss < 0 or not math.isfinite(z_loss):
        raise ValueError(f"z_loss must be a finite number >= 0, got {z_loss}")
    e = logits.shape[0]
    if targets.dim() == logits.dim() - 2:
        targets = targets.unsqueeze(0).expand(e, *targets.shape)
    log_z = torch.logsumexp(logits, dim=-1)
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    loss = (log_z - picked).flatten(1).mean(1)
    if z_loss:
        loss = loss + z_loss * (log_z**2).flatten(1).mean(1)
    return loss, log_z.detach().flatten(1).mean(1)
