"""The power-law Gaussian task: its moments by Monte-Carlo, and its exact risk against a sampled one."""

import numpy as np
import pytest
import torch
from scipy.special import zeta

from phenomena.data.powerlaw import powerlaw_task


def test_spectrum_and_teacher():
    task = powerlaw_task(50, 2.0, 1.5, noise=0.1)
    k = np.arange(1, 51.0)
    assert np.allclose(task.eigenvalues, k**-2.0)
    assert np.allclose(task.coefficients**2, k**-1.5)
    assert np.allclose(task.eigenvalues * task.teacher**2, k**-1.5)
    assert task.tail == pytest.approx(float(zeta(1.5, 51)))
    beyond = 2 / np.sqrt(2_000_000.5)  # ∫ x^-1.5 dx from the last summed term on
    assert task.tail == pytest.approx((np.arange(51, 2_000_001.0) ** -1.5).sum() + beyond, rel=1e-6)


def test_samples_have_the_stated_covariance_and_labels():
    task = powerlaw_task(6, 1.0, 2.0, noise=0.25)
    x, y = task.sample(200_000, torch.Generator().manual_seed(0))
    assert x.shape == (200_000, 6) and y.shape == (200_000,) and x.dtype == torch.float64
    cov = (x.T @ x / x.shape[0]).numpy()
    assert np.allclose(cov, np.diag(task.eigenvalues), atol=0.01)
    resid = y - x @ torch.as_tensor(task.teacher)
    assert resid.var().item() == pytest.approx(0.25, rel=0.02)
    s, ys = task.sample(3, torch.Generator().manual_seed(0), batch=(4, 2), whitened=True)
    assert s.shape == (4, 2, 3, 6) and ys.shape == (4, 2, 3)


def test_exact_risk_matches_a_sampled_test_set():
    task = powerlaw_task(20, 1.5, 1.2, noise=0.05)
    w = torch.randn(20, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x, y = task.sample(400_000, torch.Generator().manual_seed(4))
    sampled = (x @ w - y).pow(2).mean().item()
    assert task.risk(w).item() == pytest.approx(sampled, rel=0.01)
    assert task.risk(torch.as_tensor(task.teacher)).item() == pytest.approx(0.05)
    assert task.risk(torch.zeros(20)).item() == pytest.approx((task.coefficients**2).sum() + 0.05)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="modes"):
        powerlaw_task(0, 2.0, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        powerlaw_task(10, -1.0, 1.5)
    with pytest.raises(ValueError, match="noise"):
        powerlaw_task(10, 2.0, 1.5, noise=-0.1)
    with pytest.raises(ValueError, match="modes"):
        powerlaw_task(10, 2.0, 1.5).risk(torch.zeros(9))
