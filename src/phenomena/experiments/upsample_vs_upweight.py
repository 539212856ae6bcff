"""Upsample or upweight: temperature sampling versus scalarization on imbalanced domains (Li et al. 2024).

The student is linear in the features ``φ(x, k) = [x, e_k ⊗ x]`` of :mod:`phenomena.data.domains`
(a shared map plus one map per domain), trained with SGD on the objective ``Σ_k p_k L_k``. Many
runs train as one ensemble: every member has its own minibatch stream (its own sampler and
mixture) and the parameters are one ``(members, (K + 1)·d)`` tensor updated by
:class:`phenomena.ensemble.SGD`. A member whose loss turns non-finite (scalarization's large
weights at a large step) is frozen and reported, not allowed to stop the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..data.domains import DomainData, population_loss
from ..ensemble import SGD, Adam, fit
from ..samplers import Minibatches

__all__ = [
    "FullBatchResult",
    "SGDResult",
    "domain_losses",
    "full_batch_equivalence",
    "gd_path",
    "gradient_moments",
    "loss_moments",
    "minimum",
    "monte_carlo_variance",
    "quadratic_losses",
    "steps_to_minimum",
    "train_sgd",
]


def domain_losses(theta: Tensor, phi: Tensor, y: Tensor, domain: Tensor, domains: int) -> Tensor:
    """Each domain's mean training loss ``L_k = mean_{i∈k} ½(φ_i·θ − y_i)²``: ``(members, P)`` → ``(members, K)``."""
    r = theta @ phi.T - y  # (members, N)
    sq = 0.5 * r * r
    out = theta.new_zeros(theta.shape[0], domains)
    out.index_add_(1, domain, sq)
    counts = torch.bincount(domain, minlength=domains).to(theta)
    return out / counts


def loss_moments(data: DomainData) -> tuple[Tensor, Tensor, Tensor]:
    """Each domain's training loss as a quadratic form, ``L_k(θ) = ½θᵀA_kθ − b_kᵀθ + c_k``: ``A`` ``(K, P, P)``,
    ``b`` ``(K, P)``, ``c`` ``(K,)``. Recording ``L_k`` from these costs ``P²`` per member instead of ``N·P``."""
    phi, y, dom, k = data.features, data.y, data.domain, data.domains
    counts = torch.bincount(dom, minlength=k).to(phi)
    a = torch.stack([phi[dom == j].T @ phi[dom == j] for j in range(k)]) / counts[:, None, None]
    b = torch.zeros(k, phi.shape[1], dtype=phi.dtype).index_add_(0, dom, phi * y[:, None]) / counts[:, None]
    c = 0.5 * torch.zeros(k, dtype=phi.dtype).index_add_(0, dom, y * y) / counts
    return a, b, c


def quadratic_losses(theta: Tensor, moments: tuple[Tensor, Tensor, Tensor]) -> Tensor:
    """``L_k(θ)`` for every member from :func:`loss_moments`: ``(members, P)`` → ``(members, K)``."""
    a, b, c = moments
    return 0.5 * torch.einsum("mp,kpq,mq->mk", theta, a, theta) - theta @ b.T + c


def minimum(data: DomainData, p: np.ndarray) -> tuple[Tensor, float]:
    """The minimiser ``θ*`` of ``Σ_k p_k L_k`` (the least-norm one: the shared and per-domain maps are
    redundant) and the minimum ``L*``, by a dense weighted least-squares solve."""
    phi = data.features.numpy()
    c = np.asarray(p, dtype=float)[data.domain.numpy()] / np.asarray(data.sizes, dtype=float)[data.domain.numpy()]
    sw = np.sqrt(c)
    theta, *_ = np.linalg.lstsq(phi * sw[:, None], data.y.numpy() * sw, rcond=None)
    t = torch.as_tensor(theta)[None, :]
    lk = domain_losses(t, data.features, data.y, data.domain, data.domains)[0].numpy()
    return t[0], float(np.asarray(p) @ lk)


def gradient_moments(data: DomainData, theta: Tensor, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``s_k = mean_{i∈k} ‖∇ℓ_i(θ)‖²`` per domain and the full gradient ``ḡ = Σ_k p_k g_k`` at ``theta``."""
    phi = data.features
    r = phi @ theta - data.y  # (N,)
    grads = phi * r[:, None]  # per-example gradients (N, P)
    k = data.domains
    counts = torch.bincount(data.domain, minlength=k).to(theta)
    sq = torch.zeros(k, dtype=theta.dtype).index_add_(0, data.domain, (grads * grads).sum(1)) / counts
    mean = torch.zeros(k, phi.shape[1], dtype=theta.dtype).index_add_(0, data.domain, grads) / counts[:, None]
    gbar = torch.as_tensor(np.asarray(p, dtype=float)) @ mean
    return sq.numpy(), gbar.numpy()


def monte_carlo_variance(
    data: DomainData, theta: Tensor, batches: Minibatches, gbar: np.ndarray, *, chunk: int = 4096
) -> tuple[float, float]:
    """The trace of the minibatch gradient's covariance, estimated from ``batches`` (every step and member is
    one minibatch), and its standard error. The exact mean ``gbar`` is known, so ``mean ‖ĝ − ḡ‖²`` is unbiased.

    An example's gradient ``r·φ = r·[x, e_k ⊗ x]`` is ``r·x`` in the shared block and in block ``k``,
    so minibatch gradients are assembled from ``x`` (``K + 1`` times fewer numbers than ``φ``), in
    chunks of ``chunk`` minibatches."""
    d, k = data.dim, data.domains
    r = data.features @ theta - data.y
    idx_all = batches.index.reshape(-1, batches.index.shape[-1])
    w_all = batches.weight.reshape(idx_all.shape).to(theta)
    g_ref = torch.as_tensor(gbar).view(k + 1, d)
    devs = []
    for start in range(0, len(idx_all), chunk):
        idx, w = idx_all[start : start + chunk], w_all[start : start + chunk]
        cx = (w * r[idx])[..., None] * data.x[idx] / idx.shape[1]  # (draws, B, d)
        ghat = torch.zeros(len(idx), k + 1, d, dtype=theta.dtype)
        ghat.scatter_add_(1, (data.domain[idx] + 1)[..., None].expand(-1, -1, d), cx)
        ghat[:, 0] = cx.sum(1)
        devs.append(((ghat - g_ref) ** 2).sum((1, 2)))
    dev = torch.cat(devs)
    return float(dev.mean()), float(dev.std() / np.sqrt(len(dev)))


@dataclass
class FullBatchResult:
    """Full-batch gradient descent on the two forms of the same objective."""

    theta_temperature: Tensor
    theta_scalarization: Tensor
    loss: Tensor
    """``(steps + 1, 2)``: the objective along both runs."""

    @property
    def max_difference(self) -> float:
        return float((self.theta_temperature - self.theta_scalarization).abs().max())


def full_batch_equivalence(data: DomainData, p: np.ndarray, *, lr: float, steps: int) -> FullBatchResult:
    """Gradient descent from zero on ``Σ_k p_k·mean_{i∈k} ℓ_i`` (what temperature sampling estimates) and on
    ``mean_i w_{k(i)} ℓ_i`` with ``w_k = p_k N/n_k`` (what scalarization estimates), as two members of one ensemble."""
    phi, y, dom, k = data.features, data.y, data.domain, data.domains
    p_t = torch.as_tensor(np.asarray(p, dtype=float))
    w_example = (p_t / (torch.as_tensor(data.sizes, dtype=torch.float64) / data.n_total))[dom]
    theta = torch.zeros(2, phi.shape[1], dtype=torch.float64, requires_grad=True)

    def loss() -> Tensor:
        lk = domain_losses(theta[:1], phi, y, dom, k)[0]
        r = phi @ theta[1] - y
        return torch.stack([p_t @ lk, (w_example * 0.5 * r * r).mean()])

    hist = fit(SGD([theta], lr), loss, steps)
    t = theta.detach()
    return FullBatchResult(theta_temperature=t[0], theta_scalarization=t[1], loss=hist.loss)


@dataclass
class SGDResult:
    """What :func:`train_sgd` recorded for every member."""

    steps: np.ndarray
    """``(records,)`` the steps at which losses were recorded."""
    val: np.ndarray
    """``(records, members, K)`` each domain's population (validation) loss."""
    train: np.ndarray
    """``(records, members, K)`` each domain's training loss."""
    theta: Tensor
    """``(members, P)`` the final parameters (a diverged member keeps its last finite ones)."""
    diverged_at: np.ndarray
    """``(members,)`` the step at which a member's loss turned non-finite, ``-1`` if never."""


def train_sgd(
    data: DomainData,
    batches: Minibatches,
    *,
    lr: float,
    theta0: Tensor | None = None,
    record_every: int = 10,
    optimizer: Literal["sgd", "adam"] = "sgd",
    diverge_above: float = 1e6,
) -> SGDResult:
    """Minibatch SGD, one member per column of ``batches``: at step ``t`` member ``m`` follows the gradient of
    ``(1/B) Σ_b weight[t, m, b]·½(φ_i·θ − y_i)²`` over its examples ``i = index[t, m, b]``.

    The gradient of a linear model's squared loss is written out, ``(1/B) Σ_b weight_b·r_b·φ_b``, so a
    step is three batched tensor operations for all members at once (autograd would triple the cost
    of these tiny steps). ``theta0`` (``(P,)`` or ``(members, P)``) defaults to zero. A member whose
    minibatch loss turns non-finite or exceeds ``diverge_above`` (a blow-up that would take many
    more steps to overflow) is frozen at its last parameters and reported in ``diverged_at``; the
    others go on.
    """
    phi, y = data.features, data.y
    members, steps = batches.members, batches.steps
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    start = torch.zeros(phi.shape[1], dtype=phi.dtype) if theta0 is None else theta0.to(phi.dtype)
    theta = start.expand(members, -1).clone().requires_grad_(True)  # the optimizers take trainable tensors
    adam = Adam([theta], lr) if optimizer == "adam" else None
    weight = batches.weight.to(phi.dtype)
    moments = loss_moments(data)
    alive = torch.ones(members, dtype=torch.bool)
    diverged_at = np.full(members, -1)
    rec_steps, vals, trains = [], [], []
    batch = batches.index.shape[-1]
    x, k, d = data.x, data.domains, data.dim
    dom1 = data.domain + 1  # block of the example's own map u_k in theta viewed as (K + 1, d)
    with torch.no_grad():  # the gradient is written out
        for t in range(steps + 1):
            if t % record_every == 0 or t == steps:
                rec_steps.append(t)
                vals.append(population_loss(theta, data))
                trains.append(quadratic_losses(theta, moments))
            if t == steps:
                break
            idx = batches.index[t]
            xb, kb = x[idx], dom1[idx]  # (members, B, d), (members, B)
            th = theta.view(members, k + 1, d)
            v = th[:, 0:1, :] + torch.gather(th, 1, kb[..., None].expand(-1, -1, d))  # w + u_k per example
            r = (v * xb).sum(-1) - y[idx]
            coef = weight[t] * r
            cx = coef[..., None] * xb / batch  # each example's gradient on w and on its own u_k
            grad = torch.zeros_like(th).scatter_add_(1, kb[..., None].expand(-1, -1, d), cx)
            grad[:, 0] = cx.sum(1)
            grad = grad.view(members, -1)
            batch_loss = (coef * r).mean(1) / 2
            ok = torch.isfinite(grad).all(1) & torch.isfinite(batch_loss) & (batch_loss <= diverge_above)
            if not bool(ok.all()):
                diverged_at[(alive & ~ok).numpy()] = t
                alive &= ok
            if not bool(alive.all()):  # frozen members take no step
                grad = torch.where(alive[:, None], grad, torch.zeros_like(grad))
            if adam is not None:
                adam.alive = alive.clone()
                adam.step([grad])
            else:
                theta -= lr * grad
    return SGDResult(
        steps=np.asarray(rec_steps),
        val=torch.stack(vals).numpy(),
        train=torch.stack(trains).numpy(),
        theta=theta.detach(),
        diverged_at=diverged_at,
    )


def gd_path(data: DomainData, p: np.ndarray, *, lr: float, steps: int, record_every: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch gradient descent from zero on ``Σ_k p_k L_k``: the recorded steps and each domain's population
    loss ``(records, K)``. For a model linear in its parameters this is also the *expected* SGD path under
    either sampler, ``E[θ_{t+1}] = E[θ_t] − lr·∇L(E[θ_t])``, because the expected minibatch gradient is
    ``∇L`` and ``∇L`` is affine in ``θ``."""
    a, b, _ = loss_moments(data)
    pt = torch.as_tensor(np.asarray(p, dtype=float))
    hess, lin = torch.einsum("k,kpq->pq", pt, a), pt @ b
    theta = torch.zeros(hess.shape[0], dtype=hess.dtype)
    rec, vals = [], []
    for t in range(steps + 1):
        if t % record_every == 0 or t == steps:
            rec.append(t)
            vals.append(population_loss(theta, data))
        if t < steps:
            theta = theta - lr * (hess @ theta - lin)
    return np.asarray(rec), torch.stack(vals).numpy()


def steps_to_minimum(steps: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For curves ``(records, members)``: the step of each member's minimum, the minimum, and the rise from the
    minimum to the last record (non-finite values count as never minimal)."""
    c = np.where(np.isfinite(curve), curve, np.inf)
    at = c.argmin(0)
    low = c[at, np.arange(c.shape[1])]
    return steps[at], low, c[-1] - low
