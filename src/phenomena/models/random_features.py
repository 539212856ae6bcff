"""Random-feature regression: a two-layer network whose first layer is frozen at random and whose
read-out is fitted by ridge regression, for a whole ridge path and a batch of seeds at once.

Features of ``k`` random units, scaled so that ``z(x)·z(x') → K(x, x')`` as ``k → ∞``:

* Gaussian (linear) features ``z = F x`` with ``F = W/√k``, ``W_ij ~ N(0, 1)``: the limit kernel is
  ``x·x'``, so for inputs ``x ~ N(0, Λ)`` the kernel's eigenvalues are those of ``Λ``. This is the
  model whose risk the RF eigenframework (:mod:`phenomena.theory.eigenframework`) predicts exactly
  in the large-size limit.
* ReLU features ``z_j = relu(w_j·x/√dim)/√k``, ``w_j ~ N(0, I)``: the limit kernel is the order-1
  arc-cosine kernel, :func:`phenomena.theory.ntk.arccos_kernel` with unit ``init_scale``.

The ridge is *unnormalised*: the read-out minimises ``‖Zw − y‖² + δ‖w‖²``, as in the eigenframework.
:func:`ridge_path` eigendecomposes the smaller of the two Gram matrices (``ZZᵀ`` if ``k ≥ n``, else
``ZᵀZ``) once and then gets every ridge of the path for the cost of a matrix product. Everything is
float64: with ridges down to 1e−7 on a Gram whose eigenvalues span ten decades, float32 rounding is
larger than the ridge and the path is wrong.

Leading axes of every tensor are batch axes (seeds): the whole batch is one batched ``eigh``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def gaussian_weights(
    features: int, dim: int, generator: torch.Generator, *, batch: tuple[int, ...] = ()
) -> Tensor:
    """First-layer weights ``W`` of shape ``(*batch, features, dim)``, i.i.d. ``N(0, 1)``, float64.

    Draw them once for the largest width: the first ``k`` rows are a valid draw at width ``k``,
    so a scan over widths uses nested models (one draw, less noise between widths).
    """
    if features < 1 or dim < 1:
        raise ValueError(f"features and dim must be positive, got {features} and {dim}")
    return torch.randn((*batch, int(features), int(dim)), generator=generator, dtype=torch.float64,
                       device=generator.device)


def gaussian_features(x: Tensor, weights: Tensor) -> Tensor:
    """Linear random features ``z = x Wᵀ/√k``: ``x`` ``(..., n, dim)``, ``weights`` ``(..., k, dim)`` → ``(..., n, k)``."""
    _check(x, weights)
    return x @ weights.transpose(-1, -2) / weights.shape[-2] ** 0.5


def relu_features(x: Tensor, weights: Tensor) -> Tensor:
    """ReLU random features ``relu(x Wᵀ/√dim)/√k``; their ``k → ∞`` kernel is the order-1 arc-cosine kernel."""
    _check(x, weights)
    pre = x @ weights.transpose(-1, -2) / x.shape[-1] ** 0.5
    return torch.relu(pre) / weights.shape[-2] ** 0.5


def _check(x: Tensor, weights: Tensor) -> None:
    if x.shape[-1] != weights.shape[-1]:
        raise ValueError(f"inputs have dim {x.shape[-1]} but weights expect dim {weights.shape[-1]}")
    if x.dtype != torch.float64 or weights.dtype != torch.float64:
        raise TypeError("random-feature regression runs in float64 (tiny ridges fail in float32); "
                        f"got {x.dtype} and {weights.dtype}")


@dataclass(frozen=True)
class RidgePath:
    """Ridge regression on features for every ridge at once.

    ``weights`` ``(*batch, [T,] R, k)``: the read-out at each of the ``R`` ridges (for each of ``T``
    targets when several were given); ``train_mse`` ``(*batch, [T,] R)``: the mean squared training
    residual ``‖y − Zw‖²/n``.
    """

    ridges: Tensor
    weights: Tensor
    train_mse: Tensor


def ridge_path(z: Tensor, y: Tensor, ridges: Tensor | list[float]) -> RidgePath:
    """Fit ``min_w ‖Zw − y‖² + δ‖w‖²`` for every ``δ`` in ``ridges``, from one ``eigh``.

    ``z`` ``(*batch, n, k)`` features; ``y`` ``(*batch, n)`` labels, or ``(*batch, T, n)`` for ``T``
    targets fitted on the same features (one ``eigh`` for all; the results then carry the ``T``
    axis before the ridge axis). With ``k ≥ n`` the dual form ``w = Zᵀ(ZZᵀ + δ)⁻¹y`` uses the
    ``n × n`` Gram, and the training residual is exactly ``δ (ZZᵀ + δ)⁻¹y``; with ``k < n`` the
    primal ``w = (ZᵀZ + δ)⁻¹Zᵀy`` uses the ``k × k`` one.
    """
    if z.dtype != torch.float64:
        raise TypeError(f"ridge_path needs float64 features (tiny ridges fail in float32), got {z.dtype}")
    batch = tuple(z.shape[:-2])
    single = tuple(y.shape) == (*batch, z.shape[-2])
    if not single and not (y.ndim == z.ndim and tuple(y.shape[:-2]) == batch and y.shape[-1] == z.shape[-2]):
        raise ValueError(f"y must have shape {(*batch, z.shape[-2])} or (*batch, targets, n); got {tuple(y.shape)}")
    d = torch.as_tensor(ridges, dtype=torch.float64, device=z.device)
    if d.ndim != 1 or not bool((d > 0).all()):
        raise ValueError("ridges must be a 1-d list of positive numbers")
    yt = y.to(torch.float64).unsqueeze(-2) if single else y.to(torch.float64)  # (*b, T, n)
    n, k = z.shape[-2], z.shape[-1]
    zt = z.transpose(-1, -2)
    if k >= n:
        evals, vecs = torch.linalg.eigh(z @ zt)
        evals = evals.clamp_min(0).unsqueeze(-2).unsqueeze(-2)  # (*b, 1, 1, n)
        c = (yt @ vecs).unsqueeze(-2)  # (*b, T, 1, n)
        scaled = c / (evals + d[:, None])  # (*b, T, R, n)
        weights = (scaled @ vecs.transpose(-1, -2).unsqueeze(-3)) @ z.unsqueeze(-3)  # (*b, T, R, k)
        train = (d[:, None] * scaled).pow(2).sum(-1) / n
    else:
        evals, vecs = torch.linalg.eigh(zt @ z)
        evals = evals.clamp_min(0).unsqueeze(-2).unsqueeze(-2)
        c = ((yt @ z) @ vecs).unsqueeze(-2)  # (*b, T, 1, k)
        weights = (c / (evals + d[:, None])) @ vecs.transpose(-1, -2).unsqueeze(-3)  # (*b, T, R, k)
        resid = yt.unsqueeze(-2) - weights @ zt.unsqueeze(-3)  # (*b, T, R, n)
        train = resid.pow(2).sum(-1) / n
    if single:
        weights, train = weights.squeeze(-3), train.squeeze(-2)
    return RidgePath(ridges=d, weights=weights, train_mse=train)


@dataclass(frozen=True)
class KernelRidgePath:
    """Kernel ridge regression on a training Gram for every ridge at once, in the Gram's eigenbasis.

    ``evals`` ``(*batch, n)`` and ``vecs`` ``(*batch, n, n)`` of the Gram, ``coef`` ``(*batch, R, n)``
    the dual coefficients ``a = (K + δ)⁻¹y`` written in that eigenbasis, ``train_mse`` ``(*batch, R)``.
    """

    ridges: Tensor
    evals: Tensor
    vecs: Tensor
    coef: Tensor
    train_mse: Tensor


def kernel_ridge_path(gram: Tensor, y: Tensor, ridges: Tensor | list[float]) -> KernelRidgePath:
    """Fit ``f = K(·, X)(K + δ)⁻¹y`` for every ``δ``; the training residual is ``δ(K + δ)⁻¹y`` exactly."""
    if gram.dtype != torch.float64:
        raise TypeError(f"kernel_ridge_path needs a float64 Gram, got {gram.dtype}")
    d = torch.as_tensor(ridges, dtype=torch.float64, device=gram.device)
    if d.ndim != 1 or not bool((d > 0).all()):
        raise ValueError("ridges must be a 1-d list of positive numbers")
    evals, vecs = torch.linalg.eigh(gram)
    evals = evals.clamp_min(0)
    c = (vecs.transpose(-1, -2) @ y.to(torch.float64).unsqueeze(-1)).squeeze(-1)
    coef = c.unsqueeze(-2) / (evals.unsqueeze(-2) + d[:, None])
    train = (d[:, None] * coef).pow(2).sum(-1) / gram.shape[-1]
    return KernelRidgePath(ridges=d, evals=evals, vecs=vecs, coef=coef, train_mse=train)
