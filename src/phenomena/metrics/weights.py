"""How far, and in which direction, training moved the weights of an ensemble.

Two measurements that tell lazy from rich training without looking at the loss:

* :func:`relative_change`: ``‖θ − θ₀‖ / ‖θ₀‖`` per member. Lazy training (Chizat, Oyallon & Bach
  2019) fits the data while this stays ``O(1/α)``; rich training moves the weights by ``O(1)``.
* :func:`feature_alignment`: ``|cos|`` between first-layer weights and a known target direction
  (e.g. the hidden ``β`` of a single-index task). A random ``D``-dimensional direction has
  ``|cos| ≈ 1/√D``; learned features point at the target.

Both take stacked ``(members, ...)`` tensors, the ensemble layout of :mod:`phenomena.models`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor


def relative_change(params: Sequence[Tensor], initial: Sequence[Tensor]) -> Tensor:
    """``‖θ − θ₀‖ / ‖θ₀‖`` for each member, the norms taken over all the given tensors together.

    ``params`` and ``initial`` list the same tensors, each ``(members, ...)``; returns ``(members,)``.
    """
    params, initial = list(params), list(initial)
    if not params or len(params) != len(initial):
        raise ValueError(f"give the same non-empty list of tensors twice, got {len(params)} and {len(initial)}")
    members = params[0].shape[0]
    diff = torch.zeros(members, dtype=params[0].dtype, device=params[0].device)
    base = torch.zeros_like(diff)
    for p, p0 in zip(params, initial):
        if p.shape != p0.shape or p.shape[0] != members:
            raise ValueError(f"shapes differ or lack the ensemble axis of size {members}: {tuple(p.shape)} vs {tuple(p0.shape)}")
        diff = diff + (p.detach() - p0.detach()).reshape(members, -1).pow(2).sum(1)
        base = base + p0.detach().reshape(members, -1).pow(2).sum(1)
    if bool((base == 0).any()):
        raise ValueError("an initial parameter vector is zero: the relative change is undefined")
    return (diff / base).sqrt()


def feature_alignment(weight: Tensor, direction: Tensor, *, mode: Literal["top", "mean"] = "top") -> Tensor:
    """``|cos|`` between first-layer weights ``(members, width, D)`` (or ``(width, D)``) and ``direction`` ``(D,)``.

    ``mode="top"``: the top right-singular vector of each member's weight matrix, i.e. the top
    eigenvector of ``M = WᵀW/width``, the direction the layer as a whole amplifies most. It stays
    random (``|cos| ≈ 1/√D``) until a rank-one feature grows out of the random bulk.
    ``mode="mean"``: the mean over neurons of ``|cos(w_i, direction)|``, which needs every neuron
    to turn. Returns ``(members,)``, or a scalar for a single matrix.
    """
    if mode not in ("top", "mean"):
        raise ValueError(f"unknown mode {mode!r}; valid modes are: top, mean")
    single = weight.dim() == 2
    w = weight.detach().unsqueeze(0) if single else weight.detach()
    if w.dim() != 3 or direction.dim() != 1 or w.shape[-1] != direction.numel():
        raise ValueError(
            f"need weights (members, width, D) and a direction (D,), got {tuple(weight.shape)} and {tuple(direction.shape)}"
        )
    unit = direction.to(w) / direction.norm()
    if mode == "top":
        _, _, vh = torch.linalg.svd(w, full_matrices=False)
        out = (vh[:, 0, :] @ unit).abs()
    else:
        out = ((w @ unit).abs() / w.norm(dim=-1).clamp_min(torch.finfo(w.dtype).tiny)).mean(-1)
    return out[0] if single else out
