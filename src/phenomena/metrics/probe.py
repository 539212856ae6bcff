"""Linear-probe accuracy: how much of a classification task frozen features make linearly readable.

Self-supervised and distillation papers judge a representation by training only a linear
classifier on top of it (the weights below stay frozen). Here the classifier is the closed-form
ridge regression onto one-hot targets, then ``argmax``: no learning rate, no epochs, no
randomness, so the same features always score the same, and a batch of feature sets (an
ensemble axis) is scored with one batched solve.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _batched(features: Tensor, name: str) -> tuple[Tensor, bool]:
    if features.dim() == 2:
        return features.unsqueeze(0), True
    if features.dim() == 3:
        return features, False
    raise ValueError(f"{name} must be (samples, features) or (members, samples, features); got {tuple(features.shape)}")


def ridge_probe(
    train_features: Tensor,
    train_labels: Tensor,
    *,
    n_classes: int,
    ridge: float = 1e-3,
    standardize: bool = True,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Fit the probe: returns ``(weights, bias, mean, scale)`` such that the scores are
    ``((f - mean) / scale) @ weights + bias``.

    Features are centred (and, with ``standardize``, scaled to unit variance per feature, so the
    penalty treats features alike whatever their scale). The ridge penalty is ``ridge`` times the
    mean eigenvalue of the feature covariance, so its strength does not depend on the feature
    width or scale either. Shapes carry an optional leading members axis.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    f, _ = _batched(train_features, "train_features")
    if train_labels.shape != (f.shape[1],):
        raise ValueError(f"train_labels must have shape ({f.shape[1]},), got {tuple(train_labels.shape)}")
    mean = f.mean(1, keepdim=True)
    fc = f - mean
    if standardize:
        scale = fc.std(1, keepdim=True)
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    else:
        scale = torch.ones_like(mean)
    fc = fc / scale
    n, d = fc.shape[1], fc.shape[2]
    onehot = torch.nn.functional.one_hot(train_labels.to(torch.long), n_classes).to(fc.dtype)
    bias = onehot.mean(0)
    target = (onehot - bias).unsqueeze(0).expand(fc.shape[0], -1, -1)
    gram = fc.transpose(1, 2) @ fc / n  # (members, d, d)
    level = gram.diagonal(dim1=1, dim2=2).mean(1).clamp_min(torch.finfo(fc.dtype).tiny)
    eye = torch.eye(d, dtype=fc.dtype, device=fc.device)
    system = gram + (ridge * level)[:, None, None] * eye + torch.finfo(fc.dtype).eps * eye
    weights = torch.linalg.solve(system, fc.transpose(1, 2) @ target / n)
    return weights, bias, mean, scale


def probe_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    n_classes: int | None = None,
    ridge: float = 1e-3,
    standardize: bool = True,
) -> Tensor:
    """Test accuracy of a ridge linear probe fitted on the training features.

    Features are ``(samples, features)`` or ``(members, samples, features)``; the result is a
    scalar tensor or one accuracy per member. ``n_classes`` defaults to ``max label + 1``.
    Deterministic: a closed-form solve, no initialisation, no stochastic optimisation.
    """
    f_test, single = _batched(test_features, "test_features")
    f_train, single_train = _batched(train_features, "train_features")
    if single != single_train:
        raise ValueError("train and test features must both have, or both lack, the members axis")
    if f_train.shape[0] != f_test.shape[0] or f_train.shape[2] != f_test.shape[2]:
        raise ValueError(
            f"train features {tuple(f_train.shape)} and test features {tuple(f_test.shape)} disagree in members or width"
        )
    if test_labels.shape != (f_test.shape[1],):
        raise ValueError(f"test_labels must have shape ({f_test.shape[1]},), got {tuple(test_labels.shape)}")
    k = int(n_classes) if n_classes is not None else int(max(train_labels.max(), test_labels.max())) + 1
    weights, bias, mean, scale = ridge_probe(f_train, train_labels, n_classes=k, ridge=ridge, standardize=standardize)
    scores = ((f_test - mean) / scale) @ weights + bias
    acc = (scores.argmax(-1) == test_labels.to(scores.device)).to(torch.float64).mean(-1)
    return acc[0] if single else acc
