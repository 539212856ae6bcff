"""Quadratic-width teachers: one hidden layer of ``m = κd`` quadratic units, random Gaussian weights.

The teacher computes ``f*(x) = (1/(m√d)) Σ_k [(w_k·x)² − ‖w_k‖²] = (xᵀS*x − Tr S*)/√d`` with
``S* = W*ᵀW*/m``. Subtracting ``Tr S*`` (the *trace centring*) removes the output's mean over
Gaussian inputs, which would otherwise be a large constant ``Tr S*/√d ≈ √d`` that says nothing
about ``S*``'s shape; a student must be centred the same way (see
:class:`phenomena.models.quadratic.QuadraticNetwork`), or the prior-mean predictor does not score
an error of exactly 1.

Because the output is linear in ``S``, the test error of any predictor ``Ŝ`` over Gaussian
inputs has a closed form, ``E_x (f̂ − f*)² = 2‖Ŝ − S*‖²_F/d`` (:func:`population_mse`), so errors
need no test sample; :func:`gaussian_inputs` draws one where a Monte-Carlo check is wanted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["QuadraticTeacher", "centred_quadratic", "gaussian_inputs", "population_mse", "quadratic_teacher"]


def centred_quadratic(x: Tensor, matrix: Tensor) -> Tensor:
    """``(xᵀSx − Tr S)/√d`` for inputs ``x`` ``(..., n, d)`` and symmetric ``S`` ``(..., d, d)``: ``(..., n)``."""
    if matrix.shape[-1] != matrix.shape[-2] or x.shape[-1] != matrix.shape[-1]:
        raise ValueError(f"inputs of shape {tuple(x.shape)} do not match a matrix of shape {tuple(matrix.shape)}")
    d = x.shape[-1]
    quad = ((x @ matrix) * x).sum(-1)
    trace = torch.diagonal(matrix, dim1=-2, dim2=-1).sum(-1)
    return (quad - trace.unsqueeze(-1)) / math.sqrt(d)


def population_mse(estimate: Tensor, target: Tensor) -> Tensor:
    """Test MSE over ``x ~ N(0, I)`` of the centred quadratic predictor ``Ŝ`` against ``S*``: ``2‖Ŝ − S*‖²_F/d``.

    Exact for symmetric matrices (``E(xᵀAx − Tr A)² = 2‖A‖²_F`` for Gaussian ``x``); batched over
    leading axes.
    """
    diff = estimate - target
    return 2 * (diff * diff).sum((-2, -1)) / target.shape[-1]


@dataclass
class QuadraticTeacher:
    """``teachers`` independent teachers with weights ``(teachers, width, dim)``."""

    weights: Tensor

    @property
    def dim(self) -> int:
        return self.weights.shape[-1]

    @property
    def width(self) -> int:
        return self.weights.shape[-2]

    @property
    def matrix(self) -> Tensor:
        """``S* = W*ᵀW*/m``, ``(teachers, dim, dim)``: spectrum Marchenko–Pastur with mean 1 and variance ``d/m``."""
        return self.weights.transpose(-1, -2) @ self.weights / self.width

    def __call__(self, x: Tensor) -> Tensor:
        """Noiseless labels ``(teachers, n)`` for inputs ``(teachers, n, dim)`` (or ``(n, dim)``, shared)."""
        return centred_quadratic(x, self.matrix)

    def prior_mean_mse(self) -> Tensor:
        """Test MSE of the prior-mean predictor ``Ŝ = E S* = I``, per teacher: the error that normalises ε to 1."""
        eye = torch.eye(self.dim, dtype=self.weights.dtype, device=self.weights.device)
        return population_mse(eye, self.matrix)


def quadratic_teacher(
    dim: int, width: int, generator: torch.Generator, *, teachers: int = 1, dtype: torch.dtype = torch.float64
) -> QuadraticTeacher:
    """Draw ``teachers`` teachers with i.i.d. ``N(0, 1)`` weights of shape ``(width, dim)``."""
    if int(dim) < 1 or int(width) < 1 or int(teachers) < 1:
        raise ValueError(f"dim, width and teachers must be positive integers, got {dim}, {width}, {teachers}")
    w = torch.randn(int(teachers), int(width), int(dim), generator=generator, dtype=dtype)
    return QuadraticTeacher(w)


def gaussian_inputs(n: int, dim: int, generator: torch.Generator, *, teachers: int = 1,
                    dtype: torch.dtype = torch.float64) -> Tensor:
    """``(teachers, n, dim)`` standard Gaussian inputs, one independent set per teacher."""
    if int(n) < 1:
        raise ValueError(f"need at least one input point, got n={n}; raise alpha or dim")
    return torch.randn(int(teachers), int(n), int(dim), generator=generator, dtype=dtype)
