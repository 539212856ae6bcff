"""Experiments of the chapter *ntk-width*: the neural tangent kernel freezes as width grows.

A two-layer MLP in the NTK parameterisation (:class:`phenomena.models.MLP`) is trained by
full-batch gradient descent on inputs on the sphere of radius √d, at widths ``2^7 … 2^13``,
several initialisations per width trained at once as one ensemble. For every activation and
width we keep the empirical kernel (:func:`phenomena.metrics.empirical_ntk`) on train and test
points at init, the kernel on the train points after training, and the network's outputs before
and after training; the chapter's four claims are summaries of these arrays.

Everything runs in float64: the kernel changes we measure are as small as 1e-4 of the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data import sphere_points
from ..metrics import empirical_ntk, kernel_regression
from ..models import MLP, MLPConfig
from ..theory import ntk_two_layer
from ..train import train_full_batch

DTYPE = torch.float64


@dataclass
class Task:
    """Train and test inputs on the sphere of radius √d, and the teacher's targets."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def x_all(self) -> Tensor:
        """Train points first, then test points: the rows of every kernel at init."""
        return torch.cat([self.x_train, self.x_test])


def teacher(x: Tensor, directions: Tensor) -> Tensor:
    """A smooth target of unit scale: ``y = (u₁ + (u₂² − 1)/√2)/√2`` with ``u_k = β_k·x/√d``.

    A linear and a quadratic part (first and second Hermite polynomials of two unit
    directions ``β``), so that each activation's kernel has something non-trivial to fit.
    """
    u = x @ directions.T / x.shape[1] ** 0.5
    return ((u[:, 0] + (u[:, 1] ** 2 - 1) / 2**0.5) / 2**0.5).unsqueeze(-1)


def make_task(d: int, n_train: int, n_test: int, generator: torch.Generator, device: torch.device) -> Task:
    """Points uniform on the sphere of radius √d (seeded by ``generator``), targets from :func:`teacher`."""
    x = sphere_points(n_train + n_test, d, generator, DTYPE)
    beta = torch.randn(2, d, generator=generator, dtype=DTYPE)
    beta = beta / beta.norm(dim=1, keepdim=True)
    y = teacher(x, beta)
    x, y = x.to(device), y.to(device)
    return Task(x[:n_train], y[:n_train], x[n_train:], y[n_train:])


@dataclass
class WidthResult:
    """One activation at one width, ``members`` initialisations trained at once.

    ``kernel0`` is ``(members, N, N)`` on train then test points at init; ``kernel_end`` the
    ``(members, n_train, n_train)`` train kernel after training; ``f0`` and ``f_end`` the
    outputs ``(members, N)`` on all points before and after training; ``loss`` ``(steps + 1, members)``.
    """

    activation: str
    width: int
    kernel0: np.ndarray
    kernel_end: np.ndarray
    f0: np.ndarray
    f_end: np.ndarray
    loss: np.ndarray


def train_width(
    task: Task,
    *,
    activation: str,
    width: int,
    members: int,
    lr: float,
    steps: int,
    generator: torch.Generator,
    max_units: int = 2**14,
) -> WidthResult:
    """Build ``members`` two-layer nets of one width, measure the kernel, train, measure again.

    The members train as one ensemble, split into groups of at most ``max_units // width``
    members: the Jacobian behind the empirical kernel holds ``points × 17·width·members``
    numbers, and the groups keep it under a few hundred MB at the widest widths. Groups draw
    their weights from ``generator`` one after the other; the split depends only on the width
    and ``max_units``, so a run is reproducible from its seed.
    """
    per_group = max(1, min(members, max_units // width))
    parts = [
        _train_group(task, activation, width, min(per_group, members - start), lr, steps, generator)
        for start in range(0, members, per_group)
    ]
    kernel0, kernel_end, f0, f_end = (np.concatenate([p[i] for p in parts]) for i in range(4))  # member axis first
    loss = np.concatenate([p[4] for p in parts], axis=1)  # (steps + 1, members)
    return WidthResult(activation, width, kernel0, kernel_end, f0, f_end, loss)


def _train_group(
    task: Task, activation: str, width: int, members: int, lr: float, steps: int, generator: torch.Generator
) -> tuple[np.ndarray, ...]:
    """One ensemble: ``(kernel0, kernel_end, f0, f_end, loss)`` as numpy arrays (see :class:`WidthResult`)."""
    d = task.x_train.shape[1]
    config = MLPConfig(
        widths=[d, width, 1], parameterization="ntk", activation=activation, members=members, dtype=DTYPE
    )
    net = MLP(config, generator=generator).to(task.x_train.device)
    x_all = task.x_all
    kernel0 = empirical_ntk(net, x_all).reshape(members, x_all.shape[0], x_all.shape[0])
    with torch.no_grad():
        f0 = net(x_all)[..., 0]
    history = train_full_batch(net, task.x_train, task.y_train, lr=lr, steps=steps)
    n_train = task.x_train.shape[0]
    kernel_end = empirical_ntk(net, task.x_train).reshape(members, n_train, n_train)
    with torch.no_grad():
        f_end = net(x_all)[..., 0]
    return tuple(t.detach().cpu().numpy() for t in (kernel0, kernel_end, f0, f_end, history.loss))


@dataclass
class Scan:
    """All runs of a width scan, and the infinite-width reference kernels on the same points."""

    task: Task
    lr: float
    steps: int
    runs: dict[str, list[WidthResult]] = field(default_factory=dict)
    theory: dict[str, np.ndarray] = field(default_factory=dict)
    theory_std: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return self.task.x_train.shape[0]


def width_scan(
    task: Task,
    *,
    activations: Sequence[str],
    widths: Sequence[int],
    members: int,
    lr: float,
    steps: int,
    generator: torch.Generator,
) -> Scan:
    """Train every activation at every width; also compute each activation's infinite-width kernel
    ``Θ_∞`` and the per-unit standard deviation ``s`` of its entries (:func:`phenomena.theory.ntk_two_layer`)."""
    if members < 2:
        raise ValueError(f"members must be >= 2 (the seed-to-seed spread needs two), got {members}")
    scan = Scan(task, lr, steps)
    x = task.x_all.cpu().numpy()
    for act in activations:
        scan.theory[act], scan.theory_std[act] = ntk_two_layer(x, None, act, return_std=True)
        scan.runs[act] = [
            train_width(task, activation=act, width=int(n), members=members, lr=lr, steps=steps, generator=generator)
            for n in widths
        ]
    return scan


def _upper(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.triu_indices(n)


def init_table(scan: Scan) -> pd.DataFrame:
    """Per activation and width: how the kernel at init compares with ``Θ_∞``.

    * ``z2``: the mean over members and distinct entries of ``((Θ_n − Θ_∞)/(s/√n))²``. Since
      ``Var Θ_n = s²/n`` exactly, its expectation is 1 at every width if ``Θ_∞`` and ``s`` are right.
    * ``spread``: the root-mean-square over distinct entries of the seed-to-seed standard
      deviation (ddof 1), relative to the RMS of ``Θ_∞``; ``spread_theory``: the same from ``s/√n``.
    * ``rel_error``: ``‖mean over members of Θ_n − Θ_∞‖_F / ‖Θ_∞‖_F``.
    """
    rows = []
    for act, runs in scan.runs.items():
        theta, s = scan.theory[act], scan.theory_std[act]
        iu = _upper(theta.shape[0])
        scale = np.sqrt(np.mean(theta[iu] ** 2))
        for r in runs:
            k = r.kernel0[:, iu[0], iu[1]]
            sd = s[iu] / np.sqrt(r.width)
            rows.append(
                {
                    "activation": act,
                    "width": r.width,
                    "members": k.shape[0],
                    "z2": float(np.mean(((k - theta[iu]) / sd) ** 2)),
                    "spread": float(np.sqrt(np.mean(k.std(axis=0, ddof=1) ** 2)) / scale),
                    "spread_theory": float(np.sqrt(np.mean(sd**2)) / scale),
                    "rel_error": float(np.linalg.norm(r.kernel0.mean(0) - theta) / np.linalg.norm(theta)),
                }
            )
    return pd.DataFrame(rows)


def init_z2(scan: Scan) -> pd.DataFrame:
    """One row per network (activation, width, member): the mean over distinct kernel entries of
    ``((Θ_n − Θ_∞)/(s/√n))²``. Its expectation is exactly 1 if ``Θ_∞`` and ``s`` are right."""
    rows = []
    for act, runs in scan.runs.items():
        theta, s = scan.theory[act], scan.theory_std[act]
        iu = _upper(theta.shape[0])
        for r in runs:
            z2 = (((r.kernel0[:, iu[0], iu[1]] - theta[iu]) / (s[iu] / np.sqrt(r.width))) ** 2).mean(1)
            rows += [{"activation": act, "width": r.width, "member": e, "z2": float(v)} for e, v in enumerate(z2)]
    return pd.DataFrame(rows)


def kernel_change(run: WidthResult, n_train: int) -> np.ndarray:
    """``‖Θ_T − Θ_0‖_F / ‖Θ_0‖_F`` on the train points, per member."""
    k0 = run.kernel0[:, :n_train, :n_train]
    return np.linalg.norm(run.kernel_end - k0, axis=(1, 2)) / np.linalg.norm(k0, axis=(1, 2))


def linearized_prediction(run: WidthResult, y_train: np.ndarray, n_train: int, lr: float, steps: int) -> np.ndarray:
    """The NTK-regime prediction at every point after ``steps`` of gradient descent, per member.

    A model linearised around its init, with its *initial* kernel ``K``, trained by gradient
    descent with rate ``η`` on ``½·mean(f − y)²`` over ``N`` train points moves its train residual
    as ``r_T = (I − ηK/N)^T r_0`` with ``r_0 = f_0 − y``. The fitted part ``g = r_0 − r_T`` reaches
    every point through the kernel: ``f_T(x) = f_0(x) − K(x, X) K⁻¹ g``, i.e. kernel regression
    (:func:`phenomena.metrics.kernel_regression`) onto ``−g``. As ``T → ∞``, ``g → r_0`` and this
    is the textbook ``f_0 + K(x, X)K⁻¹(y − f_0)``: the network's output at init is not zero, and
    is kept, not dropped. Returns ``(members, N)``.
    """
    k = torch.as_tensor(run.kernel0)
    k_train, k_all_train = k[:, :n_train, :n_train], k[:, :, :n_train]
    f0 = torch.as_tensor(run.f0)
    r0 = f0[:, :n_train] - torch.as_tensor(y_train).reshape(1, -1)
    eye = torch.eye(n_train, dtype=k.dtype)
    step = eye - lr / n_train * k_train
    r_end = torch.linalg.matrix_power(step, steps) @ r0.unsqueeze(-1)
    fitted = r0.unsqueeze(-1) - r_end
    return (f0 - kernel_regression(k_train, fitted, k_all_train).squeeze(-1)).numpy()


def training_table(scan: Scan) -> pd.DataFrame:
    """Per activation and width: the kernel's relative change over training (mean and spread over
    members), the final train loss relative to its start, and how far the trained network's test
    outputs are from the NTK-regime prediction.

    ``lin_error`` is ``‖f_T − f_lin,T‖ / ‖f_lin,T − f_0‖`` on the test points, per member (the
    largest over members is reported): the distance to the linearised prediction relative to how
    far training moved the outputs, so the network's (non-zero) output at init cannot hide a
    mismatch, nor make one.
    """
    rows = []
    y = scan.task.y_train.cpu().numpy()[:, 0]
    n = scan.n_train
    for act, runs in scan.runs.items():
        for r in runs:
            change = kernel_change(r, n)
            lin = linearized_prediction(r, y, n, scan.lr, scan.steps)
            test = slice(n, None)
            err = np.linalg.norm(r.f_end[:, test] - lin[:, test], axis=1) / np.linalg.norm(
                lin[:, test] - r.f0[:, test], axis=1
            )
            rows.append(
                {
                    "activation": act,
                    "width": r.width,
                    "kernel_change": float(change.mean()),
                    "kernel_change_min": float(change.min()),
                    "kernel_change_max": float(change.max()),
                    "train_loss_ratio": float((r.loss[-1] / r.loss[0]).max()),
                    "lin_error": float(err.max()),
                }
            )
    return pd.DataFrame(rows)


def pooled_slope(table: pd.DataFrame, x: str, y: str, by: str = "activation") -> float:
    """One power-law exponent shared by every group of ``table`` (each group keeps its own prefactor):
    the slope of ``log y`` against ``log x`` after removing each group's means."""
    lx, ly = np.log(table[x].to_numpy(float)), np.log(table[y].to_numpy(float))
    groups = table[by].to_numpy()
    for g in np.unique(groups):
        sel = groups == g
        lx[sel] -= lx[sel].mean()
        ly[sel] -= ly[sel].mean()
    if not np.all(np.isfinite(ly)) or float((lx * lx).sum()) == 0:
        return float("nan")
    return float((lx * ly).sum() / (lx * lx).sum())
