"""Experiments of the chapter *random-teachers*: distilling a frozen random teacher, no labels, no augmentation.

Sarnthein, Bachmann, Anagnostidis & Hofmann (2023) train a student to match the softmax outputs
of a teacher that is *never trained*: same architecture, random initialisation, frozen. The
student sees each input exactly as the teacher does (no augmentation, no labels, no EMA, no
centring, temperature 1). Its encoder's features nevertheless become better for a linear probe
than the teacher's, and only when the inputs carry structure.

The network is the paper's, scaled down to an MLP on 8×8 digits:

* **encoder**: a ReLU :class:`phenomena.models.MLP` with Kaiming-normal weights; its
  ``.features(x)`` (the last hidden layer) is the representation the probe reads;
* **projector**: the encoder's output layer, GELU, a GELU MLP ``H → H → b``, then the
  *L2 bottleneck*: the ``b``-vector is normalised to unit length and multiplied by a
  weight-normalised matrix (unit-norm rows) into ``K`` logits, as in DINO and the paper's App. A;
* **loss**: the cross-entropy ``−Σ_k t_k log s_k`` between the teacher's and the student's
  softmax (temperatures ``τ_t``, ``τ_s``); minus the teacher's entropy it is the KL divergence
  the paper reports, with the same gradient.

The student starts *close* to the teacher, ``θ_S = ((1−α)θ_T + αθ̃)/√(α² + (1−α)²)`` with a
fresh draw ``θ̃``: at ``α = 0`` it is the teacher (a global minimum, zero gradient); the paper
uses ``α ≈ 1e-10`` and finds any ``α ≤ 0.6`` behaves alike. Everything runs in float64 so that
a tiny ``α`` is representable; in this small MLP a student that close does not leave the teacher
within a CPU budget (the gradient is below Adam's ε), so the chapter uses ``α = 0.5``.

Many teacher–student pairs train at once on the ensemble axis: ``teachers`` independent
teachers, each with one student trained on the digits and, as the paper's control, one trained
on Gaussian noise with the digits' per-pixel moments. Both students of a pair start from the
same point, so their difference is due to the inputs alone. Probing always uses the clean digits.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.digits import DigitsSplit, gaussian_like
from ..ensemble import Adam, fit
from ..metrics.probe import probe_accuracy
from ..models import MLP, MLPConfig

DTYPE = torch.float64
SOURCES: tuple[str, ...] = ("digits", "noise")
"""What a student is distilled on: the digits' training inputs, or structure-free Gaussian noise."""


@dataclass(frozen=True)
class DistillConfig:
    """Architecture and training of one teacher–student experiment (see the module docstring)."""

    width: int = 32
    depth: int = 2
    head_width: int = 128
    bottleneck: int = 16
    out_dim: int = 256
    teacher_temperature: float = 1.0
    student_temperature: float = 1.0
    alpha: float = 0.5
    lr: float = 1e-3
    adam_eps: float = 1e-8
    steps: int = 1000
    batch_size: int = 256
    probe_every: int = 50
    ridge: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("width", "depth", "head_width", "bottleneck", "out_dim", "probe_every", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ValueError(f"steps must be >= 0, got {self.steps}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (the student's distance from the teacher) must lie in [0, 1], got {self.alpha}")
        for name in ("teacher_temperature", "student_temperature", "lr"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value}")


class ProjectedMLP(nn.Module):
    """An ensemble of encoder + projector networks (``members`` on the leading axis), DINO-style.

    ``features(x)`` is the encoder's representation ``(members, batch, width)``; ``forward(x)``
    the ``K`` logits before the temperature. Inputs are shared ``(batch, d)`` or per member
    ``(members, batch, d)``.
    """

    def __init__(self, d_in: int, config: DistillConfig, members: int, generator: torch.Generator) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = MLP(
            MLPConfig([d_in] + [c.width] * c.depth + [c.head_width], activation="relu",
                      init_scale=math.sqrt(2.0), bias=True, members=members, dtype=DTYPE),
            generator=generator,
        )
        self.head = MLP(
            MLPConfig([c.head_width, c.head_width, c.bottleneck], activation="gelu", bias=True,
                      members=members, dtype=DTYPE),
            generator=generator,
        )
        self.last = nn.Parameter(torch.randn(members, c.out_dim, c.bottleneck, generator=generator, dtype=DTYPE))

    def features(self, x: Tensor) -> Tensor:
        return self.encoder.features(x)

    def forward(self, x: Tensor) -> Tensor:
        z = self.head(F.gelu(self.encoder(x)))
        z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        v = self.last / self.last.norm(dim=-1, keepdim=True)
        return torch.bmm(z, v.transpose(1, 2))


def build_pair(
    d_in: int, config: DistillConfig, teachers: int, generator: torch.Generator
) -> tuple[ProjectedMLP, ProjectedMLP]:
    """``teachers`` random teachers and ``2·teachers`` students, student ``e`` near teacher ``e mod teachers``.

    Students ``0..R-1`` and ``R..2R-1`` start from the same point (one fresh draw ``θ̃`` per
    replica), so a digits student and a noise student of the same replica differ only in what
    they are trained on. Biases start at zero in every network (as in the paper's head), so only
    the weights are interpolated, with the variance-preserving ``δ``.
    """
    if teachers < 1:
        raise ValueError(f"teachers must be >= 1, got {teachers}")
    teacher = ProjectedMLP(d_in, config, teachers, generator)
    fresh = ProjectedMLP(d_in, config, teachers, generator)
    student = ProjectedMLP(d_in, config, 2 * teachers, generator)
    a = float(config.alpha)
    delta = math.sqrt(a * a + (1 - a) * (1 - a))
    with torch.no_grad():
        for p_s, p_t, p_f in zip(student.parameters(), teacher.parameters(), fresh.parameters()):
            mixed = ((1 - a) * p_t + a * p_f) / delta
            p_s.copy_(torch.cat([mixed, mixed]))
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher, student


def distillation_loss(student_logits: Tensor, teacher_probs: Tensor, student_temperature: float) -> Tensor:
    """Cross-entropy ``−Σ_k t_k log softmax(s/τ_s)_k`` per member, averaged over the batch: ``(members,)``."""
    logp = F.log_softmax(student_logits / student_temperature, dim=-1)
    return -(teacher_probs * logp).sum(-1).mean(-1)


@dataclass
class DistillResult:
    """Probe accuracies over training (clean digits, ridge probe on the encoder's features).

    ``student[t, source, replica]`` at ``steps[t]`` for each source in :data:`SOURCES`;
    ``teacher[replica]`` (frozen, so one value); ``pixels``: the probe on the raw standardised
    inputs; ``kl[step, source, replica]``: the KL divergence student → teacher during training.
    """

    steps: np.ndarray
    student: np.ndarray
    teacher: np.ndarray
    pixels: float
    kl: np.ndarray
    config: DistillConfig

    @property
    def teachers(self) -> int:
        return int(self.teacher.shape[0])

    def gain(self, source: str = "digits") -> np.ndarray:
        """Final probe accuracy of the student minus its teacher's, per replica (accuracy points as fractions)."""
        return self.student[-1, _source(source)] - self.teacher

    def error_reduction(self, source: str = "digits") -> np.ndarray:
        """Fraction of the teacher's probe error the student removes, per replica: ``(e_T − e_S)/e_T``."""
        e_t = 1 - self.teacher
        return (e_t - (1 - self.student[-1, _source(source)])) / e_t

    def structure_gap(self) -> np.ndarray:
        """Digits student minus noise student (same teacher, same start), over the teacher's probe error, per replica.

        Equal to ``error_reduction("digits") − error_reduction("noise")``: how much of the gain needs
        the data's structure.
        """
        return (self.student[-1, 0] - self.student[-1, 1]) / (1 - self.teacher)


def _source(name: str) -> int:
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; valid sources are: {', '.join(SOURCES)}")
    return SOURCES.index(name)


def _minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index batches for ever: a fresh permutation of ``range(n)`` each epoch, cut into ``batch_size`` pieces
    (the last piece of an epoch may be smaller). One batch is shared by every member."""
    size = min(int(batch_size), n)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, size):
            yield order[start : start + size]


def distill(
    data: DigitsSplit, config: DistillConfig, *, teachers: int, generator: torch.Generator
) -> DistillResult:
    """Distil ``teachers`` random teachers into students on the digits and on noise; probe along the way.

    AdamW (weight decay 0, as in the paper) on minibatches of the training inputs (one batch of
    indices shared by all members, ``batch_size`` 256 as in the paper), all members at once. The teacher's targets are computed once (it is frozen). The noise students see fresh
    Gaussian inputs with the digits' per-pixel moments, as many as there are training digits.
    """
    return _distill(data, config, teachers=teachers, generator=generator)


def _distill(data: DigitsSplit, config: DistillConfig, *, teachers: int, generator: torch.Generator) -> DistillResult:
    c = config
    x = data.x_train
    device = x.device
    teacher, student = build_pair(data.dim, c, teachers, generator)
    teacher, student = teacher.to(device), student.to(device)
    noise = torch.stack([gaussian_like(x, generator=generator) for _ in range(teachers)]).to(device)
    inputs_t = torch.cat([x.unsqueeze(0).expand(teachers, -1, -1), noise])  # per student: its own inputs
    with torch.no_grad():
        t_logits = torch.cat([teacher(inputs_t[:teachers]), teacher(inputs_t[teachers:])]) / c.teacher_temperature
        t_probs = torch.softmax(t_logits, dim=-1)
        t_entropy = -(t_probs * torch.log_softmax(t_logits, dim=-1)).sum(-1)  # (members, n)

    def probe(model: ProjectedMLP) -> Tensor:
        return probe_accuracy(model.features(data.x_train), data.y_train, model.features(data.x_test), data.y_test,
                              n_classes=data.n_classes, ridge=c.ridge)

    batches = _minibatches(x.shape[0], c.batch_size, generator)

    def loss() -> Tensor:
        idx = next(batches).to(device)
        ce = distillation_loss(student(inputs_t[:, idx]), t_probs[:, idx], c.student_temperature)
        return ce - t_entropy[:, idx].mean(-1)  # the KL divergence: same gradient, zero at the teacher

    optimizer = Adam(list(student.parameters()), c.lr, eps=c.adam_eps, decoupled=True, weight_decay=0.0)
    history = fit(
        optimizer,
        loss,
        c.steps,
        record={"probe": lambda: probe(student)},
        record_every=c.probe_every,
    )
    with torch.no_grad():
        teacher_acc = probe(teacher).cpu().numpy()
        pixels = float(probe_accuracy(data.x_train, data.y_train, data.x_test, data.y_test,
                                      n_classes=data.n_classes, ridge=c.ridge))
    acc = history.recorded["probe"].numpy().reshape(-1, len(SOURCES), teachers)
    kl = history.loss.numpy().reshape(-1, len(SOURCES), teachers)
    return DistillResult(
        steps=history.record_steps.numpy(), student=acc, teacher=teacher_acc, pixels=pixels, kl=kl, config=c
    )
