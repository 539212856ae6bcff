"""Experiments of the chapter *xor-benign-grokking*: one large GD step overfits, later steps grok.

Xu, Wang, Frei, Vardi & Hu (2023) train a two-layer ReLU network ``f(x) = Σ_j a_j ReLU(⟨w_j, x⟩)``
with a fixed second layer ``a_j = ±1/√m`` (half of each sign), a small Gaussian first layer and
full-batch gradient descent on the logistic loss, on high-dimensional XOR clusters with flipped
labels (:func:`phenomena.data.xor_clusters`). Here many such networks (one per member of the
ensemble, each with its own training set and initialisation) train as one batched
:class:`phenomena.models.MLP`; the second layer is set to ``±1/√m`` and frozen
(``requires_grad=False``), so the ensemble optimizer leaves it alone.

Everything runs in float32: the inputs are a few thousand coordinates wide and no number here is
compared to better than a percent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data import XorClusters, xor_clusters
from ..ensemble import SGD, fit
from ..models import MLP, MLPConfig

DTYPE = torch.float32


def bayes_accuracy(mu_norm: float, flip_fraction: float = 0.0) -> float:
    """Accuracy of the Bayes-optimal classifier of the XOR cluster distribution.

    The clean label's posterior favours ``+1`` exactly when ``cosh⟨x, μ₁⟩ > cosh⟨x, μ₂⟩``, i.e.
    ``|⟨x, μ₁⟩| > |⟨x, μ₂⟩|``. For a point of the cluster ``+μ₁``, ``⟨x, μ₁⟩/‖μ‖ = ‖μ‖ + g₁`` and
    ``⟨x, μ₂⟩/‖μ‖ = g₂`` with independent standard normals, so the clean error is
    ``P(|‖μ‖ + g₁| < |g₂|) = E[2Φ(−|‖μ‖ + g₁|)]`` (the same for every cluster by symmetry).
    Against labels flipped with probability ``flip_fraction`` the accuracy is ``(1 − η)·acc + η·(1 − acc)``.
    """
    from scipy import integrate, special

    if not mu_norm > 0:
        raise ValueError(f"mu_norm must be positive, got {mu_norm}")
    if not 0 <= flip_fraction < 0.5:
        raise ValueError(f"flip_fraction must be in [0, 0.5), got {flip_fraction}")

    def integrand(g: float) -> float:
        return 2 * special.ndtr(-abs(mu_norm + g)) * math.exp(-g * g / 2) / math.sqrt(2 * math.pi)

    error, _ = integrate.quad(integrand, -mu_norm - 12, -mu_norm + 12, points=[-mu_norm], limit=200)
    error += 2 * special.ndtr(-12.0)  # the tails outside the window (|g| > 12): at most their mass
    clean = 1.0 - min(max(error, 0.0), 0.5)
    return (1 - flip_fraction) * clean + flip_fraction * (1 - clean)


def checkpoints(steps: int, per_decade: int = 8) -> np.ndarray:
    """Steps at which to evaluate: 0, 1, 2, then log-spaced up to ``steps`` (about ``per_decade`` per decade)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    grid = np.logspace(0, math.log10(steps), max(2, int(per_decade * math.log10(steps)) + 1))
    return np.unique(np.concatenate([[0, 1, 2], np.round(grid).astype(int), [steps]]))


def xor_network(dim: int, width: int, members: int, init_scale: float, generator: torch.Generator) -> MLP:
    """The paper's network, ``members`` times: first layer ``N(0, (init_scale²/dim)·I)``, second layer
    fixed at ``+1/√m`` for the first half of the neurons and ``−1/√m`` for the second half."""
    if width < 2 or width % 2:
        raise ValueError(f"width must be an even number >= 2 (half the neurons of each sign), got {width}")
    net = MLP(MLPConfig([dim, width, 1], activation="relu", init_scale=init_scale, members=members, dtype=DTYPE),
              generator=generator)
    with torch.no_grad():
        net.weights[1].copy_(neuron_signs(width).to(DTYPE).div(math.sqrt(width)).expand(members, 1, width))
    net.weights[1].requires_grad_(False)
    return net


def neuron_signs(width: int) -> Tensor:
    """``sign(a_j)``: ``+1`` for the first half of the neurons, ``−1`` for the second half."""
    signs = torch.ones(width)
    signs[width // 2 :] = -1
    return signs


def logistic_loss(net: MLP, data: XorClusters) -> Tensor:
    """Mean logistic loss ``log(1 + e^{−y f(x)})`` of every member on its own training set: ``(members,)``."""
    return F.softplus(-data.y * net(data.x)[..., 0]).mean(-1)


@dataclass
class XorHistory:
    """What :func:`train_xor` recorded at ``steps``: accuracies ``(T, members)``, projections
    ``(T, members, width, 2)`` of each neuron's weights on ``μ₁/‖μ‖`` and ``μ₂/‖μ‖``, the neurons'
    second-layer signs ``(width,)``, the loss at every step ``(steps + 1, members)``, and the
    Bayes-optimal clean test accuracy."""

    steps: np.ndarray
    train_acc: np.ndarray
    flipped_acc: np.ndarray
    test_acc: np.ndarray
    projections: np.ndarray
    signs: np.ndarray
    loss: np.ndarray
    bayes: float
    flipped_count: np.ndarray

    def at(self, step: int) -> int:
        """Row of the recorded step ``step``."""
        rows = np.nonzero(self.steps == step)[0]
        if rows.size == 0:
            raise ValueError(f"step {step} was not recorded; recorded steps: {self.steps.tolist()}")
        return int(rows[0])

    def feature_selectivity(self, row: int = -1) -> np.ndarray:
        """Per member, how much more the neurons carry their own class's feature than the other one:
        ``mean|⟨w_j, μ̂₁⟩|/mean|⟨w_j, μ̂₂⟩|`` over ``a_j > 0`` times the reverse over ``a_j < 0``,
        geometric mean of the two (``1`` when neither feature is preferred)."""
        proj = np.abs(self.projections[row])  # (members, width, 2)
        pos, neg = proj[:, self.signs > 0], proj[:, self.signs < 0]
        ratio_pos = pos[..., 0].mean(1) / pos[..., 1].mean(1)
        ratio_neg = neg[..., 1].mean(1) / neg[..., 0].mean(1)
        return np.sqrt(ratio_pos * ratio_neg)


def train_xor(
    *,
    n: int,
    dim: int,
    mu_norm: float,
    flip_fraction: float,
    width: int,
    members: int,
    lr: float,
    steps: int,
    init_scale: float,
    n_test: int,
    data_generator: torch.Generator,
    init_generator: torch.Generator,
    per_decade: int = 8,
    device: torch.device | str = "cpu",
) -> XorHistory:
    """Train ``members`` networks by full-batch GD on the logistic loss and evaluate them at :func:`checkpoints`.

    Each member has its own training set of ``n`` points (exactly ``round(flip_fraction·n)`` labels
    flipped, at random) and its own initialisation; all members share one clean test set of ``n_test``
    points. Recorded: the training accuracy against the observed (noisy) labels, on all points
    and on the flipped ones only; the clean test accuracy; every neuron's projections on the two
    cluster means.
    """
    train = xor_clusters(n, dim, mu_norm, flip_fraction, data_generator, sets=members, exact_flips=True, dtype=DTYPE)
    test = xor_clusters(n_test, dim, mu_norm, 0.0, data_generator, dtype=DTYPE)
    flipped_count = train.flipped.sum(-1).numpy()
    if (flipped_count == 0).any():
        raise ValueError(f"flip_fraction·n = {flip_fraction * n:.2f} rounds to no flipped label; raise n or flip_fraction")
    device = torch.device(device)
    train = XorClusters(*(t.to(device) for t in (train.x, train.y_clean, train.y, train.flipped, train.means)))
    test_x, test_y = test.x.to(device), test.y_clean.to(device)
    unit = (train.means / mu_norm).T  # (dim, 2): the two feature directions
    net = xor_network(dim, width, members, init_scale, init_generator).to(device)
    optimizer = SGD(net.parameters(), lr=lr)
    flipped = train.flipped.to(DTYPE)

    rows: dict[str, list[np.ndarray]] = {"train": [], "flipped": [], "test": [], "proj": []}

    @torch.no_grad()
    def evaluate() -> None:
        correct = (torch.sign(net(train.x)[..., 0]) == train.y).to(DTYPE)
        rows["train"].append(correct.mean(-1).cpu().numpy())
        rows["flipped"].append(((correct * flipped).sum(-1) / flipped.sum(-1)).cpu().numpy())
        rows["test"].append((torch.sign(net(test_x)[..., 0]) == test_y).to(DTYPE).mean(-1).cpu().numpy())
        rows["proj"].append((net.weights[0] @ unit).cpu().numpy())

    marks = checkpoints(steps, per_decade)
    losses, done = [], 0
    for mark in marks:
        if mark > done:
            history = fit(optimizer, lambda: logistic_loss(net, train), int(mark - done))
            losses.append(history.loss[:-1].numpy())
            done = int(mark)
        evaluate()
    with torch.no_grad():
        losses.append(logistic_loss(net, train)[None].cpu().numpy())
    return XorHistory(
        steps=marks,
        train_acc=np.stack(rows["train"]),
        flipped_acc=np.stack(rows["flipped"]),
        test_acc=np.stack(rows["test"]),
        projections=np.stack(rows["proj"]),
        signs=neuron_signs(width).numpy(),
        loss=np.concatenate(losses),
        bayes=bayes_accuracy(mu_norm),
        flipped_count=flipped_count,
    )
