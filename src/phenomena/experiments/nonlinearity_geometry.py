"""Experiments of the chapter *nonlinearity-geometry*: tanh vs ReLU one-hidden-layer networks.

Kept here so the chapter's cells stay short. Three pieces:

* :func:`first_step_fraction`: the share of each neuron's first gradient update that lies on the
  inter-class axis, measured with autograd on the real network, to compare with
  :func:`phenomena.theory.geometry.interclass_energy_fraction`;
* :func:`train_geometry`: train tanh or ReLU networks (the ensemble axis holds seeds, and tasks
  when the input is per member) and record the centred kernel alignment of the hidden layer with
  the target and with the input during training, and how far the weights moved;
* :func:`disentanglement`: CCGP and parallelism score of every target latent of a latent-cube task.

A tanh and a ReLU ensemble built from the same generator seed start from the same weights, so
the comparison of the two is paired member by member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..metrics.geometry import ccgp, condition_means, gram, kernel_alignment, parallelism_score
from ..metrics.weights import relative_change
from ..models.mlp import MLP, MLPConfig
from ..train import train_full_batch

DTYPE = torch.float32


def build(
    activation: str, dim: int, width: int, out: int, members: int, *, output_scale: float, seed: int,
    first_layer_scale: Tensor | None = None,
) -> MLP:
    """A bias-free one-hidden-layer MLP ensemble in standard parameterisation.

    ``output_scale`` (α) multiplies the output: small α keeps the network out of the lazy regime
    (Chizat, Oyallon & Bach 2019) and makes the residual at init almost the target.
    ``first_layer_scale`` ``(members,)`` multiplies each member's input weights (pre-activation
    std). Weights come from ``seed`` alone, so two activations with one seed share their init.
    """
    config = MLPConfig([dim, width, out], activation=activation, members=members, output_scale=output_scale, dtype=DTYPE)
    net = MLP(config, generator=torch.Generator().manual_seed(int(seed)))
    if first_layer_scale is not None:
        s = torch.as_tensor(first_layer_scale, dtype=DTYPE)
        if s.shape != (members,):
            raise ValueError(f"first_layer_scale needs one value per member ({members}), got shape {tuple(s.shape)}")
        with torch.no_grad():
            net.weights[0].mul_(s[:, None, None])
    return net


def first_step_fraction(
    x: Tensor, y: Tensor, activation: str, q: Sequence[float], *, width: int, output_scale: float, seed: int
) -> np.ndarray:
    """Neuron-averaged share of the first update of each input-weight vector on ``u = Σ y_i x_i``.

    One member per entry of ``q``, whose input weights are scaled so that the pre-activations
    have variance ``q`` (inputs of norm ``√N``). The update is the gradient of the half-MSE at
    init, from autograd; its share on ``u`` is ``(g·û)²/‖g‖²``. Returns ``(members,)``.
    """
    q_t = torch.as_tensor(q, dtype=DTYPE)
    scale = q_t.sqrt() * (x.shape[1] / x.pow(2).sum(1).mean()).sqrt().to(DTYPE)
    net = build(activation, x.shape[1], width, y.shape[1], len(q_t), output_scale=output_scale, seed=seed,
                first_layer_scale=scale)
    xf, yf = x.to(DTYPE), y.to(DTYPE)
    loss = 0.5 * (net(xf) - yf).pow(2).sum(-1).mean(-1)
    (g,) = torch.autograd.grad(loss.sum(), [net.weights[0]])
    u = (yf[:, 0] @ xf)
    u = u / u.norm()
    on_axis = (g @ u).pow(2)
    total = g.pow(2).sum(-1).clamp_min(torch.finfo(DTYPE).tiny)
    return (on_axis / total).mean(-1).double().numpy()


@dataclass
class GeometryRun:
    """What :func:`train_geometry` records.

    ``steps`` ``(T,)``; ``target_alignment``/``input_alignment`` ``(T, members)`` the centred
    alignment of the hidden Gram matrix with ``YYᵀ`` and with ``XXᵀ``; ``loss`` ``(steps, members)``;
    ``relative_change`` ``(members,)`` of the input weights; ``hidden`` the final hidden layer
    ``(members, samples, width)``.
    """

    steps: np.ndarray
    target_alignment: np.ndarray
    input_alignment: np.ndarray
    loss: np.ndarray
    relative_change: np.ndarray
    hidden: Tensor


def train_geometry(
    x: Tensor, y: Tensor, activation: str, *, width: int, members: int, lr: float, steps: int,
    output_scale: float, seed: int, record_every: int = 50,
) -> GeometryRun:
    """Full-batch GD on the half-MSE; record hidden–target and hidden–input alignment as it trains.

    ``x`` ``(samples, N)`` is shared by all members, or ``(members, samples, N)`` gives each member
    its own task (several tasks × seeds in one ensemble); ``y`` likewise.
    """
    xf, yf = x.to(DTYPE), y.to(DTYPE)
    net = build(activation, xf.shape[-1], width, yf.shape[-1], members, output_scale=output_scale, seed=seed)
    w0 = [w.detach().clone() for w in net.weights]
    k_target, k_input = gram(yf), gram(xf)

    def align(kernel: Tensor):
        return lambda m: kernel_alignment(gram(m.features(xf)), kernel)

    history = train_full_batch(net, xf, yf, lr=lr, steps=steps, record_every=record_every,
                               record={"target": align(k_target), "input": align(k_input)})
    return GeometryRun(
        steps=history.record_steps.numpy(),
        target_alignment=history.recorded["target"].double().numpy(),
        input_alignment=history.recorded["input"].double().numpy(),
        loss=history.loss.double().numpy(),
        relative_change=relative_change(net.weights[:1], w0[:1]).double().numpy(),
        hidden=net.features(xf).detach().double(),
    )


def disentanglement(hidden: Tensor, condition: Tensor, latents: Tensor, targets: Sequence[int], *,
                    held_out: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """CCGP and parallelism score of each target latent: two ``(members, len(targets))`` arrays.

    ``held_out`` conditions per side are left out of the CCGP read-out's training set (of the
    four per side of a 3-latent cube; one, as Bernardi et al. 2020 do, by default). Two held out
    per side can confound the latent with another one in the training set, so even a perfectly
    factorised code then scores below 1.
    """
    means = condition_means(hidden, condition)
    cc, ps = [], []
    for t in targets:
        dich = latents[:, t]
        cc.append(ccgp(hidden, condition, dich, held_out=held_out).numpy())
        ps.append(parallelism_score(means, dich).numpy())
    return np.stack(cc, -1), np.stack(ps, -1)


def paired_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of members with ``a > b`` (a sign test's statistic)."""
    return float(np.mean(np.asarray(a) > np.asarray(b)))
