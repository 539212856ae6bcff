"""Gradient spikes in a recorded trajectory: the gradient spike score of Huang et al. (2025).

``GSS(g_i) = |g_i| / ((1/(T+1)) Σ_{j=0..T} |g_j|)``: a coordinate's gradient at step ``i`` over its
mean magnitude along the whole trajectory of ``T+1`` steps (arXiv 2501.06842, Sec. 2; a spike is
``GSS > 50``, the criterion of its Fig. 2). The score is relative to the coordinate's own history,
so coordinates of very different scales are judged alike.
"""

from __future__ import annotations

import torch
from torch import Tensor

SPIKE_SCORE = 50.0
"""The paper's threshold: a gradient with ``GSS > 50`` is a spike (Fig. 2)."""


def gradient_spike_score(grads: Tensor, dim: int = 0) -> Tensor:
    """``|g| / mean(|g|)`` along ``dim`` (the steps axis) for every coordinate; same shape as ``grads``.

    A coordinate whose gradient was zero at every step has score 0, not nan.
    """
    if grads.dim() == 0 or grads.shape[dim] < 2:
        raise ValueError(f"need a trajectory of at least 2 steps along dim {dim}, got shape {tuple(grads.shape)}")
    magnitude = grads.abs()
    mean = magnitude.mean(dim=dim, keepdim=True)
    return torch.where(mean > 0, magnitude / torch.where(mean > 0, mean, torch.ones_like(mean)), torch.zeros_like(mean))


def spikes(grads: Tensor, dim: int = 0, threshold: float = SPIKE_SCORE) -> Tensor:
    """Boolean mask of the entries whose :func:`gradient_spike_score` exceeds ``threshold`` (50, the paper's)."""
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return gradient_spike_score(grads, dim) > threshold
