"""The first gradient step of a one-hidden-layer network, split into inter- and intra-class parts.

Alleman, Lindsey & Fusi (2024) explain why tanh networks take on the target's geometry and ReLU
networks keep the input's by looking at the gradient of each input-weight vector ``w``. With a
small read-out the residual is the target, so for inputs ``x_i`` and labels ``y_i = ±1``

    Δw ∝ Σ_i y_i f′(w·x_i) x_i.

For orthonormal inputs (``x_i·x_k = N δ_ik``) the share of ``‖Δw‖²`` that lies on the inter-class
axis ``u = Σ_i y_i x_i`` is ``(Σ_i f′_i)² / (P Σ_i f′_i²)``; as ``P`` grows, with the
pre-activations ``z_i = w·x_i`` i.i.d. ``N(0, q)``, it tends to

    ρ(q) = E[f′(z)]² / E[f′(z)²].

ReLU's ``f′`` is 0 or 1, so ``ρ = 1/2`` at every ``q``: half of the update is spent on the
intra-class directions, the data points in the neuron's active half-space. Tanh's ``f′ = sech²``
is positive everywhere, so every point pulls along ``u`` and ``ρ → 1`` as ``q → 0``
(``0.952`` at ``q = 1/4``, ``0.790`` at ``q = 1``). Computed here by Gauss–Hermite quadrature.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

DERIVATIVES: dict[str, Callable[[NDArray], NDArray]] = {
    "tanh": lambda z: 1.0 / np.cosh(z) ** 2,
    "relu": lambda z: (z > 0).astype(np.float64),
    "linear": lambda z: np.ones_like(z),
    "erf": lambda z: 2.0 / np.sqrt(np.pi) * np.exp(-z * z),
    "sigmoid": lambda z: np.exp(-np.abs(z)) / (1.0 + np.exp(-np.abs(z))) ** 2,
}
"""``f′`` of the activations of :data:`phenomena.models.mlp.ACTIVATIONS` that this module knows."""


def derivative_moments(activation: str, q: ArrayLike, *, nodes: int = 200) -> tuple[NDArray, NDArray]:
    """``(E[f′(z)], E[f′(z)²])`` for ``z ~ N(0, q)``, by ``nodes``-point Gauss–Hermite quadrature.

    ``nodes`` is even, so no node sits at ``z = 0``: ReLU's step is then integrated exactly
    (the nodes are symmetric, half of them positive), and smooth ``f′`` converge fast.
    """
    if activation not in DERIVATIVES:
        raise ValueError(f"unknown activation {activation!r}; known ones are: {', '.join(DERIVATIVES)}")
    if nodes < 2 or nodes % 2:
        raise ValueError(f"nodes must be an even number >= 2 (no node at z = 0), got {nodes}")
    q_ = np.asarray(q, dtype=np.float64)
    if np.any(q_ < 0) or not np.all(np.isfinite(q_)):
        raise ValueError(f"the pre-activation variance q must be finite and non-negative, got {q}")
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / w.sum()
    fp = DERIVATIVES[activation](np.sqrt(q_)[..., None] * x)
    return fp @ w, (fp * fp) @ w


def interclass_energy_fraction(activation: str, q: ArrayLike, *, nodes: int = 200) -> NDArray[np.float64]:
    """``ρ(q) = E[f′]² / E[f′²]``: the share of a neuron's first update on the inter-class axis.

    The large-``P`` limit for orthonormal inputs and pre-activation variance ``q`` (module
    docstring). Broadcasts over ``q``.
    """
    m1, m2 = derivative_moments(activation, q, nodes=nodes)
    return np.asarray(m1 * m1 / m2, dtype=np.float64)

