"""Experiments of the chapter *large-step-logistic*: logistic-regression GD at many step sizes at once.

Every step size ``γ`` of a geometric grid is one member of a linear-model ensemble
(:class:`phenomena.models.MLP` with no hidden layer and no bias), all started at ``θ₀ = 0`` and
trained together by :class:`phenomena.ensemble.SGD` with a per-member learning rate on the
logistic loss ``(1/n) Σ log(1 + exp(−yᵢ aᵢᵀθ))``. The iterates ``θₜ`` of every member are recorded
at every step and compared with the batch perceptron (:func:`phenomena.theory.batch_perceptron`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import expit
from torch import Tensor

from ..ensemble import SGD, fit
from ..models import MLP, MLPConfig
from ..theory import batch_perceptron, steps_to_separate

DTYPE = torch.float64


@dataclass
class StepSizeScan:
    """``iterates (steps+1, G, d)`` of gradient descent for each step size ``gammas (G,)``, the batch
    perceptron's ``perceptron (steps+1, d)`` and the logistic ``loss (steps+1, G)``."""

    gammas: np.ndarray
    iterates: np.ndarray
    perceptron: np.ndarray
    loss: np.ndarray

    def distance(self) -> np.ndarray:
        """``max_t ‖θₜ/γ − θ̂ₜ‖`` over the recorded steps, per step size: ``(G,)``."""
        scaled = self.iterates / self.gammas[None, :, None]
        return np.linalg.norm(scaled - self.perceptron[:, None, :], axis=-1).max(0)


def logistic_gd(
    features: Tensor, labels: Tensor, gammas: Sequence[float], steps: int
) -> StepSizeScan:
    """Gradient descent on the logistic loss from ``θ₀ = 0`` at every step size in ``gammas``, as one ensemble."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    g = np.asarray(list(gammas), dtype=float)
    if g.ndim != 1 or g.size == 0 or not np.all(g > 0):
        raise ValueError(f"gammas must be a non-empty list of positive step sizes, got {gammas}")
    x = features.to(DTYPE)
    y = labels.to(DTYPE)
    model = MLP(MLPConfig([x.shape[1], 1], activation="linear", members=len(g), dtype=DTYPE)).to(x.device)
    with torch.no_grad():
        model.weights[0].zero_()

    def loss() -> Tensor:
        margins = model(x)[..., 0] * y  # (G, n)
        return F.softplus(-margins).mean(1)

    history = fit(
        SGD(model.parameters(), torch.as_tensor(g, dtype=DTYPE, device=x.device)),
        loss,
        steps,
        record={"theta": lambda: model.weights[0][:, 0, :].detach().clone()},
    )
    a, lab = x.cpu().numpy(), y.cpu().numpy()
    return StepSizeScan(
        gammas=g,
        iterates=history.recorded["theta"].numpy(),
        perceptron=batch_perceptron(a, lab, steps),
        loss=history.loss.numpy(),
    )


def separation_steps(scan: StepSizeScan, features: Tensor, labels: Tensor) -> np.ndarray:
    """Steps until zero training error for each step size (``inf``: not within the recorded steps)."""
    a, y = features.cpu().numpy(), labels.cpu().numpy()
    return np.array([steps_to_separate(scan.iterates[:, k], a, y) for k in range(len(scan.gammas))])


def perceptron_margin_floor(scan: StepSizeScan, features: Tensor, labels: Tensor, upto: int) -> float:
    """``m* = min_{1 ≤ t < upto, i} |yᵢ aᵢᵀθ̂ₜ|``: the smallest margin the perceptron path passes.

    ``θₜ/γ`` departs from ``θ̂ₜ`` through the terms ``σ(−γ|m|)`` ≈ ``e^{−γ|m|}`` that the limit drops;
    the slowest of them decays as ``e^{−γ·m*}``, which sets how fast the distance vanishes.
    """
    a, y = features.cpu().numpy(), labels.cpu().numpy()
    m = scan.perceptron[1:upto] @ (y[:, None] * a).T
    return float(np.abs(m).min())


def _regime_masks(scan: StepSizeScan, features: Tensor, m_star: float) -> tuple[np.ndarray, np.ndarray]:
    """Per step size: inside the limit's regime, and above float64 round-off.

    Inside means GD misclassifies what the perceptron does (``D·maxᵢ‖aᵢ‖ < m*``) and the first-order
    sum of :func:`first_order_distance` is accurate (its relative error ``γ·D·maxᵢ‖aᵢ‖ < 10⁻²``).
    """
    distance = scan.distance()
    reach = float(np.linalg.norm(features.cpu().numpy(), axis=1).max())
    floor = 1e4 * np.finfo(np.float64).eps * float(np.linalg.norm(scan.perceptron, axis=1).max())
    return distance * reach < np.minimum(m_star, 1e-2 / scan.gammas), distance > floor


def distance_decay_rate(
    scan: StepSizeScan, features: Tensor, labels: Tensor, m_star: float, *, max_log2_gamma: int = 48
) -> tuple[float, np.ndarray]:
    """The decay rate of ``D(γ)`` as deep into the limit's regime as float64 resolves it.

    The limit argument predicts ``D(γ) ∝ e^{−γ·m*}`` only where GD's path misclassifies the same
    points as the perceptron's at every step, i.e. where no margin is shifted by more than the
    smallest one: ``D(γ)·maxᵢ‖aᵢ‖ < m*`` (and, for the first-order sum to hold, ``< 10⁻²/γ``); below that a point whose margin is near ``m*`` can sit on
    either side. Even inside, ``D`` is a sum of terms ``e^{−γ·m}`` over the path's margins, and the
    smallest one dominates only once ``γ`` times the gap to the next margin is large, so the rate
    is an asymptotic statement: it is fitted on the last two step sizes before ``D`` reaches
    round-off (``10⁴·ε·maxₜ‖θ̂ₜ‖``), on a quarter-octave grid spanning the regime (one doubling
    there can take ``D`` from the regime's edge to round-off). The grid extends past ``scan``'s
    largest step size, up to ``2**max_log2_gamma``, when ``scan`` never reaches round-off (``m*``
    is random and now and then tiny). Returns the rate and the two step sizes used, or ``nan``
    and fewer step sizes when even ``2**max_log2_gamma`` does not resolve two points.
    """
    steps = scan.iterates.shape[0] - 1
    inside, resolved = _regime_masks(scan, features, m_star)
    outside = np.nonzero(~inside)[0]
    lo = float(scan.gammas[outside[-1]] if len(outside) else scan.gammas[0])
    per_octave = 4
    while True:
        floored = np.nonzero((scan.gammas > lo) & ~resolved)[0]
        hi = float(scan.gammas[floored[0]]) if len(floored) else min(float(scan.gammas[-1]) * 16, 2.0**max_log2_gamma)
        fine = lo * 2.0 ** (np.arange(1, int(np.ceil(per_octave * np.log2(hi / lo))) + 1) / per_octave)
        fine_scan = logistic_gd(features, labels, fine, steps)
        f_inside, f_resolved = _regime_masks(fine_scan, features, m_star)
        usable = np.nonzero(f_inside & f_resolved)[0]
        if not f_resolved[-1]:  # the fine grid reaches round-off
            if len(usable) >= 2:  # the last two usable points are the deepest
                last = usable[-2:]
                distance = fine_scan.distance()
                rate = float(-np.diff(np.log(distance[last]))[0] / np.diff(fine_scan.gammas[last])[0])
                return rate, fine_scan.gammas[last]
            if per_octave >= 256:
                return float("nan"), fine_scan.gammas[usable]
            per_octave *= 4  # the regime is narrower than the spacing: refine
        elif hi >= 2.0**max_log2_gamma:
            return float("nan"), fine_scan.gammas[usable[-2:]]
        scan, inside, resolved = fine_scan, f_inside, f_resolved
        outside = np.nonzero(~inside)[0]
        lo = float(scan.gammas[outside[-1]]) if len(outside) else lo


def first_order_distance(perceptron: np.ndarray, features: Tensor, labels: Tensor, gammas: Sequence[float]) -> np.ndarray:
    """``D̂(γ) = maxₜ‖δₜ‖``: the distance the limit argument predicts, to first order, from the perceptron's path.

    GD divided by ``γ`` adds ``σ(−γ·mᵢ(t))·yᵢaᵢ/n`` where the perceptron adds ``1[mᵢ(t) ≤ 0]·yᵢaᵢ/n``;
    evaluated at the perceptron's own margins ``mᵢ(t)`` (neglecting the feedback of ``δ`` on the
    margins, a relative error ``≈ γ·D·maxᵢ‖aᵢ‖``), the gap accumulates as
    ``δₜ₊₁ = δₜ + (1/n)Σᵢ [σ(−γ·mᵢ(t)) − 1[mᵢ(t) ≤ 0]]·yᵢaᵢ`` with ``δ₁ = 0`` (the first step is exact,
    all margins are 0 and σ(0) = ½). Each term is ``±e^{−γ|mᵢ(t)|}``, so ``D̂`` decays as ``e^{−γ·m*}``
    only once the smallest margin outweighs all the terms with nearby margins; a margin a little
    larger than ``m*`` that recurs at every step after separation can dominate up to ``γ`` of order
    ``ln(steps)/(m₂ − m*)``. Returns ``(G,)``.
    """
    a, y = features.cpu().numpy().astype(np.float64), labels.cpu().numpy().astype(np.float64)
    ya = y[:, None] * a  # (n, d)
    margins = perceptron[1:-1] @ ya.T  # (T-1, n): the margins at steps 1..T-1 shape iterates 2..T
    misclassified = margins <= 0
    out = []
    for gamma in np.asarray(list(gammas), dtype=float):  # one γ at a time: (T-1, n) arrays, not (G, T-1, n)
        c = expit(-gamma * margins) - misclassified  # σ(−γm), accurate where it is tiny
        delta = np.cumsum(c @ ya, axis=0) / len(y)  # (T-1, d): δ₂ … δ_T
        out.append(np.linalg.norm(delta, axis=-1).max())
    return np.asarray(out)
