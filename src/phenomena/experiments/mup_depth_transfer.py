"""Experiments of the chapter *mup-depth-transfer*: learning-rate transfer across width and depth,
the residual stream's norm at init, and the sharpness of a two-layer linear network under μP and NTP.

* :func:`init_norm_ratios`: ``E‖h^{L+1}‖²/E‖h¹‖²`` of freshly drawn residual MLPs, to compare
  with :func:`phenomena.theory.resnet.init_norm_ratio`.
* :func:`lr_scan` / :func:`transfer_table`: train residual MLPs on the digits with SGD and
  cross-entropy for a few epochs, every learning rate of a ``2^{k/2}`` grid and every init as
  one ensemble, and read ``η*`` off the final training loss
  (:func:`phenomena.metrics.transfer.optimal_log2_lr`).
* :func:`sharpness_run`: full-batch GD on a two-layer linear network ``f = c·vᵀUx`` under μP
  or NTP, with the sharpness of the learning-rate-preconditioned Hessian along the way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.digits import DigitsSplit
from ..ensemble import SGD, fit
from ..metrics.hessian import ensemble_hessian_top_algebraic
from ..metrics.transfer import optimal_log2_lr
from ..models.mlp import MLP, MLPConfig
from ..models.resmlp import ResMLP, ResMLPConfig


# ----------------------------------------------------------------------------- claim 1: init norms
def init_norm_ratios(
    x: Tensor,
    *,
    width: int,
    depths: Sequence[int],
    parameterization: str,
    members: int,
    generator: torch.Generator,
    beta0: float = 1.0,
) -> np.ndarray:
    """Monte-Carlo ``E‖h^{L+1}‖²/E‖h¹‖²`` over ``members`` random networks and the inputs ``x``, per depth.

    Both expectations are averages over the same networks and inputs, so the common factor
    ``‖x‖²`` cancels; the remaining error is Monte-Carlo noise plus the ``O(1/n)`` finite-width
    correction.
    """
    out = []
    for depth in depths:
        config = ResMLPConfig(
            dim=x.shape[1], width=width, depth=int(depth), out=1, parameterization=parameterization,  # type: ignore[arg-type]
            beta0=beta0, members=members, dtype=x.dtype,
        )
        with torch.no_grad():
            hs = ResMLP(config, generator=generator).to(x.device).preactivations(x)
        out.append(float(hs[-1].pow(2).sum(-1).mean() / hs[0].pow(2).sum(-1).mean()))
    return np.asarray(out)


# ----------------------------------------------------------------------------- claims 2-3: transfer
def lr_scan(
    data: DigitsSplit,
    *,
    parameterization: str,
    width: int,
    depth: int,
    log2_lrs: Sequence[float],
    inits: int,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> np.ndarray:
    """Final training loss ``(inits, len(log2_lrs))`` of residual MLPs trained with SGD on cross-entropy.

    Every (init, learning rate) pair is one member of one ensemble; all members see the same
    minibatches (drawn from ``generator``, without replacement within an epoch). The base rate
    ``η₀ = 2^{log2_lr}`` becomes ``η₀·γ₀²n`` under μP (:attr:`ResMLPConfig.lr_multiplier`). A member
    whose loss turns non-finite is frozen and reported as ``+inf``; so is one whose final
    training loss is not finite.
    """
    x, y = data.x_train, data.y_train
    k, classes = len(log2_lrs), data.n_classes
    config = ResMLPConfig(
        dim=x.shape[1], width=width, depth=depth, out=classes, parameterization=parameterization,  # type: ignore[arg-type]
        members=inits * k, dtype=x.dtype,
    )
    net = ResMLP(config, generator=generator).to(x.device)
    base = torch.tensor([2.0 ** float(a) for a in log2_lrs], dtype=x.dtype, device=x.device)
    opt = SGD(net.parameters(), lr=base.repeat(inits) * config.lr_multiplier)
    n = x.shape[0]
    per_epoch = n // batch_size
    if per_epoch < 1:
        raise ValueError(f"batch_size ({batch_size}) is larger than the training set ({n})")
    order = torch.cat([torch.randperm(n, generator=generator)[: per_epoch * batch_size] for _ in range(epochs)])
    batches = order.view(-1, batch_size).to(x.device)
    steps = batches.shape[0]
    position = [0]
    labels = y.repeat(config.members)

    def loss() -> Tensor:
        idx = batches[min(position[0], steps - 1)]
        position[0] += 1
        logits = net(x[idx])
        ce = F.cross_entropy(logits.reshape(-1, classes), y[idx].repeat(config.members), reduction="none")
        return ce.view(config.members, -1).mean(1)

    history = fit(opt, loss, steps, on_divergence="mask")
    with torch.no_grad():
        logits = net(x)
        final = F.cross_entropy(logits.reshape(-1, classes), labels, reduction="none").view(config.members, -1).mean(1)
    final = torch.where(history.diverged.to(final.device) | ~torch.isfinite(final), torch.inf, final)
    return final.view(inits, k).cpu().numpy().astype(float)


def transfer_table(
    data: DigitsSplit,
    *,
    grids: dict[str, Sequence[float]],
    widths: Sequence[int],
    depths: Sequence[int],
    inits: int,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> pd.DataFrame:
    """One row per (parameterisation, width, depth): the seed-mean loss curve over its grid and ``log2 η*``.

    The loss of a grid point is the mean over inits, ``+inf`` if any init diverged (a rate that
    sometimes diverges is not a good rate).
    """
    rows = []
    for parameterization, grid in grids.items():
        for width in widths:
            for depth in depths:
                losses = lr_scan(
                    data, parameterization=parameterization, width=int(width), depth=int(depth), log2_lrs=grid,
                    inits=inits, epochs=epochs, batch_size=batch_size, generator=generator,
                )
                mean = losses.mean(0)
                best = optimal_log2_lr(grid, mean)
                rows.append({
                    "parameterization": parameterization, "width": int(width), "depth": int(depth),
                    "log2_lr_star": best.log2_lr, "at_edge": best.at_edge,
                    "best_loss": float(mean[best.index]), "log2_lrs": list(map(float, grid)), "losses": mean,
                })
    return pd.DataFrame(rows)


def max_shift(table: pd.DataFrame, parameterization: str, width: int, depth: int) -> float:
    """``max |log2 η*(n, L) − log2 η*(width, depth)|`` over the table's rows of one parameterisation."""
    sel = table[table["parameterization"] == parameterization]
    ref = sel[(sel["width"] == width) & (sel["depth"] == depth)]["log2_lr_star"]
    if len(ref) != 1:
        raise ValueError(f"no unique reference row (width={width}, depth={depth}) for {parameterization!r}")
    return float((sel["log2_lr_star"] - float(ref.iloc[0])).abs().max())


# ----------------------------------------------------------------------------- claims 4-6: sharpness
@dataclass
class LinearTask:
    """Gaussian inputs ``x (P, d)`` and a linear teacher's targets ``y = x w*·scale/√d``."""

    x: Tensor
    y: Tensor


def linear_task(d: int, n_train: int, target_scale: float, generator: torch.Generator,
                dtype: torch.dtype = torch.float32) -> LinearTask:
    """``x ~ N(0, I_d)``, ``y = x·w*·target_scale/√d`` with ``w*`` uniform on the sphere of radius ``√d``.

    So the targets have variance ``target_scale²`` exactly in expectation over ``x``. Why the fixed
    norm: the sharpness of the minimum that gradient descent reaches grows with ``‖w*‖``, and a
    Gaussian ``w*`` would let it wander by ``±O(1/√d)`` from draw to draw.
    """
    x = torch.randn(n_train, d, generator=generator, dtype=dtype)
    w = torch.randn(d, generator=generator, dtype=dtype)
    w = w * (math.sqrt(d) / w.norm())
    return LinearTask(x, x @ w * (float(target_scale) / math.sqrt(d)))


def linear_net(d: int, width: int, parameterization: str, *, members: int, generator: torch.Generator,
               gamma0: float = 1.0, dtype: torch.dtype = torch.float32) -> tuple[MLP, float]:
    """The two-layer linear network ``f = c·vᵀUx``, ``U, v ~ N(0, 1)``, and its learning-rate multiplier.

    NTP: ``c = 1/√(nd)``, rate ``η₀``. μP (mean field): ``c = 1/(γ₀n√d)``, rate ``η₀γ₀²n``. Both are
    :class:`~phenomena.models.MLP` in its NTK parameterisation (multipliers ``1/√d`` and ``1/√n``,
    unit-variance weights); μP multiplies the output by ``1/(γ₀√n)``.
    """
    if parameterization not in ("mup", "ntp"):
        raise ValueError(f"parameterization must be 'mup' or 'ntp', got {parameterization!r}")
    mup = parameterization == "mup"
    config = MLPConfig(
        [d, width, 1], activation="linear", parameterization="ntk", members=members, dtype=dtype,
        output_scale=1.0 / (gamma0 * math.sqrt(width)) if mup else 1.0,
    )
    return MLP(config, generator=generator), (gamma0**2 * width if mup else 1.0)


def end_to_end(net: MLP) -> Tensor:
    """The linear map ``β = c·Uᵀv`` of every member, ``(members, d)``: ``f(x) = β·x``.

    Why: evaluating ``β`` first costs ``O(nd)`` per step instead of the ``O(ndP)`` of pushing every
    input through the hidden layer, and the loss, its gradient and its Hessian are the same.
    """
    (m1, m2), (w1, w2) = net.multipliers, net.weights
    return (net.config.output_scale * m1 * m2) * torch.bmm(w2, w1)[:, 0]


def mse(net: MLP, task: LinearTask) -> Tensor:
    """``mean_p (f(x_p) − y_p)²`` per member (the mean squared error, without a ½)."""
    return (end_to_end(net) @ task.x.T - task.y).pow(2).mean(1)


@dataclass
class SharpnessRun:
    """``sharpness[t, member]`` at ``steps[t]`` (each at the centre of that step, see :func:`sharpness_run`),
    the loss curve, and the sharpness ``s0`` of the first and ``s_final`` of the last step."""

    parameterization: str
    width: int
    steps: np.ndarray
    sharpness: np.ndarray
    loss: np.ndarray
    s0: np.ndarray
    s_final: np.ndarray

    @property
    def rise(self) -> np.ndarray:
        """``S(T) − S(0)`` per member."""
        return self.s_final - self.s0


def probe_steps(steps: int, every: int) -> list[int]:
    """Steps ``0, every, 2·every, …`` before ``steps``, and ``steps − 1`` (the last step)."""
    return sorted(set(range(0, steps, every)) | {steps - 1})


def sharpness_run(
    task: LinearTask,
    *,
    parameterization: str,
    width: int,
    steps: int,
    lr0: float,
    every: int,
    members: int,
    generator: torch.Generator,
    lanczos_iters: int = 20,
    precise_iters: int = 40,
) -> SharpnessRun:
    """Full-batch GD on the linear net; sharpness ``λ_max((η/η₀)H)`` at :func:`probe_steps`.

    The sharpness is the largest *algebraic* eigenvalue of the Hessian preconditioned by the
    learning-rate multiplier (Lanczos, :func:`~phenomena.metrics.hessian.ensemble_hessian_top_algebraic`),
    so that gradient descent with base rate ``η₀`` is stable on the quadratic model exactly when
    it is below ``2/η₀`` at every width.

    Step ``t``'s sharpness is measured at the step's centre ``(θ_t + θ_{t+1})/2``. Why: at the
    edge of stability gradient descent may end in a period-2 oscillation ``θ₁ ↔ θ₂`` whose two
    ends have very different sharpness, and which end a probe sees depends on the parity of the
    step and on the oscillation's amplitude. For such an orbit ``∇L(θ₂) − ∇L(θ₁) = (2/η)(θ₂ − θ₁)``
    exactly, so the Hessian averaged along the segment has eigenvalue ``2/η`` in the direction
    of the oscillation, and the Hessian at the segment's centre equals that average up to the
    loss's fourth derivatives. Away from the edge a step is short and the centre is ``θ_t`` to
    first order. The first and last steps use ``precise_iters`` Lanczos steps (they enter a small
    difference); the others ``lanczos_iters``.
    """
    if steps < 1 or every < 1:
        raise ValueError(f"steps and every must be >= 1, got {steps} and {every}")
    d = task.x.shape[1]
    net, multiplier = linear_net(d, width, parameterization, members=members, generator=generator, dtype=task.x.dtype)
    rate = lr0 * multiplier
    opt = SGD(net.parameters(), lr=rate)
    params = list(net.parameters())
    wanted = set(probe_steps(steps, every))
    precise_at = {0, steps - 1}
    clock = [0]
    record_steps: list[int] = []
    values: list[Tensor] = []

    def loss() -> Tensor:
        return mse(net, task)

    def centre_sharpness(iters: int, seed: int) -> Tensor:
        with torch.enable_grad():
            grads = torch.autograd.grad(loss().sum(), params)
        here = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(0.5 * rate * g)
        with torch.enable_grad():
            s = ensemble_hessian_top_algebraic(loss, params, lr_multipliers=[multiplier] * len(params),
                                               iters=iters, generator=torch.Generator().manual_seed(seed)).values
        with torch.no_grad():
            for p, h in zip(params, here):
                p.copy_(h)
        return s

    def probe() -> Tensor:
        t = clock[0]
        clock[0] += 1
        if t in wanted:
            record_steps.append(t)
            values.append(centre_sharpness(precise_iters if t in precise_at else lanczos_iters, t))
        return torch.zeros(())

    history = fit(opt, loss, steps, record={"probe": probe}, record_every=1, on_divergence="raise")
    sharp = torch.stack(values).numpy()
    return SharpnessRun(
        parameterization=parameterization, width=width, steps=np.asarray(record_steps), sharpness=sharp,
        loss=history.loss.numpy(), s0=sharp[0], s_final=sharp[-1],
    )


def super_consistency_gap(runs: dict[int, SharpnessRun], reference: int, after: int) -> dict[int, float]:
    """``max_{t ≥ after} |S_n(t) − S_ref(t)| / S_ref(t)`` per width ``n`` (member-averaged sharpness)."""
    ref = runs[reference]
    keep = ref.steps >= after
    s_ref = ref.sharpness.mean(1)[keep]
    return {n: float(np.max(np.abs(r.sharpness.mean(1)[keep] - s_ref) / s_ref)) for n, r in runs.items() if n != reference}


def rise_exponent(runs: dict[int, SharpnessRun]) -> float:
    """Least-squares slope of ``log |S(T) − S(0)|`` against ``log n`` (member-averaged rise)."""
    widths = np.array(sorted(runs), dtype=float)
    rises = np.array([np.abs(runs[int(n)].rise.mean()) for n in widths])
    return float(np.polyfit(np.log(widths), np.log(rises), 1)[0])
