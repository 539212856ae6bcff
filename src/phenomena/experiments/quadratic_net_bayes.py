"""Experiment of the chapter *quadratic-net-bayes*: gradient descent from many random inits as a posterior sampler.

For each sample ratio ``α = n_train/dim²`` we draw ``teachers`` quadratic teachers of width
``κ·dim`` (:mod:`phenomena.data.teacher`), ``n_train`` noiseless samples each, and train
``members`` students per teacher from independent ``N(0, 1)`` inits (the teacher's prior) with
full-batch gradient descent on the mean squared error. All ``teachers × members`` students train
at once as one ensemble; student ``e`` sees teacher ``e // members``'s data.

Errors are exact population test errors (:func:`phenomena.data.teacher.population_mse`),
normalised by the prior-mean predictor's, so ``ε = 1`` means "learned nothing":

* ``eps_single``: one student's error (its own ``Ŝ = WᵀW/m``);
* ``eps_avg``: the error of the students' average ``Ŝ`` (averaging the networks' outputs is the
  same thing, since the output is linear in ``Ŝ``).

If each student were an independent posterior sample, ``E eps_single = 2·ε_BO`` and
``E eps_avg = ε_BO(1 + 1/members)`` (Nishimori identity); that is what the chapter checks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..data.teacher import gaussian_inputs, population_mse, quadratic_teacher
from ..ensemble import SGD, fit
from ..models.quadratic import QuadraticNetwork

__all__ = ["AlphaRun", "excess", "finite_size_scan", "step_size", "train_students"]


@dataclass
class AlphaRun:
    """One ``α``: per-student and averaged errors, training losses, and their curves over training.

    Arrays are per teacher ``(teachers,)`` or per student ``(teachers, members)``; curves are
    ``(records, ...)`` at ``record_steps``. ``train_loss`` is the training MSE divided by the mean
    squared label (the labels are centred, so that is their variance).
    """

    alpha: float
    n_train: int
    eps_single: np.ndarray
    eps_avg: np.ndarray
    fitted: np.ndarray
    train_loss: np.ndarray
    record_steps: np.ndarray
    eps_avg_curve: np.ndarray
    eps_single_curve: np.ndarray
    train_loss_curve: np.ndarray
    steps: int

    @property
    def members(self) -> int:
        return self.eps_single.shape[1]

    def summary(self) -> dict[str, float]:
        """One table row: errors averaged over teachers, worst and best students, worst training loss."""
        single = self.eps_single[self.fitted]
        return {
            "alpha": self.alpha,
            "n_train": self.n_train,
            "members": self.members,
            "eps_avg": float(np.nanmean(self.eps_avg)),
            "eps_avg_se": float(np.nanstd(self.eps_avg) / math.sqrt(max(1, np.isfinite(self.eps_avg).sum()))),
            "eps_single": float(single.mean()) if single.size else math.nan,
            "ratio": float(single.mean() / np.nanmean(self.eps_avg)) if single.size else math.nan,
            "eps_single_min": float(self.eps_single.min()),
            "eps_single_max": float(self.eps_single.max()),
            "train_loss_max": float(self.train_loss.max()),
            "stuck": int((~self.fitted).sum()),
            "inv_members": float(np.mean(1 / np.maximum(self.fitted.sum(1), 1))),
            "steps": self.steps,
        }


def train_students(
    alpha: float,
    *,
    dim: int,
    kappa: float,
    members: int,
    teachers: int,
    steps: int,
    lr: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    record_every: int = 250,
    stop_loss: float = 1e-9,
    interpolation_tol: float = 1e-4,
    dtype: torch.dtype = torch.float32,
) -> AlphaRun:
    """Train ``teachers × members`` students at one ``α`` and measure their errors.

    The step size ``lr`` must be below the stability edge, which in this parameterisation grows
    with ``dim`` (the chapter uses ``lr ∝ dim``); a member that diverges raises
    :class:`phenomena.ensemble.DivergenceError` with a hint to lower it. Teachers, data and
    inits are drawn on the CPU from ``generator`` (so a run is the same on any device), in
    float64; training runs in ``dtype``; errors are evaluated in float64.

    Training stops early, at a multiple of ``record_every``, once every student's training MSE
    is below ``stop_loss`` times the mean squared label: at zero loss the gradient vanishes and
    nothing moves any more, so the remaining steps would only cost time. A student whose final
    training MSE is still above ``interpolation_tol`` (relative) has not found an interpolant and
    is left out of ``eps_avg`` (``fitted`` says which); the curves keep every student.
    """
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a positive number, got {alpha}")
    width = max(1, round(kappa * dim))
    n_train = max(1, round(alpha * dim * dim))
    teacher = quadratic_teacher(dim, width, generator, teachers=teachers)
    x = gaussian_inputs(n_train, dim, generator, teachers=teachers)
    y = teacher(x)
    target = teacher.matrix  # (teachers, d, d), float64
    prior = teacher.prior_mean_mse()  # (teachers,)
    scale = (y * y).mean(1)  # (teachers,) mean squared label

    net = QuadraticNetwork(teachers * members, width, dim, generator=generator, dtype=torch.float64)
    net = net.to(device=device, dtype=dtype)
    xs = x.to(device=device, dtype=dtype).repeat_interleave(members, 0)  # (teachers*members, n, d)
    ys = y.to(device=device, dtype=dtype).repeat_interleave(members, 0)
    per_member_scale = scale.to(device=device, dtype=dtype).repeat_interleave(members, 0)
    target_dev, prior_dev = target.to(device), prior.to(device)

    def loss() -> torch.Tensor:
        r = net(xs) - ys
        return 0.5 * (r * r).mean(1)

    def errors() -> torch.Tensor:
        s = net.matrix().to(torch.float64).view(teachers, members, dim, dim)
        single = population_mse(s, target_dev[:, None]) / prior_dev[:, None]
        avg = population_mse(s.mean(1), target_dev) / prior_dev
        return torch.cat([single, avg[:, None]], 1)  # (teachers, members + 1)

    optimizer = SGD(net.parameters(), lr=lr)
    # train in chunks of `record_every` steps; stop once every student interpolates (or at `steps`)
    errs_list, loss_list, rec_list, done = [], [], [], 0
    while True:
        chunk = min(record_every, steps - done)
        history = fit(optimizer, loss, chunk, record={"errors": errors}, record_every=record_every)
        first = 0 if done == 0 else 1  # a chunk's first record repeats the previous chunk's last
        errs_list.append(history.recorded["errors"][first:])
        loss_list.append(history.loss[first:])
        rec_list.append(history.record_steps[first:] + done)
        done += chunk
        rel = 2 * history.loss[-1] / per_member_scale.cpu()
        if done >= steps or float(rel.max()) <= stop_loss:
            break
    errs = torch.cat(errs_list).numpy()  # (records, teachers, members + 1)
    rel_loss = (2 * torch.cat(loss_list) / per_member_scale.cpu()[None]).numpy().reshape(-1, teachers, members)
    rec = torch.cat(rec_list).numpy()
    # only students that fit their data count as posterior samples: a student stuck at a
    # non-zero training loss is left out of the average (and counted in `stuck`)
    fitted = torch.as_tensor(rel_loss[-1] <= interpolation_tol)
    s = net.matrix().to(torch.float64).cpu().view(teachers, members, dim, dim)
    weight = fitted.to(torch.float64) / fitted.sum(1, keepdim=True).clamp(min=1)
    s_avg = (weight[:, :, None, None] * s).sum(1)
    eps_avg = (population_mse(s_avg, target) / prior).numpy()
    eps_avg[~fitted.any(1).numpy()] = np.nan
    return AlphaRun(
        alpha=float(alpha),
        n_train=n_train,
        eps_single=errs[-1, :, :members],
        eps_avg=eps_avg,
        fitted=fitted.numpy(),
        train_loss=rel_loss[-1],
        record_steps=rec,
        eps_avg_curve=errs[:, :, members],
        eps_single_curve=errs[:, :, :members],
        train_loss_curve=rel_loss[rec],
        steps=done,
    )


def step_size(dim: int, alpha: float, lr_scale: float) -> float:
    """``lr = lr_scale · dim² · √α``: below the edge of stability at every ``dim`` and ``α`` the chapter uses.

    In this parameterisation (weights ``N(0, 1)``, output ``1/(m√d)``) the loss's curvature in the
    weights falls as ``1/dim²``, so the largest stable step grows as ``dim²``; it also grows with
    the number of samples (measured: about ``0.02·dim²·√α`` for ``dim`` 16–24), because fewer
    samples leave sharper directions. ``lr_scale = 0.01`` keeps a margin of about 2.
    """
    if not (lr_scale > 0 and alpha > 0):
        raise ValueError(f"lr_scale and alpha must be positive, got {lr_scale}, {alpha}")
    return float(lr_scale * dim * dim * math.sqrt(alpha))


def excess(row: dict | pd.Series, kappa: float) -> float:
    """``ε_avg − ε_BO(1 + ⟨1/R⟩)``: how far the averaged students are above what ``R`` posterior samples give."""
    from ..theory.quadratic import bayes_error

    return float(row["eps_avg"] - bayes_error(float(row["alpha"]), kappa) * (1 + row["inv_members"]))


def finite_size_scan(alpha: float, dims: Sequence[int], *, kappa: float, lr_scale: float,
                     generators: Sequence[torch.Generator], **kwargs) -> pd.DataFrame:
    """The averaged students' excess over the Bayes-optimal error at one ``α`` and several ``dims``.

    The paper's statement is asymptotic (``d → ∞``); at finite ``d`` the error of ``R`` posterior
    samples carries ``O(1/d)`` corrections. One row per ``dim`` (see :func:`train_students`).
    """
    if len(generators) != len(dims):
        raise ValueError(f"need one generator per dim, got {len(generators)} for {len(dims)} dims")
    rows = []
    for d, g in zip(dims, generators):
        run = train_students(alpha, dim=int(d), kappa=kappa, lr=step_size(int(d), alpha, lr_scale), generator=g,
                             **kwargs)
        row = run.summary()
        rows.append({"dim": int(d), **row, "excess": excess(row, kappa)})
    return pd.DataFrame(rows)
