"""Coherence identities of Chatterjee & Zielinski (2022, §4) against exact enumeration and Monte-Carlo."""

import itertools

import numpy as np
import pytest

from phenomena.theory import coherence as th


def _vectors(seed=0, n=5, dim=4, shift=0.7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) + shift


def test_alpha_bounds_scale_invariance_and_extremes():
    v = _vectors()
    a = th.alpha_of(v)
    assert 0 <= a <= 1
    assert th.alpha_of(-3.0 * v) == pytest.approx(a)
    assert th.alpha_of(np.tile(v[:1], (4, 1))) == pytest.approx(1.0)  # all equal
    assert th.alpha_of(np.vstack([v, -v])) == pytest.approx(0.0, abs=1e-15)  # zero mean
    # equals the pair average E[v·v'] / E[v·v] by brute force over all ordered pairs
    pairs = np.mean([vi @ vj for vi in v for vj in v])
    assert a == pytest.approx(pairs / np.mean([vi @ vi for vi in v]))


def test_minibatch_identity_by_exact_enumeration():
    v = _vectors(1, n=4, dim=3)
    a = th.alpha_of(v)
    for k in (1, 2, 3):
        means = np.array([np.mean(v[list(t)], axis=0) for t in itertools.product(range(len(v)), repeat=k)])
        assert th.alpha_of(means) == pytest.approx(float(th.minibatch_alpha(a, k)), rel=1e-12)
    assert th.minibatch_alpha(a, 5) >= a  # averaging never lowers coherence
    assert th.minibatch_alpha(0.0, 7) == 0.0 and th.minibatch_alpha(1.0, 7) == 1.0


def test_minibatch_identity_by_monte_carlo():
    rng = np.random.default_rng(2)
    v = _vectors(3, n=50, dim=20, shift=0.2)
    k, draws = 16, 40_000
    w = v[rng.integers(0, len(v), size=(draws, k))].mean(1)
    estimate = (w.mean(0) @ w.mean(0)) / np.mean(np.einsum("ij,ij->i", w, w))
    assert estimate == pytest.approx(float(th.minibatch_alpha(th.alpha_of(v), k)), rel=0.02)


def test_zero_vector_mixture_exact():
    v = _vectors(4)
    p = 0.3
    mixed = np.vstack([v, np.zeros((1, v.shape[1]))])
    weights = np.r_[np.full(len(v), p / len(v)), 1 - p]
    assert th.alpha_of(mixed, weights) == pytest.approx(float(th.zero_mixture_alpha(th.alpha_of(v), p)))


def test_orthogonal_limit_and_m_coherence():
    m = 7
    v = np.diag(np.arange(1.0, m + 1))  # orthogonal, unequal lengths
    assert th.alpha_of(v) == pytest.approx(float(th.orthogonal_alpha(m)))
    assert th.m_coherence(th.alpha_of(v), m) == pytest.approx(1.0)
    same = np.ones((m, 3))
    assert th.m_coherence(th.alpha_of(same), m) == pytest.approx(m)


def test_difference_bound_holds():
    for seed in range(5):
        v = _vectors(seed, n=30, dim=6, shift=seed * 0.3)
        diff = np.mean([np.linalg.norm(a - b) for a in v for b in v])
        second = np.mean(np.einsum("ij,ij->i", v, v))
        assert diff <= float(th.difference_bound(th.alpha_of(v), second)) + 1e-12


def test_decomposition_over_orthogonal_subspaces():
    v = _vectors(5, n=6, dim=5)
    parts = [v[:, :2], v[:, 2:]]
    second = [np.mean(np.einsum("ij,ij->i", p, p)) for p in parts]
    shares = np.array(second) / sum(second)
    assert th.decomposed_alpha(shares, [th.alpha_of(p) for p in parts]) == pytest.approx(th.alpha_of(v))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="α must lie"):
        th.minibatch_alpha(1.5, 2)
    with pytest.raises(ValueError, match="batch size"):
        th.minibatch_alpha(0.5, 0)
    with pytest.raises(ValueError, match="every vector is zero"):
        th.alpha_of(np.zeros((3, 2)))
