"""Experiments of the chapter *depth-width-ratio*: many random MLPs at initialization, no training.

Every network gets the same input ``x`` (``‖x‖²/dim = 1``), equal hidden widths ``n``, no biases
and the critical ``C_W`` of its activation (:data:`phenomena.theory.pdlt.CRITICAL_C_W`). For each
network we keep the conditional variances ``G_ℓ = (C_W/n)‖σ(z^{(ℓ−1)})‖²`` of every preactivation
layer ``ℓ = 1 … depth+1`` (``G₁ = C_W``): all a kurtosis needs (:mod:`phenomena.metrics.moments`).

Two samplers draw the same law:

``"weights"``
    draws every weight matrix, ``(members, n, n)`` per layer, and multiplies: the networks
    themselves, as one batched computation. Costs ``n²`` normals per network and layer.
``"conditional"``
    draws ``z^{(ℓ+1)} = √G_{ℓ+1} · g`` with ``g ~ N(0, I_n)``. For one input this is the *same*
    distribution: given ``σ(z^{(ℓ)})``, the rows of a fresh Gaussian ``W`` make ``Wσ(z)`` an isotropic
    Gaussian vector of variance ``G_{ℓ+1}``, independent of everything below. Costs ``n`` normals per
    network and layer, which is what makes widths to 128 and aspect ratios to 1/4 affordable with
    the hundreds of thousands of networks the heavy tails need (``tests/test_depth_width_ratio.py``
    checks the two samplers agree).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..metrics import moments
from ..models.mlp import ACTIVATIONS
from ..theory import pdlt

SAMPLERS: tuple[str, ...] = ("weights", "conditional")


def dtype_for(activation: str, depth: int) -> torch.dtype:
    """float64 for tanh beyond 32 layers (its kernel decays as ``1/(2ℓ)``), float32 otherwise."""
    return torch.float64 if activation == "tanh" and depth > 32 else torch.float32


def sample_variances(
    activation: str,
    width: int,
    depth: int,
    members: int,
    generator: torch.Generator,
    *,
    sampler: str = "weights",
    dim: int | None = None,
    chunk: int | None = None,
    dtype: torch.dtype | None = None,
    keep_preactivations: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor | None]:
    """``G`` of ``members`` random critical MLPs with ``depth`` hidden layers of ``width`` units.

    Returns ``(variances, preactivations)``: ``variances`` is ``(members, depth + 1)`` in float64,
    column ``ℓ − 1`` holding ``G_ℓ`` (the last column is the output layer's); ``preactivations`` is
    ``(members, width, depth)`` (``z^{(1)} … z^{(depth)}``) when ``keep_preactivations``, else ``None``.
    Networks are drawn in chunks (default: about 2²⁴ weights at a time) to bound memory.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid samplers are: {', '.join(SAMPLERS)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid activations are: {', '.join(ACTIVATIONS)}")
    if width < 1 or depth < 1 or members < 2:
        raise ValueError(f"need width >= 1, depth >= 1 and members >= 2, got {width}, {depth}, {members}")
    c_w = pdlt.critical_c_w(activation)
    act = ACTIVATIONS[activation]
    dim = width if dim is None else int(dim)
    dtype = dtype_for(activation, depth) if dtype is None else dtype
    per_net = width * (width if sampler == "weights" else 1)
    chunk = max(1, min(members, (1 << 24) // per_net)) if chunk is None else int(chunk)
    x = torch.ones(dim, dtype=dtype, device=device)  # ‖x‖²/dim = 1: the kernel starts at its fixed point
    g_out = torch.empty(members, depth + 1, dtype=torch.float64)
    z_out = torch.empty(members, width, depth, dtype=dtype) if keep_preactivations else None
    for start in range(0, members, chunk):
        m = min(chunk, members - start)
        g = torch.empty(m, depth + 1, dtype=torch.float64)
        g[:, 0] = c_w * float(x.square().mean())
        a = x.expand(m, dim)  # the input, then each layer's activations
        for layer in range(depth):  # z^{(layer+1)}, then G_{layer+2} from its activations
            if sampler == "weights":
                fan_in = dim if layer == 0 else width
                w = torch.randn(m, width, fan_in, generator=generator, dtype=dtype, device=device)
                z = torch.bmm(w, a.unsqueeze(-1)).squeeze(-1) * math.sqrt(c_w / fan_in)
            else:
                noise = torch.randn(m, width, generator=generator, dtype=dtype, device=device)
                z = noise * g[:, layer].to(dtype).sqrt().unsqueeze(1)
            a = act(z)
            g[:, layer + 1] = moments.conditional_variance(a.to(torch.float64), c_w).cpu()
            if z_out is not None:
                z_out[start : start + m, :, layer] = z.cpu()
        g_out[start : start + m] = g
    return g_out, z_out


@dataclass
class Ensemble:
    """One activation and width: ``variances[network, ℓ−1] = G_ℓ`` and the per-layer table."""

    activation: str
    width: int
    variances: Tensor
    table: pd.DataFrame
    replicates: np.ndarray  # (bootstrap replicates, layers) values of κ̂
    preactivations: Tensor | None = None  # (networks, width, depth): z^{(1)} … z^{(depth)}, when kept


def layer_table(
    activation: str, width: int, variances: Tensor, *, replicates: int, generator: torch.Generator
) -> tuple[pd.DataFrame, np.ndarray]:
    """κ̂ with its bootstrap error at every layer, next to the exact form (scale-invariant) and PDLT's recursion."""
    kappa, se, reps = moments.bootstrap(
        variances, moments.kurtosis_from_variances, replicates=replicates, generator=generator
    )
    layers = np.arange(1, variances.shape[1] + 1)
    rec = pdlt.pdlt_recursion(activation, int(layers[-1]))
    table = pd.DataFrame({
        "activation": activation,
        "width": width,
        "layer": layers,
        "aspect_ratio": (layers - 1) / width,
        "kappa": kappa,
        "se": se,
        "mean_variance": variances.mean(0).numpy(),
        "mean_variance_se": variances.std(0).numpy() / math.sqrt(variances.shape[0]),
        "kappa_recursion": rec.kurtosis(width),
        "kernel_recursion": rec.kernel,
        "kernel_with_shift": rec.mean_variance(width),
    })
    if activation in pdlt.SCALE_INVARIANT_SLOPES:
        table["kappa_exact"] = pdlt.exact_kurtosis(activation, width, layers)
        table["z_score"] = (table["kappa"] - table["kappa_exact"]) / table["se"].where(table["se"] > 0)
    return table, reps


def run_ensemble(
    activation: str,
    width: int,
    depth: int,
    members: int,
    generator: torch.Generator,
    *,
    sampler: str = "weights",
    replicates: int = 200,
    keep_preactivations: bool = False,
    device: torch.device | str = "cpu",
) -> Ensemble:
    """Sample ``members`` networks and tabulate every layer (see :func:`layer_table`)."""
    g, z = sample_variances(activation, width, depth, members, generator, sampler=sampler, device=device,
                            keep_preactivations=keep_preactivations)
    table, reps = layer_table(activation, width, g, replicates=replicates, generator=generator)
    return Ensemble(activation, width, g, table, reps, z)


def width_scan(
    activations: Sequence[str],
    widths: Sequence[int],
    max_ratio: float,
    members: int,
    generator: torch.Generator,
    *,
    min_depth: int = 1,
    sampler: str = "conditional",
    replicates: int = 200,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Every activation at every width, to ``max(max_ratio·width, min_depth)`` hidden layers; one row per layer."""
    tables = []
    for activation in activations:
        for width in widths:
            depth = max(1, int(min_depth), round(max_ratio * width))
            ens = run_ensemble(activation, width, depth, members, generator, sampler=sampler,
                               replicates=replicates, device=device)
            tables.append(ens.table)
    return pd.concat(tables, ignore_index=True)


def at_depth(scan: pd.DataFrame, activation: str, hidden_layers: int) -> pd.DataFrame:
    """Rows of ``scan`` for networks with ``hidden_layers`` hidden layers (output layer ``ℓ = L + 1``), one per width."""
    return scan[(scan["activation"] == activation) & (scan["layer"] == hidden_layers + 1)].sort_values("width")


def at_ratio(scan: pd.DataFrame, activation: str, ratio: float) -> pd.DataFrame:
    """Rows of ``scan`` at aspect ratio ``L/n = ratio`` (``L = (ℓ−1)`` hidden layers), one per width."""
    sel = scan[(scan["activation"] == activation) & np.isclose(scan["aspect_ratio"], ratio)]
    return sel.sort_values("width")
