"""Gaussian class clusters with any class sizes: a classification task whose difficulty is one knob.

Class ``k`` is ``N(μ_k, noise² I)`` with ``μ_k`` of norm ``separation`` in a random direction
(random directions in ``dim ≥ K`` dimensions are nearly orthogonal). Samples come sorted by class,
which the neural-collapse measures do not care about; shuffle if an experiment does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def gaussian_clusters(
    class_sizes: Sequence[int],
    dim: int,
    generator: torch.Generator,
    *,
    separation: float = 3.0,
    noise: float = 1.0,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x, labels, centres)``: inputs ``(N, dim)``, integer labels ``(N,)`` and class centres ``(K, dim)``.

    ``class_sizes[k]`` samples of class ``k``; seeded entirely by ``generator``.
    """
    sizes = [int(n) for n in class_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"class_sizes must list at least two classes of >= 1 sample, got {list(class_sizes)}")
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not (separation >= 0 and noise >= 0):
        raise ValueError(f"separation and noise must be >= 0, got {separation}, {noise}")
    directions = torch.randn(len(sizes), dim, generator=generator, dtype=torch.float64)
    centres = separation * directions / directions.norm(dim=1, keepdim=True)
    labels = torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(sizes)])
    x = centres[labels] + noise * torch.randn(len(labels), dim, generator=generator, dtype=torch.float64)
    return x.to(dtype), labels, centres.to(dtype)


__all__ = ["gaussian_clusters"]
