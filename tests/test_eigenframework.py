"""The eigenframework against independent computations: root finders, direct simulation, the KRR limit,
and the power-law fitting ratio against a numerical optimisation of the continuum limit."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize

from phenomena.data.powerlaw import powerlaw_task
from phenomena.theory import eigenframework as ef


def _spectrum(modes=300, alpha=1.5, beta=1.5):
    i = np.arange(1, modes + 1.0)
    return i**-alpha, i ** (-beta / 2)


def test_krr_kappa_solves_its_equation_like_brentq():
    lam, _ = _spectrum()
    for n, d in [(50, 1e-3), (200, 0.0), (299, 1e-6), (1000, 1.0)]:
        kap = ef.krr_kappa(lam, n, d)
        ref = optimize.brentq(lambda k, n=n, d=d: (lam / (lam + k)).sum() + d / k - n, 1e-30, 1e6, xtol=1e-300, rtol=1e-14)
        assert kap == pytest.approx(ref, rel=1e-8)


def test_rf_constants_solve_both_equations_like_a_nested_brentq():
    lam, _ = _spectrum()
    n = np.array([40.0, 80, 150, 150])
    k = np.array([20.0, 400, 150, 1e5])
    d = np.array([1e-4, 1e-2, 1e-7, 0.3])
    c = ef.rf_constants(lam, n, k, d)
    for j in range(len(n)):
        # the spec's nested scheme: for each κ > δ/n, γ from the first equation; κ from the second
        def gamma_of(kap, j=j):
            target = n[j] - d[j] / kap
            return optimize.brentq(lambda g: (lam / (lam + g)).sum() - target, 1e-40, 1e8, xtol=1e-300, rtol=1e-14)

        def second(logk, j=j):
            kap = math.exp(logk)
            g = gamma_of(kap)
            return (lam / (lam + g)).sum() + k[j] * kap / g - k[j]

        lo = math.log(d[j] / n[j]) + 1e-9
        hi = math.log(d[j] / max(n[j] - lam.size, 1e-300)) if n[j] > lam.size else 20.0
        logk = optimize.brentq(second, lo + 1e-12, min(hi, 20.0), xtol=1e-14)
        assert c.kappa[j] == pytest.approx(math.exp(logk), rel=1e-6)
        assert c.gamma[j] == pytest.approx(gamma_of(math.exp(logk)), rel=1e-6)


def test_rf_risk_tends_to_krr_risk_as_features_grow():
    lam, v = _spectrum()
    n, d = np.array([30.0, 120, 250]), np.array([1e-5, 1e-3, 1e-1])
    krr_test, krr_train = ef.krr_risk(lam, v, n, d, noise=0.2)
    rf_test, rf_train = ef.rf_risk(lam, v, n, 1e9, d, noise=0.2)
    assert np.allclose(rf_test, krr_test, rtol=1e-5)
    assert np.allclose(rf_train, krr_train, rtol=1e-5)
    inf_test, _ = ef.rf_risk(lam, v, n, math.inf, d, noise=0.2)
    assert np.allclose(inf_test, krr_test)


def _simulate_rf(n, k, ridge, noise, seeds=400, modes=120, alpha=1.5, beta=1.5):
    """Direct simulation with a plain linear solve per seed (independent of models.random_features)."""
    task = powerlaw_task(modes, alpha, beta, noise)
    gen = torch.Generator().manual_seed(1)
    x, y = task.sample(n, gen, batch=(seeds,))
    f = torch.randn(seeds, k, modes, generator=gen, dtype=torch.float64) / k**0.5
    z = x @ f.transpose(-1, -2)
    w = torch.linalg.solve(z.transpose(-1, -2) @ z + ridge * torch.eye(k, dtype=torch.float64),
                           (z.transpose(-1, -2) @ y.unsqueeze(-1))).squeeze(-1)
    test = task.risk((f.transpose(-1, -2) @ w.unsqueeze(-1)).squeeze(-1))
    train = ((z @ w.unsqueeze(-1)).squeeze(-1) - y).pow(2).mean(-1)
    return task, test.mean().item(), train.mean().item()


@pytest.mark.parametrize("n,k,ridge,noise", [(40, 80, 1e-2, 0.0), (60, 30, 1e-3, 0.1), (50, 200, 1e-1, 0.3)])
def test_rf_risk_matches_direct_simulation(n, k, ridge, noise):
    task, test, train = _simulate_rf(n, k, ridge, noise)
    theory_test, theory_train = ef.rf_risk(task.eigenvalues, task.coefficients, n, k, ridge, noise)
    assert test == pytest.approx(float(theory_test), rel=0.06)
    assert train == pytest.approx(float(theory_train), rel=0.08)


def test_krr_risk_and_train_risk_match_direct_simulation():
    task = powerlaw_task(150, 1.7, 1.4, 0.05)
    gen = torch.Generator().manual_seed(2)
    n, ridge, seeds = 60, 3e-3, 400
    x, y = task.sample(n, gen, batch=(seeds,))
    gram = x @ x.transpose(-1, -2)
    a = torch.linalg.solve(gram + ridge * torch.eye(n, dtype=torch.float64), y.unsqueeze(-1)).squeeze(-1)
    w = (x.transpose(-1, -2) @ a.unsqueeze(-1)).squeeze(-1)
    test = task.risk(w).mean().item()
    train = (gram @ a.unsqueeze(-1)).squeeze(-1).sub(y).pow(2).mean().item()
    t_test, t_train = ef.krr_risk(task.eigenvalues, task.coefficients, n, ridge, task.noise)
    assert test == pytest.approx(float(t_test), rel=0.05)
    assert train == pytest.approx(float(t_train), rel=0.08)


def test_solver_errors_name_the_parameters():
    lam, _ = _spectrum(50)
    with pytest.raises(ef.EigenframeworkError, match="n < modes"):
        ef.krr_kappa(lam, 60, 0.0)
    with pytest.raises(ef.EigenframeworkError, match="positive ridge"):
        ef.rf_constants(lam, 10, 20, 0.0)
    with pytest.raises(ValueError, match="positive"):
        ef.krr_kappa(np.array([1.0, 0.0]), 1, 0.1)


def test_solver_raises_when_it_does_not_converge(monkeypatch):
    lam, _ = _spectrum(50)
    monkeypatch.setattr(ef, "BISECTION_STEPS", 3)
    with pytest.raises(ef.EigenframeworkError, match=r"did not converge at n=30, k=70, ridge=0\.01"):
        ef.rf_constants(lam, 30, 70, 0.01)
    with pytest.raises(ef.EigenframeworkError, match=r"did not converge at n=30, ridge=0\.01"):
        ef.krr_kappa(lam, 30, 0.01)


def test_optimal_ridge_is_the_minimum_of_a_dense_scan():
    lam, v = _spectrum(400, 2.0, 1.5)
    for k in (math.inf, 300.0):
        ridge, test, train = ef.optimal_ridge(lam, v, 100, k, noise=0.05)
        grid = np.logspace(-6, 1, 701)
        scan = ef.rf_risk(lam, v, 100, k, grid, 0.05)[0]
        assert test <= scan.min() * (1 + 1e-6)
        assert ridge == pytest.approx(grid[scan.argmin()], rel=0.03)
        assert train / test == pytest.approx(float(ef.rf_risk(lam, v, 100, k, ridge, 0.05)[1] / test))


@pytest.mark.parametrize("alpha,beta", [(2.0, 1.5), (3.0, 1.5), (1.8, 1.2)])
def test_powerlaw_fitting_ratio_against_the_optimised_continuum_limit(alpha, beta):
    """Continuum limit by quadrature (sums over i → integrals over x), optimised over the ridge by scipy."""
    n = 1e6
    # with u = κ^{1/α} x every integral is κ to a power times a pure number
    c1 = integrate.quad(lambda u: 1 / (1 + u**alpha), 0, np.inf)[0]
    c2 = integrate.quad(lambda u: 1 / (1 + u**alpha) ** 2, 0, np.inf)[0]
    cb = integrate.quad(lambda u: u ** (2 * alpha - beta) / (1 + u**alpha) ** 2, 0, np.inf)[0]

    def test_risk(t):  # t: the fraction δ/(nκ) of n taken by the ridge term; (1 − t) n = c1 κ^{−1/α}
        kap = (c1 / ((1 - t) * n)) ** alpha
        q = c2 * kap ** (-1 / alpha)
        return cb * kap ** ((beta - 1) / alpha) * n / (n - q)

    best = optimize.minimize_scalar(test_risk, bounds=(0.0, 0.99), method="bounded", options={"xatol": 1e-8})
    assert ef.powerlaw_fitting_ratio(alpha, beta) == pytest.approx(best.x**2, rel=1e-3)
    assert ef.powerlaw_fitting_ratio(1.5, 2.0) == 0.0
    with pytest.raises(ValueError):
        ef.powerlaw_fitting_ratio(0.5, 2.0)
