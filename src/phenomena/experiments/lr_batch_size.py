"""Experiments of the chapter *lr-batch-size*: the minibatch Hessian's edge, and the largest stable step vs batch size.

Granziol, Zohren & Roberts (2022) model the Hessian of a minibatch of ``B`` samples as the
full-batch Hessian plus a random matrix whose entries have variance ``∝ 1/B``. Random matrix
theory then says that the top eigenvalue of the minibatch Hessian exceeds the full-batch one by
a term ``∝ 1/B`` (as long as the full-batch top eigenvalue stands out of the noise's bulk), so
that the largest stable learning rate of SGD grows ``∝ B`` and that of Adam ``∝ √B`` (its
preconditioner shrinks as ``1/√B`` when gradient noise dominates it), until the batch is so large
that the full-batch curvature dominates: the *critical batch size*.

The network: a one-width-layer tanh MLP on scikit-learn's digits (standardised pixels, squared
loss on one-hot targets, float64), briefly pre-trained with full-batch Adam to a point ``w₀``
where the loss is well below its initial value. Every measurement is made at ``w₀``:

* :func:`batch_hessian_spectrum`: the top eigenvalue of the minibatch Hessian for many
  minibatches of each size, all minibatches of one size at once (one ensemble member per
  minibatch, every member a copy of ``w₀``; the ensemble's Hessian is block diagonal);
* :func:`stability_scan`: SGD or Adam from ``w₀`` at every learning rate of a grid (one member
  per rate) for each batch size, every member of a batch size seeing the same minibatch stream,
  so that rates differ only by the rate.

Minibatches are drawn with replacement: then the minibatch loss is an average of ``B``
independent draws, and its Hessian's deviation from the full-batch Hessian has covariance
exactly ``∝ 1/B``, the paper's assumption (without replacement it would be ``∝ 1/B − 1/N``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..data import load_digits_split
from ..ensemble import SGD, Adam, fit
from ..metrics import ensemble_hessian_top_eigenvalue, hessian_top_eigenvalue
from ..metrics.curves import loglog_slope
from ..models import MLP, MLPConfig
from ..train import half_mse

DTYPE = torch.float64
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")


@dataclass
class Problem:
    """Digits inputs ``x (N, 64)``, one-hot targets ``y (N, 10)``, and the pre-trained network ``w₀``.

    ``model`` is an ensemble of one member; ``initial_loss`` is the loss of the untrained
    network (the yardstick of "training blew up"), ``loss`` that of ``w₀``.
    """

    x: Tensor
    y: Tensor
    model: MLP
    initial_loss: float
    loss: float

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    def replicate(self, members: int) -> MLP:
        """An ensemble of ``members`` copies of ``w₀`` (same config, on the same device)."""
        net = MLP(replace(self.model.config, members=members)).to(self.x.device)
        with torch.no_grad():
            for p, q in zip(net.parameters(), self.model.parameters()):
                p.copy_(q.expand_as(p))
        return net

    def full_loss(self, net: MLP) -> Tensor:
        """The full-batch loss of every member of ``net``: ``(members,)``."""
        return half_mse(net(self.x), self.y)


def make_problem(
    *,
    width: int,
    pretrain_steps: int,
    pretrain_lr: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> Problem:
    """Load the digits (the 70% training split), build ``64 → width → 10`` (tanh, biases) and pre-train it.

    Pre-training is full-batch Adam at ``pretrain_lr`` for ``pretrain_steps`` steps: far enough
    that the loss is a fraction of its initial value and gradient noise dominates the gradient
    (the regime of the paper's analysis), not so far that the net interpolates its data.
    """
    if width < 1 or pretrain_steps < 0 or not pretrain_lr > 0:
        raise ValueError(f"need width >= 1, pretrain_steps >= 0, pretrain_lr > 0; got {width}, {pretrain_steps}, {pretrain_lr}")
    data = load_digits_split(generator=generator, dtype=DTYPE, device=device)
    x = data.x_train
    y = torch.nn.functional.one_hot(data.y_train, data.n_classes).to(DTYPE)
    config = MLPConfig([data.dim, width, data.n_classes], activation="tanh", bias=True, dtype=DTYPE)
    model = MLP(config, generator=generator).to(device)
    with torch.no_grad():
        initial = float(half_mse(model(x), y)[0])
    fit(Adam(model.parameters(), pretrain_lr), lambda: half_mse(model(x), y), pretrain_steps)
    with torch.no_grad():
        loss = float(half_mse(model(x), y)[0])
    return Problem(x=x, y=y, model=model, initial_loss=initial, loss=loss)


def _draw(problem: Problem, shape: tuple[int, ...], generator: torch.Generator) -> Tensor:
    """Sample indices with replacement, drawn on the CPU generator, moved to the data's device."""
    return torch.randint(0, problem.n, shape, generator=generator).to(problem.x.device)


# ----------------------------------------------------------------------------- claim 1
@dataclass
class BatchHessian:
    """Top eigenvalues ``values[i, j]`` of the Hessian of minibatch ``j`` of size ``batch_sizes[i]``, and the full-batch one."""

    batch_sizes: np.ndarray
    values: np.ndarray
    full: float

    @property
    def excess(self) -> np.ndarray:
        """Median over minibatches of ``λ_max(B) − λ_max(full)``, per batch size.

        The median, not the mean: random matrix theory predicts the *typical* edge of the
        spectrum, and a few minibatches holding an outlier sample would dominate a mean.
        """
        return np.median(self.values, axis=1) - self.full

    def slope(self) -> float:
        """Least-squares slope of ``log excess`` against ``log B`` (``nan`` if fewer than two excesses are positive)."""
        return loglog_slope(self.batch_sizes, self.excess, drop_invalid=True)

    def critical_batch(self) -> float:
        """The batch size at which the fitted excess equals the full-batch top eigenvalue.

        Below it the minibatch noise sets the top of the spectrum; above it the full-batch
        curvature does (the paper's critical batch size). Uses the ``1/B`` law with its
        prefactor fitted to the measured excesses.
        """
        ok = self.excess > 0
        if ok.sum() < 1:
            return float("nan")
        coefficient = float(np.exp(np.mean(np.log(self.excess[ok] * self.batch_sizes[ok]))))
        return coefficient / self.full


def batch_hessian_spectrum(
    problem: Problem,
    batch_sizes: Sequence[int],
    *,
    batches: int,
    generator: torch.Generator,
    iters: int = 300,
    tol: float = 1e-3,
) -> BatchHessian:
    """Top Hessian eigenvalue of ``batches`` random minibatches of every size, and of the full batch, at ``w₀``.

    For one batch size, ``batches`` copies of ``w₀`` each get their own minibatch (per-member
    inputs ``(batches, B, 64)``) and one power iteration runs on all blocks at once. ``tol``
    bounds each eigenvalue's relative residual; a minibatch whose power iteration has not
    converged after ``iters`` products (two nearly equal top eigenvalues) keeps its last
    Rayleigh quotient, a lower bound of its top eigenvalue.
    """
    sizes = [int(b) for b in batch_sizes]
    if not sizes or min(sizes) < 1 or batches < 1:
        raise ValueError(f"need batch sizes >= 1 and batches >= 1, got {sizes} and {batches}")
    values = []
    for size in sizes:
        net = problem.replicate(batches)
        idx = _draw(problem, (batches, size), generator)
        xb, yb = problem.x[idx], problem.y[idx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            top = ensemble_hessian_top_eigenvalue(
                lambda net=net, xb=xb, yb=yb: half_mse(net(xb), yb), list(net.parameters()),
                iters=iters, tol=tol, generator=torch.Generator().manual_seed(size),
            )
        values.append(top.values.detach().cpu().numpy())
    model = problem.model
    full = hessian_top_eigenvalue(
        lambda: half_mse(model(problem.x), problem.y).sum(), list(model.parameters()), iters=1000, tol=1e-6
    )
    return BatchHessian(batch_sizes=np.asarray(sizes, float), values=np.stack(values), full=float(full))


# ----------------------------------------------------------------------------- claim 2
@dataclass
class StabilityScan:
    """Which runs stayed stable: ``stable[i, s, j]`` for ``batch_sizes[i]``, minibatch stream ``s`` and ``lrs[j]``.

    ``final_loss`` is the full-batch loss after the last step (``nan`` where the run diverged);
    ``preconditioner[i, s, j]`` is Adam's median ``√v̂`` over all weights at the end (``nan`` for SGD).
    """

    optimizer: str
    batch_sizes: np.ndarray
    lrs: np.ndarray
    stable: np.ndarray
    final_loss: np.ndarray
    preconditioner: np.ndarray
    steps: int

    @property
    def max_lr_per_stream(self) -> np.ndarray:
        """``(batch sizes, streams)``: the largest rate of the grid below the first unstable one (``nan`` if none).

        Taking the edge of the stable region from below, rather than the largest stable rate
        anywhere, ignores a lucky stable run above an unstable one.
        """
        first_bad = np.where(self.stable.all(-1), self.stable.shape[-1], np.argmin(self.stable, axis=-1))
        padded = np.concatenate([[np.nan], self.lrs])
        return padded[first_bad]

    @property
    def max_lr(self) -> np.ndarray:
        """Per batch size, the geometric median over streams of :attr:`max_lr_per_stream`."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.exp(np.nanmedian(np.log(self.max_lr_per_stream), axis=1))

    @property
    def censored(self) -> np.ndarray:
        """Per batch size, whether every rate of the grid was stable in some stream (the maximum may lie above the grid)."""
        return self.stable.all(axis=-1).any(axis=-1)


def stability_scan(
    problem: Problem,
    optimizer: Literal["sgd", "adam"],
    batch_sizes: Sequence[int],
    lrs: Sequence[float],
    *,
    steps: int,
    generator: torch.Generator,
    streams: int = 1,
    checks: int = 20,
    betas: tuple[float, float] = (0.9, 0.999),
) -> StabilityScan:
    """Train from ``w₀`` for ``steps`` steps at every rate in ``lrs`` and every batch size; report which runs stayed stable.

    *Stable* means: the run never produced a non-finite loss, and its full-batch loss, looked at
    ``checks`` times along the run and after the last step, always stayed below the loss of the
    *untrained* network: the steps never threw the network out of the basin that pre-training
    found. (Looking along the run matters for Adam: after a blow-up its second-moment estimate
    grows, its steps shrink and the loss can come back down by the end.) Every batch size trains all rates and
    ``streams`` independent minibatch streams at once, one ensemble member per (stream, rate);
    a fresh minibatch is drawn with replacement at every step, shared by the rates of a stream,
    so that within a stream rates differ only by the rate. Plain SGD (no momentum) and Adam
    with ``betas`` (PyTorch's defaults (0.9, 0.999); ``(0, β₂)`` is RMSprop with bias correction), ε = 1e-8.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid ones are: {', '.join(OPTIMIZERS)}")
    sizes = [int(b) for b in batch_sizes]
    rates = np.asarray(list(lrs), float)
    if not sizes or min(sizes) < 1 or rates.size == 0 or steps < 1 or streams < 1:
        raise ValueError(
            f"need batch sizes >= 1, a rate, steps >= 1 and streams >= 1; got {sizes}, {rates.size}, {steps}, {streams}"
        )
    device = problem.x.device
    n_lr = rates.size
    stable, final, precond = [], [], []
    for size in sizes:
        net = problem.replicate(streams * n_lr)
        params = list(net.parameters())
        lr = torch.as_tensor(np.tile(rates, streams), dtype=DTYPE, device=device)
        opt = SGD(params, lr) if optimizer == "sgd" else Adam(params, lr, betas=betas)

        def loss(net: MLP = net, size: int = size) -> Tensor:
            idx = _draw(problem, (streams, size), generator).repeat_interleave(n_lr, dim=0)
            return half_mse(net(problem.x[idx]), problem.y[idx])

        history = fit(
            opt, loss, steps, on_divergence="mask", record={"full": lambda net=net: problem.full_loss(net)},
            record_every=max(1, steps // checks),
        )
        worst = history.recorded["full"].nan_to_num(nan=torch.inf).amax(0)
        end = history.recorded["full"][-1]
        ok = ~history.diverged & (worst < problem.initial_loss)
        stable.append(ok.numpy().reshape(streams, n_lr))
        final.append(torch.where(history.diverged, torch.nan, end).numpy().reshape(streams, n_lr))
        precond.append(_adam_scale(opt).reshape(streams, n_lr))
    return StabilityScan(
        optimizer=optimizer,
        batch_sizes=np.asarray(sizes, float),
        lrs=rates,
        stable=np.stack(stable),
        final_loss=np.stack(final),
        preconditioner=np.stack(precond),
        steps=int(steps),
    )


def _adam_scale(opt: SGD | Adam) -> np.ndarray:
    """Adam's bias-corrected ``√v̂``, median over all weights, per member (``nan`` for SGD).

    ``v̂`` estimates the second moment of the minibatch gradient, ``|∇L|² + σ²/B`` per weight:
    when the noise term dominates, ``√v̂ ∝ 1/√B``, the step the paper's √B rule rests on.
    """
    if not isinstance(opt, Adam):
        return np.full(opt.members, np.nan)
    correction = (1 - opt.beta2**opt.member_steps.clamp(min=1)).cpu()
    flat = torch.cat([v.detach().cpu().reshape(opt.members, -1) for v in opt.exp_avg_sq], dim=1)
    return (flat / correction[:, None]).sqrt().median(dim=1).values.numpy()


def power_law_with_plateau(batch: np.ndarray, log_scale: float, exponent: float, log_critical: float) -> np.ndarray:
    """``log α_max(B)`` for ``α_max = A·Bᵏ / (1 + (B/B_c)ᵏ)``: ``∝ Bᵏ`` below the critical batch ``B_c``, constant above.

    For SGD with ``k = 1`` this is the paper's ``α_max = 2/(λ₁ + c/B)``: ``2/c·B`` below
    ``B_c = c/λ₁``, ``2/λ₁`` above. Parameters: ``log A``, ``k``, ``log B_c``.
    """
    b = np.asarray(batch, float)
    return log_scale + exponent * np.log(b) - np.log1p((b / np.exp(log_critical)) ** exponent)


def fit_exponent(batch_sizes: np.ndarray, max_lr: np.ndarray, censored: np.ndarray | None = None) -> dict[str, float]:
    """Fit :func:`power_law_with_plateau` to the measured ``α_max(B)`` (least squares on ``log α``).

    Batch sizes whose whole grid was stable (censored) or without a stable rate are left out.
    Returns ``exponent`` (the scaling below the critical batch), ``critical`` (``B_c``) and
    ``scale`` (``A``); ``nan`` where fewer than four points remain or the fit fails.
    """
    from scipy.optimize import curve_fit

    b, lr = np.asarray(batch_sizes, float), np.asarray(max_lr, float)
    keep = np.isfinite(lr) & (lr > 0)
    if censored is not None:
        keep &= ~np.asarray(censored, bool)
    nan = {"exponent": float("nan"), "critical": float("nan"), "scale": float("nan")}
    if keep.sum() < 4:
        return nan
    b, y = b[keep], np.log(lr[keep])
    slope = loglog_slope(b, lr[keep], drop_invalid=True)
    start = (float(y[0] - slope * np.log(b[0])), max(slope, 0.1), float(np.log(np.median(b))))
    try:
        (log_a, k, log_bc), _ = curve_fit(
            power_law_with_plateau, b, y, p0=start,
            bounds=([-np.inf, 0.0, np.log(b.min()) - 3], [np.inf, 3.0, np.log(b.max()) + 3]),
        )
    except (RuntimeError, ValueError):
        return nan
    return {"exponent": float(k), "critical": float(np.exp(log_bc)), "scale": float(np.exp(log_a))}
