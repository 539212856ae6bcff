"""Tests of the convergent-learning modules: the rotation null against closed forms and fresh
Monte-Carlo, the similarity metrics against direct formulas and brute force."""

import itertools
import math

import numpy as np
import pytest
import torch

from phenomena.experiments import convergent_learning as experiment
from phenomena.metrics import similarity as sim
from phenomena.theory import similarity as theory


# ----------------------------------------------------------------------------- theory
def test_haar_orthogonal_is_orthogonal_and_haar():
    n = 6
    r = theory.haar_orthogonal(n, 4000, generator=torch.Generator().manual_seed(0))
    eye = np.einsum("sij,sik->sjk", r, r)
    assert np.abs(eye - np.eye(n)).max() < 1e-10
    # Haar: every entry has E R² = 1/n and E|R_ij| = Γ(n/2) / (√π Γ((n+1)/2)) (R_ij² ~ Beta(1/2, (n-1)/2))
    expected = math.gamma(n / 2) / (math.sqrt(math.pi) * math.gamma((n + 1) / 2))
    assert (r**2).mean() == pytest.approx(1 / n, rel=1e-12)  # rows are unit vectors: exact
    for i, j in [(0, 0), (2, 5), (5, 5)]:
        v = np.abs(r[:, i, j])
        assert v.mean() == pytest.approx(expected, abs=4 * v.std() / math.sqrt(v.size))
    # the sign fix: without it the diagonal of Q is biased positive
    assert abs(r[:, 0, 0].mean()) < 4 / math.sqrt(4000)


def test_haar_null_closed_forms_at_widths_one_and_two():
    gen = torch.Generator().manual_seed(1)
    assert theory.haar_matching_null(1, 10, generator=gen).mean == pytest.approx(1.0)
    # O(2): a rotation or reflection by a uniform angle θ; the best matching takes max(|cos θ|, |sin θ|)
    # for both units, whose mean over θ is (4/π)∫₀^{π/4} cos θ dθ = 2√2/π
    est = theory.haar_matching_null(2, 4000, generator=gen)
    assert est.mean == pytest.approx(2 * math.sqrt(2) / math.pi, abs=4 * est.stderr)


@pytest.mark.parametrize("width", sorted(theory.HAAR_NULL))
def test_haar_null_table_matches_fresh_monte_carlo(width):
    mean, err = theory.haar_null(width)
    fresh = theory.haar_matching_null(width, 300 if width <= 64 else 100, generator=torch.Generator().manual_seed(99))
    assert mean == pytest.approx(fresh.mean, abs=4 * math.hypot(err, fresh.stderr))


def test_haar_null_falls_with_width_and_errors():
    means = [theory.haar_null(w)[0] for w in sorted(theory.HAAR_NULL)]
    assert all(a > b for a, b in zip(means, means[1:]))
    with pytest.raises(ValueError, match="not tabulated"):
        theory.haar_null(17)
    with pytest.raises(ValueError, match=">= 1"):
        theory.haar_orthogonal(0, 3, generator=torch.Generator())


def test_covariance_null_reduces_to_haar_for_white_units():
    a = theory.covariance_matching_null(3.0 * np.eye(8), 50, generator=torch.Generator().manual_seed(5))
    b = theory.haar_matching_null(8, 50, generator=torch.Generator().manual_seed(5))
    assert a.mean == pytest.approx(b.mean, abs=1e-12)


def test_covariance_null_formula_matches_sampled_correlations():
    rng = np.random.default_rng(0)
    d = 5
    mix = rng.standard_normal((d, d)) + 1.5  # correlated units with a shared component
    cov = mix @ mix.T
    one = theory.covariance_matching_null(cov, 1, generator=torch.Generator().manual_seed(3))
    r = theory.haar_orthogonal(d, 1, generator=torch.Generator().manual_seed(3))[0]
    b = rng.standard_normal((400_000, d)) @ mix.T  # samples with covariance `cov`
    uc = sim.unit_correlation(b, b @ r)  # corr(b_i, (Rᵀb)_j): rows of b times R
    assert sim.bipartite_matching(uc.corr).mean == pytest.approx(one.mean, abs=5e-3)
    # correlated units raise the null above the white one
    assert theory.covariance_matching_null(cov, 100, generator=torch.Generator().manual_seed(4)).mean > \
        theory.haar_matching_null(d, 100, generator=torch.Generator().manual_seed(4)).mean


def test_covariance_null_rejects_dead_units():
    with pytest.raises(ValueError, match="zero variance"):
        theory.covariance_matching_null(np.diag([1.0, 0.0, 2.0]), 3, generator=torch.Generator())


# ----------------------------------------------------------------------------- metrics
def test_unit_correlation_matches_corrcoef_and_drops_dead_units():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200, 4))
    b = np.column_stack([a[:, 0] + rng.standard_normal(200), np.zeros(200), rng.standard_normal((200, 2))])
    uc = sim.unit_correlation(a, b)
    assert (uc.dead_a, uc.dead_b) == (0, 1)
    assert list(uc.alive_b) == [0, 2, 3]
    full = np.corrcoef(a.T, b[:, [0, 2, 3]].T)[:4, 4:]
    assert np.allclose(uc.corr, full, atol=1e-12)
    with pytest.raises(ValueError, match="same samples"):
        sim.unit_correlation(a, b[:10])
    with pytest.raises(ValueError, match="no live unit"):
        sim.unit_correlation(a, np.ones((200, 3)))


def test_channel_rows_flattens_positions_per_image():
    x = np.arange(2 * 3 * 3 * 4, dtype=float).reshape(2, 3, 3, 4)
    rows, groups = sim.channel_rows(x)
    assert rows.shape == (18, 4) and list(groups) == [0] * 9 + [1] * 9
    assert np.array_equal(rows[10], x[1, 0, 1])
    flat, g = sim.channel_rows(np.ones((5, 3)))
    assert flat.shape == (5, 3) and list(g) == list(range(5))
    with pytest.raises(ValueError, match="channels"):
        sim.channel_rows(np.ones((2, 3, 4)))


@pytest.mark.parametrize("shape", [(5, 5), (3, 5), (5, 4)])
def test_bipartite_matching_is_the_best_one_to_one_pairing(shape):
    rng = np.random.default_rng(sum(shape))
    c = rng.uniform(-1, 1, shape)
    m = sim.bipartite_matching(c)
    k = min(shape)
    # brute force over all injective pairings of the smaller side into the larger
    if shape[0] <= shape[1]:
        best = max(np.abs(c[np.arange(k), list(p)]).sum() for p in itertools.permutations(range(shape[1]), k))
    else:
        best = max(np.abs(c[list(p), np.arange(k)]).sum() for p in itertools.permutations(range(shape[0]), k))
    assert m.values.sum() == pytest.approx(best, abs=1e-12)
    assert len(set(m.rows)) == len(set(m.cols)) == k
    semi = sim.semi_matching(c)
    assert np.allclose(semi.values, np.abs(c).max(1))
    if shape[0] <= shape[1]:  # every row is matched: taking each row's best can only do better
        assert semi.mean >= m.mean - 1e-12


def test_folds_keep_groups_together():
    groups = np.repeat(np.arange(20), 3)
    f = sim.folds_of(groups, 5, seed=1)
    for g in range(20):
        assert len(set(f[groups == g])) == 1
    assert sorted(np.bincount(f)) == [12] * 5
    with pytest.raises(ValueError, match="folds"):
        sim.folds_of(groups, 1)


def _linear_task(n=4000, d_in=6, d_out=4, noise=0.5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d_in))
    w = rng.standard_normal((d_in, d_out))
    signal = x @ w
    y = signal + noise * rng.standard_normal((n, d_out))
    r2 = signal.var(0) / (signal.var(0) + noise**2)  # population R² of the best linear map
    return x, y, r2


def test_ridge_map_held_out_r2_matches_population_value():
    x, y, r2 = _linear_task()
    score = sim.ridge_map(x, y, alpha=1e-6, folds=5)
    assert np.allclose(score.r2, r2, atol=0.02)
    # inputs unrelated to the targets explain nothing on held-out data
    null = sim.ridge_map(np.random.default_rng(9).standard_normal(x.shape), y, folds=5)
    assert np.all(null.r2 < 0.01)


def test_matched_map_is_squared_correlation_of_the_pair():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5000, 3))
    y = np.column_stack([2 * x[:, 2] + rng.standard_normal(5000), -x[:, 0] + 0.5 * rng.standard_normal(5000)])
    score = sim.matched_map(x, y, np.array([2, 0]), folds=5)
    rho2 = [np.corrcoef(x[:, 2], y[:, 0])[0, 1] ** 2, np.corrcoef(x[:, 0], y[:, 1])[0, 1] ** 2]
    assert np.allclose(score.r2, rho2, atol=0.01)
    with pytest.raises(ValueError, match="one input unit per target"):
        sim.matched_map(x, y, np.array([0]))


def test_lasso_map_uses_at_most_k_inputs_and_recovers_a_sparse_map():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 10))
    y = np.column_stack([x[:, 1] - 2 * x[:, 7], x[:, 3]]) + 0.3 * rng.standard_normal((3000, 2))
    sparse = sim.lasso_map(x, y, max_nonzero=2, folds=5)
    dense = sim.ridge_map(x, y, folds=5)
    assert np.all(sparse.nonzero <= 2)
    assert sparse.mean_r2 > dense.mean_r2 - 0.05  # shrinkage costs a little at this penalty
    # with every input allowed, the LASSO path ends at least squares
    full = sim.lasso_map(x, y, max_nonzero=10, folds=5)
    assert np.allclose(full.r2, dense.r2, atol=1e-3)
    # a target spread evenly over 8 inputs is not predicted by 2
    z = x[:, :8].sum(1, keepdims=True)
    assert sim.lasso_map(x, z, max_nonzero=2, folds=5).mean_r2 < 0.5


# ----------------------------------------------------------------------------- experiment
def test_compare_members_covers_every_pair_and_layer():
    gen = torch.Generator().manual_seed(0)
    acts = {
        "conv1": torch.relu(torch.randn(3, 40, 4, 4, 5, generator=gen)),
        "conv2": torch.relu(torch.randn(3, 40, 4, 4, 6, generator=gen)),
        "fc": torch.relu(torch.randn(3, 40, 7, generator=gen)),
    }
    acts["fc"][:, :, 0] = 0  # a dead unit
    res = experiment.compare_members(acts, null_samples=20, null_generator=gen, max_nonzero=2, folds=4)
    assert len(res.matching) == 3 * 3 and len(res.maps) == 3
    fc = res.matching[res.matching.layer == "fc"]
    assert (fc.dead_a == 1).all() and (fc.live == 6).all()
    assert (res.matching.haar_null > 0).all() and res.maps.lasso_nonzero.max() <= 2
    assert set(res.example_corr) == {"conv1", "conv2", "fc"}
    no_sparse = experiment.compare_members(acts, null_samples=5, null_generator=gen, sparse=False, folds=4)
    assert no_sparse.maps.lasso_r2.isna().all()


def test_train_members_shapes_and_errors():
    from phenomena.data.digits import load_digits_split

    split = load_digits_split(generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    model, acc, loss = experiment.train_members(
        split, members=2, steps=3, lr=1e-3, batch=16, channels=(2, 3), width=4,
        init_generator=torch.Generator().manual_seed(1), batch_generator=torch.Generator().manual_seed(2))
    assert acc.shape == (2,) and loss.shape == (4, 2) and model.config.members == 2
    with pytest.raises(ValueError, match="at least 2 members"):
        experiment.train_members(split, members=1, steps=1, lr=1e-3, batch=4, init_generator=torch.Generator(),
                                 batch_generator=torch.Generator())


def test_with_pixels_recovers_raw_intensities():
    from sklearn.datasets import load_digits

    from phenomena.data.digits import load_digits_split

    split = load_digits_split(generator=torch.Generator().manual_seed(0))
    raw = experiment.with_pixels(split, "intensity")
    assert raw.x_train.min() >= -1e-12 and raw.x_train.max() <= 1 + 1e-12
    pixels = torch.as_tensor(load_digits().data / 16.0)
    # every intensity row is one of the data set's images
    assert torch.cdist(raw.x_test[:5], pixels).min(1).values.max() < 1e-9
    assert experiment.with_pixels(split, "standardized") is split
    with pytest.raises(ValueError, match="unknown pixels"):
        experiment.with_pixels(split, "raw")
