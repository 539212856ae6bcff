"""The G-estimator, the raw estimator and the bootstrap over networks, against known distributions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.metrics import moments


def test_g_estimator_of_a_scale_mixture_has_the_mixtures_kurtosis():
    """z = √G·u with G ~ Gamma(k, 1/k): E z⁴/(E z²)² − 3 = 3 Var G/(E G)² = 3/k."""
    rng = np.random.default_rng(0)
    k = 4.0
    g = rng.gamma(k, 1 / k, size=(400_000, 1))
    assert moments.kurtosis_from_variances(g)[0] == pytest.approx(3 / k, rel=0.02)
    z = np.sqrt(g[:, :, None]) * rng.standard_normal((400_000, 1, 4))
    assert moments.raw_kurtosis(z.transpose(0, 2, 1))[0] == pytest.approx(3 / k, rel=0.05)


def test_conditional_variance():
    a = torch.tensor([[1.0, -1.0, 2.0, 0.0]])
    assert float(moments.conditional_variance(a, 2.0)) == pytest.approx(2.0 * 6 / 4)
    assert float(moments.conditional_variance(a, 1.0, 0.5)) == pytest.approx(0.5 + 1.5)


def test_weighted_estimator_is_the_estimator_of_the_resample():
    rng = np.random.default_rng(1)
    g = rng.gamma(3.0, size=(50, 3))
    idx = rng.integers(0, 50, size=50)
    w = np.bincount(idx, minlength=50)[None].astype(float)
    assert np.allclose(moments.kurtosis_from_variances(g, w)[0], moments.kurtosis_from_variances(g[idx]))


def test_bootstrap_standard_error_matches_the_spread_over_fresh_ensembles():
    rng = np.random.default_rng(2)
    gen = torch.Generator().manual_seed(0)
    fresh = [moments.kurtosis_from_variances(rng.gamma(5.0, size=(4000, 1)))[0] for _ in range(300)]
    _, se, reps = moments.bootstrap(rng.gamma(5.0, size=(4000, 1)), moments.kurtosis_from_variances,
                                    replicates=400, generator=gen)
    assert reps.shape == (400, 1)
    assert se[0] == pytest.approx(np.std(fresh), rel=0.2)


def test_bootstrap_counts():
    w = moments.bootstrap_weights(7, 5, torch.Generator().manual_seed(0))
    assert w.shape == (5, 7) and np.all(w.sum(1) == 7)


def test_growth_coefficient_reads_off_the_per_layer_factor():
    """E G²/(E G)² = (1 + c/n)^(ℓ−1) for a product of independent factors with E X = 1, E X² = 1 + c/n."""
    rng = np.random.default_rng(3)
    n, c = 16, 5.0
    shape = 1 / (c / n)  # Gamma(shape, 1/shape): mean 1, variance c/n
    x = rng.gamma(shape, 1 / shape, size=(400_000, 5))
    g = np.concatenate([np.ones((400_000, 1)), np.cumprod(x, axis=1)], axis=1)
    assert moments.growth_coefficient(g, n) == pytest.approx(c, rel=0.03)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="2 networks"):
        moments.kurtosis_from_variances(np.ones((1, 3)))
    with pytest.raises(ValueError, match="networks, units"):
        moments.raw_kurtosis(np.ones(3))
    with pytest.raises(ValueError, match="layers"):
        moments.growth_coefficient(np.ones((5, 1)), 4)
