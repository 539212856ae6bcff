"""Tests of the sp-width-large-lr chapter's shared code: the SP kernel, the monotone rule, coordinate
sizes, ``MLP.hidden`` and the experiment's helpers."""

import math

import numpy as np
import pytest
import torch

from phenomena.experiments import sp_width_large_lr as ex
from phenomena.metrics import empirical_ntk
from phenomena.metrics.coordinates import refined_coordinate_check, rms, rms_change
from phenomena.metrics.stability import censored, max_stable_lr
from phenomena.models import MLP, MLPConfig
from phenomena.theory.ntk import arccos_kernel
from phenomena.theory.sp_scaling import sp_ntk, sp_one_step_exponents


def _points(n: int = 6, d: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----------------------------------------------------------------------------- the SP kernel
@pytest.mark.parametrize("depth", [1, 2])
def test_sp_kernel_matches_the_monte_carlo_kernel_of_wide_sp_networks(depth):
    """The empirical NTK of SP networks (autograd Jacobians), averaged over inits, against the recursion."""
    x = _points()
    width, members = 512, 8
    config = MLPConfig([x.shape[1]] + [width] * depth + [1], parameterization="standard", init_scale=math.sqrt(2),
                       members=members, dtype=torch.float64)
    net = MLP(config, generator=torch.Generator().manual_seed(1))
    empirical = empirical_ntk(net, x).numpy().mean(0)
    theory = sp_ntk(x.numpy(), width=width, depth=depth)
    assert np.linalg.norm(empirical - theory) / np.linalg.norm(theory) < 0.06


def test_sp_kernel_of_one_hidden_layer_in_closed_form():
    """Depth 1 by hand: K = d·c·k0(c) + n·k1(c), with c = σ² x·x'/d (no width factor on the input layer)."""
    x = _points().numpy()
    d, n, s2 = x.shape[1], 300, 2.0
    c = s2 * x @ x.T / d
    q = np.diag(c)
    expected = d * c * arccos_kernel(0, q[:, None], q[None, :], c) + n * arccos_kernel(1, q[:, None], q[None, :], c)
    assert np.allclose(sp_ntk(x, width=n, depth=1), expected, rtol=1e-12)


def test_sp_kernel_grows_linearly_in_width_but_for_the_input_layer():
    x = _points().numpy()
    k1, k2, k4 = (sp_ntk(x, width=w, depth=2) for w in (1000, 2000, 4000))
    assert np.allclose(k4 - k2, 2 * (k2 - k1), rtol=1e-10)  # affine in n
    assert np.allclose(sp_ntk(x, x[:2], width=100), sp_ntk(x, width=100)[:, :2])


def test_sp_kernel_rejects_bad_sizes():
    with pytest.raises(ValueError, match="width and depth"):
        sp_ntk(_points().numpy(), width=0)


def test_one_step_exponents_at_the_edge_of_controlled_divergence():
    assert sp_one_step_exponents(0.5) == {"logits": 0.5, "hidden": 0.0, "input_layer": -1.0}
    assert sp_one_step_exponents(1.0)["logits"] == 0.0


# ----------------------------------------------------------------------------- the monotone rule
def test_max_stable_lr_takes_the_first_contiguous_stable_range():
    grid = [0.1, 0.2, 0.4, 0.8, 1.6]
    assert max_stable_lr(grid, [True, True, False, True, True]) == 0.2  # a stable huge rate does not count
    assert max_stable_lr(grid[::-1], [True, True, False, True, True][::-1]) == 0.2  # order-free
    assert max_stable_lr(grid, [True] * 5) == 1.6 and censored(grid, [True] * 5) == "above"
    assert math.isnan(max_stable_lr(grid, [False, True, True, True, True]))
    assert censored(grid, [False, True, True, True, True]) == "below"
    assert censored(grid, [True, False, False, False, False]) == ""


def test_max_stable_lr_rejects_bad_input():
    with pytest.raises(ValueError, match="same|one non-zero length"):
        max_stable_lr([0.1, 0.2], [True])
    with pytest.raises(ValueError, match="positive"):
        max_stable_lr([0.0, 0.2], [True, True])


# ----------------------------------------------------------------------------- coordinates
def test_rms_is_per_coordinate_and_averaged_over_the_batch():
    v = torch.tensor([[[3.0, 4.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]]])
    assert torch.allclose(rms(v), torch.tensor([math.sqrt(12.5) / 2, 1.0]))
    assert torch.allclose(rms(v[0]), torch.tensor(math.sqrt(12.5) / 2))
    assert torch.allclose(rms_change(v, v), torch.zeros(2))
    assert not torch.isfinite(rms(torch.tensor([[[float("inf"), 0.0]]]))).all()


def test_refined_coordinate_check_splits_the_change_exactly():
    g = torch.Generator().manual_seed(0)
    w0, w1 = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    x0, x1 = torch.randn(3, 7, 5, generator=g, dtype=torch.float64), torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    out = refined_coordinate_check(w1, w0, x1, x0, multiplier=0.5)
    total = 0.5 * (torch.einsum("eoi,ebi->ebo", w1, x1) - torch.einsum("eoi,ebi->ebo", w0, x0))
    assert torch.allclose(out["total"], rms(total))
    eff = 0.5 * torch.einsum("eoi,ebi->ebo", w1 - w0, x1)
    assert torch.allclose(out["effective"], rms(eff))
    shared = refined_coordinate_check(w1, w0, x1[0], x0[0])
    assert shared["propagated"].shape == (3,)


# ----------------------------------------------------------------------------- MLP.hidden
def test_mlp_hidden_layers_match_a_manual_forward():
    x = _points(4, 3).float()
    net = MLP(MLPConfig([3, 6, 5, 2], members=2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h1 = torch.einsum("eoi,bi->ebo", net.weights[0], x)
        assert torch.allclose(net.hidden(x, 1, activated=False), h1, atol=1e-6)
        h2 = torch.einsum("eoi,ebi->ebo", net.weights[1], torch.relu(h1))
        assert torch.allclose(net.hidden(x, 2, activated=False), h2, atol=1e-6)
        assert torch.allclose(net.hidden(x, 2), net.features(x), atol=1e-6)
    with pytest.raises(ValueError, match="hidden layer, 1 … 2"):
        net.hidden(x, 3)


# ----------------------------------------------------------------------------- the experiment
def test_power_law_fit_recovers_exponent_and_standard_error():
    x = np.array([128.0, 256, 512, 1024, 2048])
    noise = np.array([0.01, -0.02, 0.015, 0.0, -0.005])
    y = 3.0 * x**-0.5 * np.exp(noise)
    slope, se = ex.power_law_fit(x, y)
    coef, cov = np.polyfit(np.log(x), np.log(y), 1, cov="unscaled")
    resid = np.log(y) - np.polyval(coef, np.log(x))
    assert slope == pytest.approx(coef[0])
    assert se == pytest.approx(math.sqrt(cov[0, 0] * (resid**2).sum() / (x.size - 2)))
    assert all(math.isnan(v) for v in ex.power_law_fit(x, np.r_[y[:-1], np.nan]))


def test_diverging_members_are_recorded_as_unstable_not_raised():
    problem = ex.make_problem(60, generator=torch.Generator().manual_seed(0))
    out = ex.train_members(problem, 16, [0.3, 1e4], "ce", steps=10, generator=torch.Generator().manual_seed(0))
    assert list(out.stable) == [True, False] and bool(out.diverged[1])
    assert out.initial_loss[0] == out.initial_loss[1]  # one shared init


def test_a_dead_relu_network_is_not_stable():
    """A huge MSE step switches every unit off: output 0, loss ½ < the initial loss, yet nothing was learned."""
    problem = ex.make_problem(60, generator=torch.Generator().manual_seed(0))
    out = ex.train_members(problem, 16, [0.05, 30.0], "mse", steps=40, generator=torch.Generator().manual_seed(0))
    assert out.final_loss[1] == pytest.approx(0.5) and out.hidden_rms[1] == 0
    assert out.final_loss[1] < out.initial_loss[1]
    assert list(out.stable) == [True, False]


def test_one_step_follows_the_sp_kernel_at_small_rate():
    problem = ex.make_problem(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    width, lr = 256, 1e-4 / 256
    step = ex.one_step(problem, width, lr, "ce", members=8, generator=torch.Generator().manual_seed(0))
    predicted = ex.kernel_prediction(sp_ntk(problem.x.numpy(), width=width), step.chi, lr)
    assert ex.kernel_error(step.delta_logits, predicted) < 0.15
    assert set(step.delta_hidden) == {1, 2}


def test_unknown_loss_names_the_valid_ones():
    problem = ex.make_problem(30, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="ce, mse"):
        ex.member_losses(torch.zeros(1, problem.n, 10), problem, "hinge")
