"""Experiments of the chapter *edge-of-stability*: sharpness at 2/η, and opposing-signal outliers.

Full-batch gradient descent on a small tanh MLP with the squared loss, several step sizes η
trained at once as one ensemble (per-member learning rate). Every few steps the top Hessian
eigenvalue (the *sharpness*) of every member is measured by warm-started power iteration on
the block-diagonal Hessian of the ensemble (:func:`phenomena.metrics.ensemble_hessian_top_eigenvalue`).

The data are made on the fly with a planted *opposing signal* in the sense of Rosenfeld &
Risteski (2023): one input coordinate (think "sky") is zero up to small noise for almost every
point, but very large for two small groups of points with *opposite* labels. The feature is
consistent and large, so it dominates the network's output on those points, and its gradients
from the two groups point in opposite directions.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from ..ensemble import SGD, fit
from ..metrics import ensemble_hessian_top_eigenvalue
from ..metrics.curves import crossing_time
from ..models import MLP, MLPConfig
from ..train import half_mse

DTYPE = torch.float64


@dataclass
class OpposingSignalData:
    """Inputs ``x (n, dim)``, targets ``y (n, 1)`` in ``{−1, +1}``, and the index sets of the groups.

    ``positive``/``negative``: the outliers whose opposing feature (coordinate 0) is large, with
    label +1 and −1; ``rest``: every other point.
    """

    x: Tensor
    y: Tensor
    positive: Tensor
    negative: Tensor
    rest: Tensor
    strength: float


def opposing_signal_data(
    n: int,
    dim: int,
    *,
    strength: float,
    fraction: float,
    signal: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> OpposingSignalData:
    """A binary task with a planted opposing signal.

    Every point has label ``y = ±1`` (balanced) and inputs ``x = (x₀, z)``: ``z`` is standard
    Gaussian noise in ``dim − 1`` dimensions shifted by ``y·signal·u`` along a fixed random unit
    vector ``u`` (the *genuine* feature), and ``x₀`` is small noise (std 0.1). In a fraction
    ``fraction`` of the points (half from each class) ``x₀`` is ``strength`` instead, the same
    value for both labels, and the genuine shift is absent: for these outliers the large
    feature is all there is, and it points to opposite labels in the two groups.
    """
    if n < 8 or dim < 2:
        raise ValueError(f"need n >= 8 and dim >= 2, got n={n}, dim={dim}")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    y = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0).to(DTYPE)
    u = torch.randn(dim - 1, generator=generator, dtype=DTYPE)
    u = u / u.norm()
    x = torch.randn(n, dim, generator=generator, dtype=DTYPE)
    x[:, 0] *= 0.1
    per_group = max(1, round(fraction * n / 2))
    positive = torch.nonzero(y > 0)[:per_group, 0]
    negative = torch.nonzero(y < 0)[:per_group, 0]
    outlier = torch.zeros(n, dtype=torch.bool)
    outlier[positive] = True
    outlier[negative] = True
    x[:, 1:] += torch.where(outlier, 0.0, signal * y)[:, None] * u
    x[outlier, 0] += strength
    rest = torch.nonzero(~outlier)[:, 0]
    return OpposingSignalData(
        x.to(device), y[:, None].to(device), positive.to(device), negative.to(device), rest.to(device), float(strength)
    )


@dataclass
class EoSResult:
    """One batched run: ``loss (steps+1, E)``, ``group_loss (steps+1, E, 3)`` for (positive, negative,
    rest), and the sharpness ``(K, E)`` measured at ``sharpness_steps``."""

    lrs: np.ndarray
    loss: np.ndarray
    group_loss: np.ndarray
    sharpness_steps: np.ndarray
    sharpness: np.ndarray
    initial_sharpness: np.ndarray

    @property
    def edge(self) -> np.ndarray:
        """``2/η`` per member: the stability threshold of gradient descent on a quadratic."""
        return 2.0 / self.lrs


def train_with_sharpness(
    data: OpposingSignalData,
    lrs: Sequence[float],
    *,
    width: int,
    depth: int,
    steps: int,
    sharpness_every: int,
    generator: torch.Generator,
    init_scale: float = 1.0,
    power_iters: int = 20,
    tol: float = 1e-2,
) -> EoSResult:
    """Full-batch GD at every step size in ``lrs`` at once (one MLP ensemble, same init for all).

    The members start from the *same* weights, so they differ only by their step size. The
    squared loss ``½·mean (f − y)²`` is recorded at every step for the whole set and for each
    group; the sharpness every ``sharpness_every`` steps, by power iteration warm-started from the
    previous eigenvectors (``tol`` bounds the residual ``‖Hv − λv‖/|λ|``).
    """
    members = len(lrs)
    dim = data.x.shape[1]
    config = MLPConfig([dim] + [width] * depth + [1], activation="tanh", bias=True, members=1, dtype=DTYPE, init_scale=init_scale)
    single = MLP(config, generator=generator)
    net = MLP(replace(config, members=members))
    with torch.no_grad():
        for p, q in zip(net.parameters(), single.parameters()):
            p.copy_(q.expand_as(p))
    net = net.to(data.x.device)
    params = list(net.parameters())
    rates = torch.as_tensor(list(lrs), dtype=DTYPE, device=data.x.device)

    def loss() -> Tensor:
        return half_mse(net(data.x), data.y)

    state: dict = {"calls": 0, "vectors": None}
    nan = torch.full((members,), float("nan"), dtype=DTYPE)

    def sharpness() -> Tensor:
        call = state["calls"]
        state["calls"] += 1
        if call % sharpness_every:
            return nan
        with torch.enable_grad():
            res = ensemble_hessian_top_eigenvalue(loss, params, iters=power_iters, tol=tol, init=state["vectors"])
        state["vectors"] = res.vectors
        return res.values.detach()

    def groups() -> Tensor:
        per_point = 0.5 * (net(data.x)[..., 0] - data.y[:, 0]) ** 2
        return torch.stack([per_point[:, idx].mean(1) for idx in (data.positive, data.negative, data.rest)], 1)

    return _train(net, params, rates, loss, sharpness, groups, steps, lrs)


def _train(net, params, rates, loss, sharpness, groups, steps, lrs) -> EoSResult:
    """The training loop of :func:`train_with_sharpness`, run on one CPU thread."""
    with torch.enable_grad():
        initial = ensemble_hessian_top_eigenvalue(loss, params, iters=200, tol=1e-3).values.detach().cpu().numpy()
    with warnings.catch_warnings():
        # near the edge several eigenvalues crowd around 2/η: a warm-started estimate within a few
        # products is what we want, not a warning per measurement
        warnings.simplefilter("ignore", RuntimeWarning)
        history = fit(
            SGD(params, rates), loss, steps, record={"sharpness": sharpness, "groups": groups}, record_every=1
        )
    sharp = history.recorded["sharpness"].numpy()
    keep = ~np.isnan(sharp[:, 0])
    return EoSResult(
        lrs=np.asarray(list(lrs), dtype=float),
        loss=history.loss.numpy(),
        group_loss=history.recorded["groups"].numpy(),
        sharpness_steps=history.record_steps.numpy()[keep],
        sharpness=sharp[keep],
        initial_sharpness=initial,
    )


def edge_onset(run: EoSResult, level: float = 0.9) -> np.ndarray:
    """First measured step at which each member's sharpness reaches ``level·2/η`` (``inf`` if never)."""
    return crossing_time(run.sharpness, level * run.edge, direction="above", steps=run.sharpness_steps,
                         interpolate=None)


def late_sharpness_ratio(run: EoSResult, tail: float = 0.5) -> np.ndarray:
    """Median sharpness over the last ``tail`` of training, divided by ``2/η``, per member."""
    k = int(len(run.sharpness_steps) * (1 - tail))
    return np.median(run.sharpness[k:], axis=0) / run.edge


def group_anticorrelation(run: EoSResult, window: int = 100, band: float = 0.1) -> np.ndarray:
    """Median, over the windows of ``window`` steps spent at the edge, of corr(ΔL₊, ΔL₋) per member.

    ``ΔL₊``/``ΔL₋``: step-to-step changes of the mean loss of the positive and negative
    outlier groups. −1: whenever one group's loss rises the other's falls.

    A window counts as *at the edge* when it starts after the edge onset and every sharpness
    measurement in it lies within ``(1 ± band)·2/η`` (the band of the sharpness-at-edge claim).
    Right after the onset the largest step sizes overshoot 2/η by 10-40% for a few hundred steps
    (a catapult-like phase): the loss spikes there, and both groups' losses jump together; the
    anti-phase oscillation that Rosenfeld & Risteski describe belongs to the edge itself. A member
    with no window at the edge gets NaN.
    """
    onset = edge_onset(run)
    out = np.full(len(run.lrs), np.nan)
    for e in range(len(run.lrs)):
        if not np.isfinite(onset[e]):
            continue
        corrs = []
        for start in range(int(onset[e]), run.group_loss.shape[0] - window, window):
            inside = (run.sharpness_steps >= start) & (run.sharpness_steps <= start + window)
            ratio = run.sharpness[inside, e] / run.edge[e]
            if not inside.any() or np.any(np.abs(ratio - 1) > band):
                continue
            d = np.diff(run.group_loss[start : start + window + 1, e, :2], axis=0)
            if d.std(0).min() > 0:
                corrs.append(np.corrcoef(d[:, 0], d[:, 1])[0, 1])
        if corrs:
            out[e] = float(np.median(corrs))
    return out


def oscillation_share(run: EoSResult) -> np.ndarray:
    """Mean |per-step change| of the outlier groups' loss over that of the rest, after the edge onset, per member."""
    onset = edge_onset(run)
    out = np.full(len(run.lrs), np.nan)
    for e in range(len(run.lrs)):
        if not np.isfinite(onset[e]):
            continue
        d = np.abs(np.diff(run.group_loss[int(onset[e]) :, e, :], axis=0)).mean(0)
        out[e] = float(d[:2].mean() / d[2]) if d[2] > 0 else np.inf
    return out
