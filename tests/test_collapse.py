"""NC1–NC4 measures and the closed forms of Dang et al. (2023) for the unconstrained-features model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from phenomena.metrics import neural_collapse, within_class_variability
from phenomena.theory import (
    class_mean_gram,
    class_mean_norms,
    classifier_row_norms,
    collapse_threshold,
    simplex_etf_gram,
    ufm_singular_values,
)


def etf_features(k: int = 4, d: int = 6, per_class: int = 5, scale: float = 2.0):
    """A perfect simplex ETF of class means in d dimensions, every feature on its class mean."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((d, k)))
    means = scale * (np.eye(k) - 1.0 / k) @ basis.T  # rows: centred, equinorm, equiangular
    labels = np.repeat(np.arange(k), per_class)
    return means[labels], labels, means


def test_perfect_etf_has_zero_nc():
    h, y, means = etf_features()
    nc = neural_collapse(h, y, classifier_weight=3.0 * means)
    for key in ("nc1", "nc2", "nc2_equinorm", "nc2_equiangle", "nc3", "nc4"):
        assert abs(nc[key]) < 1e-10, (key, nc[key])


def test_noise_raises_nc1_and_torch_input_matches_numpy():
    h, y, means = etf_features(per_class=50)
    rng = np.random.default_rng(1)
    small = neural_collapse(h + 0.01 * rng.standard_normal(h.shape), y, means)["nc1"]
    large = neural_collapse(h + 0.3 * rng.standard_normal(h.shape), y, means)["nc1"]
    assert 0 < small < large
    noisy = h + 0.3 * rng.standard_normal(h.shape)
    as_np = neural_collapse(noisy, y, means)
    as_torch = neural_collapse(torch.tensor(noisy, dtype=torch.float32), torch.tensor(y), torch.tensor(means))
    assert as_torch["nc1"] == pytest.approx(as_np["nc1"], rel=1e-5)


def test_nc1_batched_equals_per_model():
    rng = np.random.default_rng(2)
    h = rng.standard_normal((3, 40, 5))
    y = np.repeat(np.arange(4), 10)
    batched = within_class_variability(h, y).numpy()
    single = [float(within_class_variability(h[e], y)) for e in range(3)]
    np.testing.assert_allclose(batched, single, rtol=1e-12)


def test_orthogonal_frame_is_not_self_dual_but_bias_free_nc2_vanishes():
    """Equal-length orthogonal means: centred they are a simplex ETF (NC2 = 0), but W ∝ uncentred means has NC3 > 0."""
    k, d = 4, 6
    means = np.eye(k, d)
    y = np.repeat(np.arange(k), 3)
    nc = neural_collapse(means[y], y, means)
    assert nc["nc2"] < 1e-12 and nc["nc3"] > 0.1


def test_nc4_counts_disagreement():
    h, y, means = etf_features()
    w = means.copy()
    w[[0, 1]] = w[[1, 0]]  # the classifier swaps two classes
    assert neural_collapse(h, y, w)["nc4"] == pytest.approx(0.5)


def test_bad_input_raises():
    h, y, means = etf_features()
    with pytest.raises(ValueError, match="one label per sample"):
        neural_collapse(h, y[:-1], means)
    with pytest.raises(ValueError, match="classifier_weight"):
        neural_collapse(h, y, means[:, :3])
    with pytest.raises(ValueError, match="at least one sample"):
        neural_collapse(h[y != 2], np.where(y[y != 2] > 2, y[y != 2], y[y != 2]), means)


# ----------------------------------------------------------------------------- closed forms
def brute_force_norm(n_k: int, total: int, depth: int, lw: float, lh: float) -> float:
    """Minimise class k's share of the loss numerically over the product p of the M + 1 scalar factors.

    By AM–GM the cheapest factors with product p cost (M+1)/2·(λ_W^M λ_H n_k)^{1/(M+1)}·p^{2/(M+1)}; then
    the feature norm follows from the balance λ_H n_k b² = λ_W a² and a^M b = p.
    """
    c = (lw**depth * lh * n_k) ** (1 / (depth + 1))

    def f(p: float) -> float:
        return n_k / (2 * total) * (1 - p) ** 2 + (depth + 1) / 2 * c * p ** (2 / (depth + 1))

    best = minimize_scalar(f, bounds=(1e-12, 1.0), method="bounded", options={"xatol": 1e-14})
    p = best.x if best.fun < f(0.0) else 0.0
    # a = (λ_H n_k / λ_W)^{1/2} b and a^M b = p  →  b^{M+1} = p (λ_W/(λ_H n_k))^{M/2}
    return (p * (lw / (lh * n_k)) ** (depth / 2)) ** (1 / (depth + 1)) if p > 0 else 0.0


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("lam", [1e-3, 5e-3, 1e-2])
def test_norms_match_brute_force_minimisation(depth, lam):
    sizes = [200, 100, 50, 25]
    closed = class_mean_norms(sizes, depth, lam, 0.5 * lam)
    brute = [brute_force_norm(n, sum(sizes), depth, lam, 0.5 * lam) for n in sizes]
    np.testing.assert_allclose(closed, brute, rtol=1e-5, atol=1e-9)


def test_depth_one_matches_explicit_formula_and_threshold():
    sizes, lam = [200, 100, 50, 25], 4e-3
    n, total = np.asarray(sizes, float), sum(sizes)
    p = 1 - total * lam / np.sqrt(n)  # the head's output on its own class, p = 1 − N√(λ_Wλ_H/n_k)
    np.testing.assert_allclose(class_mean_norms(sizes, 1, lam, lam) ** 2, p / np.sqrt(n), rtol=1e-12)
    np.testing.assert_allclose(classifier_row_norms(sizes, 1, lam, lam) ** 2, p * np.sqrt(n), rtol=1e-12)
    assert collapse_threshold(25, total, 1) == pytest.approx(5 / total)
    assert class_mean_norms(sizes, 1, 0.99 * 5 / total, 0.99 * 5 / total)[-1] > 0
    assert class_mean_norms(sizes, 1, 1.01 * 5 / total, 1.01 * 5 / total)[-1] == 0


def test_balanced_reduces_to_equal_norms_and_known_etf_scale():
    """Balanced, depth 1: every class has ‖h̄‖² = (1 − K√(nλ_Wλ_H))·√(λ_W/(λ_H n)) (the known UFM/MSE scale)."""
    k, n, lw, lh = 4, 100, 2e-3, 3e-3
    norm2 = (1 - k * np.sqrt(n * lw * lh)) * np.sqrt(lw / (lh * n))
    np.testing.assert_allclose(class_mean_gram([n] * k, 1, lw, lh), norm2 * np.eye(k), rtol=1e-12)
    etf = class_mean_gram([n] * k, 1, lw, lh, bias=True)
    np.testing.assert_allclose(etf, norm2 * (k - 1) / k * simplex_etf_gram(k), rtol=1e-12)
    cos = etf[0, 1] / etf[0, 0]
    assert cos == pytest.approx(-1 / (k - 1))


def test_deep_thresholds_are_ordered_and_nonzero_branch_exists_between():
    total = 375
    glob = collapse_threshold(25, total, 3, kind="global")
    exist = collapse_threshold(25, total, 3, kind="existence")
    assert glob < exist
    lam = np.sqrt(glob * exist)
    sizes = [25, total - 25]
    assert ufm_singular_values(sizes, 3, lam, lam)[0] == 0
    assert ufm_singular_values(sizes, 3, lam, lam, branch="nonzero")[0] > 0


def test_theory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="balanced"):
        class_mean_gram([10, 20], 1, 1e-3, 1e-3, bias=True)
    with pytest.raises(ValueError, match="depth"):
        class_mean_norms([10, 20], 0, 1e-3, 1e-3)
    with pytest.raises(ValueError, match="kind"):
        collapse_threshold(10, 30, 2, kind="local")
