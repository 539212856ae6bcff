"""One layer of linear self-attention (LSA) for in-context regression, many members at once.

Tokens ``z_j`` (rows ``(x_i, y_i)`` of the prompt, last ``(x_q, 0)``) are updated as

    z_j ← z_j + W_PV · (1/n) Σ_{i≤n} z_i (z_iᵀ W_KQ z_j),

the merged value-projection ``W_PV`` and key-query ``W_KQ`` matrices of von Oswald et al. (2023),
Ahn et al. (2023) and Mahankali et al. (2023); no softmax, the query token is not a key. The
prediction for ``y_q`` is the last entry of the updated query token.

Only the last row of ``W_PV`` (``p = (p_x, p_y)``) and the first ``d`` columns of ``W_KQ``
(``Q_xx`` above ``q_y``) reach the prediction. Writing ``g = (1/n)Σ y_i x_i`` it splits into

    ŷ = x_qᵀ Γ g  +  x_qᵀ (Q_xxᵀ C p_x + p_y q_y s),     Γ = p_y Q_xxᵀ + q_y p_xᵀ,

with ``C = (1/n)Σ x_i x_iᵀ`` and ``s = (1/n)Σ y_i²``. The first term is one step of
preconditioned GD from ``w = 0``; :meth:`LinearSelfAttention.preconditioner` reads ``Γ`` off the
weights. The second term is even in the labels, so it cannot correlate with ``y_q`` and only adds
risk: a trained layer should drive it to zero (``gd_residual`` measures what is left).

Every parameter has a leading ensemble axis (``config.members`` members, e.g. seeds), so the
ensemble optimizers of :mod:`phenomena.ensemble` train all members in one step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

LSA_INITS: tuple[str, ...] = ("gaussian", "gd")


@dataclass(frozen=True)
class LinearAttentionConfig:
    """``d``: input dimension (tokens have ``d + 1`` entries); ``ensemble`` members; entries of both
    weight matrices start ``N(0, init_scale²)``.

    ``init="gaussian"`` draws every entry; ``init="gd"`` then zeroes the two couplings ``p_x`` and
    ``q_y``, so that the layer starts as one-step GD with a random preconditioner ``p_y Q_xxᵀ``
    (the subspace in which Zhang, Frei & Bartlett (2024) prove gradient flow converges).
    """

    d: int = 5
    members: int = 1
    init_scale: float = 0.1
    init: str = "gaussian"
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        if self.init not in LSA_INITS:
            raise ValueError(f"unknown init {self.init!r}; valid inits are: {', '.join(LSA_INITS)}")
        if int(self.d) != self.d or self.d < 1:
            raise ValueError(f"d must be a positive integer, got {self.d!r}")
        if self.members < 1:
            raise ValueError(f"members must be >= 1, got {self.members}")
        if not self.init_scale >= 0:
            raise ValueError(f"init_scale must be >= 0, got {self.init_scale}")


class LinearSelfAttention(nn.Module):
    """An ensemble of one-layer linear self-attention models; ``value`` is ``W_PV``, ``key_query`` is ``W_KQ``,
    both ``(members, d+1, d+1)``."""

    def __init__(self, config: LinearAttentionConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        e, k = config.members, config.d + 1
        shape = (e, k, k)
        self.value = nn.Parameter(config.init_scale * torch.randn(shape, generator=generator, dtype=config.dtype))
        self.key_query = nn.Parameter(config.init_scale * torch.randn(shape, generator=generator, dtype=config.dtype))
        if config.init == "gd":
            self.zero_couplings()

    @torch.no_grad()
    def zero_couplings(self, members: Tensor | None = None) -> LinearSelfAttention:
        """Set ``p_x = 0`` and ``q_y = 0`` (for the members selected by a boolean mask, default all).

        What is left of the prediction is exactly ``x_qᵀ (p_y Q_xxᵀ) g``: one step of preconditioned GD.
        """
        d = self.config.d
        keep = torch.ones(self.config.members, dtype=torch.bool) if members is None else torch.as_tensor(members)
        if keep.shape != (self.config.members,):
            raise ValueError(f"members must be a boolean mask of shape ({self.config.members},)")
        keep = keep.to(self.value.device)
        self.value[:, d, :d] = torch.where(keep[:, None], torch.zeros_like(self.value[:, d, :d]), self.value[:, d, :d])
        self.key_query[:, d, :d] = torch.where(
            keep[:, None], torch.zeros_like(self.key_query[:, d, :d]), self.key_query[:, d, :d]
        )
        return self

    @classmethod
    def from_preconditioner(cls, gamma: Tensor, *, dtype: torch.dtype = torch.float64) -> LinearSelfAttention:
        """The GD construction: ``p = (0, 1)``, ``Q_xx = Γᵀ``, everything else zero, so ``ŷ = x_qᵀΓg`` exactly.

        ``gamma`` is ``(d, d)`` or ``(members, d, d)``.
        """
        g = torch.as_tensor(gamma, dtype=dtype)
        if g.dim() == 2:
            g = g[None]
        if g.dim() != 3 or g.shape[-1] != g.shape[-2]:
            raise ValueError(f"gamma must be (d, d) or (members, d, d), got shape {tuple(g.shape)}")
        e, d = g.shape[0], g.shape[-1]
        model = cls(LinearAttentionConfig(d=d, members=e, init_scale=0.0, dtype=dtype))
        with torch.no_grad():
            model.value[:, d, d] = 1.0
            model.key_query[:, :d, :d] = g.transpose(-1, -2)
        return model

    # ------------------------------------------------------------------ forward passes
    def forward(self, tokens: Tensor) -> Tensor:
        """All updated tokens, ``(members, B, n+1, d+1)``, from prompts ``(B, n+1, d+1)`` shared by the members."""
        ctx = tokens[:, :-1, :]
        n = ctx.shape[1]
        a = ctx.transpose(-1, -2) @ ctx / n  # (B, d+1, d+1) = (1/n) Σ_i z_i z_iᵀ
        # z_j + W_PV A W_KQ z_j for every token j, every member
        update = torch.einsum("eab,nbc,ecd,njd->enja", self.value, a, self.key_query, tokens)
        return tokens[None] + update

    def predict(self, tokens: Tensor) -> Tensor:
        """The prediction for each prompt's query label, ``(members, B)``: ``pᵀ A Q[:, :d] x_q``.

        Equal to ``forward(tokens)[..., -1, -1]`` but computes only that entry.
        """
        d = self.config.d
        ctx, x_q = tokens[:, :-1, :], tokens[:, -1, :d]
        a = ctx.transpose(-1, -2) @ ctx / ctx.shape[1]
        left = torch.einsum("ea,nab->enb", self.value[:, d, :], a)  # pᵀA
        right = torch.einsum("ebk,nk->enb", self.key_query[:, :, :d], x_q)  # Q[:, :d] x_q
        return (left * right).sum(-1)

    def loss(self, tokens: Tensor, target: Tensor) -> Tensor:
        """Mean squared error of every member, ``(ensemble,)`` (the quantity the test risk estimates)."""
        return ((self.predict(tokens) - target) ** 2).mean(-1)

    # ------------------------------------------------------------------ reading the weights
    def preconditioner(self) -> Tensor:
        """``Γ = p_y Q_xxᵀ + q_y p_xᵀ`` per member, ``(members, d, d)``: the part of the prediction linear in the labels,
        ``x_qᵀ Γ (1/n)Σ y_i x_i``, i.e. one step of GD from zero with preconditioner ``Γ``."""
        d = self.config.d
        p_x, p_y = self.value[:, d, :d], self.value[:, d, d]
        q_xx, q_y = self.key_query[:, :d, :d], self.key_query[:, d, :d]
        return p_y[:, None, None] * q_xx.transpose(-1, -2) + q_y[:, :, None] * p_x[:, None, :]

    def gd_residual(self, tokens: Tensor) -> Tensor:
        """``ŷ − x_qᵀΓg`` per member and prompt, ``(members, B)``: the part of the prediction that is not one-step GD."""
        from ..theory.icl import one_step_gd_prediction

        d = self.config.d
        ctx = tokens[:, :-1, :]
        gd = one_step_gd_prediction(ctx[None, ..., :d], ctx[None, ..., d], tokens[None, :, -1, :d],
                                    self.preconditioner()[:, None])
        return self.predict(tokens) - gd
