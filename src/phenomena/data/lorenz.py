"""The Lorenz-63 system, integrated by classical Runge-Kutta (RK4), with its tangent dynamics.

Lorenz (1963): ``ẋ = σ(y − x)``, ``ẏ = x(ρ − z) − y``, ``ż = xy − βz``; at ``σ = 10, ρ = 28,
β = 8/3`` the orbit settles on the chaotic "butterfly" attractor. Everything here is float64 numpy
with a leading batch of states (``(..., 3)``), because the chapters that use it need many
independent orbits at once and the Jacobians along an orbit, not a trained model.

RK4 applied to the pair (state, tangent matrix) with the variational equation ``Ṡ = J(x)S + P(x)``
gives *exactly* the derivative of one RK4 step of the state: the stages of the tangent are the
derivatives of the stages of the state. That is how :func:`rk4_tangent_step` computes the Jacobian
of the RK4 map (``P = 0``) and the sensitivity of an orbit to the parameters (``P = ∂f/∂θ``),
without autograd and for a whole batch of orbits at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

SIGMA, RHO, BETA = 10.0, 28.0, 8.0 / 3.0
LORENZ_PARAMS: tuple[float, float, float] = (SIGMA, RHO, BETA)


def _params(params: ArrayLike | None) -> NDArray[np.float64]:
    p = np.asarray(LORENZ_PARAMS if params is None else params, dtype=np.float64)
    if p.shape[-1:] != (3,):
        raise ValueError(f"Lorenz parameters are (sigma, rho, beta) on the last axis, got shape {p.shape}")
    return p


def _state(x: ArrayLike) -> NDArray[np.float64]:
    x = np.asarray(x, dtype=np.float64)
    if x.shape[-1:] != (3,):
        raise ValueError(f"a Lorenz state has 3 coordinates on the last axis, got shape {x.shape}")
    return x


def lorenz_rhs(x: ArrayLike, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """The vector field ``f(x; σ, ρ, β)``; ``x (..., 3)``, ``params (..., 3)`` broadcast against it."""
    x, p = _state(x), _params(params)
    s, r, b = p[..., 0], p[..., 1], p[..., 2]
    x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
    return np.stack([s * (x1 - x0), x0 * (r - x2) - x1, x0 * x1 - b * x2], axis=-1)


def lorenz_jacobian(x: ArrayLike, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """``∂f/∂x`` at ``x``: shape ``(..., 3, 3)``."""
    x, p = _state(x), _params(params)
    s, r, b = np.broadcast_arrays(p[..., 0], p[..., 1], p[..., 2], x[..., 0])[:3]
    x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
    shape = np.broadcast_shapes(x0.shape, s.shape)
    J = np.zeros(shape + (3, 3))
    J[..., 0, 0], J[..., 0, 1] = -s, s
    J[..., 1, 0], J[..., 1, 1], J[..., 1, 2] = r - x2, -1.0, -x0
    J[..., 2, 0], J[..., 2, 1], J[..., 2, 2] = x1, x0, -b
    return J


def lorenz_param_jacobian(x: ArrayLike, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """``∂f/∂(σ, ρ, β)`` at ``x``: shape ``(..., 3, 3)`` (rows: state, columns: parameters)."""
    x, p = _state(x), _params(params)
    x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
    shape = np.broadcast_shapes(x0.shape, p.shape[:-1])
    P = np.zeros(shape + (3, 3))
    P[..., 0, 0] = x1 - x0
    P[..., 1, 1] = x0
    P[..., 2, 2] = -x2
    return P


def rk4_step(x: ArrayLike, dt: float, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """One classical Runge-Kutta step of the Lorenz flow (batched over leading axes)."""
    x, p = _state(x), _params(params)
    k1 = lorenz_rhs(x, p)
    k2 = lorenz_rhs(x + 0.5 * dt * k1, p)
    k3 = lorenz_rhs(x + 0.5 * dt * k2, p)
    k4 = lorenz_rhs(x + dt * k3, p)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def rk4_tangent_step(
    x: ArrayLike, S: ArrayLike, dt: float, params: ArrayLike | None = None, *, with_params: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """One RK4 step of the state and of a tangent matrix ``S (..., 3, k)``.

    The tangent obeys ``Ṡ = J(x)S`` (``with_params=False``: ``S`` maps initial perturbations, and
    with ``S = I`` the result is the Jacobian of the RK4 map) or ``Ṡ = J(x)S + ∂f/∂θ``
    (``with_params=True``, ``k = 3``: ``S`` is the sensitivity ``∂x/∂(σ, ρ, β)``). Either way the
    new ``S`` is the exact derivative of the discrete RK4 step, not an approximation of the flow's.
    """
    x, p = _state(x), _params(params)
    S = np.asarray(S, dtype=np.float64)

    def tangent(xs: NDArray, Ss: NDArray) -> NDArray:
        out = lorenz_jacobian(xs, p) @ Ss
        return out + lorenz_param_jacobian(xs, p) if with_params else out

    k1, m1 = lorenz_rhs(x, p), tangent(x, S)
    x2, S2 = x + 0.5 * dt * k1, S + 0.5 * dt * m1
    k2, m2 = lorenz_rhs(x2, p), tangent(x2, S2)
    x3, S3 = x + 0.5 * dt * k2, S + 0.5 * dt * m2
    k3, m3 = lorenz_rhs(x3, p), tangent(x3, S3)
    x4, S4 = x + dt * k3, S + dt * m3
    k4, m4 = lorenz_rhs(x4, p), tangent(x4, S4)
    return x + dt / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), S + dt / 6.0 * (m1 + 2 * m2 + 2 * m3 + m4)


def rk4_map_jacobian(x: ArrayLike, dt: float, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """Jacobian of the RK4 map ``x ↦ rk4_step(x)`` at every state of ``x (..., 3)``: ``(..., 3, 3)``.

    Vectorised over the batch: the Jacobians along a whole stored orbit come in one call.
    """
    x = _state(x)
    eye = np.broadcast_to(np.eye(3), x.shape[:-1] + (3, 3)).copy()
    return rk4_tangent_step(x, eye, dt, params)[1]


def integrate(x0: ArrayLike, steps: int, dt: float = 0.01, params: ArrayLike | None = None) -> NDArray[np.float64]:
    """RK4 orbit(s) from ``x0 (..., 3)``: shape ``(steps + 1, ..., 3)``, the initial state first."""
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt!r}")
    x = _state(x0).copy()
    p = _params(params)
    if x.shape == (3,) and p.shape == (3,):
        out = np.asarray(_integrate_one(tuple(map(float, x)), int(steps), float(dt), tuple(map(float, p))))
    else:
        out = np.empty((int(steps) + 1,) + np.broadcast_shapes(x.shape, p.shape))
        out[0] = x
        for t in range(int(steps)):
            x = rk4_step(x, dt, p)
            out[t + 1] = x
    if not np.isfinite(out).all():
        raise FloatingPointError(f"the RK4 orbit diverged; dt = {dt} is too large for these parameters (try 0.01)")
    return out


def _integrate_one(x: tuple[float, ...], steps: int, dt: float, p: tuple[float, ...]) -> list[tuple[float, ...]]:
    """One orbit with Python floats: for a single 3-vector, ten times faster than numpy's per-call cost."""
    s, r, b = p
    h, h2, h6 = dt, 0.5 * dt, dt / 6.0

    def f(a: float, c: float, e: float) -> tuple[float, float, float]:
        return s * (c - a), a * (r - e) - c, a * c - b * e

    a, c, e = x
    out = [(a, c, e)]
    for _ in range(steps):
        k1 = f(a, c, e)
        k2 = f(a + h2 * k1[0], c + h2 * k1[1], e + h2 * k1[2])
        k3 = f(a + h2 * k2[0], c + h2 * k2[1], e + h2 * k2[2])
        k4 = f(a + h * k3[0], c + h * k3[1], e + h * k3[2])
        a += h6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0])
        c += h6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1])
        e += h6 * (k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2])
        out.append((a, c, e))
    return out


@dataclass(frozen=True)
class LorenzData:
    """One Lorenz-63 orbit on the attractor, raw and standardised (zero mean, unit std per axis)."""

    raw: NDArray[np.float64]  # (steps + 1, 3)
    mean: NDArray[np.float64]  # (3,)
    std: NDArray[np.float64]  # (3,)
    dt: float
    params: tuple[float, float, float]

    @property
    def standardized(self) -> NDArray[np.float64]:
        return standardize(self.raw, self.mean, self.std)


def standardize(x: ArrayLike, mean: ArrayLike, std: ArrayLike) -> NDArray[np.float64]:
    """``(x − mean) / std``: the units in which losses are compared across axes."""
    return (np.asarray(x, dtype=np.float64) - mean) / std


def lorenz_orbit(
    steps: int,
    *,
    dt: float = 0.01,
    params: ArrayLike | None = None,
    transient: int = 2000,
    rng: np.random.Generator | None = None,
) -> LorenzData:
    """An orbit of ``steps`` RK4 steps on the attractor (after ``transient`` discarded steps).

    The start is a random point near ``(1, 1, 20)`` drawn from ``rng``; the transient (20 time
    units at ``dt = 0.01``) lets the orbit fall onto the attractor. Mean and std are the orbit's own.
    """
    if transient < 0:
        raise ValueError("transient must be non-negative")
    rng = rng if rng is not None else np.random.default_rng(0)
    x0 = np.array([1.0, 1.0, 20.0]) + rng.normal(size=3)
    p = _params(params)
    start = integrate(x0, transient, dt, p)[-1]
    raw = integrate(start, steps, dt, p)
    return LorenzData(raw=raw, mean=raw.mean(0), std=raw.std(0), dt=float(dt), params=tuple(float(v) for v in p))
