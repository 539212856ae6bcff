"""Coordinate sizes of activations and logits, and the refined coordinate check.

Width-scaling theory (Tensor Programs, Yang & Hu 2021) states its results about the *typical
entry* of a vector: a layer is stable when the root-mean-square entry of its activations stays
``Θ(1)`` as the width ``n`` grows, and it *learns features* when the change of that RMS entry
after training is ``Θ(1)`` too. So the measurements here are RMS values over the feature axis,
averaged over the batch, never norms (a norm grows as ``√n`` at fixed coordinate size).

The refined coordinate check of Haas et al. (2025) splits the change of a layer's
pre-activation ``h_t = W_t x_t`` into the *effective update* ``(W_t − W_0) x_t`` (what the
layer's own weights learned, applied to today's input) and the *propagated update*
``W_0 (x_t − x_0)`` (the initial weights applied to how the input has moved). Their width
exponents differ: a layer can look as if it learns features only because the layers below it
move.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rms(values: Tensor, *, dim: int = -1) -> Tensor:
    """Root-mean-square entry along ``dim`` (the feature axis), then averaged over every other axis
    except a leading ensemble axis: ``(members, batch, features)`` → ``(members,)``; a 2-d input
    ``(batch, features)`` gives a scalar.

    Non-finite entries give a non-finite result (a diverged member is reported, never hidden).
    """
    if values.dim() < 2:
        raise ValueError(f"rms needs at least (batch, features), got shape {tuple(values.shape)}")
    per_row = values.pow(2).mean(dim=dim).sqrt()
    if values.dim() == 2:
        return per_row.mean()
    return per_row.reshape(per_row.shape[0], -1).mean(dim=1)


def rms_change(after: Tensor, before: Tensor, *, dim: int = -1) -> Tensor:
    """RMS entry of ``after − before``: how far a layer's coordinates moved (same shapes as :func:`rms`)."""
    if after.shape != before.shape:
        raise ValueError(f"after and before must have one shape, got {tuple(after.shape)} and {tuple(before.shape)}")
    return rms(after - before, dim=dim)


def refined_coordinate_check(
    weight_t: Tensor, weight_0: Tensor, input_t: Tensor, input_0: Tensor, *, multiplier: float = 1.0
) -> dict[str, Tensor]:
    """The refined coordinate check for one linear layer ``h = m·W x`` of an ensemble.

    ``weight_*`` are ``(members, out, in)``; ``input_*`` are the layer's inputs, batch-major
    ``(members, batch, in)`` (or ``(batch, in)``, shared). Returns the RMS entry, ``(members,)``, of

    * ``"effective"``: ``m (W_t − W_0) x_t``, the update of the layer's own weights;
    * ``"propagated"``: ``m W_0 (x_t − x_0)``, the initial weights acting on the moved input;
    * ``"total"``: ``m (W_t x_t − W_0 x_0)``, their sum.
    """
    if weight_t.shape != weight_0.shape or weight_t.dim() != 3:
        raise ValueError(
            f"weights must be two (members, out, in) tensors of one shape, got {tuple(weight_t.shape)}, {tuple(weight_0.shape)}"
        )
    if input_t.shape != input_0.shape:
        raise ValueError(f"inputs must have one shape, got {tuple(input_t.shape)} and {tuple(input_0.shape)}")

    def apply(w: Tensor, x: Tensor) -> Tensor:
        return multiplier * (torch.einsum("eoi,bi->ebo", w, x) if x.dim() == 2 else torch.einsum("eoi,ebi->ebo", w, x))

    effective = apply(weight_t - weight_0, input_t)
    propagated = apply(weight_0, input_t - input_0)
    return {"effective": rms(effective), "propagated": rms(propagated), "total": rms(effective + propagated)}
