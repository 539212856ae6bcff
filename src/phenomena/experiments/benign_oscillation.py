"""Benign oscillation: batch-1 SGD on feature–noise patch data at a grid of learning rates.

Chapter ``benign-oscillation`` (Lu, Wu, Yang & Zou 2023). A ReLU² patch CNN with a fixed head
(:mod:`phenomena.models.patch_cnn`) is trained on feature–noise data
(:mod:`phenomena.data.feature_noise`) by SGD with one example per step and the squared loss
``½(F − y)²``. The ensemble axis holds every (learning rate, initialisation) pair: the members
of one initialisation share their training set, their test set and their initial weights, and
differ only in the learning rate (and in the examples SGD draws: every member draws its own
index at every step). All members take one batched step.

Measured along the way: the residual ``|y_{i_t}F(x_{i_t}) − 1|`` on the example drawn at each
step (the paper's oscillation condition), the full training loss, the alignment of the filters
with the weak and the strong feature, and the accuracy on the weak-only test split. A member whose
weights or output blow up is frozen and marked as diverged (``diverged_at``), never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from phenomena.data.feature_noise import FeatureNoiseData, feature_noise, weak_only
from phenomena.ensemble import SGD
from phenomena.models.patch_cnn import PatchCNN, PatchCNNConfig

BLOWUP = 1e6  # |F| on the sampled example above this marks a member as diverged


@dataclass
class BenignResult:
    """What :func:`train_benign` measured. Member ``e`` has learning rate ``lr[e]`` and
    initialisation ``init[e]``; rows of the recorded arrays are the steps in ``steps``."""

    lr: np.ndarray  # (members,)
    init: np.ndarray  # (members,) index of the initialisation (training set, test set, weights)
    residual: np.ndarray  # (steps, members): |y F(x) − 1| on the example drawn at each step, before the update
    steps: np.ndarray  # (records,) the steps at which the quantities below were recorded
    train_loss: np.ndarray  # (records, members): mean ½(F − y)² over the training set
    weak_alignment: np.ndarray  # (records, members): mean over j of max_r ⟨w_{j,r}, j·v⟩/‖v‖
    strong_alignment: np.ndarray  # (records, members): the same for u
    test_steps: np.ndarray  # (test records,)
    test_acc: np.ndarray  # (test records, members): accuracy on the weak-only split
    diverged_at: np.ndarray  # (members,) first check at which the member had blown up; inf if never
    strong_fraction: float  # fraction of training examples that carry the strong feature

    @property
    def diverged(self) -> np.ndarray:
        return np.isfinite(self.diverged_at)

    def window_median(self, start: int, stop: int) -> np.ndarray:
        """Median over steps ``[start, stop)`` of the sampled-example residual, per member."""
        if not 0 <= start < stop <= self.residual.shape[0]:
            raise ValueError(f"window [{start}, {stop}) must lie inside the {self.residual.shape[0]} steps run")
        return np.median(self.residual[start:stop], axis=0)


def memorization_lr(width: int, noise_std: float, d: int) -> float:
    """Largest step at which batch-1 SGD can sit still on a fit that memorises one example's noise (q = 2).

    At a fit ``F(x) = y`` the Hessian of ``½(F − y)²`` is ``∇F∇Fᵀ`` with top eigenvalue ``‖∇F‖²``.
    If ``F`` comes from noise patches alone, ``∇_{w_r}F = (2/m)Σ_p z_{rp}ξ_p`` and, the patches being
    orthogonal with ``‖ξ_p‖² = σ_p²(d − 2)``, ``‖∇F‖² = (4σ_p²(d − 2)/m)·F = 4σ_p²(d − 2)/m`` however
    the fit is spread over filters and patches. A step is stable when ``η‖∇F‖² < 2``, so memorising
    is stable only below ``η* = m / (2σ_p²(d − 2))``. The same bound for a feature ``a`` of norm
    ``‖a‖`` is ``m / (2‖a‖²)``: pass ``noise_std = ‖a‖`` and ``d = 3``."""
    if width < 1 or d < 3 or not noise_std > 0:
        raise ValueError(f"need width ≥ 1, d ≥ 3 and noise_std > 0, got {width}, {d}, {noise_std}")
    return width / (2.0 * noise_std**2 * (d - 2))


def feature_alignment(weight: Tensor, direction: Tensor) -> Tensor:
    """``mean_j max_r ⟨w_{j,r}, j·direction⟩ / ‖direction‖`` for filters ``(members, 2, m, d)``.

    Group ``j = +1`` votes for ``+1`` and should grow along ``+direction``, group ``−1`` along
    ``−direction``; the best filter of each group counts. At initialisation it is about
    ``1.54·init_std`` for ``m = 10`` (the mean of the largest of ten standard normals)."""
    unit = direction / direction.norm()
    proj = weight @ unit  # (members, 2, m)
    signed = proj * torch.tensor([1.0, -1.0], dtype=proj.dtype, device=proj.device)[None, :, None]
    return signed.amax(-1).mean(-1)


def _accuracy(model: PatchCNN, init: Tensor, data: FeatureNoiseData, chunk: int = 500) -> Tensor:
    """Accuracy of every member on its own initialisation's test set (``data.x``: ``(inits, n, P, d)``)."""
    correct = torch.zeros(model.members, dtype=data.x.dtype, device=data.x.device)
    full = model.weight
    for k in range(data.x.shape[0]):
        idx = (init == k).nonzero().flatten()
        if idx.numel() == 0:
            continue
        sub = PatchCNN.__new__(PatchCNN)
        sub.config, sub.members, sub.head, sub.weight = model.config, idx.numel(), model.head, full[idx]
        for s in range(0, data.x.shape[1], chunk):
            out = sub(data.x[k, s:s + chunk])
            correct[idx] += (torch.sign(out) == data.y[k, s:s + chunk]).to(out).sum(-1)
    return correct / data.x.shape[1]


@torch.no_grad()  # the gradient is written out (PatchCNN.loss_grad): no autograd graph
def train_benign(
    *,
    lrs: list[float],
    inits: int,
    n: int,
    d: int,
    steps: int,
    data_generator: torch.Generator,
    init_generator: torch.Generator,
    sample_generator: torch.Generator,
    weak_norm: float = 0.2,
    strong_norm: float = 2.0,
    strong_prob: float = 0.5,
    noise_std: float = 0.1,
    width: int = 10,
    q: float = 2.0,
    init_std: float = 0.01,
    per_patch: bool = False,
    n_test: int = 2000,
    records: int = 60,
    test_records: int = 6,
    check_every: int = 100,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> BenignResult:
    """Train ``len(lrs) × inits`` patch CNNs by batch-1 SGD, all in one batched model.

    Member ``e = i·inits + k`` has learning rate ``lrs[i]`` and initialisation ``k``. Every member
    draws its own example at every step."""
    if not lrs or min(lrs) < 0:
        raise ValueError(f"give a non-empty list of non-negative learning rates, got {lrs}")
    if inits < 1 or steps < 1:
        raise ValueError(f"inits and steps must be positive, got inits={inits}, steps={steps}")
    kw = dict(weak_norm=weak_norm, strong_norm=strong_norm, noise_std=noise_std, sets=inits, dtype=dtype)
    train = feature_noise(n, d, data_generator, strong_prob=strong_prob, **kw)
    test = weak_only(n_test, d, data_generator, **kw)
    train.x, train.y, test.x, test.y = (t.to(device) for t in (train.x, train.y, test.x, test.y))
    u, v = train.u.to(device), train.v.to(device)

    lr = torch.tensor([a for a in lrs for _ in range(inits)], dtype=dtype)
    init = torch.arange(inits).repeat(len(lrs))
    members = lr.numel()
    config = PatchCNNConfig(d=d, width=width, q=q, init_std=init_std, per_patch=per_patch, patches=train.x.shape[2])
    # one draw of initial weights per initialisation, copied to every learning rate
    base = PatchCNN(config, inits, init_generator, dtype=dtype, device=device)
    model = PatchCNN(config, members, init_generator, dtype=dtype, device=device)
    model.weight = base.weight[init.to(device)].clone().requires_grad_(True)  # SGD wants trainable tensors
    opt = SGD([model.weight], lr=lr.to(device))
    init_d = init.to(device)
    index = torch.randint(0, n, (steps, members), generator=sample_generator).to(device)

    record_at = sorted(set(np.linspace(0, steps, records + 1).round().astype(int).tolist()))
    test_at = sorted(set(np.linspace(0, steps, test_records + 1).round().astype(int).tolist()))
    measure_at = set(record_at) | set(test_at)
    residual = torch.empty(steps, members, dtype=dtype, device=device)
    rec_loss, rec_weak, rec_strong, rec_acc = [], [], [], []
    diverged_at = torch.full((members,), math.inf, dtype=torch.float64)

    def measure(step: int) -> None:
        w = model.filters()
        if step in record_at:
            out = model(train.x[init_d])  # every member on its own training set, (members, n)
            rec_loss.append((0.5 * (out - train.y[init_d]) ** 2).mean(-1))
            rec_weak.append(feature_alignment(w, v))
            rec_strong.append(feature_alignment(w, u))
        if step in test_at:
            rec_acc.append(_accuracy(model, init_d, test))

    opt.all_alive = True
    measure(0)
    for t in range(steps):
        i = index[t]
        xb = train.x[init_d, i].unsqueeze(1)  # (members, 1, P, d): every member its own example
        yb = train.y[init_d, i].unsqueeze(1)
        out, grad = model.loss_grad(xb, yb)
        residual[t] = (yb * out - 1).abs()[:, 0]
        opt.step([grad])
        if (t + 1) % check_every == 0 or t + 1 == steps:
            window = residual[max(0, t + 1 - check_every): t + 1]
            bad = ~(torch.isfinite(model.weight.reshape(members, -1)).all(-1)) | ~(window < BLOWUP).all(0)
            newly = (bad & opt.alive).cpu()
            if bool(newly.any()):
                diverged_at[newly] = t + 1
                opt.alive &= ~bad
                with torch.no_grad():
                    model.weight[bad] = math.nan  # a diverged member is reported, its weights are not used
            opt.all_alive = bool(opt.alive.all())
        if t + 1 in measure_at:
            measure(t + 1)

    def arr(xs: list[Tensor]) -> np.ndarray:
        return torch.stack(xs).double().cpu().numpy()

    res = residual.double().cpu().numpy()
    dead = np.isfinite(diverged_at.numpy())
    res[:, dead] = np.where(np.arange(steps)[:, None] >= diverged_at.numpy()[dead][None, :] - check_every,
                            np.nan, res[:, dead])
    return BenignResult(
        lr=np.array([float(a) for a in lrs for _ in range(inits)]), init=init.numpy(), residual=res, steps=np.array(record_at),
        train_loss=arr(rec_loss), weak_alignment=arr(rec_weak), strong_alignment=arr(rec_strong),
        test_steps=np.array(test_at), test_acc=arr(rec_acc), diverged_at=diverged_at.numpy(),
        strong_fraction=float(train.strong.double().mean()),
    )
