"""Experiment of the chapter *arithmetic-reversal*: small GPTs learn addition from N examples.

Lee et al. (2023) train NanoGPT on ``N`` addition examples and read exact-match accuracy on held-out
pairs as a function of ``N``: in the plain format the accuracy creeps up, in the reversed format it
jumps from almost nothing to almost everything within a few thousand examples. Here every
(format, ``N``, initialisation) is one member of a single batched :class:`~phenomena.models.GPT`,
so a whole accuracy-vs-``N`` curve in two formats trains as one model.

Each member has its own training set (drawn from the pairs that are neither test pairs nor
held out) and draws its own minibatches from it; the loss is the cross-entropy on the answer
tokens only. All members share one step budget, so a member with small ``N`` sees its examples
more often: the budget is sized for enough epochs at the largest ``N`` (the chapter says how many).
The test pairs are one uniform sample of the table shared by every member; accuracy is exact
match under greedy decoding (:mod:`phenomena.metrics.sequence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import arithmetic as ar
from ..ensemble import AdamW, fit
from ..metrics import sequence
from ..models import GPT, GPTConfig


@dataclass(frozen=True)
class Member:
    """One model of the grid: answer format, training-set size, initialisation index, hold-out rows or not."""

    fmt: str
    n_train: int
    init: int = 0
    holdout: bool = False


@dataclass
class GridResult:
    """A trained grid. ``table``: one row per member with ``fmt``, ``n_train``, ``init``, ``holdout``,
    ``test_acc`` (exact match on the shared test pairs), ``holdout_acc`` (on pairs whose first operand
    is held out; nan for members that trained on them), ``final_loss`` and ``epochs``.
    ``positions``: per-position accuracy on the test pairs, ``(members, K)``; ``loss``:
    ``(steps + 1, members)`` training loss."""

    digits: int
    table: pd.DataFrame
    positions: np.ndarray
    loss: np.ndarray
    held_out: np.ndarray
    seconds: float


def grid(formats: Sequence[str], n_trains: Sequence[int], inits: int, *, holdout: Sequence[tuple[str, int]] = ()
         ) -> list[Member]:
    """Every (format, ``N``, init) member, then the hold-out members (``(format, N)`` pairs, ``inits`` each)."""
    members = [Member(f, int(n), i) for f in formats for n in n_trains for i in range(inits)]
    members += [Member(f, int(n), i, holdout=True) for f, n in holdout for i in range(inits)]
    return members


def _loss_fn(model: GPT, data: Tensor, targets: Tensor, mask: Tensor, n_train: Tensor, batch: int,
             generator: torch.Generator):
    e = data.shape[0]
    rows = torch.arange(e, device=data.device).view(-1, 1)

    def loss() -> Tensor:
        # minibatch indices come from the CPU generator, so a seed draws the same batches on any device
        idx = (torch.rand(e, batch, generator=generator) * n_train.view(-1, 1)).long().to(data.device)
        x, y, m = data[rows, idx], targets[rows, idx], mask[rows, idx]
        logits = model(x)
        logp = torch.log_softmax(logits, -1).gather(-1, y.unsqueeze(-1)).squeeze(-1)
        return -(logp * m).flatten(1).sum(1) / m.flatten(1).sum(1)

    return loss


def train_grid(
    members: Sequence[Member],
    *,
    digits: int,
    steps: int,
    batch: int,
    lr: float,
    width: int,
    layers: int,
    heads: int,
    n_test: int,
    sampler: str,
    held_out: Sequence[int] | np.ndarray = (),
    weight_decay: float = 0.1,
    warmup: int = 100,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> GridResult:
    """Train every member at once and measure exact match on ``n_test`` shared uniform test pairs.

    ``held_out``: first operands whose pairs no hold-out member trains on; they are also kept out of
    the test pairs, and every member is scored on them separately (``holdout_acc``). ``generator``
    (a CPU generator) draws the pairs, the initial weights and the minibatches; ``device`` runs the model.
    """
    import time

    start = time.perf_counter()
    if not members:
        raise ValueError("give at least one member")
    for m in members:
        ar._check_format(m.fmt)
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    held_out = np.asarray(held_out, dtype=np.int64)
    if any(m.holdout for m in members) and held_out.size == 0:
        raise ValueError("hold-out members need a non-empty held_out set of first operands")
    rows_out = ar.holdout_mask(digits, held_out)
    a_all, b_all = ar.table(digits)
    test = ar.sample_pairs(n_test, digits, generator, sampler="uniform", exclude=rows_out)
    taken = rows_out.copy()
    taken[test] = True
    length = max(ar.max_length(m.fmt, digits) for m in members) - 1
    e = len(members)
    n_max = max(m.n_train for m in members)
    data = torch.zeros(e, n_max, length, dtype=torch.long)
    targets = torch.zeros_like(data)
    mask = torch.zeros(e, n_max, length, dtype=torch.bool)
    for i, m in enumerate(members):
        pool = taken if m.holdout else _only(test, a_all.size)
        idx = ar.sample_pairs(m.n_train, digits, generator, sampler=sampler, exclude=pool)
        enc = ar.encode(a_all[idx], b_all[idx], m.fmt, digits, length=length)
        data[i, : m.n_train], targets[i, : m.n_train], mask[i, : m.n_train] = enc.inputs, enc.targets, enc.mask
    n_train = torch.tensor([m.n_train for m in members], dtype=torch.float32)

    config = GPTConfig(vocab_size=ar.VOCAB_SIZE, context=length, layers=layers, heads=heads, width=width,
                       members=e)
    model = GPT(config, generator).to(device)
    data, targets, mask = data.to(device), targets.to(device), mask.to(device)
    optimizer = AdamW(list(model.parameters()), lr, weight_decay=weight_decay, betas=(0.9, 0.98))
    ramp = np.minimum(1.0, (np.arange(steps) + 1) / max(1, warmup))
    decay = 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * np.arange(steps) / steps))
    schedule = torch.tensor(lr * ramp * decay, dtype=torch.float32, device=device)
    loss = _loss_fn(model, data, targets, mask, n_train, batch, generator)
    history = fit(optimizer, loss, steps, lr_schedule=schedule)

    model.eval()
    test_acc, positions = _score(model, members, a_all[test], b_all[test], digits, length)
    hold_acc = np.full(e, np.nan)
    if held_out.size:
        hold_idx = np.flatnonzero(rows_out)
        hold_acc, _ = _score(model, members, a_all[hold_idx], b_all[hold_idx], digits, length)
    table = pd.DataFrame({
        "fmt": [m.fmt for m in members], "n_train": [m.n_train for m in members],
        "init": [m.init for m in members], "holdout": [m.holdout for m in members],
        "test_acc": test_acc, "holdout_acc": hold_acc,
        "final_loss": history.loss[-1].cpu().numpy(),
        "epochs": [steps * batch / m.n_train for m in members],
    })
    return GridResult(digits=digits, table=table, positions=positions, loss=history.loss.cpu().numpy(),
                      held_out=held_out, seconds=time.perf_counter() - start)


def _only(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=bool)
    out[index] = True
    return out


def _score(model: GPT, members: Sequence[Member], a: np.ndarray, b: np.ndarray, digits: int, length: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """Exact match ``(members,)`` and per-position accuracy ``(members, K)`` of every member in its own format."""
    encoded = {f: ar.encode(a, b, f, digits, length=length) for f in {m.fmt for m in members}}
    device = next(model.parameters()).device
    inputs = torch.stack([encoded[m.fmt].inputs for m in members]).to(device)
    targets = torch.stack([encoded[m.fmt].targets for m in members]).to(device)
    mask = torch.stack([encoded[m.fmt].mask for m in members]).to(device)
    chunk = 500
    with torch.no_grad():
        pred = torch.cat([model(inputs[:, i : i + chunk]).argmax(-1) for i in range(0, inputs.shape[1], chunk)], 1)
    exact = sequence.exact_match(pred, targets, mask).double().mean(-1).cpu().numpy()
    positions = sequence.per_position_accuracy(pred, targets, mask).cpu().numpy()
    return exact, positions


def n_at(table: pd.DataFrame, level: float, *, column: str = "test_acc") -> float:
    """Smallest ``N`` on the grid at which the mean accuracy over inits reaches ``level`` (``inf`` if none)."""
    curve = table.groupby("n_train")[column].mean().sort_index()
    hit = curve.index[curve.to_numpy() >= level]
    return float(hit.min()) if len(hit) else float("inf")


def interpolated_n(table: pd.DataFrame, level: float, *, column: str = "test_acc") -> float:
    """``N`` where the mean accuracy first crosses ``level``, interpolated linearly in ``log N``.

    ``inf`` if the curve never reaches ``level``; the smallest grid ``N`` if it starts above it.
    """
    curve = table.groupby("n_train")[column].mean().sort_index()
    n, acc = curve.index.to_numpy(dtype=float), curve.to_numpy()
    above = np.flatnonzero(acc >= level)
    if above.size == 0:
        return float("inf")
    k = int(above[0])
    if k == 0:
        return float(n[0])
    x0, x1, y0, y1 = np.log(n[k - 1]), np.log(n[k]), acc[k - 1], acc[k]
    return float(np.exp(x0 + (level - y0) * (x1 - x0) / (y1 - y0)))
