import numpy as np
import pytest
import torch

from phenomena.data import sphere_points
from phenomena.experiments import ntk_width
from phenomena.metrics import empirical_ntk
from phenomena.models import ACTIVATIONS, MLP, MLPConfig
from phenomena.theory import (
    arccos_kernel,
    gaussian_expectation,
    ntk_two_layer,
    ntk_two_layer_std,
    relu_ntk,
)
from phenomena.theory.ntk import ACTIVATION_PAIRS


def _empirical(x: torch.Tensor, activation: str, width: int, members: int, seed: int = 0, **kw) -> np.ndarray:
    config = MLPConfig([x.shape[1], width, 1], activation=activation, parameterization="ntk", members=members,
                       dtype=torch.float64, **kw)
    net = MLP(config, generator=torch.Generator().manual_seed(seed))
    return empirical_ntk(net, x).reshape(members, x.shape[0], x.shape[0]).numpy()


def test_numpy_activations_match_the_models_and_their_derivatives():
    z = torch.linspace(-3, 3, 41, dtype=torch.float64).requires_grad_()
    for name, (phi, dphi) in ACTIVATION_PAIRS.items():
        out = ACTIVATIONS[name](z)
        (grad,) = torch.autograd.grad(out.sum(), z)
        zn = z.detach().numpy()
        assert np.allclose(phi(zn), out.detach().numpy(), atol=1e-12), name
        assert np.allclose(dphi(zn), grad.numpy(), atol=1e-6), name
    assert set(ACTIVATIONS) <= set(ACTIVATION_PAIRS)


def test_arccos_kernels_by_quadrature():
    """Gauss–Hermite converges slowly at ReLU's kink, but it does converge to the closed forms."""
    q1, q2 = np.array([1.0, 2.0, 0.5]), np.array([1.0, 0.5, 3.0])
    c = np.array([0.3, -0.6, 0.9]) * np.sqrt(q1 * q2)
    relu, step = ACTIVATION_PAIRS["relu"]
    # the smoother the integrand, the faster the convergence: a jump (order 0), a kink (1), a C¹ kink (2)
    for order, fn, tol in [(0, lambda u, v: step(u) * step(v), 1e-2), (1, lambda u, v: relu(u) * relu(v), 1e-3),
                           (2, lambda u, v: (relu(u) * relu(v)) ** 2, 1e-4)]:
        exact = arccos_kernel(order, q1, q2, c)
        quad = gaussian_expectation(fn, q1, q2, c, nodes=160)
        assert np.allclose(quad, exact, rtol=0, atol=tol), order
    # known values: E[relu(u)relu(v)] = q/2 on the diagonal, 1/(2π) at c = 0; orthant 1/4 at c = 0
    assert np.isclose(arccos_kernel(1, 2.0, 2.0, 2.0), 1.0)
    assert np.isclose(arccos_kernel(1, 1.0, 1.0, 0.0), 1 / (2 * np.pi))
    assert np.isclose(arccos_kernel(0, 1.0, 1.0, 0.0), 0.25)
    assert np.isclose(arccos_kernel(2, 1.0, 1.0, 1.0), 1.5)  # E[relu(u)^4] = 3/2


def test_quadrature_is_exact_for_the_polynomial_activation():
    """φ(x) = x + x²/2: E[φ(u)φ(v)] = c + (qq' + 2c²)/4 and E[φ'(u)φ'(v)] = 1 + c, by Isserlis."""
    x = sphere_points(6, 5, torch.Generator().manual_seed(1)).numpy() * np.array([1.0, 0.5, 2.0, 1.0, 1.5])
    q = (x * x).sum(1) / 5
    c = x @ x.T / 5
    qq = q[:, None] * q[None, :]
    expected = c + (qq + 2 * c * c) / 4 + c * (1 + c)
    assert np.allclose(ntk_two_layer(x, None, "poly", nodes=8), expected, atol=1e-12)


def test_relu_closed_form_is_what_ntk_two_layer_returns():
    x = sphere_points(7, 4, torch.Generator().manual_seed(2)).numpy()
    y = sphere_points(3, 4, torch.Generator().manual_seed(3)).numpy()
    assert np.allclose(ntk_two_layer(x, y, "relu"), relu_ntk(x, y))
    # diagonal on the sphere: E[relu²] + 1·E[step²] = 1/2 + 1/2
    assert np.allclose(np.diag(relu_ntk(x)), 1.0)


@pytest.mark.parametrize("activation", ["relu", "tanh", "poly"])
def test_wide_empirical_kernel_matches_the_analytic_kernel(activation):
    """The average of 4 nets of width 4096 sits within Monte-Carlo error of Θ_∞ (errors in units of s/√(n·members))."""
    x = sphere_points(6, 16, torch.Generator().manual_seed(4))
    width, members = 4096, 4
    k = _empirical(x, activation, width, members).mean(0)
    theta, s = ntk_two_layer(x.numpy(), None, activation, return_std=True)
    z = (k - theta) / (s / np.sqrt(width * members))
    assert np.abs(z).max() < 4.5
    assert np.abs(k - theta).max() < 0.05 * np.abs(theta).max()


def test_init_and_output_scale_and_inputs_off_the_sphere():
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    width, members = 4096, 4
    k = _empirical(x, "tanh", width, members, init_scale=1.3, output_scale=0.7).mean(0)
    theta, s = ntk_two_layer(x.numpy(), None, "tanh", init_scale=1.3, output_scale=0.7, nodes=96, return_std=True)
    assert np.abs((k - theta) / (s / np.sqrt(width * members))).max() < 4.5
    k = _empirical(x, "relu", width, members).mean(0)
    assert np.allclose(k, relu_ntk(x.numpy()), rtol=0.05, atol=0.02)


@pytest.mark.parametrize("activation", ["relu", "poly"])
def test_predicted_seed_to_seed_spread(activation):
    """The exact per-entry standard deviation s/√n against 400 narrow nets (width 32)."""
    x = sphere_points(4, 8, torch.Generator().manual_seed(6))
    k = _empirical(x, activation, 32, 400, seed=7)
    predicted = ntk_two_layer_std(x.numpy(), None, activation, width=32)
    assert np.allclose(k.std(0, ddof=1), predicted, rtol=0.15)
    stats_mean, stats_std = ntk_two_layer(x.numpy(), x.numpy(), activation, return_std=True)
    assert np.allclose(stats_std / np.sqrt(32), predicted)
    assert np.allclose(stats_mean, ntk_two_layer(x.numpy(), None, activation))


def test_bad_arguments_raise():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="valid activations"):
        ntk_two_layer(x, None, "softsign")
    with pytest.raises(ValueError, match="orders"):
        arccos_kernel(3, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="width"):
        ntk_two_layer_std(x, None, "relu", width=0)
    with pytest.raises(ValueError, match="same d"):
        relu_ntk(x, np.ones((2, 4)))
    with pytest.raises(ValueError, match="nodes"):
        gaussian_expectation(lambda u, v: u * v, 1.0, 1.0, 0.5, nodes=400)
    with pytest.raises(ValueError, match="init_scale"):
        relu_ntk(x, init_scale=0.0)


def test_linearized_prediction_is_gradient_descent_on_the_linear_model():
    """Gradient descent on a model that is linear in its parameters, with kernel K, step by step."""
    rng = np.random.default_rng(0)
    n_train, n_all, lr, steps = 5, 8, 0.7, 30
    feats = rng.normal(size=(n_all, 20))
    k = feats @ feats.T / 20
    f0, y = rng.normal(size=n_all), rng.normal(size=n_train)
    run = ntk_width.WidthResult("linear", 20, k[None], k[None, :n_train, :n_train], f0[None], f0[None], np.zeros((1, 1)))
    f = f0.copy()
    for _ in range(steps):
        f = f - lr / n_train * k[:, :n_train] @ (f[:n_train] - y)
    assert np.allclose(ntk_width.linearized_prediction(run, y, n_train, lr, steps)[0], f, atol=1e-10)
