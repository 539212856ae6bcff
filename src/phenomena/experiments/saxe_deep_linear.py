"""Experiments of the chapter *saxe-deep-linear*: mode trajectories and learning time vs depth.

Kept here, not in the notebook, so that the chapter's cells stay short and a scan or a test
can call the same code. Everything runs in float64: the closed forms are compared to within a
few percent and the matrices are tiny.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import linear_target, whitened_inputs
from ..metrics.curves import crossing_time
from ..models import DeepLinearConfig, DeepLinearNetwork
from ..train import train_full_batch

DTYPE = torch.float64


@dataclass
class Task:
    """Whitened inputs ``x``, targets ``y = M x`` and the target's singular vectors ``U``, ``V``."""

    x: Tensor
    y: Tensor
    target: Tensor
    u: Tensor
    v: Tensor
    singular_values: np.ndarray

    @property
    def loss_of_zero_map(self) -> float:
        """``½‖M‖²_F = ½Σs²``: the loss of a network that outputs nothing."""
        return float(0.5 * (self.singular_values**2).sum())


def make_task(
    singular_values: Sequence[float], d_in: int, d_out: int, generator: torch.Generator, device: torch.device
) -> Task:
    """A target map with the given singular values, random singular vectors, exactly whitened inputs."""
    x = whitened_inputs(2 * d_in, d_in, generator, DTYPE)
    m, u, v = linear_target(singular_values, d_out, d_in, generator, DTYPE)
    y = x @ m.T
    return Task(
        x.to(device), y.to(device), m.to(device), u.to(device), v.to(device), np.asarray(singular_values, float)
    )


@dataclass
class ModeTrajectories:
    """Mode strengths over training: ``strength[t, member, mode]`` at ``steps[t]``; ``u0`` per member and mode."""

    steps: np.ndarray
    strength: np.ndarray
    u0: np.ndarray
    loss: np.ndarray


def train_modes(
    task: Task,
    *,
    width: int,
    init: str,
    init_scale: float,
    lr: float,
    members: int,
    generator: torch.Generator,
    steps: int | None = None,
    record_every: int = 1,
) -> ModeTrajectories:
    """Train ``members`` two-layer nets ``in → hidden → out`` at once and record every mode's strength.

    ``steps=None`` trains for 2.5 times the slowest closed-form half-learning time among all
    members and modes, long enough for every mode to finish its transition.

    ``u0`` is the closed form's initial strength: ``init_scale`` for the decoupled init, and the
    growing part ``|(W₁v + W₂ᵀu)/2|²`` for a random one (see
    :func:`phenomena.theory.saxe_growing_strength`).
    """
    from ..theory import saxe_growing_strength, saxe_half_time

    d_in, d_out = task.x.shape[1], task.y.shape[1]
    config = DeepLinearConfig(
        [d_in, width, d_out], init=init, init_scale=init_scale, members=members, dtype=DTYPE
    )
    net = _build(config, generator, task)
    if init == "decoupled":
        u0 = np.full((members, len(task.singular_values)), float(init_scale))
    else:
        w1, w2 = (w.detach().cpu().numpy() for w in net.weights)
        u0 = saxe_growing_strength(w1, w2, task.u.cpu().numpy(), task.v.cpu().numpy())
    if steps is None:
        s = np.broadcast_to(task.singular_values, u0.shape)
        steps = int(2.5 * saxe_half_time(s, np.minimum(u0, s / 4), lr).max()) + 1
    history = train_full_batch(
        net,
        task.x,
        task.y,
        lr=lr,
        steps=steps,
        record={"strength": lambda m: m.mode_strengths(task.u, task.v)},
        record_every=record_every,
    )
    return ModeTrajectories(
        steps=history.record_steps.numpy(),
        strength=history.recorded["strength"].numpy(),
        u0=u0,
        loss=history.loss.numpy(),
    )


def half_times(traj: ModeTrajectories, singular_values: Sequence[float]) -> np.ndarray:
    """First step at which each mode reaches half its final strength ``s/2``: ``(members, modes)``.

    Linear interpolation between recorded steps; ``inf`` if a mode never gets there
    (:func:`phenomena.metrics.crossing_time`).
    """
    s = np.asarray(singular_values, float)
    return crossing_time(traj.strength, s / 2, direction="above", steps=traj.steps, interpolate="linear")


def _build(config: DeepLinearConfig, generator: torch.Generator, task: Task) -> DeepLinearNetwork:
    """Weights are drawn on the CPU (the generator's device), then moved to the task's device."""
    net = DeepLinearNetwork(config, generator=generator, modes=(task.u.cpu(), task.v.cpu()))
    return net.to(task.x.device)


def learning_time_vs_depth(
    task: Task,
    *,
    depths: Sequence[int],
    init_kinds: Sequence[str] = ("orthogonal", "gaussian"),
    lrs: Sequence[float],
    steps: int,
    threshold: float,
    generator: torch.Generator,
    inits: int = 5,
) -> pd.DataFrame:
    """Learning time of a deep linear net of constant width: the median over ``inits`` random networks.

    ``init_kinds`` are the initialisation schemes compared; for each, ``inits`` independent random
    networks are drawn and each is copied across the learning-rate grid, so that all rates train
    the *same* network at once (one ensemble of ``inits × len(lrs)`` members; rates that diverge
    are masked). Learning time is when the loss first falls to ``threshold`` times its initial
    value (interpolated between steps); each network gets the time of its best rate, so every
    depth is compared at its own optimal learning rate, and the row reports the median over the
    networks (with the range). A network that never gets there has time ``inf``.

    Why a median over networks, not one network per rate: at small width the singular values of
    a product of random Gaussian matrices vary a lot from draw to draw (at width 16 and depth 16
    the best time of single networks spans 3x), and the fastest of many differently initialised
    members is an extreme value, not the typical learning time. Returns one row per (kind, depth).
    """
    if not isinstance(inits, int) or inits < 1:
        raise ValueError(f"inits must be an integer >= 1, got {inits!r}")
    width = task.x.shape[1]
    rates = torch.as_tensor(list(lrs), dtype=DTYPE, device=task.x.device)
    k = len(rates)
    rows = []
    for init in init_kinds:
        for depth in depths:
            config = DeepLinearConfig([width] * (depth + 1), init=init, init_scale=1.0, members=inits * k, dtype=DTYPE)
            net = _build(config, generator, task)
            with torch.no_grad():  # network d, repeated for each of the k rates
                for w in net.weights:
                    w.copy_(w[:inits].repeat_interleave(k, 0))
            history = train_full_batch(net, task.x, task.y, lr=rates.repeat(inits), steps=steps, on_divergence="mask")
            times = crossing_time(history.loss, threshold * history.loss[0]).reshape(inits, k)
            best = times.argmin(1)
            per_network = times[np.arange(inits), best]
            learned = np.isfinite(per_network)
            rows.append(
                {
                    "init": init,
                    "depth": depth,
                    "time": float(np.median(per_network)),
                    "time_min": float(per_network.min()),
                    "time_max": float(per_network.max()),
                    "best_lr": float(np.median(rates.cpu().numpy()[best[learned]])) if learned.any() else float("nan"),
                    "inits": inits,
                    "diverged_rates": int(history.diverged.sum()),
                    "steps": steps,
                }
            )
    return pd.DataFrame(rows)


def growth(table: pd.DataFrame, init: str, deep: int, shallow: int) -> float:
    """``time(deep) / time(shallow)`` of the median times; one that never learned counts as ``steps`` (a lower bound)."""
    sel = table[table["init"] == init].set_index("depth")
    t_deep = sel.loc[deep, "time"]
    if not np.isfinite(t_deep):
        t_deep = float(sel.loc[deep, "steps"])
    return float(t_deep / sel.loc[shallow, "time"])
