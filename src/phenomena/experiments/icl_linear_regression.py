"""Experiments of the chapter *icl-linear-regression*: train one layer of linear self-attention on
fresh in-context regression tasks and read the learned algorithm off its weights.

Every training step draws a new batch of tasks, so the training loss is itself an unbiased
estimate of the test risk of the current weights. All members of an ensemble (seeds, two inits)
see the same batches. Training runs in float32 (drawing the Gaussian prompts dominates the cost,
and float32 draws are several times faster); read-outs are returned as float64 numpy arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data import ICLTasks
from ..ensemble import Adam, fit
from ..models import LinearAttentionConfig, LinearSelfAttention
from ..theory.icl import least_squares_risk, optimal_one_step_risk

DTYPE = torch.float32


@dataclass
class TrainedLayer:
    """A trained ensemble and what training recorded.

    ``loss[t, e]`` is member ``e``'s mean squared error on the fresh batch of step ``t`` (a test-risk
    estimate); ``gamma[e]`` the preconditioner read off its weights at the end; ``init[e]`` its init.
    """

    tasks: ICLTasks
    model: LinearSelfAttention
    loss: np.ndarray
    gamma: np.ndarray
    init: np.ndarray

    @property
    def sigma(self) -> np.ndarray:
        return self.tasks.sigma.double().numpy()


def train_layer(
    tasks: ICLTasks,
    *,
    members: int,
    steps: int,
    batch: int,
    lr: float,
    init_scale: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    gd_init_members: int = 0,
) -> TrainedLayer:
    """Train ``members`` one-layer LSA models at once with Adam (cosine-decayed learning rate).

    The first ``members - gd_init_members`` start from a Gaussian init of every weight, the last
    ``gd_init_members`` from the same draw with the couplings ``p_x``, ``q_y`` zeroed (init ``"gd"``).
    The learning rate decays as ``lr·½(1 + cos(πt/steps))`` so the last steps average out the
    minibatch noise and the weights settle where the population risk is lowest.
    ``generator`` (CPU) draws the init first, then every batch of tasks.
    """
    if not 0 <= gd_init_members <= members:
        raise ValueError(f"gd_init_members must lie in [0, members={members}], got {gd_init_members}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")
    config = LinearAttentionConfig(d=tasks.d, members=members, init_scale=init_scale, dtype=DTYPE)
    model = LinearSelfAttention(config, generator=generator)
    gd = torch.arange(members) >= members - gd_init_members
    model.zero_couplings(gd)
    model.to(device)
    data = ICLTasks(tasks.d, tasks.n, tasks.noise, tasks.covariance, tasks.rho, DTYPE)
    optimizer = Adam(model.parameters(), lr)
    clock = {"step": 0}

    def loss() -> torch.Tensor:
        t = min(clock["step"], steps)
        clock["step"] += 1
        optimizer.lr.fill_(lr * 0.5 * (1 + math.cos(math.pi * t / steps)))
        b = data.sample(batch, generator, device)
        return model.loss(b.tokens, b.y_query)

    history = fit(optimizer, loss, steps)
    return TrainedLayer(
        tasks=tasks,
        model=model,
        loss=history.loss.double().numpy(),
        gamma=model.preconditioner().detach().double().cpu().numpy(),
        init=np.where(gd.numpy(), "gd", "gaussian"),
    )


@torch.no_grad()
def evaluate(
    model: LinearSelfAttention,
    tasks: ICLTasks,
    *,
    prompts: int,
    generator: torch.Generator,
    chunk: int = 16384,
) -> pd.DataFrame:
    """Monte-Carlo test risk of every member on ``prompts`` fresh prompts (the same for all members).

    Columns: ``risk`` (mean squared error on the query, label noise included), ``risk_se`` (its
    standard error), ``gd_residual`` (rms of ``ŷ − x_qᵀΓg`` over rms of ``ŷ``: the share of the
    prediction that is not one-step GD with the read-off ``Γ``). One row per member.
    """
    device = model.value.device
    data = ICLTasks(tasks.d, tasks.n, tasks.noise, tasks.covariance, tasks.rho, model.value.dtype)
    e = model.config.members
    sq, sq2, res, pred2 = (torch.zeros(e, dtype=torch.float64, device=device) for _ in range(4))
    done = 0
    while done < prompts:
        b = data.sample(min(chunk, prompts - done), generator, device)
        pred = model.predict(b.tokens)
        err = ((pred - b.y_query) ** 2).double()
        sq += err.sum(1)
        sq2 += (err**2).sum(1)
        res += (model.gd_residual(b.tokens).double() ** 2).sum(1)
        pred2 += (pred.double() ** 2).sum(1)
        done += b.tokens.shape[0]
    risk = sq / prompts
    se = ((sq2 / prompts - risk**2) / prompts).sqrt()
    return pd.DataFrame(
        {
            "risk": risk.cpu().numpy(),
            "risk_se": se.cpu().numpy(),
            "gd_residual": (res / pred2).sqrt().cpu().numpy(),
        }
    )


def risk_vs_context(
    lengths: Sequence[int],
    *,
    d: int,
    noise: float,
    members: int,
    steps: int,
    batch: int,
    lr: float,
    init_scale: float,
    prompts: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> pd.DataFrame:
    """Train a layer at every context length (isotropic inputs) and compare its test risk with the
    closed forms: the best one-step GD predictor and ordinary least squares. One row per (n, member)."""
    rows = []
    for n in lengths:
        tasks = ICLTasks(d=d, n=int(n), noise=noise, covariance="isotropic")
        trained = train_layer(tasks, members=members, steps=steps, batch=batch, lr=lr, init_scale=init_scale,
                              generator=generator, device=device)
        table = evaluate(trained.model, tasks, prompts=prompts, generator=generator)
        optimum = optimal_one_step_risk(np.eye(d), int(n), noise)
        for member, row in table.iterrows():
            rows.append({"n": int(n), "member": member, "risk": row["risk"], "risk_se": row["risk_se"],
                         "one_step_optimum": optimum, "least_squares": least_squares_risk(d, int(n), noise)})
    return pd.DataFrame(rows)


def smooth(curve: np.ndarray, window: int) -> np.ndarray:
    """Running mean over ``window`` steps along axis 0 (the training loss on fresh batches is noisy)."""
    window = max(1, min(int(window), curve.shape[0]))
    kernel = np.ones(window) / window
    return np.apply_along_axis(lambda c: np.convolve(c, kernel, mode="valid"), 0, curve)
