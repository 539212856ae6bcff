"""Lorenz-63 data: the vector field, its Jacobians and the RK4 tangent step against finite differences."""

import numpy as np
import pytest

from phenomena.data import lorenz as L

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 3)) * np.array([8.0, 9.0, 8.0]) + np.array([0.0, 0.0, 24.0])
P = np.array(L.LORENZ_PARAMS)


def fd(f, x, h=1e-6):
    """Central finite-difference Jacobian of f at each row of x: (n, out, in)."""
    cols = []
    for i in range(x.shape[-1]):
        e = np.zeros(x.shape[-1])
        e[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=-1)


def test_rhs_is_the_lorenz_system():
    x = np.array([1.0, 2.0, 3.0])
    assert np.allclose(L.lorenz_rhs(x), [10 * (2 - 1), 1 * (28 - 3) - 2, 1 * 2 - 8 / 3 * 3])


def test_state_jacobian_matches_finite_differences():
    assert np.allclose(L.lorenz_jacobian(X), fd(L.lorenz_rhs, X), atol=1e-6)


def test_parameter_jacobian_matches_finite_differences():
    got = L.lorenz_param_jacobian(X, P)
    want = fd(lambda p: L.lorenz_rhs(X, p), np.broadcast_to(P, X.shape).copy())
    assert np.allclose(got, want, atol=1e-6)


def test_rk4_map_jacobian_is_the_derivative_of_the_step():
    dt = 0.01
    assert np.allclose(L.rk4_map_jacobian(X, dt), fd(lambda x: L.rk4_step(x, dt), X), atol=1e-7)


def test_parameter_sensitivity_over_many_steps_matches_finite_differences():
    dt, steps = 0.01, 50
    theta = np.array([10.0, 28.3, 8 / 3])
    x, S = X[:2].copy(), np.zeros((2, 3, 3))
    for _ in range(steps):
        x, S = L.rk4_tangent_step(x, S, dt, theta, with_params=True)

    def end(th):
        y = X[:2].copy()
        for _ in range(steps):
            y = L.rk4_step(y, dt, th)
        return y

    h = 1e-6
    cols = [(end(theta + h * e) - end(theta - h * e)) / (2 * h) for e in np.eye(3)]
    assert np.allclose(S, np.stack(cols, -1), rtol=1e-5, atol=1e-6)


def test_rk4_is_fourth_order():
    x0 = np.array([1.0, 1.0, 20.0])
    ref = L.integrate(x0, 800, 0.000625)[-1]
    errs = [np.abs(L.integrate(x0, n, 0.5 / n)[-1] - ref).max() for n in (50, 100)]
    assert 12 < errs[0] / errs[1] < 20  # 2^4 = 16


def test_scalar_and_vector_integrators_agree():
    x0 = np.array([1.0, 2.0, 25.0])
    one = L.integrate(x0, 200, 0.01)
    two = L.integrate(np.stack([x0, x0]), 200, 0.01)
    assert np.allclose(one, two[:, 0], rtol=1e-12, atol=1e-12)


def test_orbit_is_standardised_and_on_the_attractor():
    data = L.lorenz_orbit(5000, rng=np.random.default_rng(1))
    z = data.standardized
    assert np.allclose(z.mean(0), 0, atol=1e-12) and np.allclose(z.std(0), 1)
    assert 15 < data.raw[:, 2].mean() < 30 and np.abs(data.raw).max() < 60


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="3 coordinates"):
        L.lorenz_rhs(np.zeros(2))
    with pytest.raises(ValueError, match="dt must be positive"):
        L.integrate(np.zeros(3), 10, 0.0)
    with pytest.raises(FloatingPointError, match="too large"):
        L.integrate(np.array([1.0, 1.0, 20.0]), 200, 0.5)
