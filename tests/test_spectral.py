"""Intruder dimensions, singular-value surgery and the random-direction null, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from phenomena.metrics import spectral
from phenomena.theory import spectral as null


def _base(n: int = 12, m: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(m, m, generator=g, dtype=torch.float64))
    p = min(n, m)
    s = torch.linspace(3.0, 1.0, p, dtype=torch.float64) ** 2  # well separated
    return u[:, :p] @ torch.diag(s) @ v[:, :p].T, u, s, v


def _loop_max_cos(tuned: np.ndarray, base: np.ndarray, k: int) -> np.ndarray:
    ut = np.linalg.svd(tuned)[0][:, :k]
    ub = np.linalg.svd(base, full_matrices=False)[0]
    return np.array([max(abs(float(ut[:, j] @ ub[:, i])) for i in range(ub.shape[1])) for j in range(k)])


def test_max_cosines_match_a_loop_in_numpy():
    w0, *_ = _base(12, 8)
    g = torch.Generator().manual_seed(1)
    w1 = w0 + 2.0 * torch.randn(12, 8, generator=g, dtype=torch.float64)
    got = spectral.max_cosines(w1, w0, k=5).numpy()
    np.testing.assert_allclose(got, _loop_max_cos(w1.numpy(), w0.numpy(), 5), atol=1e-12)
    stacked = spectral.max_cosines(torch.stack([w1, w0]), torch.stack([w0, w0]), k=5)
    np.testing.assert_allclose(stacked[0].numpy(), got, atol=1e-12)
    np.testing.assert_allclose(stacked[1].numpy(), np.ones(5), atol=1e-10)  # unchanged matrix: cos 1


def test_a_planted_spread_direction_is_one_intruder():
    w0, u, s, v = _base()
    b = u[:, 3:8].sum(1) / math.sqrt(5)  # max |cos| with the base = 1/sqrt(5) < 0.5
    w1 = w0 + 20.0 * torch.outer(b, v[:, 0])
    c = spectral.max_cosines(w1, w0)
    assert c[0] == pytest.approx(1 / math.sqrt(5), abs=0.05)
    assert int(spectral.intruder_count(w1, w0)) == 1
    # a direction that is mostly one base vector is not an intruder
    b2 = (2 * u[:, 3] + u[:, 4]) / math.sqrt(5)
    assert int(spectral.intruder_count(w0 + 20.0 * torch.outer(b2, v[:, 0]), w0)) == 0
    # a mere reshuffle of the base singular values (vectors kept) has no intruder
    w2 = u[:, :12] @ torch.diag(s.flip(0)) @ v[:, :12].T
    assert int(spectral.intruder_count(w2, w0)) == 0


def test_scale_singular_values_changes_only_the_chosen_values():
    w0, *_ = _base(10, 7)
    mask = torch.zeros(5, dtype=torch.bool)
    mask[[0, 3]] = True
    w1 = spectral.scale_singular_values(w0, mask, 0.7)
    s0 = torch.linalg.svdvals(w0)
    expected = s0.clone()
    expected[[0, 3]] *= 0.7
    torch.testing.assert_close(torch.linalg.svdvals(w1), expected.sort(descending=True).values)
    u0 = torch.linalg.svd(w0).U
    u1 = torch.linalg.svd(w1).U
    assert (u1[:, 0] @ u0[:, 0]).abs() > 1 - 1e-9 or (u1[:, 1] @ u0[:, 0]).abs() > 1 - 1e-9
    torch.testing.assert_close(spectral.scale_singular_values(w0, mask, 1.0), w0)
    torch.testing.assert_close(spectral.scale_singular_values(w0, torch.zeros(5, dtype=torch.bool), 0.0), w0)


def test_singular_gaps_and_errors():
    w0, _, s, _ = _base()
    torch.testing.assert_close(spectral.singular_gaps(w0, 4), s[:3] / s[1:4])
    with pytest.raises(ValueError, match="k must"):
        spectral.max_cosines(w0, w0, k=13)
    with pytest.raises(ValueError, match="same shape"):
        spectral.max_cosines(w0, w0[:, :5])
    with pytest.raises(ValueError, match="epsilon"):
        spectral.intruder_mask(w0, w0, epsilon=0.0)
    with pytest.raises(ValueError, match="matrix"):
        spectral.max_cosines(torch.zeros(3), torch.zeros(3))


def test_null_with_one_vector_is_the_beta_law():
    n = 50
    x = null.max_cosine_samples(n, 1, samples=40_000, seed=1)
    ks = stats.kstest(x, lambda t: null.single_cosine_cdf(t, n))
    assert ks.pvalue > 1e-3
    # and the closed form itself against scipy's Beta law of u_1^2
    t = np.array([0.05, 0.1, 0.2, 0.4])
    np.testing.assert_allclose(null.single_cosine_cdf(t, n), stats.beta(0.5, (n - 1) / 2).cdf(t**2), rtol=1e-12)


def test_null_in_the_plane_is_exact():
    x = null.max_cosine_samples(2, 2, samples=40_000, seed=2)
    exact = lambda t: (np.arcsin(np.clip(t, 1 / np.sqrt(2), 1)) - np.arccos(np.clip(t, 1 / np.sqrt(2), 1))) / (np.pi / 2)  # noqa: E731
    assert stats.kstest(x, exact).pvalue > 1e-3


def test_null_matches_a_random_orthonormal_basis_sampler():
    """Same law, computed the other way round: a fixed vector against a Haar-random basis."""
    n, p, draws = 40, 10, 4000
    rng = np.random.default_rng(3)
    e1 = np.zeros(n)
    e1[0] = 1.0
    other = np.array([np.abs(stats.ortho_group.rvs(n, random_state=rng)[:, :p].T @ e1).max() for _ in range(draws)])
    res = null.max_cosine_null(n, p, samples=100_000, seed=4)
    assert abs(other.mean() - res.mean) < 4 * other.std() / math.sqrt(draws)


def test_upper_quantiles_respect_the_union_bound_and_book_values():
    for n in (128, 256):
        res = null.max_cosine_null(n, samples=60_000, seed=5)
        bound = null.union_bound_quantile(0.99, n)
        assert res.quantile(0.99) <= bound + 0.003  # Monte-Carlo error of the 99th percentile
        assert res.quantile(0.99) >= bound - 0.02  # the bound is nearly tight when p·tail is small
    # a p = 1 quantile from the bound is the exact Beta quantile
    t = null.union_bound_quantile(0.9, 30, 1)
    assert null.single_cosine_cdf(t, 30) == pytest.approx(0.9, abs=1e-9)
    with pytest.raises(ValueError, match="p <= n"):
        null.max_cosine_null(5, 6)
