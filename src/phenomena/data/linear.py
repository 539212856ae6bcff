"""Inputs and targets for linear-network experiments."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..models.deep_linear import random_orthogonal


def whitened_inputs(n: int, dim: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> Tensor:
    """``n`` inputs of dimension ``dim`` with exactly whitened second moment, ``XᵀX/n = I``.

    Needs ``n >= dim``: the rows are ``√n`` times ``dim`` orthonormal columns of a random
    orthogonal ``n × n`` matrix, so the input correlation is the identity without sampling error.
    """
    if n < dim:
        raise ValueError(f"whitened inputs need at least as many samples as dimensions (n={n} < dim={dim})")
    q = random_orthogonal(1, n, dim, generator, dtype)[0]
    return q * n**0.5


def linear_target(
    singular_values: Sequence[float],
    d_out: int,
    d_in: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor, Tensor]:
    """A target map ``M = U diag(s) Vᵀ`` with given singular values and random singular vectors.

    Returns ``(M, U, V)`` with ``U`` ``(d_out, r)`` and ``V`` ``(d_in, r)`` orthonormal columns.
    """
    s = torch.as_tensor(list(singular_values), dtype=dtype)
    r = s.numel()
    if r == 0 or r > min(d_out, d_in) or bool((s <= 0).any()):
        raise ValueError(f"need 1 to {min(d_out, d_in)} positive singular values, got {list(singular_values)}")
    u = random_orthogonal(1, d_out, r, generator, dtype)[0]
    v = random_orthogonal(1, d_in, r, generator, dtype)[0]
    return u @ torch.diag(s) @ v.T, u, v
