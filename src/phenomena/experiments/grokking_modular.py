"""Experiments of the chapter *grokking-modular*: delayed generalisation on ``(a + b) mod p``.

The network is the one Tian (2025) analyses: one-hot pairs ``onehot(a) ⊕ onehot(b)`` into a
hidden layer with the quadratic activation ``σ(x) = x²``, then a linear read-out of ``p``
outputs, trained on the squared error to the one-hot answer, full batch, by AdamW. Every
network of an experiment (seeds, weight decays, training-set sizes) is one member of a single
:class:`phenomena.models.MLP` ensemble, so that one batched step trains them all.

Training-set sizes differ between members in the sample-size experiment; there the members
share the inputs of the largest training set and each one's loss is the mean over its own
(nested) subset, a per-member mask, so the step stays one batched matmul.

The inputs are one-hot, so the first layer's matmul only picks two columns of the weight matrix
per pair: :func:`pair_forward` computes the same network output by indexing those columns, which
at ``p = 97`` makes a training step about a third cheaper and leaves the model itself untouched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import ModularTask, modular_task
from ..ensemble import AdamW, fit
from ..metrics import active_neurons, neuron_fourier_power, top_frequency_fraction
from ..metrics.curves import crossing_time
from ..models import MLP, MLPConfig

LOSSES = ("mse", "ce")


@dataclass
class GrokkingHistory:
    """Accuracies and the Fourier sparsity over training, ``(records, members)`` at ``steps``, and
    the trained networks. ``fourier_share`` is :meth:`Spectra.sparse_share` (0.9) at each record."""

    steps: np.ndarray
    train_acc: np.ndarray
    test_acc: np.ndarray
    loss: np.ndarray
    weight_decay: np.ndarray
    net: MLP
    fourier_share: np.ndarray


def pair_index(x: Tensor, p: int) -> Tensor:
    """The two hot positions of every row of one-hot pairs ``onehot(a) ⊕ onehot(b)``: ``(n, 2)``, ``[a, p + b]``."""
    if x.dim() != 2 or x.shape[1] != 2 * p:
        raise ValueError(f"x must be (n, 2p) = (n, {2 * p}) one-hot pairs, got {tuple(x.shape)}")
    index = x.view(-1, 2, p).argmax(-1) + torch.tensor([0, p], device=x.device)
    if not torch.equal(x.sum(1), torch.full_like(x[:, 0], 2.0)):
        raise ValueError("x must hold exactly one 1 per operand (one-hot pairs)")
    return index


def pair_forward(net: MLP, index: Tensor) -> Tensor:
    """``net(x)`` for one-hot pairs ``x`` given by :func:`pair_index`, without the one-hot matmul.

    A one-hot row selects one column of the first weight matrix per operand, so the first layer's
    pre-activation is the sum of the two selected columns; autograd then scatters the gradient back
    into just those columns. Only for the networks of this module: two layers, no bias, standard
    multipliers.
    """
    config = net.config
    if config.depth != 2 or config.bias or net.multipliers != [1.0, 1.0] or config.output_scale != 1.0:
        raise ValueError("pair_forward needs a two-layer MLP without bias in the standard parameterisation")
    w_in, w_out = net.weights
    columns = w_in.permute(2, 0, 1)  # (2p, members, hidden)
    hidden = (columns[index[:, 0]] + columns[index[:, 1]]).transpose(0, 1)  # (members, n, hidden)
    return torch.bmm(net.act(hidden), w_out.transpose(-1, -2))


def train_members(
    x: Tensor,
    y: Tensor,
    train_mask: Tensor,
    x_eval: Tensor,
    y_eval: Tensor,
    eval_mask: Tensor,
    *,
    p: int,
    width: int,
    lr: float | Sequence[float],
    weight_decay: float | Sequence[float],
    steps: int,
    generator: torch.Generator,
    activation: str = "quadratic",
    loss: str = "mse",
    record_every: int = 10,
    init_scale: float = 1.0,
) -> GrokkingHistory:
    """Train ``members = train_mask.shape[0]`` networks ``2p → hidden → p`` at once by full-batch AdamW.

    Member ``e`` is trained on the rows of ``(x, y)`` where ``train_mask[e]`` is true and tested
    on the rows of ``(x_eval, y_eval)`` where ``eval_mask[e]`` is true; ``lr`` and
    ``weight_decay`` may be one value per member. ``loss="mse"`` is the squared error to the
    one-hot answer summed over the ``p`` outputs (Tian's setting); ``"ce"`` is cross-entropy.
    Accuracy is the fraction of pairs whose largest output is the answer.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; valid losses are: {', '.join(LOSSES)}")
    members = train_mask.shape[0]
    if train_mask.shape != (members, x.shape[0]) or eval_mask.shape != (members, x_eval.shape[0]):
        raise ValueError("train_mask must be (members, len(x)) and eval_mask (members, len(x_eval))")
    config = MLPConfig([2 * p, width, p], activation=activation, init_scale=init_scale, members=members,
                       dtype=x.dtype)
    net = MLP(config, generator=generator).to(x.device)
    wd = torch.as_tensor(weight_decay, dtype=x.dtype).expand(members).clone()
    optimizer = AdamW(net.parameters(), torch.as_tensor(lr, dtype=x.dtype), weight_decay=wd)
    weights = train_mask.to(x.dtype) / train_mask.sum(1, keepdim=True).to(x.dtype)
    target = torch.nn.functional.one_hot(y, p).to(x.dtype)
    index, index_eval = pair_index(x, p), pair_index(x_eval, p)

    def objective() -> Tensor:
        out = pair_forward(net, index)
        if loss == "mse":
            per_pair = ((out - target) ** 2).sum(-1)
        else:
            per_pair = torch.nn.functional.cross_entropy(
                out.reshape(-1, p), y.repeat(members), reduction="none").view(members, -1)
        return (per_pair * weights).sum(1)

    def accuracy(inputs: Tensor, labels: Tensor, mask: Tensor) -> Tensor:
        right = (pair_forward(net, inputs).argmax(-1) == labels).to(x.dtype) * mask
        return right.sum(1) / mask.sum(1).clamp_min(1)

    def fourier_share() -> Tensor:
        return torch.as_tensor(neuron_spectra(net, p).sparse_share(0.9))

    history = fit(
        optimizer,
        objective,
        steps,
        record={"train": lambda: accuracy(index, y, train_mask),
                "test": lambda: accuracy(index_eval, y_eval, eval_mask), "fourier": fourier_share},
        record_every=record_every,
    )
    return GrokkingHistory(
        steps=history.record_steps.numpy(),
        train_acc=history.recorded["train"].numpy(),
        test_acc=history.recorded["test"].numpy(),
        loss=history.loss.numpy(),
        weight_decay=wd.cpu().numpy(),
        net=net,
        fourier_share=history.recorded["fourier"].numpy(),
    )


def train_grokking(
    task: ModularTask,
    *,
    weight_decays: Sequence[float],
    width: int,
    lr: float,
    steps: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    **kwargs,
) -> GrokkingHistory:
    """One network per entry of ``weight_decays`` (0: no weight decay), all on ``task``'s split.

    Members differ in their weight decay and in their random initial weights (one generator
    draws them all in turn); the data split is the task's.
    """
    x, y, x_test, y_test = task.split(device=device)
    members = len(weight_decays)
    def ones(n):
        return torch.ones(members, n, dtype=torch.bool, device=x.device)
    return train_members(x, y, ones(len(y)), x_test, y_test, ones(len(y_test)), p=task.p, width=width, lr=lr,
                         weight_decay=list(weight_decays), steps=steps, generator=generator, **kwargs)


def grokking_times(history: GrokkingHistory, *, train_level: float = 0.99, test_level: float = 0.95) -> pd.DataFrame:
    """Per member: ``T1`` (train accuracy first ``>= train_level``), the test accuracy then, ``T2``
    (test accuracy first ``>= test_level``), ``T2/T1`` and the final test accuracy."""
    t1 = crossing_time(history.train_acc, train_level, direction="above", steps=history.steps, interpolate=None)
    t2 = crossing_time(history.test_acc, test_level, direction="above", steps=history.steps, interpolate=None)
    test_at_t1 = np.array([
        history.test_acc[int(np.searchsorted(history.steps, t)), e] if np.isfinite(t) else np.nan
        for e, t in enumerate(t1)
    ])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = t2 / t1
    return pd.DataFrame({
        "weight_decay": history.weight_decay, "T1": t1, "test_acc_at_T1": test_at_t1, "T2": t2,
        "T2/T1": ratio, "final_test_acc": history.test_acc[-1], "max_test_acc": history.test_acc.max(0),
    })


@dataclass
class Spectra:
    """Fourier spectra of every neuron's input weights, ``power[member, neuron, k-1]``, and which neurons are active."""

    power: np.ndarray
    fraction: np.ndarray
    top_k: np.ndarray
    active: np.ndarray

    def sparse_share(self, level: float = 0.9) -> np.ndarray:
        """Per member: the share of active neurons whose top frequency holds ``>= level`` of their power."""
        hit = (self.fraction >= level) & self.active
        return hit.sum(1) / self.active.sum(1)


def neuron_spectra(net: MLP, p: int, *, active_threshold: float = 0.1) -> Spectra:
    """Spectra of the first-layer weights of every member of ``net`` (see :mod:`phenomena.metrics.fourier`).

    A neuron is *active* when its total weight norm, input and output, is at least
    ``active_threshold`` of the largest in its network: with weight decay most neurons die.
    """
    w_in, w_out = (w.detach().to(torch.float64).cpu() for w in net.weights)
    power = neuron_fourier_power(w_in, p)
    fraction, top_k = top_frequency_fraction(power)
    norms = torch.sqrt((w_in**2).sum(-1) + (w_out**2).sum(-2))
    return Spectra(power.numpy(), fraction.numpy(), top_k.numpy(), active_neurons(norms, active_threshold).numpy())


def critical_fraction(p: int | np.ndarray, multiplier: float = 1.0) -> np.ndarray:
    """Tian's sample-size law as a training fraction: ``n/p² = c·ln p / p`` with ``c = multiplier``."""
    p = np.asarray(p, dtype=float)
    return multiplier * np.log(p) / p


def sample_size_scan(
    ps: Sequence[int],
    fractions: dict[int, Sequence[float]],
    *,
    weight_decay: float,
    width: int,
    lr: float,
    steps: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    test_level: float = 0.95,
    **kwargs,
) -> pd.DataFrame:
    """For each ``p``, train one network per training fraction (nested random subsets of one
    permutation of the table) and report whether it generalised within ``steps``.

    Returns one row per ``(p, fraction)``: the number of training pairs ``n``, ``n/(p ln p)``,
    the final and best test accuracy and the first step the test accuracy reached ``test_level``.
    """
    rows = []
    for p in ps:
        fr = sorted(float(f) for f in fractions[p])
        task = modular_task(p, max(fr), generator)
        order = task.train[torch.randperm(task.train.numel(), generator=generator)]
        sizes = [max(1, round(f * p * p)) for f in fr]
        x = task.inputs(order).to(device)
        y = task.y[order].to(device)
        x_all, y_all = task.inputs().to(device), task.y.to(device)
        train_mask = torch.zeros(len(fr), order.numel(), dtype=torch.bool)
        eval_mask = torch.ones(len(fr), p * p, dtype=torch.bool)
        for e, n in enumerate(sizes):
            train_mask[e, :n] = True
            eval_mask[e, order[:n]] = False
        hist = train_members(x, y, train_mask.to(device), x_all, y_all, eval_mask.to(device), p=p, width=width,
                             lr=lr, weight_decay=weight_decay, steps=steps, generator=generator, **kwargs)
        t2 = crossing_time(hist.test_acc, test_level, direction="above", steps=hist.steps, interpolate=None)
        for e, (f, n) in enumerate(zip(fr, sizes)):
            rows.append({
                "p": p, "fraction": f, "n": n, "n_over_p_ln_p": n / (p * math.log(p)),
                "final_test_acc": float(hist.test_acc[-1, e]), "max_test_acc": float(hist.test_acc[:, e].max()),
                "final_train_acc": float(hist.train_acc[-1, e]), "T_generalise": float(t2[e]),
                "generalised": bool(hist.test_acc[-1, e] >= test_level),
            })
    return pd.DataFrame(rows)


def smallest_generalising(table: pd.DataFrame) -> pd.DataFrame:
    """Per ``p``: the smallest training set that generalised, such that every larger one did too.

    ``n_min`` is ``nan`` if even the largest did not; ``n_below`` is the largest that did not.
    """
    rows = []
    for p, sel in table.sort_values("n").groupby("p"):
        ok = sel["generalised"].to_numpy()
        # the smallest n from which on every larger training set generalised
        tail = len(ok)
        while tail > 0 and ok[tail - 1]:
            tail -= 1
        n = sel["n"].to_numpy()
        rows.append({
            "p": p, "n_min": float(n[tail]) if tail < len(ok) else math.nan,
            "n_below": float(n[tail - 1]) if tail > 0 else math.nan,
            "p_ln_p": p * math.log(p), "p²": p * p,
        })
    out = pd.DataFrame(rows)
    out["n_min_over_p_ln_p"] = out["n_min"] / out["p_ln_p"]
    out["n_min/p²"] = out["n_min"] / out["p²"]
    return out
