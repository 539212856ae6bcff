"""Random-feature regression: the ridge path against direct solves, and the features' limit kernels."""

import numpy as np
import pytest
import torch

from phenomena.models.random_features import (
    gaussian_features,
    gaussian_weights,
    kernel_ridge_path,
    relu_features,
    ridge_path,
)
from phenomena.theory.ntk import arccos_kernel


def _direct(z, y, ridge):
    k = z.shape[-1]
    w = torch.linalg.solve(z.transpose(-1, -2) @ z + ridge * torch.eye(k, dtype=z.dtype), z.transpose(-1, -2) @ y[..., None])
    return w[..., 0]


@pytest.mark.parametrize("n,k", [(12, 30), (30, 12)])
def test_ridge_path_matches_a_direct_solve_on_both_sides(n, k):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, n, k, generator=gen, dtype=torch.float64)
    y = torch.randn(3, n, generator=gen, dtype=torch.float64)
    ridges = [1e-6, 1e-2, 3.0]
    path = ridge_path(z, y, ridges)
    assert path.weights.shape == (3, 3, k) and path.train_mse.shape == (3, 3)
    for r, d in enumerate(ridges):
        w = _direct(z, y, d)
        assert torch.allclose(path.weights[:, r], w, rtol=1e-7, atol=1e-9)
        train = (z @ w[..., None])[..., 0].sub(y).pow(2).mean(-1)
        assert torch.allclose(path.train_mse[:, r], train, rtol=1e-7, atol=1e-12)


def test_ridge_path_with_several_targets_fits_each_alone():
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(2, 10, 25, generator=gen, dtype=torch.float64)
    y = torch.randn(2, 4, 10, generator=gen, dtype=torch.float64)
    both = ridge_path(z, y, [1e-3, 1.0])
    assert both.weights.shape == (2, 4, 2, 25)
    for t in range(4):
        one = ridge_path(z, y[:, t], [1e-3, 1.0])
        assert torch.allclose(both.weights[:, t], one.weights)
        assert torch.allclose(both.train_mse[:, t], one.train_mse)


def test_ridge_path_refuses_float32_and_bad_ridges():
    z = torch.randn(5, 8)
    with pytest.raises(TypeError, match="float64"):
        ridge_path(z, torch.randn(5), [0.1])
    with pytest.raises(ValueError, match="positive"):
        ridge_path(z.double(), torch.randn(5).double(), [0.0])
    with pytest.raises(ValueError, match="shape"):
        ridge_path(z.double(), torch.randn(6).double(), [0.1])


def test_kernel_ridge_path_matches_a_direct_solve():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 15, 40, generator=gen, dtype=torch.float64)
    gram = x @ x.transpose(-1, -2)
    y = torch.randn(2, 15, generator=gen, dtype=torch.float64)
    path = kernel_ridge_path(gram, y, [1e-4, 0.5])
    for r, d in enumerate([1e-4, 0.5]):
        a = torch.linalg.solve(gram + d * torch.eye(15, dtype=torch.float64), y[..., None])[..., 0]
        assert torch.allclose((path.vecs @ path.coef[:, r, :, None])[..., 0], a, rtol=1e-7, atol=1e-9)
        assert torch.allclose(path.train_mse[:, r], (gram @ a[..., None])[..., 0].sub(y).pow(2).mean(-1))


def test_features_converge_to_their_limit_kernels():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64)
    w = gaussian_weights(200_000, 7, gen)
    lin = gaussian_features(x, w)
    assert np.allclose((lin @ lin.T).numpy(), (x @ x.T).numpy(), atol=0.03 * 7)
    relu = relu_features(x, w)
    xn = x.numpy()
    q = (xn * xn).sum(1) / 7
    ref = arccos_kernel(1, q[:, None], q[None, :], xn @ xn.T / 7)
    assert np.allclose((relu @ relu.T).numpy(), ref, atol=0.01)
    with pytest.raises(ValueError, match="dim"):
        gaussian_features(x, gaussian_weights(3, 6, gen))
