"""Attention entropy: how spread out a softmax attention distribution is.

Zhai et al. (2023) track the entropy of every head's attention rows: a head whose entropy
falls towards 0 attends to a single key ("entropy collapse"), which in their experiments comes
before the loss diverges. The maximal value for a query that sees ``n`` keys is ``log n``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def attention_entropy(probs: Tensor) -> Tensor:
    """Entropy in nats over the last axis, ``-Σ p log p`` with ``0 log 0 = 0``: shape ``probs.shape[:-1]``.

    ``probs`` are attention probabilities (rows summing to 1, masked keys exactly 0), e.g. the
    ``(ensemble, batch, heads, T, T)`` tensors of :class:`phenomena.models.gpt.Probes`.
    """
    if not torch.is_tensor(probs) or not probs.is_floating_point():
        raise ValueError(f"probs must be a floating-point tensor of probabilities, got {type(probs).__name__}")
    if probs.dim() == 0:
        raise ValueError("probs needs at least one axis (the distribution's)")
    return -torch.where(probs > 0, probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log(),
                        torch.zeros_like(probs)).sum(-1)
