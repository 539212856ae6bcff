"""Feature–noise patch data with a weak and a strong feature (Lu, Wu, Yang & Zou 2023).

Each example is a label ``y = ±1`` and ``patches`` vectors in ``ℝ^d``:

* patch 0 carries the *weak* feature ``y·v`` (small norm), present in every example;
* patch 1 carries the *strong* feature ``y·u`` (large norm) with probability ``strong_prob``,
  and a noise vector otherwise;
* every other patch is noise ``ξ ~ N(0, σ_p²(I − P))``, where ``P`` projects on ``span(u, v)``,
  so the noise is orthogonal to both features.

A network that learns only ``u`` classifies the examples that carry it and has to memorise the
noise of the others; one that learns ``v`` classifies every example. The weak-only test split
``[y·v, ξ, ξ, …]`` tells them apart: without the ``v`` direction its prediction is independent of
``y`` (chance, ½).

The noise and the initial weights the chapter uses are isotropic, so the directions of the
features do not matter: ``u = ‖u‖e₀`` and ``v = ‖v‖e₁``, and a weight's projection on a feature is
read off one coordinate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class FeatureNoiseData:
    """Inputs ``x`` ``(..., n, patches, d)``, labels ``y`` ``(..., n)`` (``±1``), the mask ``strong``
    of examples that carry ``y·u``, and the two features ``u`` (strong) and ``v`` (weak), each ``(d,)``."""

    x: Tensor
    y: Tensor
    strong: Tensor
    u: Tensor
    v: Tensor


def features(d: int, strong_norm: float, weak_norm: float, *, dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """The strong feature ``u = strong_norm·e₀`` and the weak feature ``v = weak_norm·e₁``."""
    if d < 3:
        raise ValueError(f"d must be at least 3 (two feature directions and room for noise), got {d}")
    if not (strong_norm > 0 and weak_norm > 0):
        raise ValueError(f"feature norms must be positive, got strong_norm={strong_norm}, weak_norm={weak_norm}")
    u = torch.zeros(d, dtype=dtype)
    v = torch.zeros(d, dtype=dtype)
    u[0], v[1] = float(strong_norm), float(weak_norm)
    return u, v


def _noise(shape: tuple[int, ...], d: int, noise_std: float, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    xi = torch.randn(*shape, d, generator=generator, dtype=dtype) * noise_std
    xi[..., :2] = 0.0  # orthogonal to u = ‖u‖e₀ and v = ‖v‖e₁
    return xi


def _check(n: int, d: int, patches: int, noise_std: float, strong_prob: float, sets: int) -> None:
    if n < 1 or sets < 1:
        raise ValueError(f"need n ≥ 1 examples and sets ≥ 1, got n={n}, sets={sets}")
    if patches < 2:
        raise ValueError(f"need at least 2 patches (the weak one and the strong-or-noise one), got {patches}")
    if not noise_std >= 0:
        raise ValueError(f"noise_std must be non-negative, got {noise_std}")
    if not 0.0 <= strong_prob <= 1.0:
        raise ValueError(f"strong_prob is a probability in [0, 1], got {strong_prob}")
    if d < 3:
        raise ValueError(f"d must be at least 3, got {d}")


def feature_noise(
    n: int,
    d: int,
    generator: torch.Generator,
    *,
    weak_norm: float = 0.2,
    strong_norm: float = 2.0,
    strong_prob: float = 0.5,
    noise_std: float = 0.1,
    patches: int = 3,
    sets: int = 1,
    dtype: torch.dtype = torch.float32,
) -> FeatureNoiseData:
    """``sets`` independent training sets of ``n`` examples each, stacked on a leading axis
    (``x``: ``(sets, n, patches, d)``). Labels are uniform ``±1``; each example carries the strong
    feature with probability ``strong_prob``."""
    _check(n, d, patches, noise_std, strong_prob, sets)
    u, v = features(d, strong_norm, weak_norm, dtype=dtype)
    y = torch.randint(0, 2, (sets, n), generator=generator).to(dtype) * 2 - 1
    strong = torch.rand(sets, n, generator=generator) < strong_prob
    x = _noise((sets, n, patches), d, noise_std, generator, dtype)
    x[:, :, 0] = y[..., None] * v
    x[:, :, 1] = torch.where(strong[..., None], y[..., None] * u, x[:, :, 1])
    return FeatureNoiseData(x=x, y=y, strong=strong, u=u, v=v)


def weak_only(
    n: int,
    d: int,
    generator: torch.Generator,
    *,
    weak_norm: float = 0.2,
    strong_norm: float = 2.0,
    noise_std: float = 0.1,
    patches: int = 3,
    sets: int = 1,
    dtype: torch.dtype = torch.float32,
) -> FeatureNoiseData:
    """The weak-only test split ``[y·v, ξ, ξ, …]``: the weak feature and noise, no strong feature."""
    _check(n, d, patches, noise_std, 0.0, sets)
    u, v = features(d, strong_norm, weak_norm, dtype=dtype)
    y = torch.randint(0, 2, (sets, n), generator=generator).to(dtype) * 2 - 1
    x = _noise((sets, n, patches), d, noise_std, generator, dtype)
    x[:, :, 0] = y[..., None] * v
    return FeatureNoiseData(x=x, y=y, strong=torch.zeros(sets, n, dtype=torch.bool), u=u, v=v)
