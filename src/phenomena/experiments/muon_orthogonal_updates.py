"""Experiments of the chapter *muon-orthogonal-updates*: Muon against AdamW on a small GPT.

Two ensembles of the same pre-LN GPT (:class:`phenomena.models.GPT`) train on an order-k Markov
language whose entropy rate is known exactly. One uses AdamW on every parameter; the other uses
Muon (:class:`phenomena.ensemble.Muon`) on the hidden matrices of the blocks (query, key, value,
attention output, MLP in and out, each orthogonalised as its own matrix) and AdamW with the same
betas on the embeddings, the read-out and the LayerNorm gains and biases, as Jordan's ``muon.py``
prescribes. Each ensemble's axis is learning rate × initialisation; member ``(init i, lr j)`` of
both ensembles starts from the same weights and sees the same minibatches, so the optimizer is the
only difference between the two.

The loss is measured on the targets that have at least ``order`` tokens before them, where the
entropy rate is the exact floor; the excess over the floor is what the race is timed on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..data import ContextMarkovLanguage
from ..ensemble import SGD, AdamW, EnsembleOptimizer, Muon, fit
from ..metrics.curves import NEVER, crossing_time
from ..models import GPT, GPTConfig, lm_loss
from ..theory.muon import NS_EPS, ns_polynomial

OPTIMIZERS: tuple[str, ...] = ("AdamW", "Muon")


def hidden_matrices(model: GPT) -> tuple[list[Tensor], list[Tensor]]:
    """Split a GPT's parameters: the blocks' linear weights (Muon's) and everything else (AdamW's).

    Embeddings and the read-out are matrices too, but not *hidden* ones: Jordan's ``muon.py`` gives
    them, and the LayerNorm gains and biases, to AdamW. The model has separate query, key and value
    matrices, so each is orthogonalised on its own (as a fused qkv split into three would be).
    """
    matrices = [p for block in model.blocks for name, p in block.named_parameters()
                if name.endswith("weight") and p.dim() == 3]
    ids = {id(p) for p in matrices}
    return matrices, [p for p in model.parameters() if id(p) not in ids]


@dataclass
class RaceResult:
    """One optimizer trained at every (init, lr) pair of a grid, as one ensemble.

    ``loss``: the training loss (nats/token, on targets with >= ``order`` tokens before them) before
    each step and after the last, ``(steps + 1, members)``, nan once a member diverged; member
    ``e = init·len(lrs) + j`` trains at ``lrs[j]``. ``muon_lr`` is Muon's rate (nan for AdamW),
    ``adamw_lr`` the AdamW rate of the non-hidden parameters (all parameters for AdamW).
    ``ns_inputs`` / ``ns_outputs``: for Muon, the NS input and output matrices logged at
    ``logged_steps`` (each ``(members, m, n)``, float32), empty for AdamW.
    """

    optimizer: str
    lrs: np.ndarray
    inits: int
    loss: np.ndarray
    diverged_at: np.ndarray
    ns_inputs: list[Tensor] = field(default_factory=list)
    ns_outputs: list[Tensor] = field(default_factory=list)
    logged_steps: list[int] = field(default_factory=list)

    def member_lr(self) -> np.ndarray:
        return np.tile(self.lrs, self.inits)


def initial_models(config: GPTConfig, inits: int, repeats: int, generator: torch.Generator) -> GPT:
    """A GPT with ``inits × repeats`` members: ``inits`` independent initialisations, each repeated."""
    small = GPT(GPTConfig(**{**config.__dict__, "members": inits}), generator)
    big = GPT(GPTConfig(**{**config.__dict__, "members": inits * repeats}), torch.Generator().manual_seed(0))
    with torch.no_grad():
        for (_, p), (_, q) in zip(small.named_parameters(), big.named_parameters()):
            q.copy_(p.repeat_interleave(repeats, dim=0))
    return big


def sample_batches(language: ContextMarkovLanguage, steps: int, inits: int, batch: int, length: int,
                   generator: torch.Generator) -> Tensor:
    """``(steps + 1, inits, batch, length + 1)`` token ids: one minibatch stream per initialisation."""
    tokens = language.sample((steps + 1) * inits * batch, length + 1, generator)
    return tokens.view(steps + 1, inits, batch, length + 1)


def train(language: ContextMarkovLanguage, optimizer: str, lrs: Sequence[float], *, inits: int, steps: int,
          batch: int, length: int, width: int, layers: int, heads: int, init_seed: int, data: Tensor,
          adamw_lr: float | None = None, betas: tuple[float, float] = (0.9, 0.95), momentum: float = 0.95,
          loss_scale: float = 1.0, log_steps: Sequence[int] = (), device: torch.device | str = "cpu") -> RaceResult:
    """Train one ensemble (``lrs`` × ``inits``) with ``optimizer`` (``"AdamW"`` or ``"Muon"``).

    ``init_seed`` seeds the initial weights (so two calls with the same seed start alike); ``data``
    comes from :func:`sample_batches`. For Muon, ``lrs`` is Muon's grid and the AdamW part runs at
    ``adamw_lr`` (one rate for all members). ``loss_scale`` multiplies the loss that is
    differentiated (a gradient ×``loss_scale``) but not the loss that is recorded.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if optimizer == "Muon" and adamw_lr is None:
        raise ValueError("Muon needs adamw_lr: the AdamW rate for embeddings, read-out and gains")
    grid = [float(v) for v in lrs]
    if not grid or min(grid) <= 0:
        raise ValueError(f"lrs must be a non-empty list of positive rates, got {list(lrs)}")
    if data.shape[:3] != (steps + 1, inits, batch) or data.shape[3] < 2:
        raise ValueError(f"data must be (steps + 1, inits, batch, length + 1), got {tuple(data.shape)}")
    device = torch.device(device)
    members = inits * len(grid)
    config = GPTConfig(vocab_size=language.vocab_size, context=length, layers=layers, heads=heads, width=width,
                       norm="pre", members=members)
    model = initial_models(config, inits, len(grid), torch.Generator().manual_seed(init_seed)).to(device)
    rates = torch.tensor(grid * inits, dtype=torch.float32, device=device)
    opt: EnsembleOptimizer
    if optimizer == "AdamW":
        opt = AdamW(model.parameters(), rates, betas=betas, weight_decay=0.0)
    else:
        matrices, others = hidden_matrices(model)
        opt = Muon(matrices, rates, momentum=momentum, layout="in_out", adamw_params=others, adamw_lr=adamw_lr,
                   adamw_betas=betas, adamw_eps=1e-8)
    data = data.to(device)
    which = torch.arange(inits, device=device).repeat_interleave(len(grid))
    skip = language.order - 1  # targets with >= order tokens before them
    logged = set(int(s) for s in log_steps)
    inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    done: list[int] = []
    count = [0]

    def loss() -> Tensor:
        t = count[0]
        count[0] += 1
        if isinstance(opt, Muon):
            if t - 1 in logged and opt.last_updates:
                inputs.extend(u.detach().cpu() for u in opt.last_inputs)
                outputs.extend(o.detach().cpu() for o in opt.last_updates)
                done.append(t - 1)
            opt.keep_updates = t in logged
        x = data[min(t, steps)][which]
        logits = model(x[..., :-1])
        per_member, _ = lm_loss(logits[:, :, skip:], x[..., 1:][:, :, skip:])
        return per_member if loss_scale == 1.0 else _Scaled.apply(per_member, loss_scale)

    history = fit(opt, loss, steps, on_divergence="mask")
    return RaceResult(optimizer=optimizer, lrs=np.asarray(grid), inits=inits, loss=history.loss.numpy(),
                      diverged_at=history.diverged_at.numpy(), ns_inputs=inputs, ns_outputs=outputs,
                      logged_steps=done)


class _Scaled(torch.autograd.Function):
    """The identity forward, the gradient times ``factor`` backward: a gradient spike of known size."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


# ----------------------------------------------------------------------------- claim 1: NS5 spectrum
def spectrum_check(inputs: Sequence[Tensor], outputs: Sequence[Tensor], steps: int = 5,
                   limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For every logged matrix of every member: ``σ(G)/(‖G‖_F + eps)`` and the measured ``σ(NS(G))``.

    Both sorted by the input's singular values (the output is ``U p∘steps(S/‖G‖) Vᵀ``, so the output
    singular value paired with ``σᵢ`` is ``uᵢᵀ NS(G) vᵢ``, read in float64 from the input's SVD).
    Returns two flat arrays ``(ratios, measured)``; the closed form is ``ns_polynomial(ratios, steps)``.
    ``limit`` caps the number of matrices used (the first ones).
    """
    ratios, measured = [], []
    n = 0
    for g_all, o_all in zip(inputs, outputs):
        for g, o in zip(g_all, o_all):
            if limit is not None and n >= limit:
                break
            g64 = g.double()
            u, s, vh = torch.linalg.svd(g64, full_matrices=False)
            paired = torch.einsum("ik,ij,kj->k", u, o.double(), vh)
            ratios.append((s / (torch.linalg.matrix_norm(g64) + NS_EPS)).numpy())
            measured.append(paired.numpy())
            n += 1
    if not ratios:
        raise ValueError("no logged matrices: train Muon with log_steps inside the run")
    return np.concatenate(ratios), np.concatenate(measured)


def matrices_logged(result: RaceResult) -> int:
    """How many (member, matrix, step) NS inputs a Muon run logged."""
    return sum(len(g) for g in result.ns_inputs)


# ----------------------------------------------------------------------------- claim 2: spectral bound
def step_norms(language: ContextMarkovLanguage, *, loss_scale: float, lr: float, steps: int, batch: int,
               length: int, width: int, layers: int, heads: int, init_seed: int, data_seed: int,
               optimizer: str = "Muon", device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """``‖ΔW‖₂ / (lr·√max(1, fan_out/fan_in))`` of every hidden matrix at each of ``steps`` steps.

    One member, trained on the gradient of ``loss_scale`` × the loss, by Muon or by SGD with the same
    Nesterov momentum (``optimizer="SGD"``: the update Muon orthogonalises, unorthogonalised). Returns
    ``(norms, rms)``: the normalised spectral norms ``(steps, matrices)`` and the gradient's
    root-mean-square size at the first step (to show the spike's size).
    """
    config = GPTConfig(vocab_size=language.vocab_size, context=length, layers=layers, heads=heads, width=width,
                       norm="pre", members=1)
    model = GPT(config, torch.Generator().manual_seed(init_seed)).to(device)
    matrices, others = hidden_matrices(model)
    if optimizer == "Muon":
        opt: EnsembleOptimizer = Muon(matrices, lr, layout="in_out", adamw_params=others, adamw_lr=1e-3)
    elif optimizer == "SGD":
        opt = SGD(matrices, lr, momentum=0.95, nesterov=True)
        for p in others:
            p.requires_grad_(False)
    else:
        raise ValueError(f"optimizer must be 'Muon' or 'SGD', got {optimizer!r}")
    scales = [math.sqrt(max(1.0, p.shape[-1] / p.shape[-2])) for p in matrices]
    data = language.sample(batch * steps, length + 1, torch.Generator().manual_seed(data_seed)).view(steps, batch, -1)
    skip = language.order - 1
    norms = np.zeros((steps, len(matrices)))
    rms = math.nan
    for t in range(steps):
        x = data[t].to(device)
        loss, _ = lm_loss(model(x[:, :-1])[:, :, skip:], x[:, 1:][:, skip:])
        grads = torch.autograd.grad(loss_scale * loss.sum(), opt.params)
        if t == 0:
            rms = float(torch.sqrt(sum((g**2).sum() for g in grads[: len(matrices)])
                                   / sum(g.numel() for g in grads[: len(matrices)])))
        before = [p.detach().clone() for p in matrices]
        opt.step(grads)
        for i, (p, b, s) in enumerate(zip(matrices, before, scales)):
            norms[t, i] = float(torch.linalg.matrix_norm((p.detach() - b)[0].double(), ord=2)) / (lr * s)
    return norms, np.asarray(rms)


# ----------------------------------------------------------------------------- claim 3: the race
def running_mean(curve: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` records, ``(records - window + 1, ...)``; record ``i`` ends at ``i + window - 1``."""
    c = np.asarray(curve, dtype=float)
    if window < 1 or window > len(c):
        raise ValueError(f"window must be in [1, {len(c)}], got {window}")
    cs = np.cumsum(np.concatenate([np.zeros((1,) + c.shape[1:]), c]), axis=0)
    return (cs[window:] - cs[:-window]) / window


def steps_to_target(result: RaceResult, floor: float, target: float, window: int) -> np.ndarray:
    """Per member: the first step at which the ``window``-step running mean of ``loss − floor`` is
    ``<= target`` (the step that ends the window), :data:`NEVER` if it never is, ``(members,)``."""
    smooth = running_mean(result.loss - floor, window)
    return crossing_time(smooth, target, interpolate=None) + (window - 1)


def best_lr(result: RaceResult, floor: float, target: float, window: int) -> tuple[float, float, np.ndarray]:
    """``(best mean steps, its lr, mean steps per lr)``: steps to target averaged over the inits,
    best over the grid (``inf`` where an init never reached it)."""
    per = steps_to_target(result, floor, target, window).reshape(result.inits, len(result.lrs))
    mean = per.mean(0)
    j = int(np.argmin(mean))
    return float(mean[j]), float(result.lrs[j]), mean


def flops_per_step(config: GPTConfig, batch: int, length: int, optimizer: str, ns_steps: int = 5) -> float:
    """Floating-point operations of one training step of one member, counted as matmul FLOPs.

    Forward and backward cost ``6·N·tokens`` for the ``N`` weights of the matrices a token passes
    through (the token embedding is a lookup) plus ``12·layers·T·width`` per token for the attention
    scores and their use (Kaplan et al.'s count). Muon adds, per hidden matrix ``m × n`` (``m ≤ n``)
    and NS iteration, ``2m²n`` for ``XXᵀ``, ``2m³`` for ``A²`` and ``2m²n`` for ``(bA + cA²)X``.
    """
    d, h = config.width, config.mlp_ratio * config.width
    shapes = [(d, d)] * 4 + [(d, h), (h, d)]
    per_layer = sum(a * b for a, b in shapes)
    n = config.layers * per_layer + d * config.vocab_size
    tokens = batch * length
    total = 6.0 * n * tokens + 12.0 * config.layers * length * d * tokens
    if optimizer == "Muon":
        for a, b in shapes:
            m, k = min(a, b), max(a, b)
            total += config.layers * ns_steps * (4.0 * m * m * k + 2.0 * m**3)
    return total


__all__ = [
    "NEVER", "OPTIMIZERS", "RaceResult", "best_lr", "flops_per_step", "hidden_matrices", "initial_models",
    "matrices_logged", "ns_polynomial", "running_mean", "sample_batches", "spectrum_check", "step_norms",
    "steps_to_target", "train",
]
