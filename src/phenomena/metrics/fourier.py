"""Fourier power of neurons over ``Z_p``: how the features of a network trained on ``Z_p`` look.

A neuron of a network fed ``onehot(a) ⊕ onehot(b)`` has one weight per residue for each operand,
``w_a(x)`` and ``w_b(x)``, ``x ∈ Z_p``. Nanda et al. (2023) and Tian (2025) find that after
grokking on modular addition these vectors are (nearly) pure waves, ``w(x) ≈ c·cos(2πkx/p + φ)``,
one frequency ``k`` per neuron. Here the discrete Fourier transform measures that:

* the power at frequency ``k`` is ``|ŵ(k)|² + |ŵ(p−k)|²`` (a real wave at ``k`` splits evenly
  between ``k`` and ``p − k``), for ``k = 1, …, (p−1)/2`` (odd ``p``);
* the constant part (``k = 0``) is left out: it is not a wave, and with one-hot inputs it only
  shifts the neuron's pre-activation by the same amount for every residue;
* a neuron's spectrum adds the spectra of its weights on every operand, and its *top-frequency
  fraction* is the largest power over the total: 1 for a pure wave, ``2/(p−1)`` for white noise.
"""

from __future__ import annotations

import torch
from torch import Tensor


def fourier_power(values: Tensor) -> Tensor:
    """Power of ``values`` (last axis: a function on ``Z_p``, ``p`` odd) at ``k = 1, …, (p−1)/2``.

    Returns ``(..., (p−1)/2)``; column ``k − 1`` is ``|v̂(k)|² + |v̂(p−k)|² = 2|v̂(k)|²`` with
    ``v̂(k) = Σ_x v(x) e^{−2πikx/p}``. By Parseval, the columns sum to ``p·‖v − mean(v)‖²``.
    """
    p = values.shape[-1]
    if p < 3 or p % 2 == 0:
        raise ValueError(f"the last axis must have odd length p >= 3 (a function on Z_p), got {p}")
    spectrum = torch.fft.rfft(values.to(torch.float64) if not values.is_floating_point() else values, dim=-1)
    return 2 * spectrum[..., 1:].abs() ** 2


def neuron_fourier_power(first_layer: Tensor, p: int) -> Tensor:
    """Spectrum of every neuron's input weights, summed over the operands.

    ``first_layer`` is ``(..., neurons, operands·p)``: the weights of a layer fed the one-hot
    concatenation ``onehot(a) ⊕ onehot(b) ⊕ …`` (e.g. ``MLP.weights[0]``, ``(members, hidden, 2p)``).
    Returns ``(..., neurons, (p−1)/2)``.
    """
    if first_layer.shape[-1] % p != 0:
        raise ValueError(f"the input axis ({first_layer.shape[-1]}) is not a multiple of p = {p}")
    blocks = first_layer.reshape(*first_layer.shape[:-1], first_layer.shape[-1] // p, p)
    return fourier_power(blocks).sum(-2)


def top_frequency_fraction(power: Tensor) -> tuple[Tensor, Tensor]:
    """``(fraction, k)``: the share of each spectrum's power at its strongest frequency, and that frequency.

    ``power`` is ``(..., (p−1)/2)`` as from :func:`fourier_power`; ``k`` counts from 1. A spectrum
    with no power at all has fraction ``nan``.
    """
    total = power.sum(-1)
    top, where = power.max(-1)
    fraction = torch.where(total > 0, top / total.clamp_min(torch.finfo(power.dtype).tiny), torch.nan)
    return fraction, where + 1


def active_neurons(norms: Tensor, threshold: float = 0.1) -> Tensor:
    """Neurons whose weight norm is at least ``threshold`` times the largest in their network.

    ``norms`` is ``(..., neurons)``. Weight decay switches most neurons of a grokked network off
    (their weights decay towards 0); their direction, and hence their spectrum, is noise that
    carries no output, so sparsity statistics count only the active ones.
    """
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    return norms >= threshold * norms.amax(-1, keepdim=True)
