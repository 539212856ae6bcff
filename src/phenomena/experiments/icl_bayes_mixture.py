"""Experiments of the chapter *icl-bayes-mixture*: a small GPT trained on in-context regression with
a two-component Gaussian-mixture prior over tasks, compared with the Bayes posterior-mean predictor.

Training draws fresh tasks at every step (Panwar, Ahuja & Goyal 2023; Garg et al. 2022), so the
training loss is itself an estimate of the test risk averaged over context lengths. All members of an
ensemble (independent initialisations) see the same batches. Training runs in float32; the reference
predictors (:mod:`phenomena.theory.icl`) run in float64 on the very prompts the transformers see, so
that the comparison at each context length is paired and its Monte-Carlo error mostly cancels.

Errors are reported as the paper does: the squared error of the prediction at context length ``k``
divided by the dimension ``d`` ("normalized MSE"), so that ``k = 0`` gives ``(c² + d − 1)/d``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.icl import ICLTasks
from ..ensemble import Adam, fit
from ..models.icl_gpt import ICLGPT, ICLGPTConfig
from ..theory.icl import PREDICTORS, gmm_posterior, mixture_predictions

DTYPE = torch.float32


def mixture_tasks(dim: int, points: int, *, centre: float = 3.0, mixing: float = 0.5, jitter: float = 1e-8,
                  dtype: torch.dtype = DTYPE) -> ICLTasks:
    """Noiseless prompts of ``points`` pairs (``points − 1`` context pairs and a query) with the mixture prior."""
    if points < 2:
        raise ValueError(f"a prompt needs at least 2 points (one context pair and a query), got points={points}")
    return ICLTasks(d=dim, n=points - 1, noise=0.0, prior="gmm", centre=centre, mixing=mixing, jitter=jitter,
                    dtype=dtype)


@dataclass
class TrainedGPT:
    """A trained ensemble and what training recorded: ``loss[t, e]`` is member ``e``'s mean squared
    error (over all context lengths, not normalised) on the fresh batch of step ``t``."""

    tasks: ICLTasks
    model: ICLGPT
    loss: np.ndarray


def train(
    tasks: ICLTasks,
    *,
    members: int,
    steps: int,
    batch: int,
    lr: float | Sequence[float],
    layers: int,
    width: int,
    heads: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    warmup: float = 0.05,
    positional: bool = False,
    label_channel: bool = False,
) -> TrainedGPT:
    """Train ``members`` GPTs at once with Adam on fresh mixture tasks (``lr``: one, or one per member).

    The learning rate warms up linearly over the first ``warmup`` fraction of the steps, then decays
    as ``lr·½(1 + cos πs)`` over the rest (``s`` the fraction of the decay done): the warm-up keeps the
    early steps of a no-positional-encoding transformer stable, the decay averages out the minibatch
    noise at the end. ``positional`` adds learned position embeddings (the paper trains without).
    ``generator`` (CPU) draws the initialisation first, then every batch.
    """
    if steps < 1 or batch < 1 or members < 1:
        raise ValueError(f"steps, batch and members must be >= 1, got {steps}, {batch}, {members}")
    if not 0 <= warmup < 1:
        raise ValueError(f"warmup is a fraction of the steps in [0, 1), got {warmup}")
    config = ICLGPTConfig(dim=tasks.d, points=tasks.n + 1, layers=layers, heads=heads, width=width,
                          members=members, positional=positional,
                          label_channel=label_channel, dtype=DTYPE)
    model = ICLGPT(config, generator=generator).to(device)
    data = ICLTasks(tasks.d, tasks.n, tasks.noise, tasks.covariance, tasks.rho, DTYPE, tasks.prior, tasks.centre,
                    tasks.mixing, tasks.jitter)
    optimizer = Adam(model.parameters(), lr)
    peak = optimizer.lr.clone()
    ramp = max(1, round(warmup * steps))
    clock = {"step": 0}

    def loss() -> torch.Tensor:
        t = min(clock["step"], steps)
        clock["step"] += 1
        if t < ramp:
            factor = (t + 1) / ramp
        else:
            factor = 0.5 * (1 + math.cos(math.pi * (t - ramp) / max(1, steps - ramp)))
        optimizer.lr.copy_(peak * factor)
        b = data.sample(batch, generator, device)
        return model.loss(b.points_x, b.points_y)

    history = fit(optimizer, loss, steps)
    return TrainedGPT(tasks=tasks, model=model, loss=history.loss.double().cpu().numpy())


@torch.no_grad()
def _predict(model: ICLGPT, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    return model(x.to(device, DTYPE), y.to(device, DTYPE)).double().cpu().numpy()


def evaluate(model: ICLGPT, tasks: ICLTasks, *, prompts: int, generator: torch.Generator,
             chunk: int = 2048) -> pd.DataFrame:
    """Normalised MSE at every context length ``k = 0 … n`` of every member and of the reference predictors.

    All predictors answer the same ``prompts`` fresh prompts (drawn in float64). One row per
    ``(k, predictor)``: ``predictor`` is ``"transformer"`` (with its ``member``) or one of
    :data:`phenomena.theory.icl.PREDICTORS`; ``mse`` is the mean of ``(ŷ − y)²/d`` and ``se`` its
    standard error; ``gap_se`` is the standard error of the paired difference transformer − PME.
    """
    d, points = tasks.d, tasks.n + 1
    data = ICLTasks(tasks.d, tasks.n, tasks.noise, tasks.covariance, tasks.rho, torch.float64, tasks.prior,
                    tasks.centre, tasks.mixing, tasks.jitter)
    errors: dict[str, list[np.ndarray]] = {}
    done = 0
    while done < prompts:
        b = data.sample(min(chunk, prompts - done), generator)
        x, y = b.points_x.numpy(), b.points_y.numpy()
        tf = _predict(model, b.points_x, b.points_y)  # (E, B, points)
        for e in range(tf.shape[0]):
            errors.setdefault(f"transformer/{e}", []).append((tf[e] - y) ** 2 / d)
        for k in range(points):
            ref = mixture_predictions(x[:, :k], y[:, :k], x[:, k], centre=tasks.centre, mixing=tasks.mixing,
                                      jitter=tasks.jitter)
            for name in PREDICTORS:
                errors.setdefault(f"{name}/{k}", []).append((ref[name] - y[:, k]) ** 2 / d)
        done += x.shape[0]
    rows = []
    pme = {k: np.concatenate(errors[f"pme/{k}"]) for k in range(points)}
    for key, chunks in errors.items():
        name, index = key.split("/")
        if name == "transformer":
            err = np.concatenate(chunks)  # (prompts, points)
            for k in range(points):
                gap = err[:, k] - pme[k]
                rows.append({"k": k, "predictor": name, "member": int(index), "mse": err[:, k].mean(),
                             "se": err[:, k].std() / math.sqrt(len(err)), "gap_se": gap.std() / math.sqrt(len(gap))})
        else:
            err = np.concatenate(chunks)
            rows.append({"k": int(index), "predictor": name, "member": -1, "mse": err.mean(),
                         "se": err.std() / math.sqrt(len(err)), "gap_se": math.nan})
    return pd.DataFrame(rows).sort_values(["predictor", "member", "k"], ignore_index=True)


def probe_posterior(model: ICLGPT, tasks: ICLTasks, ks: Sequence[int], *, prompts: int,
                    generator: torch.Generator) -> pd.DataFrame:
    """The transformer's answer to the probe query ``x_q = e₁`` after ``k`` context pairs, beside the PME's.

    With ``w₁ = ±c`` (up to the jitter) the Bayes prediction at ``e₁`` is ``E[w₁ | D] = c(2p₊ − 1)``: a
    readout of the posterior over the mixture component. The probe replaces the ``k``-th input of a
    fresh prompt by ``e₁``; causal attention keeps the later points out of the prediction. One row
    per ``(k, prompt, member)`` with columns ``transformer``, ``pme``, ``ridge`` (the moment-matched
    ridge predictor's answer, linear in the labels), ``p_plus`` and ``sign`` (the true component, ``±1``).
    """
    data = ICLTasks(tasks.d, tasks.n, tasks.noise, tasks.covariance, tasks.rho, torch.float64, tasks.prior,
                    tasks.centre, tasks.mixing, tasks.jitter)
    frames = []
    for k in ks:
        if not 0 <= k <= tasks.n:
            raise ValueError(f"probe context length k={k} must lie in [0, {tasks.n}]")
        b = data.sample(prompts, generator)
        x, y = b.points_x.clone(), b.points_y.clone()
        x[:, k] = 0.0
        x[:, k, 0] = 1.0
        tf = _predict(model, x[:, : k + 1], y[:, : k + 1])[:, :, k]  # (E, prompts)
        w, p_plus = gmm_posterior(x[:, :k].numpy(), y[:, :k].numpy(), centre=tasks.centre, mixing=tasks.mixing,
                                  jitter=tasks.jitter)
        ridge = mixture_predictions(x[:, :k].numpy(), y[:, :k].numpy(), x[:, k].numpy(), centre=tasks.centre,
                                    mixing=tasks.mixing, jitter=tasks.jitter)["ridge"]
        sign = np.sign(b.w[:, 0].numpy())
        for e in range(tf.shape[0]):
            frames.append(pd.DataFrame({"k": k, "prompt": np.arange(prompts), "member": e, "transformer": tf[e],
                                        "pme": w[:, 0], "ridge": ridge, "p_plus": p_plus, "sign": sign}))
    return pd.concat(frames, ignore_index=True)


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` steps along axis 0 (the loss on fresh batches is noisy)."""
    window = max(1, min(int(window), curve.shape[0]))
    kernel = np.ones(window) / window
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, curve)
