"""Chapter *sp-width-large-lr*: under cross-entropy SP tolerates learning rates ∝ n^{−1/2}; under MSE only ∝ n^{−1}.

Haas, Bordt, von Luxburg & Chennuru Vankadara (2025). A ReLU MLP in standard parameterisation
(He init, one global learning rate, no multipliers) with two hidden layers of width ``n`` is
trained by full-batch gradient descent on scikit-learn's digits, once with cross-entropy (CE) and
once with MSE on one-hot targets. What this module measures:

* :func:`one_step`: the change of the logits and of every hidden layer after one step, for the
  kernel check (``Δf = −η K_n χ/N`` with the SP kernel of :func:`phenomena.theory.sp_scaling.sp_ntk`)
  and for the feature-learning exponents;
* :func:`train_members`: ``steps`` of GD for an ensemble whose members differ in learning rate
  (and, optionally, init), recording the final loss and the RMS size of the last hidden layer and
  of the logits; a member that diverges (inf/NaN) is frozen and recorded as unstable;
* :func:`scan_width`: the largest stable rate ``η_max(n)`` by the monotone rule
  (:func:`phenomena.metrics.stability.max_stable_lr`) on a ``2^{k·lr_step}`` grid, in a window
  that moves until the edge lies inside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from phenomena.data.digits import N_CLASSES, load_digits_split
from phenomena.ensemble import SGD, fit
from phenomena.metrics.coordinates import refined_coordinate_check, rms, rms_change
from phenomena.metrics.stability import censored, max_stable_lr
from phenomena.models.mlp import MLP, MLPConfig
from phenomena.train import half_mse

LOSSES = ("ce", "mse")
HE_INIT = math.sqrt(2.0)
"""He init: weight std √2/√fan_in in every layer (``init_scale`` of :class:`MLPConfig`)."""
HIDDEN_BAND = 10.0
"""A run whose last hidden layer's RMS ends more than this factor above *or below* its initial value is
unstable: the activations exploded, or the features died. An explosion overshoots any such factor within
a few steps (and then overflows), so the upper side only names it early. The lower side matters: a large
step can switch most ReLU units off. Under MSE the dying network outputs ≈ 0, whose MSE (≈ ½) lies far
below an SP network's initial MSE (its outputs start ``O(1)`` and random); under CE, at the edge, a run
can end with a tenth of its features and the loss of a uniform guess, still below its initial loss.
The loss alone would count both as stable."""


@dataclass(frozen=True)
class Problem:
    """The training set: standardised digits ``x`` ``(N, 64)``, labels ``(N,)`` and one-hot targets ``(N, 10)``."""

    x: Tensor
    labels: Tensor
    onehot: Tensor

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])


def make_problem(n_train: int, *, generator: torch.Generator, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None) -> Problem:
    """About ``n_train`` digits drawn class by class (stratified), standardised with their own statistics."""
    total = 1797
    if not 10 <= int(n_train) < total:
        raise ValueError(f"n_train must lie in [10, {total - 1}] (the digits hold {total} images), got {n_train}")
    split = load_digits_split(test_fraction=1.0 - int(n_train) / total, generator=generator, dtype=dtype, device=device)
    onehot = F.one_hot(split.y_train, N_CLASSES).to(dtype)
    return Problem(x=split.x_train, labels=split.y_train, onehot=onehot)


def make_model(problem: Problem, width: int, *, members: int, depth: int = 2, generator: torch.Generator,
               shared_init: bool = True) -> MLP:
    """An SP ReLU MLP ``[64, n, …, n, 10]`` with ``depth`` hidden layers, He init, no biases.

    ``shared_init``: every member starts from member 0's weights, so that the members of a
    learning-rate grid differ only in their rate (the monotone rule then compares like with like).
    """
    if int(width) < 1 or int(depth) < 1:
        raise ValueError(f"width and depth must be >= 1, got {width} and {depth}")
    widths = [problem.dim] + [int(width)] * int(depth) + [N_CLASSES]
    config = MLPConfig(widths=widths, activation="relu", parameterization="standard", init_scale=HE_INIT,
                       members=int(members), dtype=problem.x.dtype)
    model = MLP(config, generator=generator).to(problem.x.device)
    if shared_init:
        with torch.no_grad():
            for w in model.weights:
                w.copy_(w[:1].expand_as(w))
    return model


def member_losses(logits: Tensor, problem: Problem, loss: str) -> Tensor:
    """Per-member loss, ``(members,)``: mean cross-entropy (through logsumexp) or ``½‖f − y‖²`` averaged over samples."""
    if loss == "ce":
        members = logits.shape[0]
        return F.cross_entropy(logits.transpose(1, 2), problem.labels.expand(members, -1), reduction="none").mean(1)
    if loss == "mse":
        return half_mse(logits, problem.onehot)
    raise ValueError(f"unknown loss {loss!r}; valid losses are: {', '.join(LOSSES)}")


def loss_gradient(logits: Tensor, problem: Problem, loss: str) -> Tensor:
    """``χ = ∂ℓ/∂f`` per sample, ``(members, N, 10)``: ``softmax(f) − y`` (CE) or ``f − y`` (MSE)."""
    if loss == "ce":
        return torch.softmax(logits, dim=-1) - problem.onehot
    if loss == "mse":
        return logits - problem.onehot
    raise ValueError(f"unknown loss {loss!r}; valid losses are: {', '.join(LOSSES)}")


# ----------------------------------------------------------------------------- training
@dataclass
class Members:
    """What :func:`train_members` recorded, one entry per member (numpy, float64)."""

    lrs: np.ndarray
    initial_loss: np.ndarray
    final_loss: np.ndarray
    peak_loss: np.ndarray
    """The largest loss seen at any step (``inf`` for a member that diverged)."""
    hidden_rms0: np.ndarray
    hidden_rms: np.ndarray
    logit_rms0: np.ndarray
    logit_rms: np.ndarray
    diverged: np.ndarray
    logit_trace: np.ndarray | None = None
    """With ``trace=True``: the RMS logit before every step and after the last, ``(steps + 1, members)``."""
    hidden_trace: np.ndarray | None = None
    """With ``trace=True``: the last hidden layer's RMS activation, ``(steps + 1, members)``."""

    @property
    def stable(self) -> np.ndarray:
        """Finite final loss below the initial one, and the last hidden layer's RMS within a factor
        ``HIDDEN_BAND`` of its initial value (neither exploded nor dead)."""
        with np.errstate(invalid="ignore"):
            return (np.isfinite(self.final_loss) & (self.final_loss < self.initial_loss)
                    & np.isfinite(self.hidden_rms) & (self.hidden_rms < HIDDEN_BAND * self.hidden_rms0)
                    & (self.hidden_rms > self.hidden_rms0 / HIDDEN_BAND))


def train_members(problem: Problem, width: int, lrs: Sequence[float] | np.ndarray, loss: str, *, steps: int,
                  generator: torch.Generator, depth: int = 2, shared_init: bool = True, trace: bool = False) -> Members:
    """``steps`` of full-batch GD, one member per rate in ``lrs``; non-finite members are frozen, not fatal.

    ``trace=True`` also records the RMS logit and the last hidden layer's RMS activation at every
    step (an extra forward pass per step), for claims about how large they get *during* the run.
    """
    rates = np.asarray(lrs, dtype=float)
    if rates.ndim != 1 or rates.size == 0 or np.any(~np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(f"lrs must be a non-empty list of positive finite rates, got {lrs}")
    if int(steps) < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    model = make_model(problem, width, members=rates.size, depth=depth, generator=generator, shared_init=shared_init)
    with torch.no_grad():
        logits0 = model(problem.x)
        hidden0 = model.hidden(problem.x, depth)
        initial = member_losses(logits0, problem, loss)
    optimizer = SGD(model.parameters(), torch.as_tensor(rates, dtype=problem.x.dtype))
    record = {"logits": lambda: rms(model(problem.x)), "hidden": lambda: rms(model.hidden(problem.x, depth))} if trace else None
    history = fit(optimizer, lambda: member_losses(model(problem.x), problem, loss), int(steps), on_divergence="mask",
                  record=record)
    with torch.no_grad():
        logits = model(problem.x)
        hidden = model.hidden(problem.x, depth)
        final = member_losses(logits, problem, loss)

    def np64(t: Tensor) -> np.ndarray:
        return t.detach().double().cpu().numpy()

    diverged = history.diverged.numpy() | ~np.isfinite(np64(final))
    final_np = np.where(diverged, np.nan, np64(final))
    peak = np.where(diverged, np.inf, np.nanmax(history.loss.double().numpy(), axis=0))
    return Members(lrs=rates, initial_loss=np64(initial), final_loss=final_np,
                   peak_loss=peak, hidden_rms0=np64(rms(hidden0)),
                   hidden_rms=np.where(diverged, np.inf, np64(rms(hidden))), logit_rms0=np64(rms(logits0)),
                   logit_rms=np.where(diverged, np.inf, np64(rms(logits))), diverged=diverged,
                   logit_trace=np64(history.recorded["logits"]) if trace else None,
                   hidden_trace=np64(history.recorded["hidden"]) if trace else None)


@dataclass
class Scan:
    """A width's learning-rate scan: every rate tried (sorted), whether it was stable, and ``η_max``."""

    width: int
    loss: str
    lrs: np.ndarray
    stable: np.ndarray
    max_lr: float
    censored: str
    runs: list[Members]


def scan_width(problem: Problem, width: int, loss: str, *, centre: float, steps: int, lr_step: float, below: int,
               above: int, generator_seed: int, depth: int = 2, max_windows: int = 4) -> Scan:
    """``η_max`` at one width: rates ``centre·2^{k·lr_step}``, ``k = −below … above``, all trained at once.

    When the edge is not inside the window (every rate stable, or the smallest already unstable)
    the window moves by its own length in that direction, at most ``max_windows`` times; the
    result is marked ``censored`` if it still is not. Every window starts from the same init
    (``generator_seed``), so the rates of one width are compared on one network.
    """
    tried: dict[float, bool] = {}
    runs: list[Members] = []
    offset = 0
    span = below + above + 1
    for _ in range(max_windows):
        ks = np.arange(offset - below, offset + above + 1)
        lrs = centre * 2.0 ** (ks * lr_step)
        members = train_members(problem, width, lrs, loss, steps=steps, depth=depth,
                                generator=torch.Generator().manual_seed(generator_seed))
        runs.append(members)
        for lr, ok in zip(lrs, members.stable):
            tried[float(lr)] = bool(ok)
        grid = np.array(sorted(tried))
        ok = np.array([tried[v] for v in grid])
        where = censored(grid, ok)
        if where == "above":
            offset += span
        elif where == "below":
            offset -= span
        else:
            break
    grid = np.array(sorted(tried))
    ok = np.array([tried[v] for v in grid])
    return Scan(width=int(width), loss=loss, lrs=grid, stable=ok, max_lr=max_stable_lr(grid, ok),
                censored=censored(grid, ok), runs=runs)


# ----------------------------------------------------------------------------- one step
@dataclass
class OneStep:
    """One GD step from init, per member (``(members, …)`` numpy arrays)."""

    logits0: np.ndarray
    delta_logits: np.ndarray
    chi: np.ndarray
    delta_hidden: dict[int, np.ndarray]
    """Layer ``l`` → RMS change of its pre-activation ``h^l`` after the step, ``(members,)``."""
    hidden_rms0: dict[int, np.ndarray]
    refined: dict[str, np.ndarray]
    """The refined coordinate check of the last hidden layer's pre-activation (``"effective"``,
    ``"propagated"``, ``"total"``, each ``(members,)``; :func:`phenomena.metrics.coordinates.refined_coordinate_check`)."""


def one_step(problem: Problem, width: int, lr: float, loss: str, *, members: int, generator: torch.Generator,
             depth: int = 2) -> OneStep:
    """One full-batch GD step at rate ``lr`` from ``members`` independent inits."""
    model = make_model(problem, width, members=members, depth=depth, generator=generator, shared_init=False)
    with torch.no_grad():
        logits0 = model(problem.x)
        pre0 = {layer: model.hidden(problem.x, layer, activated=False) for layer in range(1, depth + 1)}
        chi = loss_gradient(logits0, problem, loss)
        weight0 = model.weights[depth - 1].detach().clone()
        input0 = model.hidden(problem.x, depth - 1) if depth > 1 else problem.x
    optimizer = SGD(model.parameters(), float(lr))
    fit(optimizer, lambda: member_losses(model(problem.x), problem, loss), 1, on_divergence="mask")
    with torch.no_grad():
        logits1 = model(problem.x)
        pre1 = {layer: model.hidden(problem.x, layer, activated=False) for layer in pre0}
        input1 = model.hidden(problem.x, depth - 1) if depth > 1 else problem.x
        refined = refined_coordinate_check(model.weights[depth - 1], weight0, input1, input0)

    def np64(t: Tensor) -> np.ndarray:
        return t.detach().double().cpu().numpy()

    return OneStep(logits0=np64(logits0), delta_logits=np64(logits1 - logits0), chi=np64(chi),
                   delta_hidden={k: np64(rms_change(pre1[k], pre0[k])) for k in pre0},
                   hidden_rms0={k: np64(rms(pre0[k])) for k in pre0},
                   refined={k: np64(v) for k, v in refined.items()})


def kernel_prediction(kernel: np.ndarray, chi: np.ndarray, lr: float) -> np.ndarray:
    """``Δf = −η K χ / N`` for every member: ``kernel`` ``(N, N)``, ``chi`` ``(members, N, outputs)``."""
    return -float(lr) * np.einsum("ab,ebk->eak", kernel, chi) / kernel.shape[0]


def kernel_error(measured: np.ndarray, predicted: np.ndarray) -> float:
    """Relative error of the member-averaged step: ``‖mean_e(Δf_e − Δf̂_e)‖ / √(mean_e ‖Δf̂_e‖²)``.

    Averaging the differences over independent inits shrinks the finite-width (Monte-Carlo)
    fluctuation of the empirical kernel by ``√members``; a systematic error (a wrong kernel) does not shrink.
    """
    diff = (measured - predicted).mean(0)
    scale = np.sqrt((predicted**2).sum(axis=(1, 2)).mean())
    return float(np.linalg.norm(diff) / scale)


# ----------------------------------------------------------------------------- fits
def power_law_fit(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Least-squares exponent ``p`` of ``y ∝ x^p`` on log-log axes and its standard error.

    The standard error is the ordinary one (residual variance, ``n − 2`` degrees of freedom); with
    two points it is ``nan``. Non-finite or non-positive points make both ``nan``: a width where no
    rate was stable has no exponent to fit.
    """
    lx, ly = np.log(np.asarray(x, float)), np.asarray(y, float)
    if lx.shape != ly.shape or lx.size < 2:
        raise ValueError(f"x and y need one shape with at least two points, got {lx.shape} and {ly.shape}")
    if not np.all(np.isfinite(ly)) or np.any(ly <= 0):
        return float("nan"), float("nan")
    ly = np.log(ly)
    xc = lx - lx.mean()
    slope = float((xc * (ly - ly.mean())).sum() / (xc**2).sum())
    if lx.size < 3:
        return slope, float("nan")
    resid = ly - ly.mean() - slope * xc
    se = float(np.sqrt((resid**2).sum() / (lx.size - 2) / (xc**2).sum()))
    return slope, se


def max_lr_by_width(problem: Problem, widths: Sequence[int], loss: str, *, first_centre: float, guess_exponent: float,
                    steps: int, lr_step: float, first_window: tuple[int, int], window: tuple[int, int],
                    generator_seed: int, depth: int = 2) -> list[Scan]:
    """:func:`scan_width` at every width, narrowest first; each window is centred on the previous width's
    ``η_max`` moved by ``(n/n_prev)^{guess_exponent}``, so a few rates per width suffice.

    ``first_window``/``window`` are ``(below, above)`` grid points around the centre. The guess
    only places the window: :func:`scan_width` moves it until the edge lies inside, so a wrong
    guess costs time, not correctness.
    """
    scans: list[Scan] = []
    for i, width in enumerate(sorted(int(w) for w in widths)):
        if i == 0 or not np.isfinite(scans[-1].max_lr):
            centre, (below, above) = first_centre * (width / sorted(widths)[0]) ** guess_exponent, first_window
        else:
            centre = scans[-1].max_lr * (width / scans[-1].width) ** guess_exponent
            below, above = window
        scans.append(scan_width(problem, width, loss, centre=centre, steps=steps, lr_step=lr_step, below=below,
                                above=above, generator_seed=generator_seed + width, depth=depth))
    return scans


def growth_runs(problem: Problem, widths: Sequence[int], lrs_by_width: dict[int, Sequence[float]], loss: str, *,
                steps: int, generator_seed: int, depth: int = 2) -> dict[int, Members]:
    """:func:`train_members` at every width with that width's rates (one shared init per width): the
    logit and activation sizes after ``steps`` under a learning-rate *schedule in width* such as ``η = c·n^{−α}``."""
    return {int(w): train_members(problem, int(w), lrs_by_width[int(w)], loss, steps=steps, depth=depth, trace=True,
                                  generator=torch.Generator().manual_seed(generator_seed + int(w)))
            for w in widths}
