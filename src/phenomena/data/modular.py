"""Modular arithmetic tables ``c = a ∘ b (mod p)``: the task of the grokking chapters.

Power et al. (2022) found *grokking* on exactly these tables: a network fits the training pairs
early, and only much later (if at all) the held-out pairs. The whole table has ``p²`` pairs; a
seeded random split puts a fraction ``train_fraction`` of them in the training set and the rest
in the test set, with no pair in both. Inputs are one-hot pairs, ``onehot(a) ⊕ onehot(b)``
(``2p`` numbers), so a two-layer network's first layer holds one ``p``-vector of weights per
operand and neuron: the object whose Fourier spectrum :mod:`phenomena.metrics.fourier` reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

OPERATIONS: dict[str, Callable[[Tensor, Tensor, int], Tensor]] = {
    "add": lambda a, b, p: (a + b) % p,
    "sub": lambda a, b, p: (a - b) % p,
    "mul": lambda a, b, p: (a * b) % p,
}
"""Binary operations on ``Z_p`` by name: ``a + b``, ``a − b`` and ``a · b`` modulo ``p``."""


@dataclass(frozen=True)
class ModularTask:
    """The full table of ``a ∘ b (mod p)`` and one train/test split of its ``p²`` pairs.

    ``a``, ``b``, ``y`` list every pair once (row-major: pair ``i`` is ``a = i // p``,
    ``b = i % p``); ``train`` and ``test`` index into them and partition ``range(p²)``.
    """

    p: int
    operation: str
    a: Tensor
    b: Tensor
    y: Tensor
    train: Tensor
    test: Tensor

    @property
    def pairs(self) -> int:
        """``p²``: the size of the whole table."""
        return self.p * self.p

    @property
    def train_fraction(self) -> float:
        """The realised fraction of pairs in the training set."""
        return self.train.numel() / self.pairs

    def inputs(self, index: Tensor | None = None, *, dtype: torch.dtype = torch.float32) -> Tensor:
        """One-hot pairs ``onehot(a) ⊕ onehot(b)``, ``(len(index), 2p)``; all ``p²`` pairs by default."""
        idx = torch.arange(self.pairs) if index is None else index
        x = torch.zeros(idx.numel(), 2 * self.p, dtype=dtype)
        rows = torch.arange(idx.numel())
        x[rows, self.a[idx]] = 1
        x[rows, self.p + self.b[idx]] = 1
        return x

    def split(self, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None):
        """``(x_train, y_train, x_test, y_test)``: one-hot inputs and integer labels, on ``device``."""
        out = (self.inputs(self.train, dtype=dtype), self.y[self.train], self.inputs(self.test, dtype=dtype), self.y[self.test])
        return tuple(t.to(device) for t in out) if device is not None else out


def modular_task(
    p: int, train_fraction: float, generator: torch.Generator, *, operation: str = "add"
) -> ModularTask:
    """The table of ``a ∘ b (mod p)`` for all ``a, b ∈ {0, …, p−1}``, split at random by ``generator``.

    ``round(train_fraction · p²)`` pairs go to the training set (at least one, and at least one
    is left for the test set). ``p`` need not be prime, but only for prime ``p`` is every
    non-zero element invertible (``mul`` is then a group operation on the non-zero elements).
    """
    if not isinstance(p, int) or p < 2:
        raise ValueError(f"p must be an integer >= 2, got {p!r}")
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; valid operations are: {', '.join(OPERATIONS)}")
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    grid = torch.arange(p * p)
    a, b = grid // p, grid % p
    y = OPERATIONS[operation](a, b, p)
    n_train = min(max(1, round(train_fraction * p * p)), p * p - 1)
    order = torch.randperm(p * p, generator=generator)
    train, test = order[:n_train].sort().values, order[n_train:].sort().values
    return ModularTask(p=p, operation=operation, a=a, b=b, y=y, train=train, test=test)
