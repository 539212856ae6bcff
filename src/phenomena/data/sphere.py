"""Points drawn uniformly on the sphere of radius √d in ``R^d``.

Why this radius: a coordinate of such a point has mean square exactly 1 (``‖x‖² = d``), so in
the NTK or standard parameterisation the first layer's pre-activation ``w·x/√d`` with
``w ~ N(0, I)`` is exactly ``N(0, 1)`` for every input. The infinite-width kernels then depend
on a pair of inputs only through their cosine ``x·x'/d``, which is what makes the closed forms
of :mod:`phenomena.theory.ntk` simple to state and to check.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sphere_points(
    n: int, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64, *, radius: float | None = None
) -> Tensor:
    """``n`` points uniform on the sphere of radius ``radius`` (default ``√d``) in ``R^d``: ``(n, d)``.

    A standard Gaussian vector divided by its norm is uniform on the unit sphere (the Gaussian
    is rotation invariant); the same ``generator`` state gives the same points.
    """
    if int(n) < 1 or int(d) < 1:
        raise ValueError(f"need n >= 1 points in d >= 1 dimensions, got n={n}, d={d}")
    r = float(d) ** 0.5 if radius is None else float(radius)
    if not r > 0 or r == float("inf"):
        raise ValueError(f"radius must be a positive finite number, got {radius}")
    g = torch.randn(int(n), int(d), generator=generator, dtype=dtype)
    return g / g.norm(dim=1, keepdim=True) * r
