"""Chapter coherent-gradients: per-example gradient coherence on real, random and noisy digit labels.

Chatterjee & Zielinski (2022) explain generalization by how well per-example gradients agree.
Two experiments on scikit-learn's digits with a ReLU MLP, both trained by full-batch gradient
descent on the cross-entropy, every label condition and initialisation a member of one ensemble:

* :func:`coherence_run`: real against random labels (same initialisations, same probe set);
  m-coherence of a fixed probe set logged at every percent of training, the mini-batching
  identity checked on the probe's Gram matrix, each example's initial alignment with the mean
  gradient and the step at which it is learned;
* :func:`noisy_run`: labels with a fraction flipped; plain gradient descent against a robust
  average of per-group gradients (winsorized or median of means, :mod:`phenomena.robust`),
  logging training accuracy on the clean and flipped examples and held-out accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from phenomena import ensemble
from phenomena.data.digits import DigitsSplit, flip_labels, random_labels
from phenomena.metrics.curves import NEVER, crossing_time
from phenomena.metrics.gradients import MLPGradients, alpha_from_gram, minibatch_alpha_monte_carlo
from phenomena.models import MLP, MLPConfig
from phenomena.robust import robust_step
from phenomena.theory.coherence import minibatch_alpha

CONDITIONS: tuple[str, ...] = ("real", "random")


def log_steps(steps: int, points: int) -> np.ndarray:
    """The steps at which to log: ``points + 1`` evenly spaced steps from 0 to ``steps`` (every percent for 100)."""
    if steps < 1 or points < 1:
        raise ValueError(f"steps and points must be >= 1, got {steps}, {points}")
    return np.unique(np.round(np.linspace(0, steps, points + 1)).astype(int))


def paired_mlp(widths: list[int], inits: int, copies: int, *, generator: torch.Generator, device=None,
               **config) -> MLP:
    """An MLP ensemble of ``copies × inits`` members in which member ``c·inits + i`` starts from
    initialisation ``i`` for every copy ``c``: label conditions compared from identical starts."""
    base = MLP(MLPConfig(widths, members=inits, **config), generator=generator)
    model = MLP(MLPConfig(widths, members=copies * inits, **config))
    with torch.no_grad():
        for w, w0 in zip(model.weights, base.weights):
            w.copy_(w0.repeat(copies, 1, 1))
    return model.to(device)


def _member_ce(model: MLP, x: Tensor, targets: Tensor) -> Tensor:
    out = model(x)
    e, n, k = out.shape
    return F.cross_entropy(out.reshape(-1, k), targets.reshape(-1), reduction="none").view(e, n).mean(1)


def learned_step(correct: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """The first logged step from which an example stays correctly classified to the end of the run
    (``correct``: ``(logs, ..., n)`` bools); ``inf`` (``NEVER``) for examples wrong at the end."""
    c = np.asarray(correct, dtype=bool)
    stays = np.flip(np.logical_and.accumulate(np.flip(c, 0), axis=0), 0)  # correct from here on
    first = stays.argmax(0)
    out = np.asarray(steps, dtype=float)[first]
    return np.where(stays[-1], out, NEVER)


@dataclass
class CoherenceResult:
    """Logs of :func:`coherence_run`; member ``c·inits + i`` is condition ``conditions[c]``, init ``i``."""

    conditions: tuple[str, ...]
    inits: int
    steps: np.ndarray
    """``(logs,)`` the logged steps."""
    m_coherence: np.ndarray
    """``(logs, members)``: m-coherence ``‖Σgᵢ‖²/Σ‖gᵢ‖²`` of the probe set."""
    train_acc: np.ndarray
    test_acc: np.ndarray
    loss: np.ndarray
    correct: np.ndarray
    """``(logs, members, n_train)``: which training examples each member classifies correctly."""
    alignment: np.ndarray
    """``(members, n_train)``: initial ``gᵢ·ḡ/‖ḡ‖`` (ḡ the mean gradient over the training set)."""
    minibatch: pd.DataFrame
    """The mini-batching identity: per checked step and member, α of the probe, α of k-means by
    Monte-Carlo, and the closed form ``kα/(1+(k-1)α)``."""
    probe: np.ndarray

    @property
    def members(self) -> int:
        return self.m_coherence.shape[1]

    def condition_of(self, member: int) -> str:
        return self.conditions[member // self.inits]

    def members_of(self, condition: str) -> list[int]:
        c = self.conditions.index(condition)
        return list(range(c * self.inits, (c + 1) * self.inits))

    def learned_steps(self) -> np.ndarray:
        """``(members, n_train)``: :func:`learned_step` for every member and training example."""
        return learned_step(self.correct, self.steps)

    def table(self) -> pd.DataFrame:
        rows = []
        for e in range(self.members):
            for t, s in enumerate(self.steps):
                rows.append({"condition": self.condition_of(e), "init": e % self.inits, "step": int(s),
                             "m_coherence": self.m_coherence[t, e], "train_acc": self.train_acc[t, e],
                             "test_acc": self.test_acc[t, e], "loss": self.loss[t, e]})
        return pd.DataFrame(rows)


def _accuracy(model: MLP, x: Tensor, targets: Tensor) -> Tensor:
    return (model(x).argmax(-1) == targets).to(torch.float64).mean(-1)


def coherence_run(
    split: DigitsSplit,
    *,
    inits: int,
    steps: int,
    lr: float,
    width: int = 256,
    depth: int = 2,
    probe_size: int = 256,
    log_points: int = 100,
    k: int = 16,
    batches: int = 2000,
    minibatch_fraction: float = 0.1,
    init_generator: torch.Generator,
    label_generator: torch.Generator,
    mc_generator: torch.Generator,
    conditions: tuple[str, ...] = CONDITIONS,
    **config,
) -> CoherenceResult:
    """Train real- and random-label members from the same initialisations by full-batch GD on the
    cross-entropy and log the probe set's m-coherence at ``log_points`` evenly spaced steps.

    The probe set (``probe_size`` training examples, the same for every member) is fixed, since
    α depends on the sample. The mini-batching identity is checked at step 0 and at the last
    logged step within the first ``minibatch_fraction`` of training, with ``batches`` draws of
    ``k`` examples.
    """
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown label condition {c!r}; valid ones are: {', '.join(CONDITIONS)}")
    x, y = split.x_train, split.y_train
    n = x.shape[0]
    if not 2 <= probe_size <= n:
        raise ValueError(f"probe_size must lie in [2, n_train = {n}], got {probe_size}")
    device = x.device
    widths = [split.dim] + [width] * depth + [split.n_classes]
    model = paired_mlp(widths, inits, len(conditions), generator=init_generator, device=device, **config)
    model = model.to(dtype=x.dtype)
    targets = []
    for c in conditions:
        for _ in range(inits):
            targets.append(y if c == "real" else random_labels(y, generator=label_generator))
    targets = torch.stack(targets)  # (members, n)
    probe = torch.randperm(n, generator=label_generator)[:probe_size].sort().values.to(device)
    xp, yp = x[probe], targets[:, probe]

    logged = log_steps(steps, log_points)
    check_at = {0, int(logged[logged <= minibatch_fraction * steps].max())}
    aligned = MLPGradients.of(model, x, targets)
    mean_dir = aligned.total()
    norm = sum((t * t).sum((-2, -1)) for t in mean_dir).sqrt()
    alignment = (aligned.dot(mean_dir) / norm[:, None]).cpu().numpy()
    del aligned

    opt = ensemble.SGD(model.parameters(), lr=lr)
    logs: dict[str, list] = {k_: [] for k_ in ("m_coherence", "train_acc", "test_acc", "loss", "correct")}
    mb_rows = []
    todo = set(int(s) for s in logged)
    for step in range(steps + 1):
        if step in todo:
            with torch.no_grad():
                grads = MLPGradients.of(model, xp, yp)
                logs["m_coherence"].append(grads.stats().m_coherence.cpu())
                pred = model(x).argmax(-1)
                logs["correct"].append((pred == targets).cpu())
                logs["train_acc"].append((pred == targets).to(torch.float64).mean(-1).cpu())
                logs["test_acc"].append(_accuracy(model, split.x_test, split.y_test).cpu())
                if step in check_at:
                    gram = grads.gram().to(torch.float64)
                    a = alpha_from_gram(gram)
                    mc = minibatch_alpha_monte_carlo(gram, k, batches, generator=mc_generator)
                    for e in range(model.config.members):
                        mb_rows.append({"step": step, "member": e, "condition": conditions[e // inits],
                                        "alpha": float(a[e]), "alpha_k_monte_carlo": float(mc[e]),
                                        "alpha_k_closed_form": float(minibatch_alpha(float(a[e]), k))})
        loss = _member_ce(model, x, targets)
        if step in todo:
            logs["loss"].append(loss.detach().cpu())
        if step == steps:
            break
        opt.step(torch.autograd.grad(loss.sum(), list(model.parameters())))
    mb = pd.DataFrame(mb_rows)
    mb["relative_error"] = (mb["alpha_k_monte_carlo"] / mb["alpha_k_closed_form"] - 1).abs()
    return CoherenceResult(
        conditions=tuple(conditions), inits=inits, steps=logged,
        m_coherence=torch.stack(logs["m_coherence"]).numpy(), train_acc=torch.stack(logs["train_acc"]).numpy(),
        test_acc=torch.stack(logs["test_acc"]).numpy(), loss=torch.stack(logs["loss"]).numpy(),
        correct=torch.stack(logs["correct"]).numpy(), alignment=alignment, minibatch=mb, probe=probe.cpu().numpy(),
    )


@dataclass
class NoisyResult:
    """Logs of :func:`noisy_run`; member ``a·inits + i`` is arm ``arms[a]`` (plain or robust), init ``i``."""

    arms: tuple[str, ...]
    inits: int
    steps: np.ndarray
    clean_acc: np.ndarray
    """``(logs, members)``: training accuracy on the examples whose label was kept."""
    flipped_acc: np.ndarray
    """``(logs, members)``: training accuracy on the flipped examples, measured against their (wrong) label."""
    val_acc: np.ndarray
    test_acc: np.ndarray
    flipped: np.ndarray
    """``(inits, n_train)``: which training labels were flipped."""

    def members_of(self, arm: str) -> list[int]:
        a = self.arms.index(arm)
        return list(range(a * self.inits, (a + 1) * self.inits))

    def table(self) -> pd.DataFrame:
        rows = []
        for e in range(self.clean_acc.shape[1]):
            for t, s in enumerate(self.steps):
                rows.append({"arm": self.arms[e // self.inits], "init": e % self.inits, "step": int(s),
                             "clean_acc": self.clean_acc[t, e], "flipped_acc": self.flipped_acc[t, e],
                             "val_acc": self.val_acc[t, e], "test_acc": self.test_acc[t, e]})
        return pd.DataFrame(rows)


def noisy_run(
    split: DigitsSplit,
    *,
    inits: int,
    steps: int,
    lr: float,
    flip_fraction: float,
    robust: str | None = None,
    groups: int | None = None,
    fraction: float = 0.1,
    width: int = 256,
    depth: int = 2,
    log_points: int = 100,
    init_generator: torch.Generator,
    label_generator: torch.Generator,
    group_generator: torch.Generator | None = None,
    **config,
) -> NoisyResult:
    """Full-batch GD on labels with ``flip_fraction`` flipped (``inits`` members), and with ``robust``
    (``"winsorize"`` or ``"median"``) a second arm from the same initialisations and flips that steps
    along the robust average of ``groups`` random groups' mean gradients, re-drawn every step
    (``groups = n_train``: per-example gradients, Chatterjee's winsorized GD). The held-out split
    is halved into a validation half (to pick the early-stopping step) and a test half."""
    x, y = split.x_train, split.y_train
    n = x.shape[0]
    device = x.device
    widths = [split.dim] + [width] * depth + [split.n_classes]
    arms = ("plain",) if robust is None else ("plain", "robust")
    if robust is not None and (groups is None or group_generator is None):
        raise ValueError("a robust arm needs groups (how many groups to average over) and a group_generator")
    model = paired_mlp(widths, inits, len(arms), generator=init_generator, device=device, **config).to(dtype=x.dtype)
    noisy, masks = zip(*(flip_labels(y, flip_fraction, generator=label_generator) for _ in range(inits)))
    targets = torch.stack(list(noisy) * len(arms))
    flipped = torch.stack(list(masks) * len(arms))
    n_test = split.x_test.shape[0]
    order = torch.randperm(n_test, generator=label_generator).to(device)
    val, test = order[: n_test // 2], order[n_test // 2 :]
    robust_members = (torch.arange(len(arms) * inits, device=device) >= inits).view(-1, 1, 1, 1)
    opt = ensemble.SGD(model.parameters(), lr=lr)
    logged = log_steps(steps, log_points)
    todo = set(int(s) for s in logged)
    logs: dict[str, list] = {k_: [] for k_ in ("clean_acc", "flipped_acc", "val_acc", "test_acc")}
    for step in range(steps + 1):
        if step in todo:
            with torch.no_grad():
                hit = (model(x).argmax(-1) == targets).to(torch.float64)
                logs["clean_acc"].append(((hit * ~flipped).sum(1) / (~flipped).sum(1)).cpu())
                logs["flipped_acc"].append(((hit * flipped).sum(1) / flipped.sum(1).clamp(min=1)).cpu())
                logs["val_acc"].append(_accuracy(model, split.x_test[val], split.y_test[val]).cpu())
                logs["test_acc"].append(_accuracy(model, split.x_test[test], split.y_test[test]).cpu())
        if step == steps:
            break
        if robust is None:
            loss = _member_ce(model, x, targets)
            opt.step(torch.autograd.grad(loss.sum(), list(model.parameters())))
            continue
        grads = MLPGradients.of(model, x, targets)
        parts = grads.group_means(torch.randperm(n, generator=group_generator).to(device), groups)
        # plain members get copies of their mean gradient in every group slot: any robust average returns it
        mixed = [torch.where(robust_members, g, (t / n).unsqueeze(1).expand_as(g)) for g, t in zip(parts, grads.total())]
        robust_step(opt, mixed, robust, fraction=fraction)
    return NoisyResult(
        arms=arms, inits=inits, steps=logged,
        clean_acc=torch.stack(logs["clean_acc"]).numpy(), flipped_acc=torch.stack(logs["flipped_acc"]).numpy(),
        val_acc=torch.stack(logs["val_acc"]).numpy(), test_acc=torch.stack(logs["test_acc"]).numpy(),
        flipped=torch.stack(list(masks)).cpu().numpy(),
    )


def early_stopped(result: NoisyResult, arm: str = "plain") -> pd.DataFrame:
    """Per init of ``arm``: the step of best validation accuracy, the test accuracy there and at the end,
    and the crossing steps of clean training accuracy 90 % and flipped training accuracy 50 %."""
    rows = []
    for i, e in enumerate(result.members_of(arm)):
        best = int(np.argmax(result.val_acc[:, e]))
        rows.append({
            "init": i, "stop_step": int(result.steps[best]), "early_test_acc": result.test_acc[best, e],
            "final_test_acc": result.test_acc[-1, e],
            "clean_90_step": float(crossing_time(result.clean_acc[:, e], 0.9, direction="above",
                                                 steps=result.steps, interpolate=None)),
            "flipped_50_step": float(crossing_time(result.flipped_acc[:, e], 0.5, direction="above",
                                                   steps=result.steps, interpolate=None)),
        })
    return pd.DataFrame(rows)
