"""Hierarchical polynomials g∘p: the task, the exact Hermite theory and the three-layer net of eq. (1)."""

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e

from phenomena.data.hermite import hierarchical_feature, hierarchical_task
from phenomena.metrics.ntk import empirical_ntk
from phenomena.models.three_layer import ThreeLayer
from phenomena.theory.hierarchical import (
    feature_moments,
    hermite_products,
    kernel_floor,
    link_moments,
    projection_norms,
)

CUBE = [0.0, 0.0, 0.0, 1.0]


def test_feature_moments_match_monte_carlo_and_kurtosis():
    gen = torch.Generator().manual_seed(0)
    d, signs = 6, np.array([1, -1, 1, 1, -1, 1.0])
    x = torch.randn(400_000, d, generator=gen, dtype=torch.float64)
    p = hierarchical_feature(x, 2, torch.tensor(signs)).numpy()
    exact = feature_moments(d, 2, 4, signs)
    mc = np.array([np.mean(p**m) for m in range(5)])
    assert exact[1] == pytest.approx(0, abs=1e-12) and exact[2] == pytest.approx(1, abs=1e-12)
    assert np.allclose(mc, exact, atol=0.03, rtol=0.02), (mc, exact)
    # all signs +1, k = 2: excess kurtosis 12/d exactly (kappa_4 of He_2 is 48)
    assert feature_moments(d, 2, 4)[4] - 3 == pytest.approx(12 / d, rel=1e-12)


def test_hermite_products_by_direct_quadrature():
    z, w = hermite_e.hermegauss(60)
    w = w / w.sum()
    prod = hermite_products(3, 4, 3)
    for b, a in itertools.product(range(4), range(3)):
        direct = np.sum(w * hermite_e.hermeval(z, [0, 0, 0, 1]) ** b * hermite_e.hermeval(z, [0] * a + [1]))
        assert prod[b, a] == pytest.approx(direct, abs=1e-9)


@pytest.mark.parametrize("k,signs", [(2, [1.0, -1.0]), (3, [1.0, 1.0])])
def test_projection_norms_match_two_dimensional_quadrature(k, signs):
    """At d = 2 every Hermite coefficient of h can be integrated directly on a 2-D Gauss grid."""
    d, link = 2, [0.3, -0.5, 0.2, 1.0]
    z, w = hermite_e.hermegauss(40)
    w = w / w.sum()
    x1, x2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)
    c = 1 / math.sqrt(d * math.factorial(k))
    he = lambda n, t: hermite_e.hermeval(t, [0] * n + [1])  # noqa: E731
    p = c * (signs[0] * he(k, x1) + signs[1] * he(k, x2))
    h = sum(gj * p**j for j, gj in enumerate(link))
    top = 3 * k
    direct = np.zeros(top + 1)
    for a1 in range(top + 1):
        for a2 in range(top + 1 - a1):
            coef = np.sum(ww * h * he(a1, x1) * he(a2, x2))
            direct[a1 + a2] += coef**2 / (math.factorial(a1) * math.factorial(a2))
    exact = projection_norms(d, k, link, signs, max_degree=top)
    assert np.allclose(exact, direct, atol=1e-9, rtol=1e-9), (exact, direct)
    mean, var = link_moments(link, d, k, signs)
    assert exact.sum() == pytest.approx(var + mean**2, rel=1e-10)  # Parseval


def test_parseval_at_larger_d_and_floor_limits():
    d, signs = 7, [1, -1, -1, 1, 1, -1, 1]
    norms = projection_norms(d, 2, CUBE, signs, max_degree=6)
    mean, var = link_moments(CUBE, d, 2, signs)
    assert norms.sum() == pytest.approx(var + mean**2, rel=1e-10)
    # h is even in every coordinate (He_2 is): no odd-degree component
    assert norms[1] == pytest.approx(0, abs=1e-12) and norms[3] == pytest.approx(0, abs=1e-10)
    # d -> infinity: p Gaussian, z^3 = He_3 + 3 He_1, the degree-2 part is 9/15 of the variance
    assert kernel_floor(4000, 2, CUBE, np.tile([1, -1], 2000)) == pytest.approx(0.4, abs=0.005)
    with pytest.raises(ValueError, match="signs"):
        kernel_floor(3, 2, CUBE, [1, 0, 1])


def test_degree_two_projection_by_monte_carlo_regression():
    """Least squares of h on all degree-<=2 Hermite features reaches the exact floor (Monte-Carlo)."""
    gen = torch.Generator().manual_seed(1)
    d = 10
    task = hierarchical_task(d, 2, CUBE, n_train=400_000, n_test=1, generator=gen)
    x, y = task.x_train.numpy(), task.y_train.numpy()
    feats = [np.ones(len(x))] + [x[:, i] for i in range(d)] + [x[:, i] ** 2 - 1 for i in range(d)]
    feats += [x[:, i] * x[:, j] for i in range(d) for j in range(i + 1, d)]
    phi = np.stack(feats, 1)
    coef, *_ = np.linalg.lstsq(phi, y, rcond=None)
    residual = np.mean((y - phi @ coef) ** 2) / np.mean(y**2)  # the ratio cancels much of the heavy tail's noise
    assert residual == pytest.approx(kernel_floor(d, 2, CUBE, task.signs.numpy()), abs=0.02)


def test_hierarchical_task_is_centred_and_normalised():
    gen = torch.Generator().manual_seed(2)
    task = hierarchical_task(8, 2, CUBE, n_train=300_000, n_test=10, generator=gen)
    assert set(task.signs.tolist()) <= {-1.0, 1.0}
    assert task.y_train.mean().item() == pytest.approx(0, abs=0.02)
    assert (task.y_train**2).mean().item() == pytest.approx(1, abs=0.05)
    assert torch.allclose(task.target(task.x_test), task.y_test)
    assert torch.allclose(task.p_test, hierarchical_feature(task.x_test, 2, task.signs))
    with pytest.raises(ValueError, match="signs"):
        hierarchical_task(3, 2, CUBE, torch.tensor([1.0, 2.0, 1.0]), n_train=5, n_test=5, generator=gen)
    with pytest.raises(ValueError, match="constant"):
        hierarchical_task(3, 2, [1.0], n_train=5, n_test=5, generator=gen)


@pytest.mark.parametrize("power", [3, 2])
def test_three_layer_matches_equation_one_and_its_ntk(power):
    gen = torch.Generator().manual_seed(3)
    model = ThreeLayer(3, 4, 16, 8, generator=gen, dtype=torch.float64, power=power)
    with torch.no_grad():
        model.c.fill_(0.3)
    x = torch.randn(5, 4, dtype=torch.float64, generator=gen)
    # eq. (1) written out for member 1
    V, s, u, w, b, a, c = (t[1] for t in (model.V, model.s, model.u, model.w, model.b, model.a, model.c))
    g = ((x @ V.T / 2 + s) ** power) @ u / 16
    h = torch.relu(g[:, None] * w + b) @ a / 8 + c * g
    assert torch.allclose(model(x)[1, :, 0], h.detach())
    assert torch.allclose(model.feature(x)[1], g.detach())
    # members slice with per-member inputs
    xs = torch.randn(2, 5, 4, dtype=torch.float64, generator=gen)
    assert torch.allclose(model(xs, members=slice(1, 3))[0], model(xs[0])[1])
    # closed-form NTK against per-example Jacobians
    x2 = torch.randn(7, 4, dtype=torch.float64, generator=gen)
    assert torch.allclose(model.ntk(x, x2), empirical_ntk(model, x, x2), rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="x must be"):
        model(torch.randn(5, 3, dtype=torch.float64))


def test_mup_feature_scale_is_width_independent():
    """At init g = O(1/sqrt(m1)) (read-out 1/m1 times a sum of m1 terms): sqrt(m1)*std(g) is stable."""
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(2000, 6, generator=gen)
    stds = []
    for m1 in (64, 1024):
        model = ThreeLayer(4, 6, m1, 8, generator=gen)
        with torch.no_grad():
            stds.append(float(model.feature(x).std()) * math.sqrt(m1))
    assert stds[0] == pytest.approx(stds[1], rel=0.3)
