"""Experiments of the chapter *neural-collapse*: the unconstrained-features model with a deep linear head.

Free features ``H`` and a linear head of depth ``M`` trained by full-batch gradient descent on
the regularised MSE of Dang et al. (2023); many runs (regularisation strengths, with and without
bias) train as one ensemble. What the chapter compares with the closed forms of
:mod:`phenomena.theory.collapse`: NC1 over training, the Gram matrix of the class means, their
norms under class imbalance, and where a minority class collapses as the regularisation grows.
The ``full`` scale adds a real network: an MLP on scikit-learn's digits, whose penultimate
features are measured with the same NC1–NC4.

Everything runs in float64: the claims compare numbers to well below a percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..ensemble import SGD, Adam, History, fit
from ..metrics.collapse import class_means, neural_collapse, within_class_variability
from ..models.unconstrained import UFMConfig, UnconstrainedFeatures

DTYPE = torch.float64


def labels_for(class_sizes: Sequence[int], device: torch.device | str | None = None) -> Tensor:
    """Integer labels, ``class_sizes[k]`` samples of class ``k``, sorted by class."""
    sizes = [int(n) for n in class_sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"class_sizes must list at least two classes of >= 1 sample, got {list(class_sizes)}")
    return torch.cat([torch.full((n,), k, dtype=torch.long) for k, n in enumerate(sizes)]).to(device)


@dataclass
class UFMResult:
    """A trained ensemble of unconstrained-features models and what was recorded on the way.

    ``nc1[t, member]`` at ``steps[t]``; ``weight_decay``/``feature_decay``/``bias`` per member.
    """

    model: UnconstrainedFeatures
    labels: Tensor
    class_sizes: tuple[int, ...]
    depth: int
    bias: tuple[bool, ...]
    weight_decay: np.ndarray
    feature_decay: np.ndarray
    history: History

    @property
    def steps(self) -> np.ndarray:
        return self.history.record_steps.numpy()

    @property
    def nc1(self) -> np.ndarray:
        return self.history.recorded["nc1"].numpy() if "nc1" in self.history.recorded else np.zeros((0, 0))

    def means(self) -> np.ndarray:
        """Class means of every member, ``(members, K, d)``."""
        return class_means(self.model.features.detach(), self.labels.cpu(), len(self.class_sizes))[0].numpy()

    def gram(self) -> np.ndarray:
        """``H̄ᵀH̄``: Gram matrices of the uncentred class means, ``(members, K, K)``."""
        m = self.means()
        return m @ m.transpose(0, 2, 1)

    def mean_norms(self) -> np.ndarray:
        """``‖h̄_k‖`` per member and class, ``(members, K)``."""
        return np.linalg.norm(self.means(), axis=-1)

    def collapse_metrics(self) -> pd.DataFrame:
        """NC1–NC4 of every member (the classifier is the end-to-end product ``W_M ⋯ W_1``)."""
        w = self.model.classifier().detach().cpu()
        b = self.model.bias
        rows = []
        for e in range(w.shape[0]):
            bias = None if b is None or not self.bias[e] else (b[e].detach().cpu())
            nc = neural_collapse(self.model.features[e].detach().cpu(), self.labels.cpu(), w[e], bias)
            rows.append({"member": e, "bias": self.bias[e], "weight_decay": float(self.weight_decay[e]), **nc})
        return pd.DataFrame(rows)


def train_ufm(
    class_sizes: Sequence[int],
    *,
    depth: int,
    weight_decay: float | Sequence[float],
    feature_decay: float | Sequence[float] | None = None,
    bias: bool | Sequence[bool] = False,
    dim: int = 16,
    lr: float = 1.0,
    momentum: float = 0.0,
    steps: int = 1000,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    record_every: int = 0,
    members: int | None = None,
    head_scale: float = 1.0,
) -> UFMResult:
    """Train unconstrained features + a depth-``depth`` linear head on one-hot MSE, full batch.

    ``weight_decay``, ``feature_decay`` (default: equal to ``weight_decay``) and ``bias`` are one
    value for all members or one per member; the number of members is the longest of them (or
    ``members``). ``record_every > 0`` records NC1 of every member that often (a batched
    computation, no loop over members). Plain gradient descent, or heavy-ball momentum. Head
    layers start as ``head_scale`` times random orthogonal matrices (see :class:`UFMConfig`).
    """
    lists = [v for v in (weight_decay, feature_decay, bias) if isinstance(v, (list, tuple, np.ndarray))]
    e = members or (max(len(v) for v in lists) if lists else 1)

    def per_member(v, name: str) -> np.ndarray:
        arr = np.broadcast_to(np.asarray(v), (e,)) if np.ndim(v) == 0 else np.asarray(v)
        if arr.shape != (e,):
            raise ValueError(f"{name} must be one value or one per member ({e}), got {v!r}")
        return arr.copy()

    lw = per_member(weight_decay, "weight_decay").astype(float)
    lh = lw.copy() if feature_decay is None else per_member(feature_decay, "feature_decay").astype(float)
    with_bias = tuple(bool(b) for b in per_member(bias, "bias"))
    sizes = tuple(int(n) for n in class_sizes)
    y = labels_for(sizes)
    config = UFMConfig(
        samples=len(y), classes=len(sizes), dim=dim, depth=depth, bias=with_bias, members=e, dtype=DTYPE,
        weight_scale=head_scale,
    )
    model = UnconstrainedFeatures(config, generator=generator).to(device)
    y_dev = y.to(device)
    targets = torch.nn.functional.one_hot(y_dev, len(sizes)).to(DTYPE)
    lw_t = torch.as_tensor(lw, dtype=DTYPE, device=device)
    lh_t = torch.as_tensor(lh, dtype=DTYPE, device=device)
    optimizer = SGD(list(model.parameters()), lr, momentum=momentum)
    record = {"nc1": lambda: within_class_variability(model.features, y)} if record_every > 0 else None
    history = fit(
        optimizer,
        lambda: model.loss(targets, lw_t, lh_t),
        steps,
        record=record,
        record_every=max(record_every, 1),
        check_every=50,
    )
    return UFMResult(model, y, sizes, depth, with_bias, lw, lh, history)


def gram_error(measured: np.ndarray, predicted: np.ndarray) -> float:
    """``‖G − G*‖_F / ‖G*‖_F``: the scale and the shape of the class-mean geometry at once."""
    return float(np.linalg.norm(measured - predicted) / np.linalg.norm(predicted))


def collapse_scan(
    class_sizes: Sequence[int],
    lambdas: Sequence[float],
    *,
    depth: int,
    **train: Any,
) -> pd.DataFrame:
    """Class-mean norms at every regularisation ``λ = λ_W = λ_H`` of a grid, all trained as one ensemble.

    ``train`` goes to :func:`train_ufm` (``generator`` is required; ``dim``, ``lr``, ``steps`` …).
    Returns one row per (λ, class) with the measured norm and the closed form's (global minimum
    and, for ``M ≥ 2``, the nonzero branch where it exists).
    """
    from ..theory.collapse import class_mean_norms

    lam = np.asarray(lambdas, dtype=float)
    run = train_ufm(class_sizes, depth=depth, weight_decay=lam, **train)
    norms = run.mean_norms()
    rows = []
    for i, value in enumerate(lam):
        glob = class_mean_norms(class_sizes, depth, value, value)
        branch = class_mean_norms(class_sizes, depth, value, value, branch="nonzero")
        for k, n in enumerate(class_sizes):
            rows.append({"lambda": value, "class": k, "n": int(n), "norm": float(norms[i, k]),
                         "theory": float(glob[k]), "theory_nonzero": float(branch[k])})
    return pd.DataFrame(rows)


def measured_threshold(lambdas: Sequence[float], norms: Sequence[float], *, collapsed_below: float) -> float:
    """Where a class collapses on a grid: the geometric midpoint of the last ``λ`` with ``norm >
    collapsed_below`` and the next grid point; ``nan`` if the class never collapses or never lives.

    The grid resolves the threshold to one step only; the midpoint halves that error in log-``λ``.
    """
    lam, nrm = np.asarray(lambdas, float), np.asarray(norms, float)
    order = np.argsort(lam)
    lam, nrm = lam[order], nrm[order]
    alive = nrm > collapsed_below
    if alive.all() or not alive.any():
        return float("nan")
    last = int(np.nonzero(alive)[0][-1])
    if last + 1 >= lam.size:
        return float("nan")
    return float(np.sqrt(lam[last] * lam[last + 1]))


def threshold_table(scan: pd.DataFrame, depth: int, *, collapsed_below: float = 1e-3) -> pd.DataFrame:
    """Per class: the measured collapse point of a :func:`collapse_scan` and the closed form's thresholds.

    ``global`` is where the nonzero solution stops being the global minimum, ``existence`` where it
    stops existing (the same for ``M = 1``). ``steps_off`` is ``log(measured/global)`` in grid steps.
    """
    from ..theory.collapse import collapse_threshold

    lam = np.sort(scan["lambda"].unique())
    step = float(np.log(lam[1] / lam[0])) if lam.size > 1 else float("nan")
    total = int(scan.groupby("class")["n"].first().sum())
    rows = []
    for k, part in scan.groupby("class"):
        n = int(part["n"].iloc[0])
        measured = measured_threshold(part["lambda"], part["norm"], collapsed_below=collapsed_below)
        glob = collapse_threshold(n, total, depth, kind="global")
        exist = collapse_threshold(n, total, depth, kind="existence")
        rows.append({"class": int(k), "n": n, "measured": measured, "global": glob, "existence": exist,
                     "steps_off": float(np.log(measured / glob) / step)})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- a real network (full scale)
def mlp_collapse(
    x: Tensor,
    labels: Tensor,
    *,
    hidden: Sequence[int] = (256, 256, 256),
    weight_decay: float = 5e-4,
    lr: float = 1e-3,
    steps: int = 3000,
    record_every: int = 100,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Train a ReLU MLP (with biases) on one-hot MSE + weight decay, full batch with Adam (coupled L2),
    and measure NC1–NC4 of its penultimate features over training.

    Returns the trace (one row per recorded step: loss, train accuracy and the NC measures) and
    the final measures. Used at ``full`` scale on the digits; any labelled inputs work.
    """
    from ..models.mlp import MLP, MLPConfig

    k = int(labels.max()) + 1
    x, labels = x.to(device=device, dtype=DTYPE), labels.to(device)
    targets = torch.nn.functional.one_hot(labels, k).to(DTYPE)
    net = MLP(MLPConfig([x.shape[1], *hidden, k], bias=True, dtype=DTYPE), generator=generator).to(device)
    optimizer = Adam(list(net.parameters()), lr, weight_decay=weight_decay)

    def measure() -> dict[str, float]:
        with torch.no_grad():
            feats = net.features(x)[0]
            out = net(x)[0]
            nc = neural_collapse(feats, labels, net.weights[-1][0], net.biases[-1][0])
        return {"loss": float(0.5 * (out - targets).pow(2).sum(-1).mean()),
                "train_accuracy": float((out.argmax(1) == labels).double().mean()), **nc}

    rows = []
    done = 0
    while done < steps:
        chunk = min(record_every, steps - done)
        fit(optimizer, lambda: 0.5 * (net(x) - targets).pow(2).sum(-1).mean(-1), chunk, check_every=chunk)
        done += chunk
        rows.append({"step": done, **measure()})
    trace = pd.DataFrame(rows)
    return trace, rows[-1]


__all__ = [
    "UFMResult",
    "collapse_scan",
    "gram_error",
    "labels_for",
    "measured_threshold",
    "mlp_collapse",
    "threshold_table",
    "train_ufm",
]
