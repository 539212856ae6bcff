"""The three-layer network of Wang, Nichani & Lee (2023, eq. 1), batched over ensemble members, with μP.

    g(x) = u·σ₁(Vx + s)                  (first two layers: a learned scalar feature)
    h(x) = a·σ₂(w·g(x) + b) + c·g(x)     (a two-layer net of that scalar, plus a skip: "ResNet-like")

``V ∈ R^{m₁×d}``, ``s, u ∈ R^{m₁}``, ``w, b, a ∈ R^{m₂}``, ``c ∈ R``. The paper trains
``(u, s, V, a, b, c)`` and keeps ``w`` at its random init; so does this module (``w`` is a buffer).
The paper's experiments use ``σ₁(z) = z³`` (with a cubic feature), ``σ₂ = ReLU`` and μP (Yang & Hu
2021); ``power`` sets ``σ₁(z) = z^power``.

μP is written with multipliers, so that one Adam learning rate for all tensors gives μP's per-layer
rates: every stored tensor starts ``N(0, 1)`` (``c`` at 0) and the forward pass multiplies

* ``V`` by ``1/√d`` (input layer: pre-activations ``O(1)``),
* ``u`` by ``1/m₁`` and ``a`` by ``1/m₂`` (read-outs: ``O(1/width)`` at init, and Adam's ``O(lr)``
  step on each entry moves the sum by ``O(lr)`` whatever the width).

So ``g`` and ``h`` start small (``O(1/√m)``) and the learned feature ``g`` moves by ``O(1)`` in
training at any width: the network is not in the lazy (kernel) regime. ``ntk`` gives the tangent
kernel of these stored parameters in closed form (the ``V`` block is a Hadamard product), far cheaper
than per-example Jacobians at ``n`` in the thousands.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def cube(z: Tensor) -> Tensor:
    """``σ₁(z) = z³``, the paper's first activation."""
    return z * z * z


class ThreeLayer(nn.Module):
    """``members`` independent copies of eq. (1) as one module; forward ``(n, d)`` or ``(members, n, d)`` → ``(members, n, 1)``.

    ``σ₁(z) = z^power``: the paper's experiments use ``power = 3`` with a cubic feature (``k = 3``);
    ``power = k`` matches the first layer's degree to the feature's.

    ``forward(x, members=slice)`` runs only the members in the slice (their own inputs
    ``(len, n, d)`` or shared ``(n, d)``), so groups of members with training sets of different sizes
    share one optimizer without padding.
    """

    def __init__(
        self,
        members: int,
        dim: int,
        width1: int,
        width2: int,
        *,
        generator: torch.Generator | None = None,
        dtype: torch.dtype = torch.float32,
        power: int = 3,
    ) -> None:
        super().__init__()
        if isinstance(power, bool) or not isinstance(power, int) or power < 1:
            raise ValueError(f"power (σ₁(z) = z^power) must be a positive integer, got {power!r}")
        self.power = power
        for name, value in (("members", members), ("dim", dim), ("width1", width1), ("width2", width2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim, self.width1, self.width2 = dim, width1, width2

        def normal(*shape: int) -> Tensor:
            return torch.randn(members, *shape, generator=generator, dtype=dtype)

        self.V = nn.Parameter(normal(width1, dim))
        self.s = nn.Parameter(normal(width1))
        self.u = nn.Parameter(normal(width1))
        self.b = nn.Parameter(normal(width2))
        self.a = nn.Parameter(normal(width2))
        self.c = nn.Parameter(torch.zeros(members, dtype=dtype))
        self.register_buffer("w", normal(width2))

    @property
    def members(self) -> int:
        """Ensemble size."""
        return int(self.V.shape[0])

    def _params(self, members: slice | None) -> tuple[Tensor, ...]:
        sl = slice(None) if members is None else members
        return self.V[sl], self.s[sl], self.u[sl], self.w[sl], self.b[sl], self.a[sl], self.c[sl]

    def _check(self, x: Tensor, count: int) -> None:
        if x.shape[-1] != self.dim or x.dim() not in (2, 3) or (x.dim() == 3 and x.shape[0] != count):
            raise ValueError(
                f"x must be (n, {self.dim}) shared by the members or ({count}, n, {self.dim}) per member; got {tuple(x.shape)}"
            )

    def _preactivation(self, x: Tensor, V: Tensor, s: Tensor) -> Tensor:
        self._check(x, V.shape[0])
        if x.dim() == 2:
            z = torch.einsum("nd,emd->enm", x, V)
        else:
            z = torch.bmm(x, V.transpose(1, 2))
        return z / math.sqrt(self.dim) + s[:, None, :]

    def feature(self, x: Tensor, members: slice | None = None) -> Tensor:
        """The learned feature ``g(x) = u·σ₁(Vx + s)``: ``(members, n)``."""
        V, s, u, *_ = self._params(members)
        z = self._preactivation(x, V, s)
        return torch.einsum("enm,em->en", z**self.power, u) / self.width1

    def forward(self, x: Tensor, members: slice | None = None) -> Tensor:
        V, s, u, w, b, a, c = self._params(members)
        g = torch.einsum("enm,em->en", self._preactivation(x, V, s) ** self.power, u) / self.width1
        r = torch.relu(g[:, :, None] * w[:, None, :] + b[:, None, :])
        out = torch.einsum("enj,ej->en", r, a) / self.width2 + c[:, None] * g
        return out[..., None]

    @torch.no_grad()
    def ntk(self, x1: Tensor, x2: Tensor | None = None) -> Tensor:
        """Tangent kernel ``Σ_θ ∂h(x)/∂θ·∂h(x')/∂θ`` over the trained tensors ``(V, s, u, b, a, c)``: ``(members, n1, n2)``.

        Closed form: with ``δ_i = ∂h/∂s_i`` (per example), ``∂h/∂V_ij = δ_i·x_j/√d``, so the ``V`` and
        ``s`` blocks together give ``(1 + x·x'/d)·(δ·δ')``; the other blocks are small Jacobians.
        ``x1``, ``x2`` are ``(n, d)`` inputs shared by the members.
        """
        def parts(x: Tensor) -> tuple[Tensor, Tensor]:
            self._check(x, self.members)
            if x.dim() != 2:
                raise ValueError("ntk takes inputs (n, d) shared by the members")
            V, s, u, w, b, a, c = self._params(None)
            z = self._preactivation(x, V, s)  # (e, n, m1)
            phi = z**self.power
            g = torch.einsum("enm,em->en", phi, u) / self.width1
            pre = g[:, :, None] * w[:, None, :] + b[:, None, :]
            active = (pre > 0).to(x.dtype)
            d_a = torch.relu(pre) / self.width2
            d_b = active * a[:, None, :] / self.width2
            d_g = c[:, None] + torch.einsum("enj,ej->en", active, a * w) / self.width2
            d_u = d_g[:, :, None] * phi / self.width1
            delta = d_g[:, :, None] * u[:, None, :] * self.power * z ** (self.power - 1) / self.width1  # ∂h/∂s
            small = torch.cat([d_a, d_b, d_u, g[:, :, None]], dim=-1)
            return small, delta

        small1, delta1 = parts(x1)
        if x2 is None:
            x2, small2, delta2 = x1, small1, delta1
        else:
            small2, delta2 = parts(x2)
        inputs = 1.0 + (x1 @ x2.T) / self.dim
        return small1 @ small2.transpose(1, 2) + inputs[None] * (delta1 @ delta2.transpose(1, 2))
