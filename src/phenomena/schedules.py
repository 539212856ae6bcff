"""Learning-rate schedules as arrays: one learning rate per step, one column per member.

A schedule here is data, not an object that mutates an optimizer: ``(steps,)`` for one run, or
``(steps, members)`` for an ensemble in which every member follows its own schedule
(:func:`stack`). That is what the scaling law with learning-rate annealing needs (its areas
S₁ and S₂ are sums over the very array that trained the model), and it lets many schedules
train as one batched model: :func:`phenomena.ensemble.fit` takes the array as ``lr_schedule``
and writes row ``t`` into the optimizer's per-member ``lr`` before step ``t``.

Conventions: step ``t`` runs from 0 to ``steps - 1``; ``lr`` is the peak rate η₀; a decay
ends at ``floor · lr``. Cosine follows PyTorch's ``CosineAnnealingLR`` (``T_max = steps``), so
its last step sits just above the floor.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np


def _check(steps: int, lr: float) -> None:
    if int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive number, got {lr}")


def _check_fraction(value: float, name: str) -> None:
    if not 0 <= value <= 1:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")


def constant(steps: int, lr: float) -> np.ndarray:
    """η_t = η₀ at every step."""
    _check(steps, lr)
    return np.full(int(steps), float(lr))


def cosine(steps: int, lr: float, *, floor: float = 0.0) -> np.ndarray:
    """Half a cosine from η₀ down to ``floor·η₀``: η_t = η_min + (η₀ − η_min)(1 + cos(πt/T))/2."""
    _check(steps, lr)
    _check_fraction(floor, "floor")
    t = np.arange(int(steps))
    low = floor * lr
    return low + (lr - low) * 0.5 * (1 + np.cos(np.pi * t / steps))


def wsd(steps: int, lr: float, *, cooldown: float = 0.2, floor: float = 0.0) -> np.ndarray:
    """Warmup-stable-decay without warmup: η₀ until the last ``cooldown`` fraction of steps, then a
    linear cooldown on a line from η₀ (the last stable step) to ``floor·η₀`` one step after the
    last, so that no step has rate 0 when ``floor = 0``."""
    _check(steps, lr)
    _check_fraction(cooldown, "cooldown")
    _check_fraction(floor, "floor")
    n = round(cooldown * steps)
    out = np.full(int(steps), float(lr))
    if n:
        k = np.arange(1, n + 1)  # 1 … n: the k-th cooldown step
        out[steps - n:] = lr * (floor + (1 - floor) * (n + 1 - k) / (n + 1))
    return out


def multistep(steps: int, lr: float, *, milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.3) -> np.ndarray:
    """η₀ multiplied by ``factor`` at each milestone (fractions of ``steps``)."""
    _check(steps, lr)
    if not 0 < factor <= 1:
        raise ValueError(f"factor must lie in (0, 1], got {factor}")
    t = np.arange(int(steps))
    out = np.full(int(steps), float(lr))
    for m in milestones:
        _check_fraction(m, "a milestone")
        out[t >= round(m * steps)] *= factor
    return out


SCHEDULES: dict[str, Callable[[int, float], np.ndarray]] = {
    "constant": constant,
    "cosine": cosine,
    "cosine-floor": lambda steps, lr: cosine(steps, lr, floor=0.1),
    "wsd-20": lambda steps, lr: wsd(steps, lr, cooldown=0.2),
    "wsd-10": lambda steps, lr: wsd(steps, lr, cooldown=0.1),
    "multistep": multistep,
}
"""The named schedules of the book: cosine to 0 and to 0.1·η₀, WSD with a 20% and a 10% linear
cooldown to 0, multistep (×0.3 at 50% and 75% of the steps)."""


def schedule(name: str, steps: int, lr: float) -> np.ndarray:
    """The named schedule (a key of :data:`SCHEDULES`) as a ``(steps,)`` array."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules are: {', '.join(SCHEDULES)}")
    return SCHEDULES[name](steps, lr)


def stack(names: Sequence[str], steps: int, lr: float, *, repeat: int = 1) -> np.ndarray:
    """``(steps, len(names)·repeat)``: the named schedules side by side, each repeated ``repeat``
    times in a row (member ``i·repeat + r`` follows ``names[i]``), ready for ``fit(lr_schedule=…)``."""
    if not names:
        raise ValueError("give at least one schedule name")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    return np.repeat(np.stack([schedule(n, steps, lr) for n in names], axis=1), repeat, axis=1)
