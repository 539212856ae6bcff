import torch
from torch import nn

from phenomena.metrics import empirical_ntk, kernel_regression
from phenomena.models import MLP, MLPConfig


def test_linear_model_kernel_is_the_gram_matrix():
    """f(x) = w·x + b has Θ(x, x') = x·x' + 1, whatever w is."""
    model = nn.Linear(5, 1)
    x1, x2 = torch.randn(4, 5), torch.randn(3, 5)
    assert torch.allclose(empirical_ntk(model, x1, x2), x1 @ x2.T + 1, atol=1e-5)


def test_two_layer_closed_form():
    """f = aᵀ relu(Wx)/√n (NTK param): Θ = (1/n)Σ relu(w·x)relu(w·x') + (1/n)Σ a² 1[w·x>0]1[w·x'>0] x·x'."""
    torch.manual_seed(0)
    net = MLP(MLPConfig([3, 50, 1], parameterization="ntk"), generator=torch.Generator().manual_seed(1))
    x = torch.randn(6, 3)
    w, a = net.weights[0][0] / 3**0.5, net.weights[1][0, 0]
    pre = x @ w.T
    expected = (torch.relu(pre) @ torch.relu(pre).T) / 50 + ((pre > 0).float() * a**2) @ (pre > 0).float().T / 50 * (
        x @ x.T
    ) / 3
    assert torch.allclose(empirical_ntk(net, x), expected, atol=1e-5)


def test_ensemble_gives_each_members_kernel():
    g = torch.Generator().manual_seed(0)
    many = MLP(MLPConfig([4, 16, 1], activation="tanh", members=3), generator=g)
    x = torch.randn(5, 4)
    k = empirical_ntk(many, x)
    assert k.shape == (3, 5, 5)
    one = MLP(MLPConfig([4, 16, 1], activation="tanh", members=1))
    with torch.no_grad():
        for a, b in zip(one.weights, many.weights):
            a.copy_(b[1:2])
    assert torch.allclose(k[1], empirical_ntk(one, x), atol=1e-5)
    assert torch.allclose(empirical_ntk(many, x, chunk=2), k, atol=1e-5)


def test_kernel_regression_interpolates_and_ridge_shrinks():
    x = torch.randn(10, 3, dtype=torch.float64)
    k = x @ x.T + torch.eye(10, dtype=torch.float64)
    y = torch.randn(10, dtype=torch.float64)
    assert torch.allclose(kernel_regression(k, y, k), y, atol=1e-8)
    assert kernel_regression(k, y, k, ridge=100.0).norm() < y.norm()
