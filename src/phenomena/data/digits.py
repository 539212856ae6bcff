"""scikit-learn's handwritten digits (8×8 images, 10 classes) and a structure-free control.

The digits ship inside scikit-learn (``sklearn.datasets.load_digits`` reads a file installed
with the package), so nothing downloads. They are small enough that a whole representation-
learning experiment runs in seconds on a CPU, and structured enough (strokes, correlated
pixels) that features can be better or worse for a linear read-out.

The control, :func:`gaussian_like`, keeps the first two moments of every pixel and removes
everything else: Sarnthein et al. (2023) train on pure Gaussian noise to ask whether a
student's gain comes from the data's structure or merely from moving away from its
initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

N_CLASSES = 10
"""Classes in the digits data set (0–9)."""


@dataclass(frozen=True)
class DigitsSplit:
    """A train/test split of the digits: inputs ``(n, 64)`` standardised with the *training* statistics.

    ``mean`` and ``std`` are the raw per-pixel statistics of the training inputs (pixels that are
    constant on the training set get ``std = 1``, so they stay exactly zero after standardising).
    """

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    mean: Tensor
    std: Tensor

    @property
    def dim(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def n_classes(self) -> int:
        return N_CLASSES


def load_digits_split(
    test_fraction: float = 0.3,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> DigitsSplit:
    """The 1797 digits, split class by class (stratified) into train and test, seeded by ``generator``.

    Stratifying keeps every class's share the same in both halves, so probe accuracies of
    different seeds are comparable. Standardising with training statistics only keeps the test
    set unseen. Pixels are returned as ``dtype`` on ``device``; labels as ``int64``.
    """
    from sklearn.datasets import load_digits

    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction}")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    data = load_digits()
    x = torch.as_tensor(np.asarray(data.data, dtype=np.float64))
    y = torch.as_tensor(np.asarray(data.target, dtype=np.int64))
    train_idx, test_idx = [], []
    for c in range(N_CLASSES):
        members = torch.nonzero(y == c).flatten()
        members = members[torch.randperm(members.numel(), generator=gen)]
        n_test = round(float(test_fraction) * members.numel())
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    tr = torch.cat(train_idx).sort().values
    te = torch.cat(test_idx).sort().values
    mean = x[tr].mean(0)
    std = x[tr].std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))

    def prep(rows: Tensor) -> Tensor:
        return ((x[rows] - mean) / std).to(dtype=dtype, device=device)

    return DigitsSplit(
        x_train=prep(tr),
        y_train=y[tr].to(device),
        x_test=prep(te),
        y_test=y[te].to(device),
        mean=mean.to(dtype=dtype, device=device),
        std=std.to(dtype=dtype, device=device),
    )


def gaussian_like(x: Tensor, *, generator: torch.Generator, n: int | None = None) -> Tensor:
    """Gaussian noise with the per-feature mean and standard deviation of ``x`` and nothing else.

    Every feature is drawn independently from ``N(mean_j, std_j²)`` of column ``j`` of ``x``:
    the same first and second moments per pixel, but no correlations between pixels and no
    strokes, so a network trained on it cannot learn anything about the digits. For
    standardised inputs this is ``N(0, 1)`` on every non-constant pixel, the isotropic noise of
    Sarnthein et al. (2023); constant pixels stay constant. ``n`` rows (default: as many as ``x``).
    """
    if x.dim() != 2:
        raise ValueError(f"x must be a (samples, features) matrix, got shape {tuple(x.shape)}")
    rows = x.shape[0] if n is None else int(n)
    if rows < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    mean, std = x.mean(0), x.std(0)
    z = torch.randn(rows, x.shape[1], generator=generator, dtype=x.dtype, device=generator.device)
    return (mean + std * z.to(x.device)).to(x.dtype)


def random_labels(y: Tensor, *, generator: torch.Generator, n_classes: int = N_CLASSES) -> Tensor:
    """Labels drawn uniformly from ``n_classes``, independent of the inputs: the chance-level control
    for a probe (a linear read-out of any features scores ``≈ 1/n_classes`` on held-out data)."""
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    out = torch.randint(0, n_classes, tuple(y.shape), generator=generator, device=generator.device)
    return out.to(y.device)


def flip_labels(
    y: Tensor, flip_fraction: float, *, generator: torch.Generator, n_classes: int = N_CLASSES
) -> tuple[Tensor, Tensor]:
    """Labels with exactly ``round(flip_fraction·n)`` of them, chosen uniformly, moved to a uniformly
    drawn *other* class; returns ``(noisy labels, flipped mask)``.

    Flipping to another class (never back to the true one) makes ``flip_fraction`` the true share of
    wrong labels. Below ``(n_classes-1)/n_classes`` the true class stays the most frequent label of
    every input, so a classifier can still learn the clean rule from the noisy set, which is what
    makes early stopping work.
    """
    if not 0.0 <= float(flip_fraction) <= 1.0:
        raise ValueError(f"flip_fraction must lie in [0, 1], got {flip_fraction}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    n = y.shape[-1]
    count = round(float(flip_fraction) * n)
    order = torch.randperm(n, generator=generator, device=generator.device).to(y.device)
    flipped = torch.zeros(n, dtype=torch.bool, device=y.device)
    flipped[order[:count]] = True
    shift = torch.randint(1, n_classes, (n,), generator=generator, device=generator.device).to(y.device)
    noisy = torch.where(flipped, (y + shift) % n_classes, y)
    return noisy, flipped
