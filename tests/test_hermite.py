import math

import numpy as np
import pytest
import torch
from numpy.polynomial import hermite_e

from phenomena.data import hermite, hermite_series, series_moments, single_index_task


def test_matches_numpy_probabilists_hermite():
    z = torch.linspace(-3, 3, 41, dtype=torch.float64)
    for k in range(7):
        expected = hermite_e.hermeval(z.numpy(), [0] * k + [1])
        assert np.allclose(hermite(k, z).numpy(), expected, rtol=1e-12, atol=1e-12), k


def test_orthogonal_under_the_standard_normal():
    """E[He_j He_k] = k! δ_jk, by Gauss-Hermite quadrature (exact for these degrees)."""
    nodes, weights = hermite_e.hermegauss(20)
    z, w = torch.as_tensor(nodes), torch.as_tensor(weights / math.sqrt(2 * math.pi))
    for j in range(6):
        for k in range(6):
            inner = float((w * hermite(j, z) * hermite(k, z)).sum())
            assert inner == pytest.approx(math.factorial(k) if j == k else 0.0, abs=1e-9)


def test_series_moments_match_quadrature():
    coeffs = [0.5, -0.3, 0.5, 0.2]
    nodes, weights = hermite_e.hermegauss(20)
    z, w = torch.as_tensor(nodes), torch.as_tensor(weights / math.sqrt(2 * math.pi))
    y = hermite_series(coeffs, z)
    mean = float((w * y).sum())
    var = float((w * (y - mean) ** 2).sum())
    assert series_moments(coeffs) == pytest.approx((mean, var), rel=1e-9)


def test_paper_target_is_half_the_square():
    """Kumar et al.'s y = ½(β·x)² is ½He₂ + ½ in this basis."""
    z = torch.randn(100, dtype=torch.float64)
    assert torch.allclose(hermite_series([0.5, 0.0, 0.5], z), 0.5 * z * z)


def test_task_is_seeded_and_consistent():
    a = single_index_task(20, 30, 40, [0.0, 0.0, 1.0], torch.Generator().manual_seed(3))
    b = single_index_task(20, 30, 40, [0.0, 0.0, 1.0], torch.Generator().manual_seed(3))
    c = single_index_task(20, 30, 40, [0.0, 0.0, 1.0], torch.Generator().manual_seed(4))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.beta, b.beta)
    assert not torch.equal(a.beta, c.beta)
    assert a.x_train.shape == (30, 20) and a.x_test.shape == (40, 20) and a.dim == 20
    assert float(a.beta.norm()) == pytest.approx(1.0)
    assert torch.allclose(a.y_test, hermite(2, a.x_test @ a.beta))


@pytest.mark.parametrize(
    "call",
    [
        lambda: hermite(-1, torch.zeros(2)),
        lambda: hermite(1.5, torch.zeros(2)),
        lambda: hermite_series([], torch.zeros(2)),
        lambda: single_index_task(0, 5, 5, [1.0], torch.Generator()),
        lambda: single_index_task(5, 5, 5, [float("nan")], torch.Generator()),
    ],
)
def test_bad_arguments_raise(call):
    with pytest.raises(ValueError):
        call()
