"""Robust averaging of per-example (or per-group) gradients: gradient descent that ignores weak directions.

Coherent Gradients (Chatterjee 2020; Chatterjee & Zielinski 2022) says a network memorizes
through *weak* directions, ones that only a few examples' gradients push along, while patterns
shared by many examples ride the strong directions. Averaging gradients with an estimator that
discounts what only a few examples want should then slow memorization (of flipped labels, say)
while leaving the learning of shared patterns alone. Two estimators, applied coordinate by
coordinate along the axis of examples (or groups of examples):

* the *winsorized mean*: clip every coordinate to its ``c``-th smallest and ``c``-th largest value
  (``c = ⌊fraction·count⌋`` at each end, the 10 %/90 % quantiles for ``fraction = 0.1``), then
  average; with one value per example this is Chatterjee (2020)'s winsorized gradient descent;
* the *median of means*: the coordinate-wise median of the group means (three groups: the M3 of
  Zielinski, Krishnan & Chatterjee 2020), which needs no per-example gradients at all.

:func:`robust_step` applies either to an :class:`phenomena.ensemble.EnsembleOptimizer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

Method = Literal["mean", "winsorize", "median"]
METHODS: tuple[str, ...] = ("mean", "winsorize", "median")


def winsorized_mean(values: Tensor, fraction: float, dim: int = 0) -> Tensor:
    """Mean along ``dim`` after clipping every coordinate to its ``c``-th smallest and largest value,
    ``c = ⌊fraction·count⌋`` (``fraction = 0``: the plain mean)."""
    if not 0.0 <= fraction < 0.5:
        raise ValueError(f"fraction must lie in [0, 0.5): the share clipped at each end, got {fraction}")
    count = values.shape[dim]
    c = math.floor(fraction * count)
    if c == 0:
        return values.mean(dim)
    ordered = values.sort(dim=dim).values
    lo = ordered.narrow(dim, c, 1)
    hi = ordered.narrow(dim, count - 1 - c, 1)
    return torch.minimum(torch.maximum(values, lo), hi).mean(dim)


def median_of_means(values: Tensor, dim: int = 0) -> Tensor:
    """Coordinate-wise median along ``dim`` (an odd count of group means; even counts average the two middle values)."""
    count = values.shape[dim]
    ordered = values.sort(dim=dim).values
    if count % 2:
        return ordered.select(dim, count // 2)
    return 0.5 * (ordered.select(dim, count // 2 - 1) + ordered.select(dim, count // 2))


def robust_mean(values: Tensor, method: Method, *, fraction: float = 0.1, dim: int = 0) -> Tensor:
    """``values`` averaged along ``dim`` by ``method``: ``"mean"``, ``"winsorize"`` (with ``fraction``) or ``"median"``."""
    if method == "mean":
        return values.mean(dim)
    if method == "winsorize":
        return winsorized_mean(values, fraction, dim)
    if method == "median":
        return median_of_means(values, dim)
    raise ValueError(f"unknown robust averaging method {method!r}; valid ones are: {', '.join(METHODS)}")


@torch.no_grad()
def robust_step(optimizer, group_grads: Sequence[Tensor], method: Method, *, fraction: float = 0.1) -> None:
    """One optimizer step along the robust average of per-group gradients.

    ``group_grads[j]`` is ``(members, groups, *shape_j)`` for the optimizer's parameter ``j``
    (``(members, *shape_j)``): every member's gradient of every example or group of examples. The
    average runs along the group axis, coordinate by coordinate and member by member.
    """
    if len(group_grads) != len(optimizer.params):
        raise ValueError(f"need one gradient tensor per parameter ({len(optimizer.params)}), got {len(group_grads)}")
    for g, p in zip(group_grads, optimizer.params):
        if g.dim() != p.dim() + 1 or g.shape[0] != p.shape[0] or g.shape[2:] != p.shape[1:]:
            raise ValueError(f"group gradients must be (members, groups, *param_shape); got {tuple(g.shape)} for "
                             f"a parameter of shape {tuple(p.shape)}")
    optimizer.step([robust_mean(g, method, fraction=fraction, dim=1) for g in group_grads])
