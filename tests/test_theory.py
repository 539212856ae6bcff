import numpy as np
import pytest

from phenomena.theory import saxe_growing_strength, saxe_half_time, saxe_mode_strength


def test_closed_form_solves_the_flow():
    """u(t) solves τ du/dt = 2u(s − u): compare with a fine Runge-Kutta integration (independent of the formula)."""
    s, u0, lr = 3.0, 1e-3, 0.01
    dt, t_end = 0.01, 400.0
    u, t = u0, 0.0
    f = lambda x: 2 * lr * x * (s - x)  # noqa: E731 - du/dt in step units
    while t < t_end - 1e-9:
        k1 = f(u); k2 = f(u + dt / 2 * k1); k3 = f(u + dt / 2 * k2); k4 = f(u + dt * k3)  # noqa: E702
        u += dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        t += dt
    assert saxe_mode_strength(t_end, s, u0, lr) == pytest.approx(u, rel=1e-6)


def test_limits_and_paper_form():
    s, u0, lr = np.array([5.0, 1.0]), 1e-3, 0.005
    assert np.allclose(saxe_mode_strength(0, s, u0, lr), u0)
    assert np.allclose(saxe_mode_strength(1e6, s, u0, lr), s)  # no overflow at large t
    t = 300.0
    e = np.exp(2 * s * t * lr)
    assert np.allclose(saxe_mode_strength(t, s, u0, lr), s * e / (e - 1 + s / u0))


def test_half_time_is_where_the_curve_crosses_half():
    s, u0, lr = np.array([5.0, 2.0, 1.0]), 1e-4, 0.01
    th = saxe_half_time(s, u0, lr)
    assert np.allclose(saxe_mode_strength(th, s, u0, lr), s / 2)
    assert np.allclose(th, np.log(s / u0 - 1) / (2 * s * lr))


@pytest.mark.parametrize("bad", [dict(lr=0.0), dict(lr=-1.0), dict(u0=0.0), dict(u0=-1.0)])
def test_bad_inputs(bad):
    kwargs = dict(t=1.0, s=1.0, u0=1e-3, lr=0.01) | bad
    with pytest.raises(ValueError):
        saxe_mode_strength(**kwargs)


def test_half_time_needs_small_u0():
    with pytest.raises(ValueError, match="u0 < s/2"):
        saxe_half_time(1.0, 0.6, 0.01)


def test_growing_strength_of_a_decoupled_init_is_its_strength():
    rng = np.random.default_rng(0)
    u, _ = np.linalg.qr(rng.normal(size=(4, 2)))
    v, _ = np.linalg.qr(rng.normal(size=(3, 2)))
    r, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    a = 0.1
    w1, w2 = a * r @ v.T, a * u @ r.T
    assert np.allclose(saxe_growing_strength(w1, w2, u, v), a * a)
