"""Closed forms of the quadratic-network chapter, each against a second method."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.data.teacher import centred_quadratic, gaussian_inputs, population_mse, quadratic_teacher
from phenomena.experiments import quadratic_net_bayes as experiment
from phenomena.models.quadratic import QuadraticNetwork
from phenomena.theory import quadratic as q


def _wishart(d: int, kappa: float, rng: np.random.Generator) -> np.ndarray:
    m = round(kappa * d)
    w = rng.standard_normal((m, d))
    return w.T @ w / m


def _goe(d: int, rng: np.random.Generator) -> np.ndarray:
    """Symmetric Gaussian matrix whose spectrum tends to the semicircle on [-2, 2]."""
    a = rng.standard_normal((d, d))
    return (a + a.T) / math.sqrt(2 * d)


@pytest.mark.parametrize("kappa", [0.5, 2.0])
def test_mp_stieltjes_matches_sampled_wishart(kappa):
    rng = np.random.default_rng(0)
    eig = np.linalg.eigvalsh(_wishart(800, kappa, rng))
    for z in (1 + 0.5j, 3.0 + 0.2j, -0.5 + 0.3j):
        empirical = np.mean(1 / (z - eig))
        assert abs(q.mp_stieltjes(z, kappa) - empirical) < 0.02


@pytest.mark.parametrize("kappa,delta", [(0.5, 0.05), (0.5, 1.0), (2.0, 0.3)])
def test_free_convolution_density_matches_dense_eigensolve(kappa, delta):
    """The subordination density against the spectrum of a sampled Wishart + √Δ·GOE matrix (Kolmogorov distance)."""
    rng = np.random.default_rng(1)
    d = 1000
    eig = np.sort(np.linalg.eigvalsh(_wishart(d, kappa, rng) + math.sqrt(delta) * _goe(d, rng)))
    x = np.linspace(eig[0] - 1, eig[-1] + 1, 20001)
    rho = q.free_convolution_density(x, kappa, delta)
    cdf = np.concatenate([[0], np.cumsum((rho[1:] + rho[:-1]) / 2 * np.diff(x))])
    empirical = np.searchsorted(eig, x, side="right") / d
    assert np.max(np.abs(cdf - empirical)) < 0.02


@pytest.mark.parametrize("kappa,delta", [(0.5, 0.02), (0.5, 0.7), (2.0, 0.2)])
def test_density_moments(kappa, delta):
    """Mass 1, mean 1 and variance 1/κ + Δ: free convolution adds variances."""
    x = np.linspace(-4, 10, 400001)
    rho = q.free_convolution_density(x, kappa, delta)
    mass, mean = np.trapezoid(rho, x), np.trapezoid(rho * x, x)
    var = np.trapezoid(rho * x * x, x) - mean**2
    assert mass == pytest.approx(1, abs=1e-4)
    assert mean == pytest.approx(1, abs=1e-4)
    assert var == pytest.approx(1 / kappa + delta, rel=1e-3)


@pytest.mark.parametrize("kappa,delta", [(0.5, 0.1), (0.5, 1.0), (2.0, 0.3)])
def test_rie_mmse_matches_monte_carlo_denoising(kappa, delta):
    """The oracle rotation-invariant estimator on sampled matrices: keep Y's eigenvectors, give each the
    eigenvalue v_iᵀ S v_i (the best any estimator built on Y's eigenvectors can do; asymptotically the RIE)."""
    rng = np.random.default_rng(2)
    d, errors = 600, []
    for _ in range(3):
        s = _wishart(d, kappa, rng)
        _, vec = np.linalg.eigh(s + math.sqrt(delta) * _goe(d, rng))
        xi = np.einsum("ji,jk,ki->i", vec, s, vec)
        s_hat = (vec * xi) @ vec.T
        errors.append(np.sum((s_hat - s) ** 2) / d)
    assert np.mean(errors) == pytest.approx(q.rie_mmse(delta, kappa), rel=0.03)


@pytest.mark.parametrize("kappa", [0.3, 0.5, 0.8, 2.0])
def test_small_noise_slope_gives_the_threshold(kappa):
    """mmse(Δ)/Δ → 2κ − κ² (1 for κ ≥ 1) as Δ → 0: the slope that sets α_PR."""
    slope = q.rie_mmse(1e-5, kappa) / 1e-5
    assert slope == pytest.approx(2 * q.perfect_recovery_threshold(kappa), rel=2e-3)
    assert q.rie_mmse(1e4, kappa) == pytest.approx(1 / kappa, rel=2e-3)  # the prior's spectral variance


def test_bayes_error_matches_the_papers_released_curve():
    """Points of the κ = 1/2 curve released with the paper (data_theory/line_no_noise_0.5.csv)."""
    paper = {0.05106299212598425: 0.8761643611176757, 0.1011259842519685: 0.719940074037354,
             0.2513149606299212: 0.24379466663223903, 0.3514409448818897: 0.03721259681747972}
    for alpha, eps in paper.items():
        assert q.bayes_error(alpha, 0.5) == pytest.approx(eps, abs=2e-5)


def test_bayes_error_limits_and_curve():
    assert q.bayes_error(1e-3, 0.5) == pytest.approx(1.0, abs=5e-3)
    assert q.bayes_error(0.376, 0.5) == 0.0 and q.bayes_error(0.6, 2.0) == 0.0
    alphas, eps = q.bayes_error_curve(0.5, points=30)
    assert alphas[-1] == pytest.approx(0.375) and eps[-1] == 0
    for a in (0.1, 0.2, 0.3):
        assert np.interp(a, alphas, eps) == pytest.approx(q.bayes_error(a, 0.5), abs=0.01)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="kappa"):
        q.rie_mmse(0.1, -1)
    with pytest.raises(ValueError, match="delta"):
        q.rie_mmse(0.0, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        q.state_evolution_delta(-0.1, 0.5)


def test_population_mse_matches_monte_carlo_test_error():
    g = torch.Generator().manual_seed(0)
    teacher = quadratic_teacher(12, 6, g, teachers=2)
    other = quadratic_teacher(12, 6, g, teachers=2).matrix
    x = gaussian_inputs(200_000, 12, g, teachers=2)
    mc = ((centred_quadratic(x, other) - teacher(x)) ** 2).mean(1)
    torch.testing.assert_close(mc, population_mse(other, teacher.matrix), rtol=0.02, atol=0)
    # the prior mean I scores 2(d+1)/m on average: E‖S* − I‖²_F = d(d+1)/m
    many = quadratic_teacher(12, 6, g, teachers=4000)
    assert float(many.prior_mean_mse().mean()) == pytest.approx(2 * 13 / 6, rel=0.03)


def test_student_is_the_centred_quadratic_form_of_its_matrix():
    g = torch.Generator().manual_seed(1)
    net = QuadraticNetwork(3, 5, 10, generator=g)
    x = torch.randn(7, 10, dtype=torch.float64, generator=g)
    torch.testing.assert_close(net(x), centred_quadratic(x, net.matrix()))
    with pytest.raises(ValueError, match="inputs"):
        net(torch.randn(7, 9, dtype=torch.float64))


def test_experiment_recovers_above_threshold_and_halves_below():
    """Tiny end-to-end run: above α_PR the students that fit their data have found the teacher (small networks
    can stall at spurious stationary points, so only most must fit); below, one student errs about twice the average."""
    common = {"dim": 10, "kappa": 0.5, "members": 12, "teachers": 2, "record_every": 250}
    above = experiment.train_students(0.7, steps=6000, lr=experiment.step_size(10, 0.7, 0.01),
                                      generator=torch.Generator().manual_seed(0), **common)
    assert above.fitted.mean() >= 0.75
    assert above.eps_single[above.fitted].max() < 0.02
    below = experiment.train_students(0.15, steps=3000, lr=experiment.step_size(10, 0.15, 0.01),
                                      generator=torch.Generator().manual_seed(1), **common)
    row = below.summary()
    assert row["stuck"] == 0 and 1.4 < row["ratio"] < 2.6 and below.eps_single.min() > 0.1
    assert experiment.excess(row, 0.5) == pytest.approx(
        row["eps_avg"] - q.bayes_error(0.15, 0.5) * (1 + row["inv_members"]))
