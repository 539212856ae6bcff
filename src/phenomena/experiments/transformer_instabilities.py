"""Experiments of the chapter *transformer-instabilities*: LR grids of small GPTs with and without
qk-layernorm and z-loss (Wortsman et al. 2023).

One switch setting (qk-layernorm on/off, z-loss coefficient) is one batched GPT whose ensemble
axis is the learning-rate grid: every member starts from the *same* initial weights and sees the
same minibatches, so the learning rate is the only thing that differs along the axis, as in the
paper's LR-vs-loss curves. The optimizer follows the paper where it matters: AdamW with
``β₂ = 0.95``, linear warm-up then cosine decay, and *independent* weight decay (the weights shrink
by ``λ·s(t)`` per step, ``s(t)`` the schedule's factor, whatever the base learning rate).

Every training forward pass also reports the largest pre-softmax attention logit of every head
and the mean ``log Z`` of the output softmax, so the two instabilities the paper reproduces at
small scale (attention-logit growth, output-logit divergence) are read off the same steps that
train the model, at no extra cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import MarkovLanguage
from ..ensemble import AdamW, fit
from ..metrics.curves import capped_loss
from ..models import GPT, GPTConfig, lm_loss


@dataclass
class GridResult:
    """One switch setting trained at every learning rate of a grid (the ensemble axis).

    ``loss``: training loss before each step and after the last, ``(steps + 1, E)`` (cross-entropy
    plus the z-loss term, nan once a member diverged); ``max_logit``: largest attention logit over
    layers and heads at each step, ``(steps + 1, E)``; ``log_z``: mean log-normaliser of the output
    softmax, ``(steps + 1, E)``; ``final_loss``: cross-entropy (nats/token, no z-loss term) on a
    held-out batch after training, nan for diverged members; ``initial_loss``: the same at
    initialisation (one number: every member starts from the same weights).
    """

    qk_layernorm: bool
    z_loss: float
    lrs: np.ndarray
    loss: np.ndarray
    max_logit: np.ndarray
    log_z: np.ndarray
    final_loss: np.ndarray
    initial_loss: float
    diverged_at: np.ndarray

    @property
    def label(self) -> str:
        qk = "qk-LN" if self.qk_layernorm else "no qk-LN"
        return f"{qk}, z-loss {self.z_loss:g}"


def schedule(step: int, steps: int, warmup: int) -> float:
    """The paper's learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_lr_grid(
    language: MarkovLanguage,
    lrs: Sequence[float],
    *,
    qk_layernorm: bool,
    z_loss: float,
    steps: int,
    warmup: int,
    width: int,
    layers: int,
    heads: int,
    batch: int,
    length: int,
    weight_decay: float = 1e-4,
    betas: tuple[float, float] = (0.9, 0.95),
    eval_batch: int = 256,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> GridResult:
    """Train one pre-LN GPT per learning rate, all at once, and record the two instabilities' probes.

    ``generator`` draws the initial weights (shared by all members), the training minibatches (one
    fresh batch of ``batch`` sequences of ``length`` tokens per step, shared by all members) and the
    held-out evaluation batch, in that order, so that two settings trained with equally seeded
    generators see the same data. A member whose loss turns non-finite is frozen and its final
    loss is nan (the paper's ``min(ℓ, ℓ₀)`` then counts it as no better than the initial model).
    """
    if steps < 1 or not 0 <= warmup <= steps:
        raise ValueError(f"need steps >= 1 and 0 <= warmup <= steps, got steps={steps}, warmup={warmup}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    device = torch.device(device)
    rates = torch.as_tensor(list(lrs), dtype=torch.float32)
    if rates.dim() != 1 or len(rates) < 1 or not bool((rates > 0).all()):
        raise ValueError(f"lrs must be a non-empty list of positive learning rates, got {list(lrs)}")
    config = GPTConfig(vocab_size=language.vocab_size, context=length, layers=layers, heads=heads, width=width,
                       norm="pre", qk_layernorm=qk_layernorm, members=len(rates))
    model = GPT(config, generator).share_init().to(device)
    rates = rates.to(device)
    # independent weight decay: AdamW shrinks by lr·wd per step, so wd = λ/lr makes it λ·s(t)
    optimizer = AdamW(model.parameters(), rates, betas=betas, weight_decay=weight_decay / rates)
    data = language.sample(batch * (steps + 1), length + 1, generator).view(steps + 1, batch, length + 1).to(device)
    held_out = language.sample(eval_batch, length + 1, generator).to(device)
    initial = _evaluate(model, held_out)
    max_logits: list[Tensor] = []
    log_zs: list[Tensor] = []

    def loss() -> Tensor:
        t = len(max_logits)
        optimizer.lr = rates * schedule(t, steps, warmup)
        x = data[t]
        logits, probes = model(x[:, :-1], probe=True)
        per_member, log_z = lm_loss(logits, x[:, 1:], z_loss=z_loss)
        max_logits.append(probes.max_logit.detach().flatten(1).amax(1))
        log_zs.append(log_z)
        return per_member

    history = fit(optimizer, loss, steps, on_divergence="mask")
    final = _evaluate(model, held_out)
    diverged = history.diverged_at.numpy()
    final[diverged >= 0] = np.nan
    return GridResult(
        qk_layernorm=qk_layernorm,
        z_loss=z_loss,
        lrs=np.asarray(list(lrs), float),
        loss=history.loss.numpy(),
        max_logit=_pad(max_logits, steps + 1),
        log_z=_pad(log_zs, steps + 1),
        final_loss=final,
        initial_loss=float(np.nanmean(initial)),
        diverged_at=diverged,
    )


def _pad(rows: list[Tensor], n: int) -> np.ndarray:
    """Stack per-step records into ``(n, E)``; steps after an early stop (all members dead) are nan."""
    out = torch.stack(rows).float().cpu().numpy()
    if len(out) < n:
        out = np.concatenate([out, np.full((n - len(out), out.shape[1]), np.nan)])
    return out


@torch.no_grad()
def _evaluate(model: GPT, tokens: Tensor) -> np.ndarray:
    """Cross-entropy per member (nats/token, no z-loss term) on a fixed batch."""
    model.eval()
    loss, _ = lm_loss(model(tokens[:, :-1]), tokens[:, 1:])
    model.train()
    return loss.float().cpu().numpy()


def lr_sensitivity(final_loss: np.ndarray, initial_loss: float, best_loss: float | None = None) -> float:
    """Wortsman et al.'s LR sensitivity: ``E_η[min(ℓ(A(η)), ℓ₀) − ℓ*]`` over the grid's learning rates.

    ``ℓ(A(η))`` is the final loss at rate ``η`` (nan: diverged), ``ℓ₀`` the loss at initialisation,
    ``ℓ*`` the best final loss over the grid (``best_loss`` overrides it). A run that diverged or
    ended worse than where it started counts as ``ℓ₀``.
    """
    capped = capped_loss(final_loss, initial_loss)
    best = float(np.min(capped)) if best_loss is None else float(best_loss)
    return float(np.mean(capped - best))


def summary(runs: Sequence[GridResult], entropy_rate: float) -> pd.DataFrame:
    """One row per (setting, learning rate): final loss, its excess over the floor, peak attention logit, last log Z."""
    rows = []
    for r in runs:
        log_z = final_log_z(r)
        for e, lr in enumerate(r.lrs):
            rows.append({
                "setting": r.label,
                "lr": lr,
                "final_loss": r.final_loss[e],
                "excess_over_floor": r.final_loss[e] - entropy_rate,
                "max_attn_logit_init": r.max_logit[0, e],
                "max_attn_logit_peak": np.nanmax(r.max_logit[:, e]),
                "log_z_end": log_z[e],
                "diverged": bool(r.diverged_at[e] >= 0),
            })
    return pd.DataFrame(rows)


PAPER_LR_RANGE: tuple[float, float] = (3e-4, 3e-1)
"""The learning-rate interval ``[a, b]`` over which Wortsman et al. average the LR sensitivity."""


def member(run: GridResult, lr: float) -> int:
    """Index of the grid member trained at ``lr`` (a ValueError names the grid if it is not there)."""
    hits = np.nonzero(np.isclose(run.lrs, lr, rtol=1e-6))[0]
    if hits.size == 0:
        raise ValueError(f"learning rate {lr:g} is not in the grid; the grid is {', '.join(f'{x:g}' for x in run.lrs)}")
    return int(hits[0])


def sensitivity(run: GridResult, lr_range: tuple[float, float] = PAPER_LR_RANGE) -> float:
    """:func:`lr_sensitivity` of one setting over the grid's learning rates inside ``lr_range``."""
    low, high = lr_range
    inside = (run.lrs >= low * (1 - 1e-6)) & (run.lrs <= high * (1 + 1e-6))
    if not inside.any():
        raise ValueError(f"no learning rate of the grid lies in [{low:g}, {high:g}]")
    return lr_sensitivity(run.final_loss[inside], run.initial_loss)


def logit_growth(run: GridResult, lr: float) -> float:
    """Peak over training of the largest attention logit, divided by its value at initialisation, at ``lr``."""
    e = member(run, lr)
    return float(np.nanmax(run.max_logit[:, e]) / run.max_logit[0, e])


def excess_loss(run: GridResult, lr: float, entropy_rate: float) -> float:
    """Final loss minus the exact floor at ``lr``; a diverged run counts as its initial loss (the paper's cap)."""
    final = run.final_loss[member(run, lr)]
    return float(capped_loss(final, run.initial_loss) - entropy_rate)


def final_log_z(run: GridResult) -> np.ndarray:
    """Mean ``log Z`` of the output softmax at each member's last finite step, ``(E,)`` (nan if none)."""
    out = np.full(run.log_z.shape[1], np.nan)
    for e in range(run.log_z.shape[1]):
        finite = np.isfinite(run.log_z[:, e])
        if run.diverged_at[e] >= 0:
            finite[run.diverged_at[e]:] = False
        if finite.any():
            out[e] = run.log_z[finite, e][-1]
    return out
