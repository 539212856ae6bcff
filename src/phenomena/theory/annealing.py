"""The scaling law with learning-rate annealing (Tissue, Wang & Wang 2024): L(s) = L₀ + A·S₁^{−α} − C·S₂.

``S₁`` is the *forward area*, the sum of the learning rates of the steps taken so far; the
classical data scaling law ``L₀ + A·S₁^{−α}`` is a function of it alone. ``S₂`` is the *annealing
area*: each drop of the rate, ``η_{i−1} − η_i``, enters a momentum ``m_i = λ m_{i−1} + (η_{i−1} −
η_i)`` that keeps acting with decay factor λ, and ``S₂ = Σ m_i``. A schedule that lowers its
rate therefore gains an extra ``C·S₂`` below the forward law, slowly, with a delay set by λ.

Everything here works on the learning-rate array that trained the model: the loss recorded
after ``s`` steps (row ``s`` of :class:`phenomena.ensemble.History`) is paired with the areas of
the first ``s`` rates. Every step's rate counts in ``S₁``, including any warmup.

The fit follows the paper's recipe: a Huber loss (δ = 10⁻³) on the difference of log-losses,
minimised by L-BFGS-B from a grid of starting points, the best end point kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.signal import lfilter

DECAY = 0.999
"""The decay factor λ of the annealing momentum used by the paper for LLM runs."""


def forward_area(lrs: np.ndarray) -> np.ndarray:
    """``S₁`` after ``s`` steps, for ``s = 0 … steps``: ``(steps + 1, ...)``, ``S₁[s] = Σ_{i<s} η_i``."""
    eta = np.asarray(lrs, float)
    return np.concatenate([np.zeros((1,) + eta.shape[1:]), np.cumsum(eta, axis=0)], axis=0)


def annealing_area(lrs: np.ndarray, decay: float = DECAY) -> np.ndarray:
    """``S₂`` after ``s`` steps: ``Σ_{i=1}^{s−1} m_i`` with ``m_i = λ m_{i−1} + (η_{i−1} − η_i)``, ``m_0 = 0``.

    Only rate changes between steps that were taken count: the drop from ``η_{s−1}`` to a rate not
    yet used has not acted on the loss at step ``s``. ``(steps + 1, ...)`` like :func:`forward_area`.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"decay (λ) must lie in [0, 1), got {decay}")
    eta = np.asarray(lrs, float)
    out = np.zeros((eta.shape[0] + 1,) + eta.shape[1:])
    drops = eta[:-1] - eta[1:]  # η_{i−1} − η_i for i = 1 … steps − 1
    m = lfilter([1.0], [1.0, -decay], drops, axis=0)  # m_i = λ m_{i−1} + drop_i, m_0 = 0
    out[2:] = np.cumsum(m, axis=0)
    return out


def annealing_law(s1: np.ndarray, s2: np.ndarray, l0: float, a: float, alpha: float, c: float) -> np.ndarray:
    """``L₀ + A·S₁^{−α} − C·S₂``."""
    return l0 + a * np.asarray(s1, float) ** (-alpha) - c * np.asarray(s2, float)


@dataclass(frozen=True)
class LawFit:
    """Fitted parameters of :func:`annealing_law` (``c = 0`` for the forward law alone)."""

    l0: float
    a: float
    alpha: float
    c: float
    decay: float
    objective: float

    def predict(self, lrs: np.ndarray, decay: float | None = None) -> np.ndarray:
        """The law's loss after every step ``0 … steps`` of the schedule ``lrs`` (row 0: ``nan``, S₁ = 0)."""
        s1 = forward_area(lrs)
        s2 = annealing_area(lrs, self.decay if decay is None else decay)
        s1[0] = np.nan  # no step taken: the law is undefined there
        out = annealing_law(s1, s2, self.l0, self.a, self.alpha, self.c)
        return out


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber's loss: quadratic within ``±delta``, linear outside."""
    r = np.abs(r)
    return np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))


def fit_annealing_law(
    curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    *,
    decay: float = DECAY,
    anneal: bool = True,
    delta: float = 1e-3,
    alphas: Sequence[float] = (0.2, 0.5, 1.0, 2.0),
    floors: Sequence[float] = (0.0, 0.5, 0.9),
) -> LawFit:
    """Fit ``(L₀, A, α, C)`` to loss curves of one model under one or more schedules.

    ``curves`` holds ``(lrs, steps, loss)``: the schedule ``(T,)`` that trained the run, the step
    counts ``s`` at which the loss was read (1 … T) and the losses there. Minimises the Huber loss
    of ``log L_law − log L`` (summed over all points of all curves) with L-BFGS-B, from every
    combination of starting exponents ``alphas`` and starting floors ``floors`` (fractions of the
    smallest loss); returns the best. ``anneal=False`` fits the forward law (C = 0).
    Bounds: ``0 ≤ L₀ <`` the smallest loss (3× it with annealing), ``A > 0``, ``0.01 ≤ α ≤ 5``, ``C ≥ 0``.
    """
    if not curves:
        raise ValueError("give at least one (lrs, steps, loss) curve to fit")
    s1s, s2s, ys = [], [], []
    for lrs, steps, loss in curves:
        steps = np.asarray(steps, int)
        loss = np.asarray(loss, float)
        if steps.shape != loss.shape or steps.min() < 1 or steps.max() > len(lrs):
            raise ValueError("each curve needs steps in 1 … len(lrs) and one loss per step")
        if not (np.isfinite(loss).all() and (loss > 0).all()):
            raise ValueError("losses must be finite and positive (the fit is on log-loss)")
        s1s.append(forward_area(lrs)[steps])
        s2s.append(annealing_area(lrs, decay)[steps] if anneal else np.zeros(steps.shape))
        ys.append(np.log(loss))
    s1, s2, y = np.concatenate(s1s), np.concatenate(s2s), np.concatenate(ys)
    lmin = float(np.exp(y.min()))
    # scale the variables so that L-BFGS-B sees numbers of order one
    s2_scale = max(float(np.abs(s2).max()), 1e-12)

    def unpack(p: np.ndarray) -> tuple[float, float, float, float]:
        return p[0] * lmin, float(np.exp(p[1])), p[2], p[3] * lmin / s2_scale

    def objective(p: np.ndarray) -> float:
        l0, a, alpha, c = unpack(p)
        pred = l0 + a * s1 ** (-alpha) - c * s2
        if (pred <= 0).any():
            return 1e6
        return float(huber(np.log(pred) - y, delta).sum())

    best = None
    # with annealing the loss may end below L₀ (C·S₂ pulls it down), so L₀ may exceed the smallest loss
    bounds = [(0.0, 3.0 if anneal else 0.999), (-30, 30), (0.01, 5.0), (0.0, 10.0 if anneal else 0.0)]
    for alpha0 in alphas:
        for floor0 in floors:
            excess = np.clip(np.exp(y) - floor0 * lmin, 1e-12, None)
            log_a0 = float(np.median(np.log(excess) + alpha0 * np.log(s1)))
            p0 = np.array([floor0, log_a0, alpha0, 0.1 if anneal else 0.0])
            res = minimize(objective, p0, method="L-BFGS-B", bounds=bounds)
            if best is None or res.fun < best.fun:
                best = res
    l0, a, alpha, c = unpack(best.x)
    return LawFit(l0=float(l0), a=float(a), alpha=float(alpha), c=float(c), decay=float(decay),
                  objective=float(best.fun))
