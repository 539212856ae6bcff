"""Closed forms for one gradient spike passing through Adam's moments (and SPAM's clip).

Take one coordinate whose gradients are typically of size ``√v`` (``v`` the second moment
Adam has settled on) and give it, at one step, a gradient ``s`` times larger. Adam's update is
``lr · m̂/√v̂``, with ``m ← β₁m + (1−β₁)g`` and ``v ← β₂v + (1−β₂)g²``.

* At the spike the update is ``(β₁m + (1−β₁)s)/√(β₂v + (1−β₂)s²)`` (in units of ``lr`` and of
  ``√v``) times the bias correction ``√(1−β₂^t)/(1−β₁^t)``: as ``s`` grows it tends to
  ``(1−β₁)/√(1−β₂)`` (3.16 for β = (0.9, 0.999)), so Adam *caps* the spike's own step
  (:func:`spike_step`, :func:`spike_step_limit`).
* The price is paid afterwards. The spike leaves ``(1−β₂)s²`` in ``v``, which decays as ``β₂^k``:
  ``k`` steps later ``v = v₀(1 + A·β₂^k)`` with the *inflation* ``A = (1−β₂)s²``
  (:func:`spike_inflation`), so every typical update of that coordinate is multiplied by
  ``(1 + A·β₂^k)^{-1/2}`` (:func:`muting_factor`), and it takes
  ``k = ln(A/(1/r² − 1))/ln(1/β₂)`` steps to recover to a fraction ``r`` (:func:`recovery_steps`):
  5,806 steps to recover to ½ after a 1000× spike with β₂ = 0.999.
* SPAM's clip replaces ``g`` by ``sign(g)·√(θ·v)`` whenever ``g² > θ·v``, so ``A ≤ (1−β₂)θ``: 5 for
  the code's ``θ = 5000``, a muting of at least ``1/√6`` and a recovery to ½ in 511 steps, whatever
  the spike.
"""

from __future__ import annotations

import math

import numpy as np


def _check_betas(beta1: float, beta2: float) -> None:
    if not (0 <= beta1 < 1 and 0 < beta2 < 1):
        raise ValueError(f"need 0 <= beta1 < 1 and 0 < beta2 < 1, got beta1={beta1}, beta2={beta2}")


def bias_correction(t: int | None, beta1: float = 0.9, beta2: float = 0.999) -> float:
    """Adam's bias-correction factor of the update at step ``t`` (1-based): ``√(1−β₂^t)/(1−β₁^t)``; 1 for ``t=None`` (t → ∞)."""
    _check_betas(beta1, beta2)
    if t is None:
        return 1.0
    if t < 1:
        raise ValueError(f"t counts Adam's steps from 1, got {t}")
    return math.sqrt(1 - beta2**t) / (1 - beta1**t)


def spike_step(
    s: float | np.ndarray,
    *,
    beta1: float = 0.9,
    beta2: float = 0.999,
    m: float = 0.0,
    v: float = 1.0,
    t: int | None = None,
) -> float | np.ndarray:
    """``|Δθ|/lr`` of Adam's step at a gradient ``s`` that meets moments ``m`` (first) and ``v`` (second, raw).

    ``(β₁m + (1−β₁)s)/√(β₂v + (1−β₂)s²)`` times :func:`bias_correction` at step ``t``. With ``v = 1``
    and ``m = 0`` this is the step of a spike ``s`` times the typical gradient at a settled state.
    """
    _check_betas(beta1, beta2)
    if v < 0:
        raise ValueError(f"the second moment v must be >= 0, got {v}")
    s = np.asarray(s, dtype=float)
    out = np.abs(beta1 * m + (1 - beta1) * s) / np.sqrt(beta2 * v + (1 - beta2) * s**2) * bias_correction(t, beta1, beta2)
    return float(out) if out.ndim == 0 else out


def spike_step_limit(beta1: float = 0.9, beta2: float = 0.999, t: int | None = None) -> float:
    """The largest step a spike can force, ``s → ∞`` in :func:`spike_step`: ``(1−β₁)/√(1−β₂)`` × bias correction."""
    _check_betas(beta1, beta2)
    return (1 - beta1) / math.sqrt(1 - beta2) * bias_correction(t, beta1, beta2)


def spike_inflation(s: float, *, beta2: float = 0.999, threshold: float | None = None) -> float:
    """``A``: what one spike adds to ``v``, in units of ``v``: ``(1−β₂)s²``, or ``(1−β₂)·min(s², θ)`` under SPAM's clip.

    ``s`` is the spike's size in units of the typical gradient ``√v``; ``threshold`` is SPAM's ``θ``
    (``None`` or 0: no clip, plain Adam).
    """
    _check_betas(0.0, beta2)
    if s < 0 or (threshold is not None and threshold < 0):
        raise ValueError(f"s and threshold must be >= 0, got s={s}, threshold={threshold}")
    g2 = s * s if not threshold else min(s * s, threshold)
    return (1 - beta2) * g2


def muting_factor(k: float | np.ndarray, inflation: float, *, beta2: float = 0.999) -> float | np.ndarray:
    """``(1 + A·β₂^k)^{-1/2}``: how much a typical update is shrunk ``k`` steps after a spike of inflation ``A``."""
    _check_betas(0.0, beta2)
    if inflation < 0:
        raise ValueError(f"inflation must be >= 0, got {inflation}")
    k = np.asarray(k, dtype=float)
    out = 1 / np.sqrt(1 + inflation * beta2**k)
    return float(out) if out.ndim == 0 else out


def recovery_steps(inflation: float, *, beta2: float = 0.999, level: float = 0.5) -> float:
    """Steps ``k`` after which :func:`muting_factor` is back up to ``level``: ``ln(A/(1/level² − 1))/ln(1/β₂)``.

    0 if the spike never mutes below ``level`` (``A ≤ 1/level² − 1``, e.g. ``A ≤ 3`` for ½).
    """
    _check_betas(0.0, beta2)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if inflation < 0:
        raise ValueError(f"inflation must be >= 0, got {inflation}")
    need = 1 / level**2 - 1
    if inflation <= need:
        return 0.0
    return math.log(inflation / need) / math.log(1 / beta2)
