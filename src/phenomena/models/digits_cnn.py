"""A small convolutional network for 8×8 digit images, many members trained as one model.

    image (1×8×8) → conv k×k, c₁ channels → ReLU → conv 3×3, c₂ channels → ReLU → max-pool 2×2
                  → fc, ``width`` units → ReLU → fc, 10 logits

(``k = kernel``, 3 by default; padding ``k // 2`` and 1, so both convolutions keep the 8×8 grid; pooling halves it to 4×4). It is the smallest
network with the ingredients of the AlexNets that Li et al. (2015) compared: convolutional layers
whose channels see every image position, a pooled and fully connected stage, and ReLU units that
can die.

The ensemble axis is folded into the channel axis: member ``e``'s channels are the ``e``-th block of
``members·c`` channels and every convolution runs with ``groups=members``, so the members never
see each other's channels and one ``conv2d`` call trains them all. The fully connected layers are
batched matmuls over ``(members, in, out)`` weights. PyTorch's default initialisation (Kaiming
uniform with ``a = √5``, i.e. ``U(±1/√fan_in)`` for weights and biases) is drawn per member from the
caller's generator, so the members differ only in their seed.

:meth:`DigitsCNN.activations` returns every hidden layer (after its ReLU) per member, the object a
representation comparison needs: ``conv1``/``conv2`` as ``(members, images, height, width,
channels)`` and ``fc`` as ``(members, images, units)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LAYERS: tuple[str, ...] = ("conv1", "conv2", "fc")
"""The hidden layers of :class:`DigitsCNN`, input side first."""


@dataclass(frozen=True)
class DigitsCNNConfig:
    """Channels of the two convolutions, units (``width``) of the hidden fully connected layer, classes, members."""

    channels: tuple[int, int] = (16, 32)
    width: int = 64
    classes: int = 10
    members: int = 1
    side: int = 8
    kernel: int = 3
    dtype: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if len(self.channels) != 2 or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels must be two positive channel counts, got {self.channels}")
        if self.width < 1 or self.classes < 2 or self.members < 1:
            raise ValueError(
                f"need width >= 1, classes >= 2 and members >= 1, got {self.width}, {self.classes}, {self.members}"
            )
        if self.kernel < 1 or self.kernel % 2 == 0:
            raise ValueError(f"kernel (the first convolution's filter size) must be odd and >= 1, got {self.kernel}")
        if self.side < 2 or self.side % 2:
            raise ValueError(f"side (image height = width) must be even and >= 2 for the 2×2 pooling, got {self.side}")


def _uniform(shape: tuple[int, ...], fan_in: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=generator, dtype=dtype) * 2 - 1) * bound


class DigitsCNN(nn.Module):
    """``members`` CNNs of :class:`DigitsCNNConfig` with stacked weights; see the module docstring.

    ``forward(x)`` takes images shared by all members, ``(images, side, side)`` or ``(images, side²)``
    (the flat 64-pixel rows of :mod:`phenomena.data.digits`), and returns logits
    ``(members, images, classes)``.
    """

    def __init__(self, config: DigitsCNNConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.config = config
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        e, (c1, c2), h, dt = config.members, config.channels, config.width, config.dtype
        flat = c2 * (config.side // 2) ** 2
        K = config.kernel
        self.conv1_weight = nn.Parameter(_uniform((e, c1, 1, K, K), K * K, gen, dt))
        self.conv1_bias = nn.Parameter(_uniform((e, c1), K * K, gen, dt))
        self.conv2_weight = nn.Parameter(_uniform((e, c2, c1, 3, 3), 9 * c1, gen, dt))
        self.conv2_bias = nn.Parameter(_uniform((e, c2), 9 * c1, gen, dt))
        self.fc_weight = nn.Parameter(_uniform((e, flat, h), flat, gen, dt))
        self.fc_bias = nn.Parameter(_uniform((e, 1, h), flat, gen, dt))
        self.out_weight = nn.Parameter(_uniform((e, h, config.classes), h, gen, dt))
        self.out_bias = nn.Parameter(_uniform((e, 1, config.classes), h, gen, dt))

    def _images(self, x: Tensor) -> Tensor:
        s = self.config.side
        if x.dim() == 2 and x.shape[1] == s * s:
            x = x.view(-1, s, s)
        if x.dim() != 3 or x.shape[1:] != (s, s):
            raise ValueError(f"images must be (images, {s}, {s}) or (images, {s * s}), got {tuple(x.shape)}")
        return x.to(self.conv1_weight.dtype)

    def _forward(self, x: Tensor, keep: bool) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        e, (c1, c2) = cfg.members, cfg.channels
        x = self._images(x)
        n = x.shape[0]
        # the same images for every member: one input channel per member, grouped convolutions
        z = x.unsqueeze(1).expand(n, e, cfg.side, cfg.side)
        a1 = torch.relu(F.conv2d(z, self.conv1_weight.reshape(e * c1, 1, cfg.kernel, cfg.kernel),
                                 self.conv1_bias.reshape(-1), padding=cfg.kernel // 2, groups=e))
        a2 = torch.relu(F.conv2d(a1, self.conv2_weight.reshape(e * c2, c1, 3, 3), self.conv2_bias.reshape(-1),
                                 padding=1, groups=e))
        p = F.max_pool2d(a2, 2)  # (n, e·c2, side/2, side/2)
        p = p.view(n, e, -1).transpose(0, 1)  # (e, n, c2·(side/2)²), channel-major as in nn.Flatten
        h = torch.relu(torch.baddbmm(self.fc_bias, p, self.fc_weight))
        out = torch.baddbmm(self.out_bias, h, self.out_weight)
        acts: dict[str, Tensor] = {}
        if keep:
            s = cfg.side
            acts["conv1"] = a1.view(n, e, c1, s, s).permute(1, 0, 3, 4, 2)
            acts["conv2"] = a2.view(n, e, c2, s, s).permute(1, 0, 3, 4, 2)
            acts["fc"] = h
        return out, acts

    def forward(self, x: Tensor) -> Tensor:
        return self._forward(x, keep=False)[0]

    @torch.no_grad()
    def activations(self, x: Tensor) -> dict[str, Tensor]:
        """Every hidden layer after its ReLU: ``conv1``/``conv2`` as ``(members, images, side, side,
        channels)``, ``fc`` as ``(members, images, width)``."""
        return {k: v.contiguous() for k, v in self._forward(x, keep=True)[1].items()}

    def member(self, index: int) -> DigitsCNN:
        """Member ``index`` as a one-member :class:`DigitsCNN` (a copy), e.g. to check it alone."""
        if not 0 <= index < self.config.members:
            raise IndexError(f"member {index} out of range for {self.config.members} members")
        cfg = dataclasses.replace(self.config, members=1)
        one = DigitsCNN(cfg)
        with torch.no_grad():
            for (_, p), (_, q) in zip(one.named_parameters(), self.named_parameters()):
                p.copy_(q[index : index + 1])
        return one
