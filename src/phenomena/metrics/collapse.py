"""Neural collapse NC1–NC4 (Papyan, Han & Donoho, 2020) for any features and linear classifier.

Papyan et al. observed four things about the last-layer features ``h_i`` (class ``y_i``) and the
classifier ``(W, b)`` late in training; each is measured here by a number that goes to zero:

``nc1``  within-class variability collapse: ``tr(Σ_W Σ_B⁺)/K``, with ``Σ_W`` the within-class
         covariance (average over samples) and ``Σ_B`` the covariance of the class means around the
         global mean (average over classes);
``nc2``  the centred class means ``μ_k − μ_G`` approach a simplex ETF: ``‖G/‖G‖ − E/‖E‖‖_F`` between
         their Gram matrix ``G`` and the simplex ETF's ``E = I − 11ᵀ/K``; its two parts are reported
         as ``nc2_equinorm`` (std/mean of the centred norms) and ``nc2_equiangle`` (mean over class
         pairs of ``|cos + 1/(K−1)|``, Papyan et al.'s "maximal-angle" measure);
``nc3``  self-duality: ``‖W/‖W‖ − Mᵀ/‖M‖‖_F`` between the classifier and the centred means;
``nc4``  the fraction of samples where the classifier's decision differs from the nearest class
         centre's (``1 −`` Papyan et al.'s agreement).

Numpy arrays or torch tensors in (any device, any float dtype); plain floats out. A deep linear
head is one linear classifier: pass the end-to-end product ``W_M ⋯ W_1``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor


def _tensor(x: Any, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(x, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numpy array or torch tensor of numbers, got {type(x).__name__}") from None


def _labels(labels: Any, n: int) -> Tensor:
    y = labels.detach().cpu() if isinstance(labels, Tensor) else torch.as_tensor(np.asarray(labels))
    if y.dim() != 1 or y.numel() != n:
        raise ValueError(f"labels must be a vector with one label per sample ({n}), got shape {tuple(y.shape)}")
    if y.dtype.is_floating_point and not bool((y == y.round()).all()):
        raise ValueError("labels must be integers 0 … K−1")
    y = y.long()
    if bool((y < 0).any()):
        raise ValueError("labels must be integers 0 … K−1")
    return y


def class_means(features: Any, labels: Any, num_classes: int | None = None) -> tuple[Tensor, Tensor]:
    """Class means ``(…, K, d)`` and class counts ``(K,)``; ``features`` is ``(…, N, d)`` (leading axes batch).

    A class without samples is an error: its mean is undefined and every NC measure with it.
    """
    h = _tensor(features, "features")
    if h.dim() < 2:
        raise ValueError(f"features must be (samples, dim) or (..., samples, dim), got shape {tuple(h.shape)}")
    y = _labels(labels, h.shape[-2])
    k = int(num_classes if num_classes is not None else int(y.max()) + 1)
    onehot = torch.nn.functional.one_hot(y, k).to(h.dtype)  # (N, K)
    counts = onehot.sum(0)
    if bool((counts == 0).any()):
        raise ValueError(f"every class needs at least one sample; counts per class: {counts.long().tolist()}")
    means = (onehot.T @ h) / counts[:, None]
    return means, counts


def within_class_variability(features: Any, labels: Any, num_classes: int | None = None) -> Tensor:
    """NC1 ``tr(Σ_W Σ_B⁺)/K`` for features ``(…, N, d)``: one value per leading index (a 0-d tensor for one model).

    Batched so that an ensemble's NC1 can be recorded every few steps without a Python loop.
    ``Σ_B⁺`` is the Moore–Penrose pseudo-inverse: ``Σ_B`` has rank at most ``K − 1``.
    """
    h = _tensor(features, "features")
    y = _labels(labels, h.shape[-2])
    means, counts = class_means(h, y, num_classes)
    k, n = means.shape[-2], h.shape[-2]
    glob = (counts[:, None] * means).sum(-2, keepdim=True) / n  # (…, 1, d): the sample-weighted global mean
    dev = h - means[..., y, :]
    sigma_w = dev.transpose(-1, -2) @ dev / n
    cen = means - glob
    sigma_b = cen.transpose(-1, -2) @ cen / k
    return torch.diagonal(sigma_w @ torch.linalg.pinv(sigma_b, hermitian=True), dim1=-2, dim2=-1).sum(-1) / k


def neural_collapse(features: Any, labels: Any, classifier_weight: Any, classifier_bias: Any = None) -> dict[str, float]:
    """NC1–NC4 of one model: ``features (N, d)``, integer ``labels (N,)``, ``classifier_weight (K, d)``, ``bias (K,)``.

    Returns ``nc1``, ``nc2``, ``nc2_equinorm``, ``nc2_equiangle``, ``nc3``, ``nc4`` (see the module
    docstring); all tend to 0 under neural collapse.
    """
    h = _tensor(features, "features")
    w = _tensor(classifier_weight, "classifier_weight")
    if h.dim() != 2:
        raise ValueError(f"features must be (samples, dim), got shape {tuple(h.shape)}")
    if w.dim() != 2 or w.shape[1] != h.shape[1]:
        raise ValueError(f"classifier_weight must be (classes, {h.shape[1]}), got shape {tuple(w.shape)}")
    k = w.shape[0]
    if k < 2:
        raise ValueError(f"neural collapse needs at least 2 classes, got {k}")
    y = _labels(labels, h.shape[0])
    if int(y.max()) >= k:
        raise ValueError(f"labels go up to {int(y.max())} but the classifier has {k} rows")
    b = torch.zeros(k, dtype=h.dtype) if classifier_bias is None else _tensor(classifier_bias, "classifier_bias")
    if b.shape != (k,):
        raise ValueError(f"classifier_bias must be ({k},), got shape {tuple(b.shape)}")

    means, counts = class_means(h, y, k)
    glob = (counts[:, None] * means).sum(0) / h.shape[0]
    cen = means - glob  # (K, d)

    gram = cen @ cen.T
    etf = torch.eye(k, dtype=h.dtype) - 1.0 / k
    nc2 = torch.linalg.norm(gram / torch.linalg.norm(gram) - etf / torch.linalg.norm(etf))
    norms = cen.norm(dim=1)
    cos = gram / (norms[:, None] * norms[None, :])
    off = ~torch.eye(k, dtype=torch.bool)
    nc3 = torch.linalg.norm(w / torch.linalg.norm(w) - cen / torch.linalg.norm(cen))

    decided = (h @ w.T + b).argmax(1)
    nearest = torch.cdist(h, means).argmin(1)
    return {
        "nc1": float(within_class_variability(h, y, k)),
        "nc2": float(nc2),
        "nc2_equinorm": float(norms.std() / norms.mean()),
        "nc2_equiangle": float((cos[off] + 1.0 / (k - 1)).abs().mean()),
        "nc3": float(nc3),
        "nc4": float((decided != nearest).double().mean()),
    }


__all__ = ["class_means", "neural_collapse", "within_class_variability"]
