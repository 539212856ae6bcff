"""The eigenframework: test and train risk of kernel and random-feature ridge regression from eigenvalues.

Kernel ridge regression (KRR) with a kernel of eigenvalues ``λ_i`` on a target with eigen-coefficients
``v_i`` (``y = Σ v_i φ_i(x) + noise``, noise variance ``σ²``), ``n`` samples and an *unnormalised* ridge
``δ`` (the regressor is ``K(x, X)(K + δI)⁻¹y``) has, for Gaussian-like features, a test risk that
depends on the task only through ``(λ_i, v_i, σ²)`` (Simon et al. 2023 "eigenlearning"; Bordelon et al.
2020; Jacot et al. 2020). The effective ridge ``κ`` solves

    n = Σ_i λ_i/(λ_i + κ) + δ/κ,

and with learnabilities ``L_i = λ_i/(λ_i + κ)`` and ``E = n/(n − Σ L_i²)``

    test risk = E · ( Σ (1 − L_i)² v_i² + σ² ),      train risk = (δ/(nκ))² · test risk.

Random-feature (RF) regression with ``k`` features whose ``k → ∞`` kernel has eigenvalues ``λ_i``
(Simon, Karkada, Ghosh, Belkin 2023, §4, the "RF eigenframework") has two effective constants
``(κ, γ)`` that solve

    n = Σ λ_i/(λ_i + γ) + δ/κ,          k = Σ λ_i/(λ_i + γ) + kκ/γ.

With ``L_i = λ_i/(λ_i + γ)``, ``z = Σ L_i``, ``q = Σ L_i²``,
``x = (q(k − 2z) + z²)/(n(k − q))`` and ``E = 1/(1 − x)``,

    test risk = E · [ Σ ((1 − L_i) − κ L_i/(λ_i + γ) · k/(k − q)) v_i² + σ² ].

As ``k → ∞``, ``kκ/γ → k − z`` forces ``γ → κ`` and the RF risk becomes the KRR risk. The train
risk of the RF model is ``(δ/(nκ))²`` times its test risk, with the RF ``κ``: conditioned on the
features, RF regression is linear ridge regression whose own effective ridge is that ``κ``.

Solving. Eliminating ``κ = γ(1 − z(γ)/k)`` from the second equation leaves one equation in ``γ``,

    h(γ) = z(γ) + δ / (γ (1 − z(γ)/k)) − n = 0,

on the range where ``z(γ) < k``. ``h`` falls strictly with ``γ`` there (``z`` falls, and
``γ(1 − z/k)`` rises because its derivative is ``1 − q/k > 0``, as ``d(γz)/dγ = Σ L_i² = q ≤ z < k``), so bisection
in ``log γ`` finds the one root; every quantity is solved for a whole array of ``(n, k, δ)`` at once.
Numpy in, numpy out, float64 throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

BISECTION_STEPS = 80
"""Halvings of the ``log`` bracket: 80 take a bracket 100 e-folds wide below float64 resolution."""

RELATIVE_TOLERANCE = 1e-9
"""A solution is accepted when its equation holds to this fraction of ``n``."""


class EigenframeworkError(ValueError):
    """The eigenframework equations have no solution for these parameters, or the solver did not converge."""


@dataclass(frozen=True)
class RFConstants:
    """The RF eigenframework's solved constants, broadcast to the shape of ``(n, k, ridge)``."""

    kappa: NDArray[np.float64]
    gamma: NDArray[np.float64]


def _check_spectrum(eigenvalues: ArrayLike, coefficients: ArrayLike | None = None) -> tuple[NDArray, NDArray | None]:
    lam = np.asarray(eigenvalues, dtype=np.float64)
    if lam.ndim != 1 or lam.size == 0:
        raise ValueError(f"eigenvalues must be a non-empty 1-d array, got shape {lam.shape}")
    if not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("eigenvalues must be finite and positive; drop zero modes (they cannot be learned)")
    if coefficients is None:
        return lam, None
    v = np.asarray(coefficients, dtype=np.float64)
    if v.shape != lam.shape:
        raise ValueError(f"coefficients must have the shape of eigenvalues {lam.shape}, got {v.shape}")
    return lam, v


def _bisect_log(fn, lo: NDArray, hi: NDArray) -> NDArray:
    """Root of a function that falls in its argument, on ``[lo, hi]`` (log scale), elementwise.

    ``fn(lo) > 0 > fn(hi)`` must hold (the callers widen brackets until it does); ``nan`` or
    ``+inf`` residuals count as positive (the infeasible side).
    """
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        r = fn(mid)
        above = ~(r < 0)  # nan and +inf count as "still above the root"
        lo = np.where(above, mid, lo)
        hi = np.where(above, hi, mid)
    return 0.5 * (lo + hi)


def _shapes(*arrays: ArrayLike) -> list[NDArray]:
    out = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in arrays))
    return [np.array(a, dtype=np.float64) for a in out]


def krr_kappa(eigenvalues: ArrayLike, n: ArrayLike, ridge: ArrayLike) -> NDArray[np.float64]:
    """KRR's effective ridge ``κ``: the root of ``n = Σ λ_i/(λ_i + κ) + δ/κ``, for arrays of ``n``, ``δ``.

    A zero ridge needs ``n`` below the number of modes (else the interpolator is not unique and no
    positive ``κ`` exists); that case raises :class:`EigenframeworkError` naming ``n`` and the modes.
    """
    lam, _ = _check_spectrum(eigenvalues)
    n_, d_ = _shapes(n, ridge)
    if np.any(n_ <= 0) or np.any(d_ < 0):
        raise ValueError(f"n must be positive and ridge non-negative; got n={n_.min()}, ridge={d_.min()}")
    bad = (d_ == 0) & (n_ >= lam.size)
    if np.any(bad):
        raise EigenframeworkError(
            f"KRR with ridge 0 needs n < modes ({lam.size}); got n={n_[bad].flat[0]:g}. "
            "Use a positive ridge or more modes."
        )

    def residual(logk: NDArray) -> NDArray:
        kap = np.exp(logk)[..., None]
        return (lam / (lam + kap)).sum(-1) + d_ / kap[..., 0] - n_

    lo = np.full(n_.shape, math.log(lam.min()) - 60.0)
    hi = np.log(lam.sum() + d_ + lam.max()) + np.zeros(n_.shape)
    kappa = np.exp(_bisect_log(residual, lo, hi))
    _raise_unless_converged(residual(np.log(kappa)), n_, "KRR κ", n=n_, ridge=d_)
    return kappa


def _raise_unless_converged(res: NDArray, scale: NDArray, what: str, **params: NDArray) -> None:
    bad = ~(np.abs(res) <= RELATIVE_TOLERANCE * scale)
    if np.any(bad):
        i = np.argwhere(bad)[0]
        named = ", ".join(f"{k}={np.broadcast_to(v, bad.shape)[tuple(i)]:g}" for k, v in params.items())
        raise EigenframeworkError(
            f"the {what} solver did not converge at {named} (residual {res[tuple(i)]:.3g}): the equations have "
            "no root there, or it lies beyond float64's range; use a larger ridge, or fewer samples than modes"
        )


def rf_constants(eigenvalues: ArrayLike, n: ArrayLike, k: ArrayLike, ridge: ArrayLike) -> RFConstants:
    """Solve the RF eigenframework's ``(κ, γ)`` for arrays of ``n``, ``k`` (features) and ``ridge`` δ > 0.

    One bisection in ``log γ`` (module docstring); a ridge of 0 is the limit ``δ → 0`` and is not
    accepted: pass a small positive ridge. Raises :class:`EigenframeworkError` naming the
    parameters where no root is found to :data:`RELATIVE_TOLERANCE`.
    """
    lam, _ = _check_spectrum(eigenvalues)
    n_, k_, d_ = _shapes(n, k, ridge)
    if np.any(n_ <= 0) or np.any(k_ <= 0):
        raise ValueError(f"n and k must be positive; got n={n_.min()}, k={k_.min()}")
    if np.any(d_ <= 0):
        raise EigenframeworkError(
            f"the RF eigenframework needs a positive ridge, got ridge={d_.min():g}; "
            "pass a small positive value (e.g. 1e-8) for the ridgeless limit"
        )

    def parts(logg: NDArray) -> tuple[NDArray, NDArray]:
        gam = np.exp(logg)
        z = (lam / (lam + gam[..., None])).sum(-1)
        return gam, z

    def residual(logg: NDArray) -> NDArray:
        gam, z = parts(logg)
        slack = 1.0 - z / k_
        with np.errstate(divide="ignore", invalid="ignore"):
            r = z + d_ / (gam * slack) - n_
        return np.where(slack > 0, r, np.inf)

    lo = np.full(n_.shape, math.log(lam.min()) - 60.0)
    lo = np.minimum(lo, np.log(d_) - np.log(n_) - 30.0)
    hi = np.log(lam.sum() + d_ + lam.max()) + np.zeros(n_.shape)
    loggam = _bisect_log(residual, lo, hi)
    _raise_unless_converged(residual(loggam), n_, "RF (κ, γ)", n=n_, k=k_, ridge=d_)
    gam, z = parts(loggam)
    return RFConstants(kappa=gam * (1.0 - z / k_), gamma=gam)


def krr_risk(
    eigenvalues: ArrayLike, coefficients: ArrayLike, n: ArrayLike, ridge: ArrayLike, noise: float = 0.0
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """KRR ``(test risk, train risk)`` from the eigenframework, for arrays of ``n`` and ``ridge``.

    ``coefficients`` are the target's eigen-coefficients ``v_i`` (the risk uses ``v_i²``);
    ``noise`` is the label-noise variance ``σ²``. Risks are mean squared errors including noise.
    """
    lam, v = _check_spectrum(eigenvalues, coefficients)
    n_, d_ = _shapes(n, ridge)
    kappa = krr_kappa(lam, n_, d_)
    learn = lam / (lam + kappa[..., None])
    overfit = n_ / (n_ - (learn**2).sum(-1))
    test = overfit * (((1 - learn) ** 2 * v**2).sum(-1) + noise)
    return test, (d_ / (n_ * kappa)) ** 2 * test


def rf_risk(
    eigenvalues: ArrayLike,
    coefficients: ArrayLike,
    n: ArrayLike,
    k: ArrayLike,
    ridge: ArrayLike,
    noise: float = 0.0,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """RF regression ``(test risk, train risk)`` from the RF eigenframework (module docstring).

    Arrays ``n``, ``k``, ``ridge`` broadcast; ``ridge`` must be positive. ``k = inf`` gives KRR.
    """
    lam, v = _check_spectrum(eigenvalues, coefficients)
    n_, k_, d_ = _shapes(n, k, ridge)
    if np.all(np.isinf(k_)):
        return krr_risk(lam, v, n_, d_, noise)
    if np.any(np.isinf(k_)):
        raise ValueError("k = inf must be given alone (it is KRR); mixing it with finite k is not supported")
    c = rf_constants(lam, n_, k_, d_)
    gam, kap = c.gamma[..., None], c.kappa[..., None]
    learn = lam / (lam + gam)
    z, q = learn.sum(-1), (learn**2).sum(-1)
    x = (q * (k_ - 2 * z) + z**2) / (n_ * (k_ - q))
    overfit = 1.0 / (1.0 - x)
    bias = (1 - learn) - kap * learn / (lam + gam) * (k_ / (k_ - q))[..., None]
    test = overfit * ((bias * v**2).sum(-1) + noise)
    return test, (d_ / (n_ * c.kappa)) ** 2 * test


def optimal_ridge(
    eigenvalues: ArrayLike,
    coefficients: ArrayLike,
    n: float,
    k: float = math.inf,
    noise: float = 0.0,
    *,
    bounds: tuple[float, float] = (1e-10, 1e4),
    tol: float = 1e-4,
) -> tuple[float, float, float]:
    """The ridge that minimises the eigenframework's test risk: ``(ridge, test risk, train risk)``.

    Golden-section search on ``log δ`` within ``bounds`` (the risk is unimodal in ``log δ`` for the
    tasks here). An optimum at the lower bound means the best ridge is zero (or negative, which
    ridge regression does not allow): the task is in the "obligatory overfitting" class.
    ``tol`` is the final bracket width in natural-log units.
    """
    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    if not lo < hi:
        raise ValueError(f"bounds must be increasing positive numbers, got {bounds}")

    def risk(logd: float) -> float:
        return float(rf_risk(eigenvalues, coefficients, n, k, math.exp(logd), noise)[0])

    golden = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - golden * (b - a), a + golden * (b - a)
    fc, fd = risk(c), risk(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - golden * (b - a)
            fc = risk(c)
        else:
            a, c, fc = c, d, fd
            d = a + golden * (b - a)
            fd = risk(d)
    best = 0.5 * (a + b)
    test, train = rf_risk(eigenvalues, coefficients, n, k, math.exp(best), noise)
    return math.exp(best), float(test), float(train)


def powerlaw_fitting_ratio(alpha: float, beta: float) -> float:
    """Train/test risk at the optimal ridge for a noiseless power-law task, as ``n → ∞`` (KRR).

    Eigenvalues ``λ_i = i^−α``, target ``v_i² = i^−β`` with ``1 < β``, ``α > 1``. With
    ``t = δ/(nκ)`` (the train/test ratio is ``t²``), the continuum limit of the eigenframework gives
    ``test ∝ (1 − t)^−(β−1) / (1 − (1 − t)(1 − 1/α))``, minimised at
    ``t* = (α − β)/((α − 1)β)`` when ``β < α``; for ``β ≥ α`` the minimum is at ``t = 0``
    (zero ridge: the optimum interpolates). Returns ``t*²`` (0 when ``β ≥ α``).
    """
    if not alpha > 1 or not beta > 1:
        raise ValueError(f"need alpha > 1 and beta > 1 (summable spectrum and target), got {alpha}, {beta}")
    if beta >= alpha:
        return 0.0
    return ((alpha - beta) / ((alpha - 1) * beta)) ** 2
