"""Chapter hierarchical-polynomials: a three-layer net learns ``h = g∘p`` by first learning the feature ``p``.

Wang, Nichani & Lee (2023). For each input dimension ``d`` the experiment trains eq. (1)'s network
(μP, Adam, full batch, all of ``(u, s, V, a, b, c)`` jointly, as in the paper's experiments) on
``n = c·d²`` samples for a grid of multiples ``c``, several initialisations each, all as one
ensemble. Members with different ``n`` run as groups of one model (``ThreeLayer.forward(members=)``),
so no member pays for the largest training set. It records the test loss and ``|corr(g, p)|`` of the
learned feature ``g`` during training. The kernel baseline fits ridge regression with the network's
tangent kernel at initialisation on the same kind of data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.hermite import HierarchicalTask, hierarchical_task
from ..ensemble import Adam, fit
from ..metrics.ntk import kernel_regression
from ..models.three_layer import ThreeLayer
from ..theory.hierarchical import kernel_floor

CUBE = (0.0, 0.0, 0.0, 1.0)
"""The link ``g(z) = z³`` (the task centres and normalises ``g∘p``)."""


def abs_corr(a: Tensor, b: Tensor) -> Tensor:
    """``|corr(a, b)|`` along the last axis (the feature's sign and scale are arbitrary)."""
    a = a - a.mean(-1, keepdim=True)
    b = b - b.mean(-1, keepdim=True)
    return ((a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-30)).abs()


@dataclass
class GridResult:
    """One dimension ``d``: the grid ``n_values`` × ``inits`` trained jointly.

    Arrays indexed ``[n, init]`` (curves ``[record, n, init]``). ``test_loss`` is the mean squared error
    divided by the test targets' mean square (predicting 0 scores 1); the final values are the last record.
    """

    d: int
    n_values: list[int]
    corr: np.ndarray
    test_loss: np.ndarray
    train_loss: np.ndarray
    record_steps: np.ndarray
    corr_curve: np.ndarray
    loss_curve: np.ndarray
    floors: list[float]
    """``kernel_floor`` (degree ≤ 2 resolved) of each init's task."""


def make_tasks(d: int, k: int, n_train: int, n_test: int, inits: int, generator: torch.Generator) -> list[HierarchicalTask]:
    """One task per initialisation (its own signs λ and data), drawn in order from ``generator``."""
    return [hierarchical_task(d, k, CUBE, n_train=n_train, n_test=n_test, generator=generator) for _ in range(inits)]


def train_grid(
    d: int,
    multiples: Sequence[float],
    *,
    inits: int,
    steps: int,
    lr: float,
    width2: int,
    generator: torch.Generator,
    k: int = 2,
    width1: int | None = None,
    n_test: int = 10_000,
    n_curve: int = 2_000,
    record_every: int = 20,
    power: int | None = None,
    device: torch.device | str = "cpu",
) -> GridResult:
    """Train eq. (1) on ``n = round(c·d^k)`` samples for each multiple ``c``, ``inits`` inits each.

    ``width1`` defaults to ``d²`` (the paper's ``m₁``); ``σ₁(z) = z^power`` with ``power`` defaulting to
    ``k`` (the paper's experiment pairs ``z³`` with ``k = 3``; with ``z³`` and an even feature a
    network must build ``p`` from the bias terms of ``(Vx + s)³`` and some initialisations stall). The test loss and ``|corr(g, p)|`` are measured
    on the first ``n_curve`` test points every ``record_every`` steps and on all ``n_test`` after the
    last; the loss is divided by the test targets' mean square, so predicting 0 scores exactly 1
    whatever the heavy tail drew.
    """
    if inits < 1 or steps < 1 or lr <= 0:
        raise ValueError(f"inits and steps must be >= 1 and lr > 0; got {inits}, {steps}, {lr}")
    n_values = sorted({int(round(c * d**k)) for c in multiples})
    if not n_values or n_values[0] < 1:
        raise ValueError(f"multiples must be positive numbers, got {multiples!r}")
    tasks = [t.to(device) for t in make_tasks(d, k, n_values[-1], n_test, inits, generator)]
    floors = [kernel_floor(d, k, CUBE, t.signs.cpu().numpy()) for t in tasks]
    groups = len(n_values)
    model = ThreeLayer(groups * inits, d, width1 or d * d, width2, generator=generator, power=power or k).to(device)
    f32 = torch.float32
    x_tr = torch.stack([t.x_train for t in tasks]).to(f32)
    y_tr = torch.stack([t.y_train for t in tasks]).to(f32)
    x_te = torch.stack([t.x_test for t in tasks]).to(f32)
    y_te = torch.stack([t.y_test for t in tasks]).to(f32)
    p_te = torch.stack([t.p_test for t in tasks]).to(f32)
    slices = [slice(gi * inits, (gi + 1) * inits) for gi in range(groups)]

    def loss() -> Tensor:
        out = []
        for sl, n in zip(slices, n_values):
            pred = model(x_tr[:, :n], members=sl)[..., 0]
            out.append(((pred - y_tr[:, :n]) ** 2).mean(-1))
        return torch.cat(out)

    def probe(x: Tensor, y: Tensor, p: Tensor) -> Tensor:
        losses, corrs = [], []
        for sl in slices:
            losses.append(((model(x, members=sl)[..., 0] - y) ** 2).mean(-1) / (y**2).mean(-1))
            corrs.append(abs_corr(model.feature(x, members=sl), p))
        return torch.stack([torch.stack(losses), torch.stack(corrs)])  # (2, groups, inits)

    curve_set = (x_te[:, :n_curve], y_te[:, :n_curve], p_te[:, :n_curve])
    optimizer = Adam(model.parameters(), lr)
    history = fit(optimizer, loss, steps, record={"probe": lambda: probe(*curve_set)}, record_every=record_every)
    train_loss = history.loss[-1].reshape(groups, inits)
    curves = history.recorded["probe"]  # (records, 2, groups, inits)
    with torch.no_grad():
        final = probe(x_te, y_te, p_te).cpu()
    return GridResult(
        d=d, n_values=n_values, corr=final[1].numpy(), test_loss=final[0].numpy(),
        train_loss=train_loss.numpy(), record_steps=history.record_steps.numpy(),
        corr_curve=curves[:, 1].numpy(), loss_curve=curves[:, 0].numpy(), floors=floors,
    )


def threshold_n(result: GridResult, level: float = 0.9) -> float:
    """``n*``: where the median over inits of ``|corr(g, p)|`` first reaches ``level`` on the grid of ``n``.

    Interpolated linearly in ``log n`` between the last grid point below ``level`` and the first at
    or above it (the grid doubles, so the smallest grid ``n`` alone would quantise ``n*`` to factors
    of 2). ``inf`` if no grid point reaches ``level``; the first grid ``n`` if all do.
    """
    med = np.median(result.corr, axis=1)
    hits = np.nonzero(med >= level)[0]
    if not len(hits):
        return float("inf")
    i = int(hits[0])
    if i == 0:
        return float(result.n_values[0])
    lo, hi = np.log(result.n_values[i - 1]), np.log(result.n_values[i])
    frac = (level - med[i - 1]) / (med[i] - med[i - 1])
    return float(np.exp(lo + frac * (hi - lo)))


def first_crossing(steps: np.ndarray, curve: np.ndarray, level: float, *, above: bool) -> float:
    """First recorded step at which ``curve`` is ``>= level`` (``above``) or ``<= level``; ``inf`` if never."""
    hit = curve >= level if above else curve <= level
    idx = np.nonzero(hit)[0]
    return float(steps[idx[0]]) if len(idx) else float("inf")


@dataclass
class KernelResult:
    """Ridge regression with the network's tangent kernel at init, per init: best test loss over ``ridges``."""

    d: int
    n_train: int
    test_loss: np.ndarray
    floors: list[float]


def kernel_baseline(
    d: int,
    n_train: int,
    *,
    inits: int,
    width2: int,
    generator: torch.Generator,
    ridges: Sequence[float] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    k: int = 2,
    n_test: int = 2_000,
    power: int | None = None,
    device: torch.device | str = "cpu",
) -> KernelResult:
    """Normalised test loss of NTK ridge regression, the best over ``ridges`` (relative to ``tr K/n``).

    Taking the best ridge on the test set favours the kernel, so a loss above the floor is not an
    artefact of a badly chosen ridge. Each init draws its own task and network.
    """
    tasks = make_tasks(d, k, n_train, n_test, inits, generator)
    losses = []
    for task in tasks:
        model = ThreeLayer(1, d, d * d, width2, generator=generator, dtype=torch.float64, power=power or k).to(device)
        x, xt = task.x_train.to(device), task.x_test.to(device)
        k_train = model.ntk(x)[0]
        k_test = model.ntk(xt, x)[0]
        scale = float(k_train.diagonal().mean())
        best = float("inf")
        for ridge in ridges:
            pred = kernel_regression(k_train, task.y_train.to(device), k_test, ridge=ridge * scale)
            mse = ((pred.cpu() - task.y_test) ** 2).mean() / (task.y_test**2).mean()
            best = min(best, float(mse))
        losses.append(best)
    floors = [kernel_floor(d, k, CUBE, t.signs.numpy()) for t in tasks]
    return KernelResult(d=d, n_train=n_train, test_loss=np.array(losses), floors=floors)
