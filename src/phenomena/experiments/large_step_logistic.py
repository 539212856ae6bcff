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
