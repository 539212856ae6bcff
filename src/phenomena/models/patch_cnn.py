"""A two-layer patch CNN with ReLU^q filters and a fixed ±1/m head, as an ensemble.

The network of the feature-learning analyses of patch data (Cao, Chen, Belkin & Gu 2022; Lu, Wu,
Yang & Zou 2023):

    F(W, x) = Σ_{j=±1} j · (1/m) Σ_{r ≤ m} Σ_p ReLU(⟨w_{j,r}, x_p⟩)^q,

two groups of ``m`` filters, the group ``j = +1`` voting for label ``+1`` and ``j = −1`` for ``−1``.
Only the filters train; the head is fixed. With ``q > 1`` a filter that is slightly ahead on a
direction grows faster on it, so the filters pick features up one at a time.

With ``per_patch=False`` (default) a filter is shared by all patches (a true 1-D convolution);
``per_patch=True`` gives each patch its own weight vector ``w_{j,r,p}``.

The weights carry a leading ensemble axis ``(members, 2, m, d)`` (``(members, 2, m, patches, d)``
per patch), so learning rates and seeds train as one batched model. The gradient of the squared
loss is written out (:meth:`PatchCNN.loss_grad`): a batch-1 SGD step is a handful of batched
tensor operations with no autograd graph, which is what makes tens of thousands of steps cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PatchCNNConfig:
    """``d`` input dimension of a patch, ``width`` filters per group (``m``), ``q`` the power of the
    ReLU, ``init_std`` the standard deviation of the Gaussian initial weights, ``patches`` (used by
    ``per_patch=True`` only)."""

    d: int
    width: int = 10
    q: float = 2.0
    init_std: float = 0.01
    per_patch: bool = False
    patches: int = 3

    def __post_init__(self) -> None:
        if self.d < 1 or self.width < 1:
            raise ValueError(f"d and width must be positive, got d={self.d}, width={self.width}")
        if not self.q >= 1:
            raise ValueError(f"q must be ≥ 1 (q = 1 is ReLU; the chapter uses q = 2), got {self.q}")
        if not self.init_std >= 0:
            raise ValueError(f"init_std must be non-negative, got {self.init_std}")
        if self.per_patch and self.patches < 1:
            raise ValueError(f"per_patch needs the number of patches, got patches={self.patches}")


class PatchCNN:
    """``members`` patch CNNs with stacked weights ``self.weight``; see the module docstring.

    ``forward(x)`` takes one batch per member ``(members, batch, patches, d)`` or one batch shared by
    all ``(batch, patches, d)`` and returns ``F`` ``(members, batch)``.
    """

    def __init__(self, config: PatchCNNConfig, members: int, generator: torch.Generator,
                 *, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> None:
        if members < 1:
            raise ValueError(f"members must be positive, got {members}")
        self.config = config
        self.members = members
        shape = (members, 2, config.width) + ((config.patches,) if config.per_patch else ()) + (config.d,)
        self.weight = (torch.randn(shape, generator=generator, dtype=dtype) * config.init_std).to(device)
        # the fixed head: +1/m for the group voting +1, −1/m for the group voting −1
        self.head = torch.tensor([1.0, -1.0], dtype=dtype, device=device) / config.width

    def _pre(self, x: Tensor) -> Tensor:
        """Pre-activations ``⟨w_{j,r}, x_p⟩`` as ``(members, batch, 2, m, patches)``."""
        cfg = self.config
        if x.shape[-1] != cfg.d:
            raise ValueError(f"patches must have dimension d={cfg.d}, got input of shape {tuple(x.shape)}")
        if cfg.per_patch and x.shape[-2] != cfg.patches:
            raise ValueError(f"per_patch=True was built for {cfg.patches} patches, got {x.shape[-2]}")
        if x.dim() == 3:
            eq = "ejrpd,bpd->ebjrp" if cfg.per_patch else "ejrd,bpd->ebjrp"
        elif x.dim() == 4 and x.shape[0] == self.members and not cfg.per_patch:
            # the hot path of batch-1 SGD: one batched matmul, (members, batch·patches, d) @ (members, d, 2m)
            e, b, p, _ = x.shape
            z = torch.bmm(x.reshape(e, b * p, cfg.d), self.weight.reshape(e, 2 * cfg.width, cfg.d).transpose(1, 2))
            return z.reshape(e, b, p, 2, cfg.width).permute(0, 1, 3, 4, 2)
        elif x.dim() == 4 and x.shape[0] == self.members:
            eq = "ejrpd,ebpd->ebjrp" if cfg.per_patch else "ejrd,ebpd->ebjrp"
        else:
            raise ValueError(
                f"x must be (batch, patches, d) or (members={self.members}, batch, patches, d), got {tuple(x.shape)}"
            )
        return torch.einsum(eq, self.weight, x)

    def _out(self, z: Tensor) -> Tensor:
        act = z.clamp_min(0).pow(self.config.q)
        return (act.sum(-1).sum(-1) * self.head).sum(-1)

    def forward(self, x: Tensor) -> Tensor:
        return self._out(self._pre(x))

    __call__ = forward

    def loss_grad(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Outputs ``F`` ``(members, batch)`` and the gradient of ``mean_batch ½(F − y)²`` with respect
        to ``self.weight`` (one mean per member): ``(F − y)/B · j/m · q·ReLU(z)^{q−1}`` times the patch."""
        z = self._pre(x)
        relu = z.clamp_min(0)
        q = self.config.q
        act = relu * relu if q == 2 else relu.pow(q)
        out = (act.sum(-1).sum(-1) * self.head).sum(-1)
        if y.shape != out.shape[-1:] and y.shape != out.shape:
            raise ValueError(f"labels must be (batch,) or (members, batch), got {tuple(y.shape)} for outputs {tuple(out.shape)}")
        resid = (out - y) / out.shape[-1]
        slope = 2 * relu if q == 2 else (q * relu.pow(q - 1) if q != 1 else (z > 0).to(z))
        g = slope * (resid[:, :, None, None, None] * self.head[None, None, :, None, None])
        if x.dim() == 3:
            eq = "ebjrp,bpd->ejrpd" if self.config.per_patch else "ebjrp,bpd->ejrd"
        elif not self.config.per_patch:
            e, b, p, d = x.shape
            gm = g.permute(0, 2, 3, 1, 4).reshape(e, 2 * self.config.width, b * p)
            return out, torch.bmm(gm, x.reshape(e, b * p, d)).reshape(self.weight.shape)
        else:
            eq = "ebjrp,ebpd->ejrpd" if self.config.per_patch else "ebjrp,ebpd->ejrd"
        return out, torch.einsum(eq, g, x)

    def filters(self) -> Tensor:
        """The filters as ``(members, 2, m·patches, d)``: per-patch weights count as separate filters."""
        w = self.weight
        return w.reshape(self.members, 2, -1, self.config.d)
