"""Sparse gradient exchange between simulated workers: Gradient Dropping and Deep Gradient Compression.

Lin, Han, Mao, Wang & Dally (ICLR 2018, "Deep Gradient Compression") let each of ``N`` workers
send only the largest 0.1% of its update and keep the rest locally until it has grown large enough
to be sent. Three exchanges are implemented here, with one verb each (``step``):

:class:`DenseMomentum`
    the baseline: all workers' gradients are summed, then momentum SGD (the paper's Eq. 3),
    optionally with the usual clipping of the summed gradient's norm.
:class:`GradientDropping`
    the paper's Algorithm 1 with momentum applied after aggregation (its Eq. 5): every worker
    accumulates its *raw* gradient, sends the top of the accumulator and clears what it sent.
:class:`DGCState`
    Deep Gradient Compression: momentum correction (each worker accumulates its own *velocity*,
    Eq. 7), local gradient clipping at ``clip·N^{-1/2}``, momentum-factor masking (the sent
    coordinates of both the velocity and the accumulator are zeroed) and a warm-up schedule of
    the density (:func:`warmup_density`).

Tensors carry the workers on the axis before the parameter axis: a layer's gradient is
``(..., workers, n)`` with any leading *group* axes (methods, seeds, learning rates), so that every
simulated cluster of every group runs as one batched operation, and the aggregated update is
``(..., n)``: the same for every worker, which keeps the workers' replicas identical.

Selecting the coordinates (:func:`sampled_topk_mask`) follows the official implementation
(github.com/synxlin/deep-gradient-compression, ``dgc/compression.py``): the threshold is the
top-``density`` quantile of a 1% sample of ``|v|``, lowered by 0.8 while fewer than 0.8·k
coordinates pass it, replaced by an exact top-k when more than 1.3·k pass, and the selection is
truncated to the first ``k``. The message size (:func:`message_bits`) is the paper's ``encode``:
32-bit values and 16-bit run lengths of the zeros before them (§3.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = [
    "PAPER_WARMUP_DENSITIES",
    "DGCState",
    "DenseMomentum",
    "Exchange",
    "GradientDropping",
    "closed_form_bits",
    "dense_bits",
    "exact_topk_mask",
    "message_bits",
    "sampled_topk_mask",
    "selected_count",
    "warmup_density",
]

VALUE_BITS = 32
"""Bits per sent value (§3.1: "the 32-bit nonzero gradient values")."""
RUN_BITS = 16
"""Bits per run length of zeros (§3.1: "16-bit run lengths of zeros")."""

PAPER_WARMUP_DENSITIES: tuple[float, ...] = (0.25, 0.0625, 0.015625, 0.004)
"""The warm-up densities of §4.1 (sparsity 75%, 93.75%, 98.4375%, 99.6%), before the final 99.9%."""


def _check_density(density: float) -> float:
    density = float(density)
    if not 0.0 < density <= 1.0:
        raise ValueError(f"density (the fraction of coordinates sent) must lie in (0, 1], got {density}")
    return density


def selected_count(n: int, density: float) -> int:
    """``k = ceil(density·n)``: how many of a layer's ``n`` coordinates one worker sends (at least 1).

    Per layer, as in the paper ("same compression ratio for all layers") and the repo's
    ``num_selects``: the ceiling makes a small layer (ten biases) far denser than ``density``.
    """
    if int(n) < 1:
        raise ValueError(f"a layer needs at least one coordinate, got n={n}")
    return min(int(n), max(1, math.ceil(_check_density(density) * int(n) - 1e-9)))


def exact_topk_mask(v: Tensor, density: float) -> Tensor:
    """The ``k = ceil(density·n)`` largest ``|v|`` of every row (last axis), as a boolean mask."""
    n = v.shape[-1]
    k = selected_count(n, density)
    if k >= n:
        return torch.ones_like(v, dtype=torch.bool)
    idx = v.abs().topk(k, dim=-1, sorted=False).indices
    return torch.zeros_like(v, dtype=torch.bool).scatter_(-1, idx, True)


def sampled_topk_mask(
    v: Tensor,
    density: float,
    sample_ratio: float = 0.01,
    generator: torch.Generator | None = None,
    *,
    sizes: Sequence[int] | None = None,
    lower: float = 0.8,
    upper: float = 1.3,
    max_iters: int = 10,
) -> Tensor:
    """At most ``k = ceil(density·n)`` coordinates of every row of ``v`` chosen by a sampled threshold.

    Why: an exact top-k over every layer of every worker costs more than the rest of a step; the
    paper (§5) and its code estimate the threshold on a sample instead. Per row: sample
    ``max(ceil(sample_ratio·n), ceil(2/density))`` entries of ``|v|`` uniformly (with replacement),
    take the ``ceil(density·samples)``-th largest as the threshold; while fewer than ``lower·k``
    entries reach it, multiply it by ``lower`` (at most ``max_iters`` times); if more than
    ``upper·k`` reach it, take the exact top-k instead; finally keep the first ``k`` entries (by
    position) that reach it. ``sample_ratio >= 1``, or a row too short to sample, gives the exact
    top-k (ties broken by position). ``v`` is ``(..., n)``; the mask has its shape.

    ``sizes`` splits the last axis into consecutive layers that each select their own
    ``ceil(density·n_l)`` (one call for a whole flattened network; default: one layer).
    """
    density = _check_density(density)
    if not 0.0 < float(sample_ratio):
        raise ValueError(f"sample_ratio must be positive (1 for an exact top-k), got {sample_ratio}")
    total = v.shape[-1]
    sizes = [total] if sizes is None else [int(s) for s in sizes]
    if sum(sizes) != total or min(sizes) < 1:
        raise ValueError(f"sizes {sizes} must be positive and add up to the last axis of v ({total})")
    rows = v.reshape(-1, total)
    importance = rows.abs()
    mask = torch.zeros_like(importance, dtype=torch.bool)
    lo = 0
    for n in sizes:
        mask[:, lo:lo + n] = _layer_mask(importance[:, lo:lo + n], density, float(sample_ratio), generator,
                                         lower, upper, int(max_iters))
        lo += n
    return mask.reshape(v.shape)


def _layer_mask(importance: Tensor, density: float, sample_ratio: float, generator: torch.Generator | None,
                lower: float, upper: float, max_iters: int) -> Tensor:
    """:func:`sampled_topk_mask` for one layer: ``importance`` is ``|v|``, ``(rows, n)``."""
    r, n = importance.shape
    k = selected_count(n, density)
    if k >= n:
        return torch.ones_like(importance, dtype=torch.bool)
    samples = max(math.ceil(sample_ratio * n), math.ceil(2 / density))
    if sample_ratio >= 1.0 or samples >= n:
        threshold = importance.topk(k, dim=1, sorted=False).values.min(1, keepdim=True).values
        mask = importance >= threshold
        count = mask.sum(1)
    else:
        gen_device = generator.device if generator is not None else importance.device
        pick = torch.randint(0, n, (r, samples), generator=generator, device=gen_device).to(importance.device)
        top = max(1, math.ceil(samples * density))
        threshold = importance.gather(1, pick).topk(top, dim=1, sorted=False).values.min(1, keepdim=True).values
        mask = importance >= threshold
        count = mask.sum(1)
        for _ in range(max_iters):
            low = count < lower * k
            if not bool(low.any()):
                break
            threshold = torch.where(low[:, None], threshold * lower, threshold)
            mask = importance >= threshold
            count = mask.sum(1)
        over = count > upper * k
        if bool(over.any()):  # the repo's resample: the exact top-k among the selected (= of the layer)
            for row in torch.nonzero(over).flatten().tolist():
                chosen = importance[row][mask[row]]
                mask[row] = importance[row] >= chosen.topk(k, sorted=False).values.min()
                count[row] = mask[row].sum()
    if bool((count > k).any()):  # keep the first k, as the repo's ``indices[:num_selects]``
        mask &= mask.cumsum(1) <= k
    return mask


def message_bits(mask: Tensor, *, value_bits: int = VALUE_BITS, run_bits: int = RUN_BITS) -> Tensor:
    """Bits of the paper's ``encode`` of one sparse layer, per row of ``mask`` (``(..., n)`` -> ``(...)``).

    Every sent value costs ``value_bits`` plus a ``run_bits`` count of the zeros before it; a run
    longer than ``2^run_bits − 1`` is split by zero-valued filler entries of the same cost, and the
    zeros after the last sent value need no entry (the receiver knows ``n``). Without long runs this
    is ``(value_bits + run_bits)·count``.
    """
    n = mask.shape[-1]
    rows = mask.reshape(-1, n).to(torch.bool)
    longest = 2**run_bits - 1
    if n <= longest + 1:  # no run of zeros can be longer than the 16-bit count
        return (rows.sum(1) * (value_bits + run_bits)).cpu().reshape(mask.shape[:-1])
    out = torch.zeros(rows.shape[0], dtype=torch.int64)
    for r in range(rows.shape[0]):
        where = torch.nonzero(rows[r]).flatten().cpu()
        if where.numel() == 0:
            continue
        gaps = torch.diff(where, prepend=torch.tensor([-1])) - 1
        fillers = torch.div(gaps, longest + 1, rounding_mode="floor").sum()
        out[r] = (where.numel() + int(fillers)) * (value_bits + run_bits)
    return out.reshape(mask.shape[:-1])


def closed_form_bits(sizes: Sequence[int], density: float, *, value_bits: int = VALUE_BITS,
                     run_bits: int = RUN_BITS) -> int:
    """``Σ_l ceil(density·n_l)·(value_bits + run_bits)``: one worker's message when every layer sends its k."""
    return sum(selected_count(n, density) for n in sizes) * (value_bits + run_bits)


def dense_bits(sizes: Sequence[int], *, value_bits: int = VALUE_BITS) -> int:
    """``value_bits·Σ_l n_l``: one worker's dense gradient."""
    return value_bits * sum(int(n) for n in sizes)


def warmup_density(step: int, steps: int, final: float, *, warmup_fraction: float = 0.1,
                   stages: Sequence[float] = PAPER_WARMUP_DENSITIES) -> float:
    """Density at ``step`` of ``steps``: the paper's warm-up stages over the first ``warmup_fraction``
    of the steps (equal parts), then ``final``; a stage sparser than ``final`` is raised to it.

    Why steps, not epochs: a small data set has a few dozen steps per epoch, and the warm-up is
    about letting the early, large gradients through while the network changes fast (§3.3).
    """
    final = _check_density(final)
    if not 0.0 <= warmup_fraction < 1.0:
        raise ValueError(f"warmup_fraction must lie in [0, 1), got {warmup_fraction}")
    warm = int(round(warmup_fraction * steps))
    if warm == 0 or step >= warm or not stages:
        return final
    stage = min(len(stages) - 1, int(step * len(stages) // warm))
    return max(float(stages[stage]), final)


def warmup_steps(steps: int, warmup_fraction: float = 0.1) -> int:
    """The first step after the warm-up of :func:`warmup_density`."""
    return int(round(warmup_fraction * steps))


@dataclass
class Exchange:
    """What one step of an exchange returns.

    ``update`` ``(..., n)``: the direction every worker subtracts, times the learning rate;
    ``mask`` ``(..., workers, n)``: what each worker sent (``None`` for a dense exchange);
    ``sent`` the flat indices of ``mask``'s true entries (into ``mask.reshape(-1)``)."""

    update: Tensor
    mask: Tensor | None
    sent: Tensor | None = None


def _check_grad(grad: Tensor, sizes: Sequence[int] | None) -> None:
    if grad.dim() < 2:
        raise ValueError(f"grad must be (..., workers, n), got shape {tuple(grad.shape)}")
    if sizes is not None and sum(int(s) for s in sizes) != grad.shape[-1]:
        raise ValueError(f"layer sizes {list(sizes)} do not add up to the gradient's last axis {grad.shape[-1]}")


def _clip(grad: Tensor, threshold: float | None) -> Tensor:
    """Scale each row so that its norm (over all layers) is at most ``threshold`` (Pascanu et al. 2013)."""
    if threshold is None:
        return grad
    norms = grad.norm(dim=-1, keepdim=True)
    if bool((norms <= threshold).all()):
        return grad
    return grad * torch.clamp(threshold / (norms + 1e-6), max=1.0)


def _take_sent(v: Tensor, mask: Tensor, also_clear: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``Σ_workers v⊙mask`` ``(..., n)`` and the flat indices sent; then ``v`` (and ``also_clear``) zeroed where sent.

    Works on the flat indices of the sent entries: the mask is sparse, so this touches a few
    hundred numbers per worker instead of every coordinate."""
    n, workers = v.shape[-1], v.shape[-2]
    flat_v = v.view(-1)
    idx = mask.reshape(-1).nonzero().squeeze(1)
    values = flat_v[idx]
    target = torch.div(idx, workers * n, rounding_mode="floor") * n + idx % n
    out = torch.zeros(v.numel() // workers, dtype=v.dtype, device=v.device)
    out.index_add_(0, target, values)
    flat_v[idx] = 0.0
    if also_clear is not None:
        also_clear.view(-1)[idx] = 0.0
    return out.view(*v.shape[:-2], n), idx


@dataclass
class DenseMomentum:
    """Dense synchronous momentum SGD (Eq. 3): ``u ← m·u + Σ_k G^k``; the update is ``u``.

    ``grad`` is ``(..., workers, n)``; ``clip`` (optional) bounds the norm of the summed gradient
    ``Σ_k G^k``, the conventional clipping after aggregation."""

    momentum: float = 0.9
    clip: float | None = None
    sizes: Sequence[int] | None = None
    u: Tensor | None = field(default=None, repr=False)

    def step(self, grad: Tensor, density: float = 1.0, generator: torch.Generator | None = None) -> Exchange:
        _check_grad(grad, self.sizes)
        total = _clip(grad.sum(-2), self.clip)
        if self.u is None:
            self.u = torch.zeros_like(total)
        self.u.mul_(self.momentum).add_(total)
        return Exchange(update=self.u.clone(), mask=None)


@dataclass
class GradientDropping:
    """Gradient Dropping (Aji & Heafield 2017; the DGC paper's Algorithm 1 with momentum after aggregation, Eq. 5).

    Every worker adds its gradient to a local accumulator ``v_k``, sends the top ``density`` of each
    layer (``sizes``) of it and clears what it sent; the server sums the sparse messages and applies
    momentum SGD to the sum. Between two sends of a coordinate the momentum discount ``Σ m^τ`` is
    lost (§3.2): a coordinate that waits ``T`` steps under a constant gradient ``g`` arrives as ``g·T``.
    """

    momentum: float = 0.9
    sample_ratio: float = 0.01
    sizes: Sequence[int] | None = None
    v: Tensor | None = field(default=None, repr=False)
    u: Tensor | None = field(default=None, repr=False)

    def step(self, grad: Tensor, density: float, generator: torch.Generator | None = None) -> Exchange:
        _check_grad(grad, self.sizes)
        if self.v is None:
            self.v = torch.zeros_like(grad)
            self.u = torch.zeros_like(grad[..., 0, :])
        self.v.add_(grad)
        mask = sampled_topk_mask(self.v, density, self.sample_ratio, generator, sizes=self.sizes)
        sent, idx = _take_sent(self.v, mask)
        self.u.mul_(self.momentum).add_(sent)
        return Exchange(update=self.u.clone(), mask=mask, sent=idx)


@dataclass
class DGCState:
    """Deep Gradient Compression on every worker: ``u_k ← m·u_k + clip(G^k)``, ``v_k ← v_k + u_k``,
    send the top ``density`` of each layer of ``v_k``, zero ``v_k`` (and ``u_k``, with ``masking``)
    where sent; the update is the sum of the messages (Eq. 7 and §3.3).

    ``clip`` is the *global* threshold: each worker clips its own gradient's norm at
    ``clip·N^{-1/2}`` before adding it (§3.2, local gradient clipping), which equals the global one
    when the workers' gradients are independent with equal norms. With ``density = 1`` and
    ``masking=False`` this is dense momentum SGD exactly (momentum correction restores it); with
    masking, a coordinate sent at every step keeps no momentum.
    """

    momentum: float = 0.9
    clip: float | None = None
    masking: bool = True
    sample_ratio: float = 0.01
    sizes: Sequence[int] | None = None
    u: Tensor | None = field(default=None, repr=False)
    v: Tensor | None = field(default=None, repr=False)

    def step(self, grad: Tensor, density: float, generator: torch.Generator | None = None) -> Exchange:
        _check_grad(grad, self.sizes)
        workers = grad.shape[-2]
        grad = _clip(grad, None if self.clip is None else self.clip / math.sqrt(workers))
        if self.u is None:
            self.u = torch.zeros_like(grad)
            self.v = torch.zeros_like(grad)
        self.u.mul_(self.momentum).add_(grad)
        self.v.add_(self.u)
        mask = sampled_topk_mask(self.v, density, self.sample_ratio, generator, sizes=self.sizes)
        sent, idx = _take_sent(self.v, mask, self.u if self.masking else None)
        return Exchange(update=sent, mask=mask, sent=idx)
