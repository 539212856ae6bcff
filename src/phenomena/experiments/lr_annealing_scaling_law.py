"""Chapter lr-annealing-scaling-law: many learning-rate schedules, one batched model, and the law that predicts them.

Online SGD on the power-law teacher (:mod:`phenomena.data.powerlaw`): every step draws
fresh samples, so ``steps × batch`` is the data seen and the loss on fresh samples is the test
loss. The runs of one seed share their samples (common random numbers), so the differences
between schedules are not drowned by sampling noise; seeds are independent.

* :func:`train_linear`: linear students, every member following its own learning-rate array
  (and, optionally, learning only the first ``capacity`` coordinates); the population loss is
  exact at every step.
* :func:`train_mlp`: two-layer ReLU networks (standard parameterisation) at one width; the loss
  is the mean over fresh samples, read in log-spaced windows.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from phenomena.data.powerlaw import PowerLawTask
from phenomena.ensemble import SGD, fit
from phenomena.metrics.curves import mape as curves_mape
from phenomena.models.mlp import MLP, MLPConfig
from phenomena.theory import annealing


@dataclass
class LinearCurves:
    """``loss[t, seed, j]``: exact population loss after ``t`` steps of seed ``seed`` under column ``j``
    of ``lrs`` (``(steps, columns)``) with ``capacity[j]`` learnable coordinates."""

    loss: np.ndarray
    lrs: np.ndarray
    capacity: np.ndarray

    @property
    def mean(self) -> np.ndarray:
        """``(steps + 1, columns)``: the mean over seeds."""
        return self.loss.mean(1)

    @property
    def se(self) -> np.ndarray:
        """``(steps + 1, columns)``: the standard error of the mean over seeds."""
        return self.loss.std(1, ddof=1) / np.sqrt(self.loss.shape[1])


def train_linear(
    teacher: PowerLawTask,
    lrs: np.ndarray,
    *,
    seeds: int,
    batch: int,
    generator: torch.Generator,
    capacity: Sequence[int] | None = None,
) -> LinearCurves:
    """Train ``seeds × columns`` linear students from zero as one ensemble; member ``s·columns + j``
    follows ``lrs[:, j]`` on seed ``s``'s samples. Returns the exact loss after every step."""
    lrs = np.asarray(lrs, float)
    if lrs.ndim != 2:
        raise ValueError(f"lrs must be (steps, columns), got shape {lrs.shape}; see phenomena.schedules.stack")
    steps, cols = lrs.shape
    cap = np.full(cols, teacher.modes) if capacity is None else np.asarray(capacity, int)
    if cap.shape != (cols,) or cap.min() < 1 or cap.max() > teacher.modes:
        raise ValueError(f"capacity needs one value in 1 … {teacher.modes} per column ({cols}), got {capacity}")
    members = seeds * cols
    capped = bool((cap < teacher.modes).any())
    mask = (torch.arange(teacher.modes)[None, :] < torch.as_tensor(cap)[:, None]).float().repeat(seeds, 1)
    weights = torch.zeros(members, teacher.modes, requires_grad=True)
    optimizer = SGD([weights], lr=float(lrs[0].max()))

    def student() -> torch.Tensor:
        return weights * mask if capped else weights

    def loss() -> torch.Tensor:
        x, y = teacher.sample(batch, generator, batch=(seeds,), dtype=torch.float32)  # (seeds, batch, dim), (seeds, batch)
        w = student().view(seeds, cols, teacher.modes)
        pred = torch.bmm(w, x.transpose(1, 2))  # (seeds, cols, batch)
        return (0.5 * (pred - y[:, None, :]) ** 2).mean(-1).reshape(members)

    history = fit(
        optimizer, loss, steps,
        # the exact population loss ½‖Λ^{1/2}(w − w*)‖² + σ²/2 of the half-MSE the students minimise
        record={"population": lambda: teacher.risk(student()) / 2},
        lr_schedule=torch.as_tensor(np.tile(lrs, (1, seeds))),
    )
    curve = history.recorded["population"].double().numpy().reshape(steps + 1, seeds, cols)
    return LinearCurves(loss=curve, lrs=lrs, capacity=cap)


@dataclass
class MLPCurves:
    """Test loss of two-layer ReLU networks at one width: ``loss[i, seed]`` on a fixed test set after
    ``steps[i]`` steps (samples seen = steps × batch)."""

    width: int
    steps: np.ndarray
    loss: np.ndarray


def log_steps(steps: int, points: int, first: int = 10) -> np.ndarray:
    """About ``points`` log-spaced distinct step counts from ``first`` to ``steps``."""
    return np.unique(np.geomspace(first, steps, points).astype(int))


def train_mlp(
    teacher: PowerLawTask,
    width: int,
    *,
    lr: float,
    steps: int,
    seeds: int,
    batch: int,
    n_test: int,
    generator: torch.Generator,
    points: int = 24,
) -> MLPCurves:
    """Train ``seeds`` networks ``dim → width → 1`` (ReLU, standard parameterisation, no bias) with a
    constant ``lr`` on fresh samples (each seed its own samples and init), and read the loss on one
    fixed test set of ``n_test`` samples at ``points`` log-spaced steps. A fixed set makes its own
    sampling error the same at every step, so the curve's shape is not blurred by it."""
    config = MLPConfig(widths=[teacher.modes, width, 1], activation="relu", parameterization="standard",
                       members=seeds)
    model = MLP(config, generator=generator)
    x_test, y_test = teacher.sample(n_test, generator, dtype=torch.float32)
    optimizer = SGD(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        x, y = teacher.sample(batch, generator, batch=(seeds,), dtype=torch.float32)
        return (0.5 * (model(x)[..., 0] - y) ** 2).mean(-1)

    def test_loss() -> np.ndarray:
        with torch.no_grad():
            return (0.5 * (model(x_test)[..., 0] - y_test) ** 2).mean(-1).numpy()

    at = log_steps(steps, points)
    out, done = [], 0
    for s in at:
        fit(optimizer, loss, int(s - done))
        done = int(s)
        out.append(test_loss())
    return MLPCurves(width=width, steps=at, loss=np.stack(out))


# ----------------------------------------------------------------------------- reading the law off the curves
def window_edges(steps: int, *, start: float = 0.05, width: float = 0.01) -> np.ndarray:
    """Edges of windows ``width·steps`` long from ``start·steps`` to the last step (inclusive)."""
    lo, size = max(1, round(start * steps)), max(1, round(width * steps))
    return np.append(np.arange(lo, steps + 1, size), steps + 1)


def windowed(curve: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Mean of ``curve`` (rows: steps) over each window ``[edges[i], edges[i+1])``."""
    return np.stack([np.asarray(curve)[lo:hi].mean(0) for lo, hi in itertools.pairwise(edges)])


def fit_forward(lrs: np.ndarray, loss: np.ndarray, *, first: int = 5, last: int | None = None) -> annealing.LawFit:
    """The forward law ``L₀ + A·S₁^{−α}`` fitted (log-Huber) to one curve ``loss[s]``, steps ``first … last``
    (default: to the end)."""
    steps = np.arange(first, (len(lrs) if last is None else last) + 1)
    return annealing.fit_annealing_law([(lrs, steps, loss[steps])], anneal=False)


@dataclass
class Prediction:
    """The law fitted on some schedules' mean curves, and what it says about every schedule."""

    law: annealing.LawFit
    mape: np.ndarray
    """``(schedules,)``: mean absolute % error of the law over the windows from 5% of the steps on."""
    final: np.ndarray
    """``(schedules,)``: the law's loss after the last step."""


def fit_then_predict(curves: LinearCurves, train: Sequence[int], *, decay: float,
                     edges: np.ndarray) -> Prediction:
    """Fit ``(L₀, A, α, C)`` at decay factor ``decay`` on the windowed mean curves of columns ``train``,
    then predict every column: windowed MAPE and the final loss."""
    mean, lrs = curves.mean, curves.lrs
    centres = np.round((edges[:-1] + edges[1:] - 1) / 2).astype(int)
    data = [(lrs[:, j], centres, windowed(mean[:, j], edges)) for j in train]
    law = annealing.fit_annealing_law(data, decay=decay)
    mape = np.array([curves_mape(windowed(law.predict(lrs[:, j]), edges), windowed(mean[:, j], edges))
                     for j in range(lrs.shape[1])])
    final = np.array([law.predict(lrs[:, j])[-1] for j in range(lrs.shape[1])])
    return Prediction(law=law, mape=mape, final=final)


def best_decay(curves: LinearCurves, train: Sequence[int], *, decays: Sequence[float],
               edges: np.ndarray) -> Prediction:
    """:func:`fit_then_predict` at the decay factor (from ``decays``) that fits the ``train`` columns best:
    λ chosen on the training schedules only, never on the held-out ones."""
    fits = [fit_then_predict(curves, train, decay=d, edges=edges) for d in decays]
    return min(fits, key=lambda p: p.law.objective)
