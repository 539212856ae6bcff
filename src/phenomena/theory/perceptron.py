"""The batch perceptron: the limit of logistic-regression gradient descent as the step size grows.

Tyurin (2025) shows that gradient descent on the logistic loss
``f(θ) = (1/n) Σ log(1 + exp(−yᵢ aᵢᵀθ))`` from ``θ₀ = 0`` with step ``γ``, divided by ``γ``,
converges as ``γ → ∞`` to the iterates of the *batch perceptron*:

    θ̂₁ = (1/2n) Σᵢ yᵢ aᵢ,    θ̂ₜ₊₁ = θ̂ₜ + (1/n) Σ_{i ∈ Sₜ} yᵢ aᵢ,    Sₜ = {i : yᵢ aᵢᵀθ̂ₜ ≤ 0},

stopping once ``Sₜ`` is empty (every point classified correctly). The reason fits in a line:
``θₜ₊₁/γ = θₜ/γ + (1/n) Σ σ(−γ·yᵢ aᵢᵀ θₜ/γ) yᵢ aᵢ`` and the sigmoid ``σ(−γm)`` tends to 1, ½ or
0 as the margin ``m`` is negative, zero or positive. At ``θ₀ = 0`` every margin is zero, which
gives the first step its ½. (The theorem assumes no later margin is exactly zero, true for
almost every data set.)

Numpy in, numpy out.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..metrics.curves import first_index


def _check_data(features: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    a = np.asarray(features, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    if a.ndim != 2 or y.shape != (a.shape[0],) or a.shape[0] == 0:
        raise ValueError(f"features must be (n, d) and labels (n,), got {a.shape} and {y.shape}")
    if not np.all(np.abs(y) == 1):
        raise ValueError("labels must be -1 or +1")
    return a, y


def batch_perceptron(features: ArrayLike, labels: ArrayLike, steps: int) -> NDArray[np.float64]:
    """Iterates ``θ̂₀ … θ̂_steps`` of the batch perceptron from ``θ̂₀ = 0``: ``(steps + 1, d)``.

    Once every point is classified correctly (``Sₜ`` empty) the iterate stays put, as the
    limit of gradient descent does (its update then tends to zero).
    """
    a, y = _check_data(features, labels)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    ya = y[:, None] * a
    n = a.shape[0]
    out = np.zeros((steps + 1, a.shape[1]))
    if steps >= 1:
        out[1] = ya.sum(0) / (2 * n)
    for t in range(1, steps):
        wrong = ya @ out[t] <= 0
        out[t + 1] = out[t] + ya[wrong].sum(0) / n
    return out


def steps_to_separate(iterates: ArrayLike, features: ArrayLike, labels: ArrayLike) -> float:
    """The first index ``t`` at which ``iterates[t]`` classifies every point correctly (margin > 0); ``inf`` if none.

    ``iterates`` is ``(T, d)``; the same definition serves gradient descent and the perceptron.
    """
    a, y = _check_data(features, labels)
    th = np.asarray(iterates, dtype=np.float64)
    ok = ((th @ (y[:, None] * a).T) > 0).all(axis=1)
    return float(first_index(ok))


def worst_case_steps(n: int) -> int:
    """Iterations the batch perceptron needs on Tyurin's Theorem 5.1 data set of ``n`` points (closed form).

    The data set: one point ``(0.5, −1)`` with label +1 and ``n − 1`` points ``(−0.5, −1)`` with
    label −1 (see :func:`phenomena.data.tyurin_worst_case`). After the half step,
    ``θ̂ₖ = (1/4 + (k−1)/2n, (n−2)/2n − (k−1)/n)`` while only the +1 point is misclassified; its
    margin ``−3/8 + 1/n + 5(k−1)/4n`` turns positive first (the −1 points' margin stays positive
    until ``k − 1 ≈ 5n/6``), at ``k − 1 > (3n − 8)/10``. So ``K(n) = ⌊(3n − 8)/10⌋ + 2 = Θ(n)``:
    the number of steps grows linearly with the number of points, whatever the step size.

    ``n ≡ 6 (mod 10)`` puts a margin exactly at zero (the theorem's non-degeneracy assumption
    fails) and is refused, as is ``n < 10`` (the theorem's range).
    """
    if n < 10:
        raise ValueError(f"the worst-case data set needs n >= 10, got {n}")
    if n % 10 == 6:
        raise ValueError(f"n = {n} ≡ 6 (mod 10) puts a perceptron margin exactly at 0; pick another n")
    return (3 * n - 8) // 10 + 2
