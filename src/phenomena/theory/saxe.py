"""Saxe, McClelland & Ganguli (2013): exact learning dynamics of a two-layer linear network.

For whitened inputs and a target map with singular values ``s``, a two-layer linear network
started in the *decoupled* state (each layer aligned with the target's singular vectors, both
layers of a mode equally strong) learns every mode independently. In continuous time
``τ du/dt = 2u(s - u)`` for the mode strength ``u = aᵀb``, solved by the logistic curve

    u(t) = s·e^{2st/τ} / (e^{2st/τ} - 1 + s/u₀).

Gradient descent with learning rate ``lr`` on ``½·mean‖y - W₂W₁x‖²`` is the Euler discretisation
of this flow with ``τ = 1/lr`` when ``t`` counts steps.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def saxe_mode_strength(t: ArrayLike, s: ArrayLike, u0: ArrayLike, lr: float) -> NDArray[np.float64]:
    """Mode strength ``u(t)`` of a two-layer linear net from a decoupled init (all inputs broadcast).

    ``t`` counts gradient steps, the time constant is ``τ = 1/lr``. Written as
    ``s / (1 + (s/u₀ - 1)·e^{-2·s·lr·t})``, the same function as the paper's form but free of
    overflow at large ``t``.
    """
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number (the time constant is 1/lr), got {lr!r}")
    t_, s_, u0_ = (np.asarray(v, dtype=np.float64) for v in (t, s, u0))
    if np.any(s_ <= 0):
        raise ValueError("singular values s must be positive")
    if np.any(u0_ <= 0):
        raise ValueError("the initial strength u0 must be positive (a mode that starts at 0 never grows)")
    return s_ / (1.0 + (s_ / u0_ - 1.0) * np.exp(-2.0 * s_ * lr * t_))


def saxe_half_time(s: ArrayLike, u0: ArrayLike, lr: float) -> NDArray[np.float64]:
    """Steps until a mode reaches half its final strength: ``t½ = (τ/2s)·ln(s/u₀ - 1)``, ``τ = 1/lr``.

    Defined for ``0 < u₀ < s/2``; the dependence on ``s`` is ``1/s`` only up to the logarithm.
    """
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be a positive number, got {lr!r}")
    s_, u0_ = np.asarray(s, dtype=np.float64), np.asarray(u0, dtype=np.float64)
    if np.any(u0_ <= 0) or np.any(u0_ >= s_ / 2):
        raise ValueError("the half-learning time needs 0 < u0 < s/2 for every mode")
    return np.log(s_ / u0_ - 1.0) / (2.0 * s_ * lr)


def saxe_growing_strength(w1: NDArray, w2: NDArray, u: NDArray, v: NDArray) -> NDArray[np.float64]:
    """Initial strength of the *growing* part of each mode of a two-layer net from a random init.

    For mode ``α`` let ``a = W₁vₐ`` and ``b = W₂ᵀuₐ`` (hidden-space vectors). Ignoring the other
    modes, the flow is ``ȧ = b(s − a·b)``, ``ḃ = a(s − a·b)`` (``τ = 1``), so ``c = (a+b)/2`` grows and
    ``d = (a−b)/2`` shrinks: ``d|c|²/dt = 2|c|²(s − u)``, ``d|d|²/dt = −2|d|²(s − u)`` with
    ``u = |c|² − |d|²``. Once ``d`` has decayed, ``u ≈ |c|²`` follows the decoupled logistic curve
    from ``u₀ = |c(0)|²``. Shapes: ``w1 (..., h, in)``, ``w2 (..., out, h)``, ``u (out, r)``,
    ``v (in, r)``; returns ``(..., r)``.
    """
    a = np.einsum("...hi,ir->...rh", np.asarray(w1, dtype=np.float64), np.asarray(v, dtype=np.float64))
    b = np.einsum("...oh,or->...rh", np.asarray(w2, dtype=np.float64), np.asarray(u, dtype=np.float64))
    return (((a + b) / 2.0) ** 2).sum(-1)
