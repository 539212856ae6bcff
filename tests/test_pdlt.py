"""PDLT closed forms against independent computations: exact algebra, adaptive quadrature, Monte-Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import integrate

from phenomena.theory import pdlt


def _quad(fn, k):
    """⟨fn(z)⟩ for z ~ N(0, k) by adaptive quadrature (a second method for the Gauss–Hermite moments)."""
    def dens(z):
        return np.exp(-z * z / (2 * k)) / np.sqrt(2 * np.pi * k)
    return integrate.quad(lambda z: fn(z) * dens(z), -np.inf, np.inf, epsabs=1e-13, epsrel=1e-11)[0]


@pytest.mark.parametrize("k", [0.01, 0.3, 1.0, 2.5])
def test_gauss_hermite_moments_match_adaptive_quadrature(k):
    m = pdlt.gaussian_moments(np.tanh, k)
    assert m["s2"][0] == pytest.approx(_quad(lambda z: np.tanh(z) ** 2, k), rel=1e-7)
    assert m["s4"][0] == pytest.approx(_quad(lambda z: np.tanh(z) ** 4, k), rel=1e-7)
    h = 1e-4 * k  # the derivatives against central differences of the quadrature
    def f(kk):
        return _quad(lambda z: np.tanh(z) ** 2, kk)
    assert m["ds2"][0] == pytest.approx((f(k + h) - f(k - h)) / (2 * h), rel=1e-5)
    assert m["d2s2"][0] == pytest.approx((f(k + h) - 2 * f(k) + f(k - h)) / h**2, rel=1e-3)


def test_relu_moments_are_exact_despite_the_kink():
    m = pdlt.gaussian_moments(lambda z: np.maximum(z, 0), 1.7)
    assert m["s2"][0] == pytest.approx(1.7 / 2, rel=1e-12)
    assert m["s4"][0] == pytest.approx(3 * 1.7**2 / 2, rel=1e-12)


@pytest.mark.parametrize("activation,c", [("relu", 5.0), ("linear", 2.0)])
def test_recursion_for_scale_invariant_class_is_linear_in_depth(activation, c):
    """PDLT §5.4: V/K² = (3A₄/A₂² − 1)(ℓ − 1) exactly, the kernel sits at its fixed point, no 1/n shift."""
    rec = pdlt.pdlt_recursion(activation, 12)
    assert np.allclose(rec.kernel, pdlt.critical_c_w(activation))
    assert np.allclose(rec.vertex / rec.kernel**2, c * np.arange(12), atol=1e-10)
    assert np.allclose(rec.chi, 1.0)
    assert np.allclose(rec.kernel_shift, 0.0, atol=1e-12)


def test_universality_constants():
    relu = pdlt.scale_invariant_constants(1.0, 0.0)
    assert (relu.a2, relu.a4, relu.c_w, relu.coefficient) == (0.5, 0.5, 2.0, 5.0)
    lin = pdlt.scale_invariant_constants(1.0, 1.0)
    assert (lin.c_w, lin.coefficient) == (1.0, 2.0)
    leaky = pdlt.scale_invariant_constants(1.0, 0.1)
    assert leaky.coefficient == pytest.approx(3 * (1 + 1e-4) / 2 / ((1 + 0.01) / 2) ** 2 - 1)


def test_exact_forms_match_the_quoted_values():
    assert pdlt.relu_kurtosis(32, 5) == pytest.approx(2.362, abs=1e-3)
    assert pdlt.relu_kurtosis(32, 9) == pytest.approx(6.584, abs=1e-3)
    assert pdlt.relu_kurtosis(16, 9) == pytest.approx(23.42, abs=1e-2)
    assert pdlt.deep_linear_kurtosis(32, 1) == 0.0
    assert pdlt.deep_linear_kurtosis(4, 3) == pytest.approx(3 * (1.5**2 - 1))


def test_exact_relu_form_against_monte_carlo_of_the_variance_chain():
    """E[X²] = 1 + 5/n for X = (2/n)Σ relu(u)²; the product of ℓ−1 such factors gives κ_ℓ (n = 4, deep tails)."""
    g = torch.Generator().manual_seed(0)
    n, layers, m = 4, 4, 2_000_000
    x = (2 / n) * torch.relu(torch.randn(m, layers - 1, n, generator=g, dtype=torch.float64)).square().sum(-1)
    gl = x.prod(1)
    kappa = 3 * gl.square().mean() / gl.mean() ** 2 - 3
    assert float(x.square().mean()) == pytest.approx(1 + 5 / n, rel=5e-3)
    assert float(kappa) == pytest.approx(float(pdlt.relu_kurtosis(n, layers)), rel=0.05)


def test_tanh_recursion_approaches_the_k_star_zero_asymptotics():
    """PDLT §5.3–5.4: K ≈ 1/(2ℓ) and V/(nK²) → (2/3)ℓ/n for tanh at C_W = 1."""
    rec = pdlt.pdlt_recursion("tanh", 2000)
    ell = rec.layers
    assert 2 * ell[-1] * rec.kernel[-1] == pytest.approx(1.0, abs=0.005)
    assert rec.vertex[-1] / (rec.kernel[-1] ** 2 * ell[-1]) == pytest.approx(2 / 3, abs=0.005)
    assert rec.kurtosis(64)[4] == pytest.approx(0.113, abs=1e-3)
    assert rec.kurtosis(64)[8] == pytest.approx(0.229, abs=1e-3)


def test_tanh_recursion_against_monte_carlo():
    """At n = 64, ℓ ≤ 5 the O(1/n²) terms are small: the chain's κ and mean G match the recursion,
    and the 1/n shift K^{{1}}/n moves the kernel towards the measured mean."""
    g = torch.Generator().manual_seed(1)
    n, m, layers = 64, 200_000, 5
    rec = pdlt.pdlt_recursion("tanh", layers)
    gl = torch.ones(m, dtype=torch.float64)
    kappas, means = [], []
    for _ in range(layers - 1):
        z = torch.randn(m, n, generator=g, dtype=torch.float64) * gl.sqrt().unsqueeze(1)
        gl = torch.tanh(z).square().mean(1)
        kappas.append(float(3 * gl.square().mean() / gl.mean() ** 2 - 3))
        means.append(float(gl.mean()))
    assert np.allclose(kappas, rec.kurtosis(n)[1:], rtol=0.1)
    assert np.allclose(means, rec.mean_variance(n)[1:], rtol=2e-3)
    shifted = np.abs(np.array(means) - rec.mean_variance(n)[1:])[1:]  # ℓ ≥ 3: at ℓ = 2 there is no shift yet
    assert np.all(shifted < np.abs(np.array(means) - rec.kernel[1:])[1:])


def test_bad_input_names_the_fix():
    with pytest.raises(ValueError, match="critical"):
        pdlt.critical_c_w("gelu")
    with pytest.raises(ValueError, match="scale-invariant"):
        pdlt.exact_kurtosis("tanh", 32, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        pdlt.pdlt_recursion("swish", 3)
    with pytest.raises(ValueError, match=">= 1"):
        pdlt.relu_kurtosis(0, 3)
