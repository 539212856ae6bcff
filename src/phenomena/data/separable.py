"""Linearly separable binary data: a generic set with a guaranteed margin, and Tyurin's worst case.

Both return ``(features (n, d), labels (n,))`` as float64 tensors with labels in ``{−1, +1}``.
No bias term: the separator passes through the origin, as in the perceptron's analysis.
"""

from __future__ import annotations

import torch
from torch import Tensor


def separable_gaussian(
    n: int, dim: int, *, margin: float, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor]:
    """``n`` standard Gaussian points labelled by a random unit teacher ``w``, ``y = sign(wᵀx)``,
    with every point pushed away from the hyperplane so that ``y·wᵀx ≥ margin``.

    The margin of the data set (Tyurin's μ) is therefore at least ``margin`` (the teacher is one
    unit separator; the best one may do better).
    """
    if n < 2 or dim < 1:
        raise ValueError(f"need n >= 2 and dim >= 1, got n={n}, dim={dim}")
    if not margin >= 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    w = torch.randn(dim, generator=generator, dtype=dtype)
    w = w / w.norm()
    x = torch.randn(n, dim, generator=generator, dtype=dtype)
    s = x @ w
    y = torch.where(s >= 0, 1.0, -1.0).to(dtype)
    x = x + (margin * y)[:, None] * w  # |wᵀx| grows by `margin`, on the correct side
    return x, y


def tyurin_worst_case(n: int, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Tyurin's Theorem 5.1 data set: one point ``(0.5, −1)`` with label +1, ``n − 1`` points ``(−0.5, −1)`` with label −1.

    Margin and radius are Θ(1), yet the batch perceptron (the large-step limit of logistic
    gradient descent) needs Θ(n) iterations to separate it
    (:func:`phenomena.theory.worst_case_steps`).
    """
    if n < 2:
        raise ValueError(f"need n >= 2, got {n}")
    x = torch.tensor([[-0.5, -1.0]], dtype=dtype).repeat(n, 1)
    x[0] = torch.tensor([0.5, -1.0], dtype=dtype)
    y = -torch.ones(n, dtype=dtype)
    y[0] = 1.0
    return x, y
