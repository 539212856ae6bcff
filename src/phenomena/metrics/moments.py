"""Kurtosis of preactivations from an ensemble of networks, and bootstrap errors over networks.

Given one input, a layer-``ℓ`` preactivation of a random MLP is, conditional on the layer below,
Gaussian with variance ``G_ℓ = C_b + (C_W/n)‖σ(z^{(ℓ-1)})‖²``. Hence ``E z⁴ = 3 E G²`` and
``E z² = E G``, and the excess kurtosis is

    κ̂ = 3 · mean(G²) / mean(G)² − 3,

with the means over networks. This *G-estimator* is the raw fourth-moment estimator with the
Gaussian noise of the last layer integrated out exactly: same expectation, far smaller variance.
The raw estimator (:func:`raw_kurtosis`) sums ``z⁴`` over units and networks; its heavy upper tail
makes it read low in most finite ensembles at large depth-to-width ratio.

Units within one network share ``G`` and are dependent, so errors are bootstrapped over
*networks*, never over units (:func:`bootstrap`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

ArrayLikeOrTensor = NDArray | Tensor
"""Samples as a numpy array or a torch tensor (moved to the CPU in float64)."""


def conditional_variance(activations: Tensor, c_w: float, c_b: float = 0.0) -> Tensor:
    """``G = C_b + (C_W/n)‖σ(z)‖²`` over the last axis (the ``n`` units of a layer's activations ``σ(z)``)."""
    if activations.dim() < 1 or activations.shape[-1] < 1:
        raise ValueError(f"activations need a last axis of units, got shape {tuple(activations.shape)}")
    return c_b + c_w * activations.square().mean(-1)


def kurtosis_from_variances(variances: ArrayLikeOrTensor, weights: NDArray | None = None) -> NDArray:
    """The G-estimator ``3·mean(G²)/mean(G)² − 3`` along axis 0 (networks); other axes (layers) kept.

    ``weights`` (``(replicates, networks)`` counts) returns one estimate per replicate: the
    bootstrap without copying the data.
    """
    g = _as_numpy(variances)
    if g.ndim == 0 or g.shape[0] < 2:
        raise ValueError(f"need at least 2 networks along axis 0, got shape {g.shape}")
    if weights is None:
        m1, m2 = g.mean(0), (g * g).mean(0)
    else:
        w = np.asarray(weights, dtype=float)
        total = w.sum(1, keepdims=True)
        flat = g.reshape(g.shape[0], -1)
        m1 = (w @ flat / total).reshape((w.shape[0],) + g.shape[1:])
        m2 = (w @ (flat * flat) / total).reshape((w.shape[0],) + g.shape[1:])
    return 3 * m2 / (m1 * m1) - 3


def raw_kurtosis(preactivations: ArrayLikeOrTensor, weights: NDArray | None = None) -> NDArray:
    """The naive estimator ``mean(z⁴)/mean(z²)² − 3`` over networks and units of ``(networks, units, ...)``.

    ``weights`` as in :func:`kurtosis_from_variances` resamples networks (whole networks, with all
    their units), for a bootstrap error comparable with the G-estimator's.
    """
    z = _as_numpy(preactivations)
    if z.ndim < 2:
        raise ValueError(f"preactivations must be (networks, units, ...), got shape {z.shape}")
    z2 = z * z
    s2, s4 = z2.mean(1), (z2 * z2).mean(1)  # per network: units are not independent draws
    if weights is None:
        return s4.mean(0) / s2.mean(0) ** 2 - 3
    w = np.asarray(weights, dtype=float)
    total = w.sum(1, keepdims=True)
    flat2, flat4 = s2.reshape(s2.shape[0], -1), s4.reshape(s4.shape[0], -1)
    m2 = (w @ flat2 / total).reshape((w.shape[0],) + s2.shape[1:])
    m4 = (w @ flat4 / total).reshape((w.shape[0],) + s4.shape[1:])
    return m4 / m2**2 - 3


def bootstrap_weights(networks: int, replicates: int, generator: torch.Generator) -> NDArray:
    """``(replicates, networks)`` resampling counts: how often each network is drawn in each replicate."""
    if networks < 2 or replicates < 2:
        raise ValueError(f"need networks >= 2 and replicates >= 2, got {networks} and {replicates}")
    idx = torch.randint(0, networks, (replicates, networks), generator=generator)
    offset = torch.arange(replicates).unsqueeze(1) * networks
    counts = torch.bincount((idx + offset).reshape(-1), minlength=replicates * networks)
    return counts.reshape(replicates, networks).to(torch.float64).numpy()


def bootstrap(
    samples: ArrayLikeOrTensor,
    statistic: Callable[[NDArray, NDArray | None], NDArray],
    *,
    replicates: int = 200,
    generator: torch.Generator,
    chunk: int = 50,
) -> tuple[NDArray, NDArray, NDArray]:
    """Estimate, bootstrap standard error and replicate values of ``statistic`` over networks (axis 0).

    ``statistic(samples, weights)`` must accept ``weights=None`` (the plain estimate) or a
    ``(k, networks)`` matrix of resampling counts (``k`` estimates), as
    :func:`kurtosis_from_variances` does. Returns ``(estimate, se, replicate_values)``.
    """
    x = _as_numpy(samples)
    estimate = np.asarray(statistic(x, None))
    values = []
    for start in range(0, replicates, chunk):
        w = bootstrap_weights(x.shape[0], min(chunk, replicates - start), generator)
        values.append(np.asarray(statistic(x, w)))
    reps = np.concatenate(values, axis=0)
    return estimate, reps.std(0, ddof=1), reps


def growth_coefficient(variances: ArrayLikeOrTensor, width: int, weights: NDArray | None = None) -> NDArray:
    """``n·(e^s − 1)``, with ``s`` the least-squares slope over layers (axis 1) of ``log(1 + κ̂/3)``.

    ``1 + κ/3 = E G²/(E G)²``. For the scale-invariant class at criticality it grows by exactly
    ``1 + c/n`` per layer, so this reads off ``c = 3A₄/A₂² − 1`` (5 for ReLU, 2 for linear), the
    coefficient of PDLT's leading-order ``V/(nK²) = c·ℓ/n``, from every layer at once.
    ``weights`` as in :func:`kurtosis_from_variances` (one value per bootstrap replicate).
    """
    g = _as_numpy(variances)
    if g.ndim != 2 or g.shape[1] < 2:
        raise ValueError(f"variances must be (networks, layers) with >= 2 layers, got shape {g.shape}")
    y = np.log1p(np.atleast_2d(kurtosis_from_variances(g, weights)) / 3)
    layers = np.arange(g.shape[1], dtype=float)
    lc = layers - layers.mean()
    slope = (y - y.mean(1, keepdims=True)) @ lc / (lc @ lc)
    out = width * np.expm1(slope)
    return out[0] if weights is None else out


def _as_numpy(x: object) -> NDArray:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=float)
