"""Experiments of the chapter *grokking-lazy-rich*: grokking as the transition from lazy to rich training.

Kumar, Bordelon, Gershman & Pehlevan (ICLR 2024) train a committee machine (a two-layer network
whose readout weights are fixed to one) on the single-index quadratic ``y = ½(β·x)²`` by full-batch
gradient descent, with the network's output multiplied by a *laziness* scale ``α``:

    f(x) = (α/N) Σ_i [φ(w_i·x) − φ(w_i⁰·x)],   φ(h) = h + (ε/2) h²,   η = η₀ N / α².

Subtracting the initial function (Chizat, Oyallon & Bach 2019) makes ``f₀ = 0`` whatever ``α``;
the learning rate ``∝ 1/α²`` keeps the function's initial speed independent of ``α``, so only the
*feature* speed changes: each weight moves ``O(1/α)`` per unit of function change.

Here the network is :class:`phenomena.models.MLP` in the NTK parameterisation with the ``poly``
activation ``u + u²/2``. Since ``φ_ε(h) = poly(εh)/ε``, init scale ``ε`` (which multiplies every
layer's pre-activation by ``ε/√fan_in``) turns it into the paper's ``φ_ε`` up to an output factor
``ε²/√N``, which the output multiplier ``α/(ε²√N)`` absorbs. All ``α``'s train at once as members of
one ensemble that share one initial weight matrix (so ``α`` is the only difference between them),
each with its own learning rate. Everything is float64: at ``α = 1000`` the centred output is a
difference of numbers that agree to three digits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data.hermite import SingleIndexTask
from ..ensemble import SGD, fit
from ..metrics import empirical_ntk, feature_alignment, kernel_regression, relative_change
from ..metrics.curves import crossing_time
from ..models import MLP, MLPConfig
from ..train import half_mse

DTYPE = torch.float64


def committee_machine(dim: int, width: int, eps: float, members: int, generator: torch.Generator) -> MLP:
    """The paper's two-layer network as an :class:`MLP` ensemble: readouts fixed to 1, one shared first layer.

    Init scale ``eps`` makes the ``poly`` activation act as ``φ(h) = h + (ε/2)h²`` on
    ``h = w·x/√D`` (see the module docstring). Only ``weights[0]`` is trainable.
    """
    if not eps > 0:
        raise ValueError(f"eps (the quadratic part of the activation) must be positive, got {eps}")
    config = MLPConfig([dim, width, 1], activation="poly", parameterization="ntk", init_scale=float(eps),
                       members=members, dtype=DTYPE)
    net = MLP(config, generator=generator)
    with torch.no_grad():
        net.weights[0].copy_(net.weights[0][:1].expand_as(net.weights[0]))  # one init for every α
        net.weights[1].fill_(1.0)
    net.weights[1].requires_grad_(False)
    return net


def output_multiplier(alphas: Sequence[float], width: int, eps: float) -> Tensor:
    """The factor ``α/(ε²√N)`` that turns the MLP's output into the paper's ``(α/N)Σφ_ε``, one per member."""
    a = torch.as_tensor(list(alphas), dtype=DTYPE)
    if a.dim() != 1 or a.numel() == 0 or not bool((a > 0).all()):
        raise ValueError(f"alphas must be a non-empty list of positive numbers, got {list(alphas)}")
    return a / (eps**2 * math.sqrt(width))


@dataclass
class LazyRichResult:
    """One training run of every ``α`` at once.

    ``train_loss`` is ``(steps + 1, members)``, one row per step; ``test_loss``, ``alignment`` and
    ``weight_change`` are ``(records, members)`` at ``steps``. ``alignment`` is the top-singular-
    direction ``|cos(w, β)|`` of the first layer; ``weight_change`` is ``‖W − W₀‖/‖W₀‖``.
    """

    alphas: np.ndarray
    lr: np.ndarray
    steps: np.ndarray
    train_loss: np.ndarray
    test_loss: np.ndarray
    alignment: np.ndarray
    weight_change: np.ndarray
    network: MLP
    scale: Tensor
    initial_weights: Tensor


def train_lazy_rich(
    task: SingleIndexTask,
    *,
    alphas: Sequence[float],
    width: int,
    eps: float,
    eta0: float,
    steps: int,
    generator: torch.Generator,
    record_every: int = 5,
) -> LazyRichResult:
    """Full-batch gradient descent on ``½·mean (f(x) − y)²`` for every ``α`` at once, ``η = η₀N/α²``.

    The network is centred on its initial function on the training and test inputs (the only
    inputs it is ever evaluated on), so every member starts from ``f = 0``. A non-finite loss
    raises :class:`phenomena.DivergenceError` (lower ``eta0`` or raise the smallest ``α``).
    """
    device = task.x_train.device
    net = committee_machine(task.dim, width, eps, len(alphas), generator).to(device)
    scale = output_multiplier(alphas, width, eps).to(device)
    lr = eta0 * width / torch.as_tensor(list(alphas), dtype=DTYPE, device=device) ** 2
    with torch.no_grad():
        f0_train = net(task.x_train)[..., 0]
        f0_test = net(task.x_test)[..., 0]
    w0 = net.weights[0].detach().clone()
    y_train, y_test = task.y_train.unsqueeze(-1), task.y_test.unsqueeze(-1)

    def centred(x: Tensor, f0: Tensor) -> Tensor:
        return (scale[:, None] * (net(x)[..., 0] - f0)).unsqueeze(-1)

    history = fit(
        SGD([net.weights[0]], lr),
        lambda: half_mse(centred(task.x_train, f0_train), y_train),
        steps,
        record={
            "test": lambda: half_mse(centred(task.x_test, f0_test), y_test),
            "alignment": lambda: feature_alignment(net.weights[0], task.beta),
            "change": lambda: relative_change([net.weights[0]], [w0]),
        },
        record_every=record_every,
    )
    return LazyRichResult(
        alphas=np.asarray(list(alphas), float),
        lr=lr.cpu().numpy(),
        steps=history.record_steps.numpy(),
        train_loss=history.loss.numpy(),
        test_loss=history.recorded["test"].numpy(),
        alignment=history.recorded["alignment"].numpy(),
        weight_change=history.recorded["change"].numpy(),
        network=net,
        scale=scale,
        initial_weights=w0,
    )


@dataclass
class KernelBaseline:
    """The infinitely lazy network: regression with the initial NTK, at every recorded step and at ``t = ∞``.

    ``test_loss[i]`` is the test loss of gradient descent on the linearised network after
    ``steps[i]`` steps (the same steps and learning rate as the network); ``limit`` is the test
    loss of the ridgeless kernel interpolant it converges to.
    """

    steps: np.ndarray
    test_loss: np.ndarray
    limit: float


def initial_kernel_baseline(run: LazyRichResult, task: SingleIndexTask) -> KernelBaseline:
    """Kernel regression with the network's initial NTK, the lazy limit of every member.

    The centred network starts at ``f = 0``, so its linearisation trained by gradient descent is
    kernel gradient descent from zero: on the training inputs ``f_t = [I − (I − ηK/P)^t] y`` and
    everywhere ``f_t(x) = K(x, X) K⁻¹ f_t(X)``, with ``ηK`` the member's learning rate times its
    NTK (``η₀/ε⁴`` times the MLP's kernel: the same for every ``α``). As ``t → ∞`` this is
    :func:`phenomena.metrics.kernel_regression` without ridge. The kernel is computed with
    :func:`phenomena.metrics.empirical_ntk` on a one-member copy of the shared initial network.
    """
    config = run.network.config
    single = MLP(MLPConfig(list(config.widths), activation=config.activation, parameterization=config.parameterization,
                           init_scale=config.init_scale, members=1, dtype=config.dtype)).to(task.x_train.device)
    with torch.no_grad():
        single.weights[0].copy_(run.initial_weights[:1])
        single.weights[1].fill_(1.0)
    single.weights[1].requires_grad_(False)
    k_train = empirical_ntk(single, task.x_train, chunk=256)
    k_test = empirical_ntk(single, task.x_test, task.x_train, chunk=256)
    limit = kernel_regression(k_train, task.y_train, k_test)
    rate = float(run.lr[0] * float(run.scale[0]) ** 2)  # η·c², the same for every member
    n = task.x_train.shape[0]
    lam, u = torch.linalg.eigh(k_train * rate / n)  # eigenvalues of the per-step map ηK/P
    if float(lam.max()) >= 2.0:
        raise ValueError(f"kernel gradient descent is unstable at this learning rate (max ηλ = {float(lam.max()):.3g} >= 2)")
    t = torch.as_tensor(run.steps, dtype=lam.dtype, device=lam.device)
    # coefficient of each eigen-direction: [1 − (1 − ηλ)^t] / λ, written to stay exact for tiny λ
    small = lam.clamp(0, 0.5)[:, None]  # expm1/log1p: no cancellation when ηλ ≪ 1
    fitted = torch.where(lam[:, None] < 0.5, -torch.expm1(t[None, :] * torch.log1p(-small)),
                         1 - (1 - lam[:, None]) ** t[None, :])  # (P, records); 1 ≤ ηλ < 2 oscillates but converges
    coeff = torch.where(lam[:, None] > 0, fitted / lam.clamp_min(1e-300)[:, None], t[None, :])
    proj = u.T @ task.y_train
    pred = (k_test * rate / n) @ u @ (coeff * proj[:, None])  # (test, records)
    losses = 0.5 * (pred - task.y_test[:, None]).pow(2).mean(0)
    return KernelBaseline(
        steps=run.steps,
        test_loss=losses.cpu().numpy(),
        limit=float(0.5 * (limit - task.y_test).pow(2).mean()),
    )


def grokking_times(run: LazyRichResult, threshold: float) -> pd.DataFrame:
    """When train and test loss first fall to ``threshold`` × their initial value, per ``α``.

    ``t_train`` (from the per-step train loss) and ``t_test`` (from the recorded test loss, mapped to
    steps) are interpolated between samples by :func:`phenomena.metrics.crossing_time`; ``inf``
    means never within the run. ``delay = t_test − t_train`` is the grokking delay of Kumar et al.
    (time between the train-loss fall and the test-loss fall) and ``ratio = t_test / t_train`` the
    same gap on the log-time axis of their figures.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold is a fraction of the initial loss in (0, 1), got {threshold}")
    train = torch.as_tensor(run.train_loss)
    test = torch.as_tensor(run.test_loss)
    t_train = crossing_time(train / train[0], threshold)
    t_test = crossing_time(test / test[0], threshold, steps=run.steps)
    return pd.DataFrame({
        "alpha": run.alphas,
        "t_train": t_train,
        "t_test": t_test,
        "delay": t_test - t_train,
        "ratio": t_test / np.maximum(t_train, 1.0),
        "final_test": run.test_loss[-1],
        "final_alignment": run.alignment[-1],
        "final_weight_change": run.weight_change[-1],
    })


def smallest_growth(delays: Sequence[float]) -> float:
    """The smallest factor by which the delay grows from one ``α`` to the next (in increasing ``α``).

    ``> 1`` means the delay grows monotonically. A member that never generalised (``inf``) counts
    as longer than any finite delay; two such neighbours say nothing and are skipped. A delay
    that is not positive followed by a positive one counts as unbounded growth. ``nan`` if fewer
    than three members generalised: too few for a trend.
    """
    d = np.asarray(list(delays), float)
    if np.isfinite(d).sum() < 3:
        return float("nan")
    factors = []
    for a, b in pairwise(d):
        if np.isinf(a) and np.isinf(b):
            continue
        if np.isinf(a):
            factors.append(0.0)  # a lazier-than-infinite member followed by a finite one: a violation
        elif np.isinf(b) or (a <= 0 < b):
            factors.append(np.inf)
        elif a <= 0:
            factors.append(0.0 if b <= a else np.inf)
        else:
            factors.append(b / a)
    return float(min(factors)) if factors else float("nan")
