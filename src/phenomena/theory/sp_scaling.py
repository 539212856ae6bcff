"""Standard parameterisation at large width: its tangent kernel, and the width exponents of one step.

**The SP tangent kernel.** A ReLU MLP in standard parameterisation (SP: He init, one global
learning rate, no multipliers) with ``L`` hidden layers of width ``n``::

    h¹ = W¹ x,   h^{l+1} = W^{l+1} φ(h^l),   f = W^{L+1} φ(h^L),   W^l_ij ~ N(0, σ²/fan_in_l).

Its pre-activations have the usual infinite-width covariances (the NNGP recursion)
``Σ¹ = σ² x·x'/d``, ``Σ^{l+1} = σ² E[φ(u)φ(v)]`` and derivative covariances
``Σ̇^{l+1} = σ² E[φ'(u)φ'(v)]``, ``(u, v) ~ N(0, Σ^l)`` (arc-cosine kernels for ReLU). In the NTK
parameterisation weight layer ``l`` contributes ``Σ^l · Π_{k>l} Σ̇^k`` to the kernel. SP writes the
same network with the ``σ/√fan_in`` moved from a multiplier into the init, so the gradient with
respect to ``W^l`` is larger by ``√fan_in_l/σ`` and layer ``l`` contributes ``fan_in_l/σ²`` times
as much:

    K_n(x, x') = Σ_l (fan_in_l/σ²) · Σ^l(x, x') · Π_{k=l+1}^{L+1} Σ̇^k(x, x'),

with ``fan_in_1 = d`` and ``fan_in_l = n`` above. Every term but the input layer's grows ``∝ n``:
after one gradient step the output moves by ``Δf = −η K_n χ / N`` (``χ`` the loss gradient per
sample), ``Θ(η n)``, which is why kernel-regime theory caps SP's stable learning rate at
``η = Θ(1/n)``. For several outputs the kernel is ``K_n ⊗ I``.

**Width exponents (Haas et al. 2025).** With ``η = η'·n^{−α}``, after a step: the logits move
``Θ(n^{1−α})`` (the kernel above); the second and later hidden layers' pre-activations move
``Θ(n^{1/2−α})``; the input layer's ``Θ(n^{−1/2−α})`` (its fan-in is the fixed ``d``).
Under MSE the logit growth feeds back into the loss gradient, so any ``α < 1`` diverges; under
cross-entropy the loss gradient ``softmax(f) − y`` stays bounded, so ``α ∈ [1/2, 1)`` diverges
only in the logits (*controlled divergence*), while the activations stay ``Θ(1)``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .ntk import _covariances, arccos_kernel


def sp_ntk(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    *,
    width: int,
    depth: int = 2,
    init_scale: float = float(np.sqrt(2.0)),
) -> NDArray[np.float64]:
    """The SP tangent kernel ``K_n(x, x')`` of a ReLU MLP with ``depth`` hidden layers of ``width`` n (per output).

    Infinite-width covariances with SP's explicit fan-in factors (module docstring): the large-width
    value of the empirical kernel of ``MLP([d, n, …, n, k], parameterization="standard",
    init_scale=σ)``, for each of its ``k`` outputs. ``(N1, N2)``, float64.
    """
    if int(width) < 1 or int(depth) < 1:
        raise ValueError(f"width and depth must be >= 1, got width={width}, depth={depth}")
    a = np.asarray(x1, dtype=np.float64)
    dim = a.shape[1] if a.ndim == 2 else 0
    q1, q2, c = _covariances(x1, x2, init_scale)  # Σ¹: diagonals and cross term
    s2 = init_scale**2
    fan_in = [dim] + [int(width)] * int(depth)
    sigma = [c]  # Σ^l(x, x') for l = 1 … L+1
    dot = [None]  # Σ̇^l for l = 2 … L+1 (index-aligned with sigma)
    for _ in range(int(depth)):
        sigma.append(s2 * arccos_kernel(1, q1, q2, c))
        dot.append(s2 * arccos_kernel(0, q1, q2, c))
        q1, q2 = s2 * q1 / 2, s2 * q2 / 2  # E relu(u)² = q/2
        c = sigma[-1]
    kernel = np.zeros(np.broadcast_shapes(sigma[0].shape, sigma[-1].shape))
    for layer in range(int(depth) + 1):  # weight layers 1 … L+1 (0-based here)
        term = fan_in[layer] / s2 * sigma[layer]
        for k in range(layer + 1, int(depth) + 1):
            term = term * dot[k]
        kernel = kernel + term
    return kernel


def sp_one_step_exponents(alpha: float) -> dict[str, float]:
    """Width exponents after one SGD step at ``η ∝ n^{−α}`` in SP (Haas et al. 2025, their Prop. 2 and 4).

    ``"logits"``: ``1 − α`` (the change of the output); ``"hidden"``: ``1/2 − α`` (change of the
    pre-activations of hidden layers 2 … L); ``"input_layer"``: ``−1/2 − α`` (first layer's
    pre-activations).
    """
    a = float(alpha)
    return {"logits": 1.0 - a, "hidden": 0.5 - a, "input_layer": -0.5 - a}
