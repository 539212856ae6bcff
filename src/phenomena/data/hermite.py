"""Single-index Hermite-polynomial regression: ``y = Σ_k c_k He_k(β·x)`` with Gaussian inputs.

The probabilists' Hermite polynomials ``He_k`` are orthogonal under the standard normal law,
``E[He_j(z) He_k(z)] = k!·δ_jk``, so a target written in this basis has a closed-form mean
(``c_0``) and variance (``Σ_{k≥1} c_k² k!``), and kernel theory speaks of it degree by degree: a
rotation-invariant kernel on ``x ∈ R^D`` needs ``P ~ D^k`` samples to learn the degree-``k`` part,
while a network that finds the direction ``β`` needs far fewer. That gap is what the lazy-to-rich
chapters exploit.

Inputs are standard normal, ``x ~ N(0, I_D)``, and ``β`` is a uniformly random unit vector, so
``z = β·x ~ N(0, 1)`` exactly. (Papers that draw ``x ~ N(0, I/D)`` with ``|β|² = D`` describe the
same task.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor


def hermite(k: int, z: Tensor) -> Tensor:
    """The probabilists' Hermite polynomial ``He_k(z)``, by the recurrence ``He_{k+1} = z·He_k − k·He_{k−1}``.

    ``He_0 = 1``, ``He_1 = z``, ``He_2 = z² − 1``, ``He_3 = z³ − 3z``, … (elementwise on ``z``).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"the degree k must be a non-negative integer, got {k!r}")
    prev, cur = torch.ones_like(z), z.clone()
    if k == 0:
        return prev
    for n in range(1, k):
        prev, cur = cur, z * cur - n * prev
    return cur


def hermite_series(coefficients: Sequence[float], z: Tensor) -> Tensor:
    """``Σ_k c_k He_k(z)`` for ``coefficients = [c_0, c_1, …]``."""
    coeffs = _check_coefficients(coefficients)
    out = torch.zeros_like(z)
    for k, c in enumerate(coeffs):
        if c != 0.0:
            out = out + c * hermite(k, z)
    return out


def series_moments(coefficients: Sequence[float]) -> tuple[float, float]:
    """Mean and variance of ``Σ c_k He_k(z)`` for ``z ~ N(0, 1)``: ``(c_0, Σ_{k≥1} c_k² k!)``."""
    coeffs = _check_coefficients(coefficients)
    return coeffs[0], float(sum(c * c * math.factorial(k) for k, c in enumerate(coeffs) if k >= 1))


def _check_coefficients(coefficients: Sequence[float]) -> list[float]:
    coeffs = [float(c) for c in coefficients]
    if not coeffs or not all(math.isfinite(c) for c in coeffs):
        raise ValueError(f"coefficients must be a non-empty list of finite numbers [c_0, c_1, ...], got {coefficients!r}")
    return coeffs


@dataclass
class SingleIndexTask:
    """Train and test sets of ``y = Σ c_k He_k(β·x)``, the hidden unit direction ``β`` and the coefficients."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    beta: Tensor
    coefficients: tuple[float, ...]

    @property
    def dim(self) -> int:
        """Input dimension ``D``."""
        return int(self.beta.numel())

    def to(self, device: torch.device | str) -> SingleIndexTask:
        """A copy with every tensor on ``device``."""
        return SingleIndexTask(
            self.x_train.to(device), self.y_train.to(device), self.x_test.to(device), self.y_test.to(device),
            self.beta.to(device), self.coefficients,
        )


def single_index_task(
    dim: int,
    n_train: int,
    n_test: int,
    coefficients: Sequence[float],
    generator: torch.Generator,
    *,
    dtype: torch.dtype = torch.float64,
) -> SingleIndexTask:
    """A seeded single-index task: unit ``β`` uniform on the sphere, ``x ~ N(0, I_dim)``, ``y = Σ c_k He_k(β·x)``.

    Everything is drawn from ``generator`` in a fixed order (β, train inputs, test inputs), so one
    seed gives one task. No label noise: the test loss measures how well the function is learned.
    """
    for name, value in (("dim", dim), ("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    coeffs = tuple(_check_coefficients(coefficients))
    beta = torch.randn(dim, generator=generator, dtype=dtype)
    beta = beta / beta.norm()
    x_train = torch.randn(n_train, dim, generator=generator, dtype=dtype)
    x_test = torch.randn(n_test, dim, generator=generator, dtype=dtype)
    return SingleIndexTask(
        x_train=x_train,
        y_train=hermite_series(coeffs, x_train @ beta),
        x_test=x_test,
        y_test=hermite_series(coeffs, x_test @ beta),
        beta=beta,
        coefficients=coeffs,
    )


# ----------------------------------------------------------------------------- hierarchical targets
def hierarchical_feature(x: Tensor, k: int, signs: Tensor) -> Tensor:
    """The feature ``p(x) = Σ_i λ_i He_k(x_i) / √(d·k!)`` of a hierarchical target (``E p = 0``, ``E p² = 1``).

    ``x`` is ``(..., d)``; ``signs`` holds the ``d`` signs ``λ_i ∈ {±1}``. Returns ``(...)``.
    """
    d = x.shape[-1]
    if signs.shape != (d,):
        raise ValueError(f"signs must have one entry per input coordinate, shape ({d},); got {tuple(signs.shape)}")
    return (hermite(k, x) * signs.to(x.dtype)).sum(-1) / math.sqrt(d * math.factorial(k))


@dataclass
class HierarchicalTask:
    """Train and test sets of ``h = (g(p(x)) − E g(p)) / sd g(p)``, with the feature values ``p`` kept.

    ``link`` are the monomial coefficients of ``g``; ``mean`` and ``std`` the exact moments of
    ``g(p)`` used to centre and normalise, so ``E h = 0`` and ``E h² = 1`` exactly.
    """

    x_train: Tensor
    y_train: Tensor
    p_train: Tensor
    x_test: Tensor
    y_test: Tensor
    p_test: Tensor
    signs: Tensor
    k: int
    link: tuple[float, ...]
    mean: float
    std: float

    @property
    def dim(self) -> int:
        """Input dimension ``d``."""
        return int(self.signs.numel())

    def target(self, x: Tensor) -> Tensor:
        """``h(x)`` at any inputs ``(..., d)``."""
        p = hierarchical_feature(x, self.k, self.signs)
        g = sum(c * p**j for j, c in enumerate(self.link) if c != 0.0)
        return (g - self.mean) / self.std

    def to(self, device: torch.device | str) -> HierarchicalTask:
        """A copy with every tensor on ``device``."""
        t = [v.to(device) for v in (self.x_train, self.y_train, self.p_train, self.x_test, self.y_test, self.p_test)]
        return HierarchicalTask(*t, self.signs.to(device), self.k, self.link, self.mean, self.std)


def hierarchical_task(
    d: int,
    k: int,
    link: Sequence[float],
    signs: Tensor | None = None,
    *,
    n_train: int,
    n_test: int,
    generator: torch.Generator,
    dtype: torch.dtype = torch.float64,
) -> HierarchicalTask:
    """A seeded hierarchical task ``h = g∘p`` (Wang, Nichani & Lee 2023), ``x ~ N(0, I_d)``.

    ``p(x) = Σ λ_i He_k(x_i)/√(d·k!)`` is of degree ``k``; ``g(z) = Σ_j link[j] z^j`` of degree ``q``;
    ``h`` is centred and normalised with the exact moments of ``g(p)``
    (:func:`phenomena.theory.hierarchical.link_moments`), which matters for even ``k``, where
    ``E p³ ≠ 0``. ``signs=None`` draws each ``λ_i`` uniformly from ``{±1}`` (the paper's choice), first
    from ``generator``; then come the train inputs and the test inputs. No label noise.
    """
    from ..theory.hierarchical import link_moments  # the exact moments live with the theory

    for name, value in (("d", d), ("k", k), ("n_train", n_train), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    coeffs = tuple(_check_coefficients(link))
    if signs is None:
        signs = torch.randint(0, 2, (d,), generator=generator).to(dtype) * 2 - 1
    signs = torch.as_tensor(signs, dtype=dtype)
    if signs.shape != (d,) or not bool((signs.abs() == 1).all()):
        raise ValueError(f"signs must be {d} values in {{-1, +1}}, or None to draw them; got {signs!r}")
    mean, var = link_moments(coeffs, d, k, signs.numpy())
    if var <= 0:
        raise ValueError(f"g∘p is constant for link {coeffs}: give g a non-constant term")
    x_train = torch.randn(n_train, d, generator=generator, dtype=dtype)
    x_test = torch.randn(n_test, d, generator=generator, dtype=dtype)
    task = HierarchicalTask(
        x_train, x_train[:, 0], x_train[:, 0], x_test, x_test[:, 0], x_test[:, 0],
        signs, k, coeffs, mean, math.sqrt(var),
    )
    task.p_train, task.p_test = hierarchical_feature(x_train, k, signs), hierarchical_feature(x_test, k, signs)
    task.y_train, task.y_test = task.target(x_train), task.target(x_test)
    return task
