"""Lyapunov exponents and the GTF forcing strength against cases with known answers."""

import numpy as np
import pytest
import torch

from phenomena.data import lorenz as L
from phenomena.models.plrnn import ShallowPLRNN
from phenomena.theory import lyapunov as ly


def test_linear_map_exponents_are_log_moduli_of_eigenvalues():
    rng = np.random.default_rng(0)
    A = rng.normal(size=(4, 4))
    J = np.broadcast_to(A, (3000, 4, 4))
    want = np.sort(np.log(np.abs(np.linalg.eigvals(A))))[::-1]
    # complex pairs share a modulus; QR recovers the moduli, so compare the sorted sets
    assert np.allclose(ly.lyapunov_spectrum(J, discard=200), want, atol=5e-3)
    assert np.allclose(ly.lyapunov_spectrum(J, discard=200, block=5), want, atol=5e-3)
    assert np.isclose(ly.largest_lyapunov(J, discard=200), want[0], atol=5e-3)


def test_flow_exponents_of_a_linear_ode_are_real_parts_over_dt():
    # ẋ = Ax with A = [[-0.5, 2], [-2, -0.5]] ⊕ [0.3]: exponents 0.3, -0.5, -0.5
    dt = 0.05
    theta = 2.0 * dt
    R = np.exp(-0.5 * dt) * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    M = np.zeros((3, 3))
    M[:2, :2], M[2, 2] = R, np.exp(0.3 * dt)
    got = ly.lyapunov_spectrum(np.broadcast_to(M, (2000, 3, 3)), dt=dt)
    assert np.allclose(got, [0.3, -0.5, -0.5], atol=1e-9)


def test_logistic_map_at_r4_has_exponent_log2():
    x, J = 0.1234, []
    for _ in range(200_000):
        J.append(4.0 * (1 - 2 * x))
        x = 4.0 * x * (1 - x)
    J = np.array(J)[:, None, None]
    assert abs(ly.lyapunov_spectrum(J, discard=100)[0] - np.log(2)) < 0.01


def test_lorenz_spectrum_sums_to_the_divergence():
    # the flow contracts volume at the constant rate -(σ + 1 + β): the exponents must add up to it
    data = L.lorenz_orbit(20_000, rng=np.random.default_rng(3))
    lam = ly.lyapunov_spectrum(L.rk4_map_jacobian(data.raw[:-1], 0.01), dt=0.01, block=10)
    assert abs(lam.sum() + (10 + 1 + 8 / 3)) < 0.01
    assert abs(lam[1]) < 0.05 and lam[0] > 0.5


def test_gtf_alpha_max_makes_every_forced_factor_a_contraction():
    norms = np.random.default_rng(1).uniform(0.5, 3.0, size=(4, 50))
    a = ly.gtf_alpha(norms, "max")
    assert np.isclose((1 - a) * norms.max(), 1.0) and ((1 - a) * norms <= 1 + 1e-12).all()


def test_gtf_alpha_geomean_bounds_each_product_only():
    norms = np.random.default_rng(2).uniform(0.5, 3.0, size=(4, 50))
    a = ly.gtf_alpha(norms, "geomean")
    products = (1 - a) ** 50 * np.prod(norms, axis=-1)
    assert np.isclose(products.max(), 1.0) and (products <= 1 + 1e-9).all()
    assert ((1 - a) * norms > 1).any()  # single factors may still expand
    assert ly.gtf_alpha(np.full((2, 5), 0.9), "max") == 0.0


def test_norm_upper_bound_bounds_every_jacobian():
    m = ShallowPLRNN.init(3, 3, 20, generator=torch.Generator().manual_seed(0), contraction=None, dtype=torch.float64)
    z = torch.randn(3, 500, 3, dtype=torch.float64) * 3
    norms = ly.spectral_norms(m.jacobian(z).detach().numpy())
    bound = ly.norm_upper_bound(m.A.detach().numpy(), m.W1.detach().numpy(), m.W2.detach().numpy())
    assert (norms.max(-1) <= bound + 1e-12).all()
    assert np.allclose(bound, m.norm_upper_bound().detach().numpy())


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="square"):
        ly.lyapunov_spectrum(np.zeros((5, 2, 3)))
    with pytest.raises(ValueError, match="diverged"):
        ly.lyapunov_spectrum(np.full((5, 2, 2), np.inf))
    with pytest.raises(ValueError, match="mode"):
        ly.gtf_alpha(np.ones(3), "mean")
    with pytest.raises(ValueError, match="positive"):
        ly.gtf_alpha(np.array([1.0, -1.0]))
