"""The unconstrained-features model (UFM): free last-layer features and a deep linear head, many at once.

A network expressive enough can put its last-layer features anywhere, so the UFM drops the
backbone and optimises the features ``H`` directly (Mixon et al. 2020; Fang et al. 2021), here
with a linear head of ``M`` layers as in Dang et al. (2023):

    logits = H W_1ᵀ ⋯ W_Mᵀ + b        (features ``H`` are ``N × d``, one row per sample)

and the regularised MSE ``1/(2N)‖logits − Y‖² + λ_W/2 Σ‖W_m‖² + λ_H/2 ‖H‖²`` (weight decay on
the weights *and* the features; the bias, if any, is not regularised). All parameters carry a
leading ensemble axis, so that seeds and regularisation strengths train as one batched model;
``λ_W`` and ``λ_H`` may differ per member (they enter the loss, not the optimiser).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .deep_linear import random_orthogonal


@dataclass(frozen=True)
class UFMConfig:
    """Sizes and init of an unconstrained-features model.

    ``depth`` is the number of linear layers ``M`` of the head (hidden layers are ``dim`` wide).
    Every entry of ``H`` starts as ``N(0, feature_std²)`` and every head layer as ``weight_scale``
    times a random (semi-)orthogonal matrix. The minimiser does not depend on the init, but for
    ``M ≥ 2`` zero is a local minimum (see :mod:`phenomena.theory.collapse`): a head whose
    singular values all start near 1 keeps every class off it, where small Gaussian weights
    (whose product has many tiny singular values) can leave a class stuck there.
    ``bias`` is one flag for all members or one per member (a member without bias keeps it at 0),
    so that runs with and without a bias can train as one ensemble.
    """

    samples: int
    classes: int
    dim: int
    depth: int = 1
    bias: bool | tuple[bool, ...] = False
    feature_std: float = 0.1
    weight_scale: float = 1.0
    members: int = 1
    dtype: torch.dtype = torch.float64

    def __post_init__(self) -> None:
        for name in ("samples", "classes", "dim", "depth", "members"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.classes < 2:
            raise ValueError(f"classes must be >= 2, got {self.classes}")
        if self.dim < self.classes:
            raise ValueError(f"dim ({self.dim}) must be >= classes ({self.classes}) for the class means to be orthogonal")
        if not (self.feature_std > 0 and self.weight_scale > 0):
            raise ValueError(f"feature_std and weight_scale must be positive, got {self.feature_std}, {self.weight_scale}")
        if isinstance(self.bias, (tuple, list)) and len(self.bias) != self.members:
            raise ValueError(f"bias must be one flag or one per member ({self.members}), got {self.bias!r}")

    @property
    def bias_mask(self) -> tuple[bool, ...]:
        """Which members have a bias."""
        return tuple(bool(b) for b in self.bias) if isinstance(self.bias, (tuple, list)) else (bool(self.bias),) * self.members


class UnconstrainedFeatures(nn.Module):
    """``features (E, N, d)``, ``weights[m] (E, out, in)`` (first ``d → d``, last ``d → K``), ``bias (E, K)``."""

    def __init__(self, config: UFMConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = c = config
        e, dt = c.members, c.dtype

        gen = generator if generator is not None else torch.Generator().manual_seed(int(torch.randint(2**62, ())))
        self.features = nn.Parameter(
            (c.feature_std * torch.randn(e, c.samples, c.dim, generator=gen, dtype=torch.float64)).to(dt)
        )
        shapes = [(c.dim, c.dim)] * (c.depth - 1) + [(c.classes, c.dim)]
        self.weights = nn.ParameterList(
            nn.Parameter(c.weight_scale * random_orthogonal(e, rows, cols, gen, dt)) for rows, cols in shapes
        )
        mask = torch.tensor(c.bias_mask, dtype=dt)
        self.register_buffer("bias_mask", mask.unsqueeze(-1))
        self.bias = nn.Parameter(torch.zeros(e, c.classes, dtype=dt)) if bool(mask.any()) else None

    def classifier(self) -> Tensor:
        """The end-to-end linear classifier ``W_M ⋯ W_1``: ``(E, K, d)``."""
        out = self.weights[-1]
        for w in reversed(self.weights[:-1]):
            out = out @ w
        return out

    def forward(self) -> Tensor:
        """Logits ``(E, N, K)`` of every member for its own features."""
        out = self.features @ self.classifier().transpose(-1, -2)
        return out if self.bias is None else out + (self.bias_mask * self.bias).unsqueeze(-2)

    def penalty(self, weight_decay: Tensor | float, feature_decay: Tensor | float) -> Tensor:
        """``λ_W/2 Σ_m ‖W_m‖² + λ_H/2 ‖H‖²`` per member, ``(E,)``; the decays are numbers or ``(E,)`` tensors."""
        lw = torch.as_tensor(weight_decay, dtype=self.features.dtype, device=self.features.device)
        lh = torch.as_tensor(feature_decay, dtype=self.features.dtype, device=self.features.device)
        weights = sum(w.pow(2).sum((-2, -1)) for w in self.weights)
        return 0.5 * lw * weights + 0.5 * lh * self.features.pow(2).sum((-2, -1))

    def loss(self, targets: Tensor, weight_decay: Tensor | float, feature_decay: Tensor | float) -> Tensor:
        """The regularised MSE of Dang et al. per member, ``(E,)``; ``targets`` is ``(N, K)`` (one-hot)."""
        fit = 0.5 * (self() - targets).pow(2).sum(-1).mean(-1)
        return fit + self.penalty(weight_decay, feature_decay)


__all__ = ["UFMConfig", "UnconstrainedFeatures"]
