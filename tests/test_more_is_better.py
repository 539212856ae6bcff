"""The chapter's experiment helpers: the KRR scan's test risk against a direct computation, the monotonicity
statistic and the optimum finder."""

import numpy as np
import pytest
import torch

from phenomena.data.powerlaw import powerlaw_task
from phenomena.experiments import more_is_better as ex


def test_krr_fitting_risk_matches_a_direct_solve():
    task = powerlaw_task(3000, 2.0, 1.5)  # modes beyond 1000 enter K₂ through their mean only
    ridges = np.array([1e-6, 1e-3, 1e-1])
    fit = ex.krr_fitting(task, 20, ridges, members=3, generator=torch.Generator().manual_seed(0))
    s = torch.randn(3, 20, 3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    lam, v = torch.as_tensor(task.eigenvalues), torch.as_tensor(task.coefficients)
    gram, y = (s * lam) @ s.transpose(-1, -2), s @ v
    for r, d in enumerate(ridges):
        a = torch.linalg.solve(gram + d * torch.eye(20, dtype=torch.float64), y[..., None])[..., 0]
        coef = lam * (s.transpose(-1, -2) @ a[..., None])[..., 0]
        test = (coef - v).pow(2).sum(-1).numpy()
        train = (gram @ a[..., None])[..., 0].sub(y).pow(2).mean(-1).numpy()
        assert np.allclose(fit.test[0, :, r], test, rtol=1e-6)
        assert np.allclose(fit.train[0, :, r], train, rtol=1e-6)


def test_monotone_violation_counts_rises_in_standard_errors():
    best = np.array([[3.0, 2.0], [2.5, 1.0]])
    se = np.full_like(best, 0.1)
    assert ex.monotone_violation(best, se) < 0
    best[1, 1] = 2.3  # a rise of 0.3 along k at n = 2nd row: 3 standard errors
    assert ex.monotone_violation(best, se) == pytest.approx(3.0)


def test_fitting_optimum_finds_the_vertex_of_a_parabola():
    ridges = np.logspace(-4, 0, 41)
    x = np.log(ridges)
    test = np.exp(0.1 * (x - np.log(3e-2)) ** 2)[None, None, :].repeat(2, 1)
    train = test * (ridges / 10)
    res = ex.FittingResult(["t"], 10, ridges, test, train)
    ridge, _, _, ratio = res.optimum()
    assert ridge[0] == pytest.approx(3e-2, rel=1e-6)
    assert ratio[0] == pytest.approx(3e-3, rel=0.02)
