"""Tests of the mup-depth-transfer chapter's code: the init-norm closed form, η* by parabola,
Lanczos for the largest algebraic Hessian eigenvalue, the residual MLP and the linear net."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.experiments import mup_depth_transfer as ex
from phenomena.metrics.hessian import ensemble_hessian_top_algebraic, hessian_top_eigenvalue
from phenomena.metrics.transfer import lr_shift, optimal_log2_lr
from phenomena.models.resmlp import ResMLP, ResMLPConfig
from phenomena.theory import resnet


# ----------------------------------------------------------------------------- theory.resnet
def test_relu_second_moment_by_quadrature_gives_the_per_block_factor():
    # E relu(h)² = E h²/2 for h ~ N(0, σ²), by Gauss–Hermite quadrature: the factor 1 + b²/2
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    sigma = 1.7
    second = np.sum(weights * np.maximum(sigma * nodes, 0) ** 2) / np.sqrt(2 * np.pi)
    b = 1 / math.sqrt(8)
    assert (1 + b**2 * second / sigma**2) ** 8 == pytest.approx(resnet.init_norm_ratio(8, 1.0, 0.5), rel=1e-10)


def test_init_norm_ratio_closed_forms_and_limit():
    assert resnet.init_norm_ratio(4, 1.0, 0.0) == pytest.approx(1.5**4)
    assert resnet.init_norm_ratio(1, 2.0, 0.5) == pytest.approx(3.0)
    depths = np.array([1, 2, 8, 32, 10**6])
    values = resnet.init_norm_ratio(depths, 1.0, 0.5)
    assert np.all(np.diff(values) > 0) and values[-1] < resnet.init_norm_limit(1.0)
    assert values[-1] == pytest.approx(math.exp(0.5), rel=1e-6)
    assert resnet.branch_multiplier(16, 2.0, 0.5) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="depth"):
        resnet.init_norm_ratio(0)


def test_init_norm_ratio_matches_monte_carlo_of_wide_networks():
    x = torch.randn(16, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    measured = ex.init_norm_ratios(x, width=1024, depths=[4], parameterization="mup_depth", members=16,
                                   generator=torch.Generator().manual_seed(1))
    assert measured[0] == pytest.approx(resnet.init_norm_ratio(4, 1.0, 0.5), rel=0.02)


# ----------------------------------------------------------------------------- metrics.transfer
def test_parabola_recovers_the_vertex_of_a_quadratic():
    grid = np.arange(-3, 3.01, 0.5)
    losses = (grid - 0.3) ** 2 + 1.0
    best = optimal_log2_lr(grid, losses)
    assert best.log2_lr == pytest.approx(0.3) and not best.at_edge


def test_edge_and_diverged_neighbours():
    grid = np.arange(0, 3.01, 0.5)
    assert optimal_log2_lr(grid, grid).at_edge  # increasing loss: best is the first point
    losses = np.array([5, 4, 3, 2, 1, np.inf, np.nan])
    best = optimal_log2_lr(grid, losses)
    assert best.log2_lr == 2.0 and best.index == 4 and not best.at_edge
    assert lr_shift(1.0, -0.5) == pytest.approx(3.0)
    with pytest.raises(ValueError, match="diverged"):
        optimal_log2_lr(grid, np.full(7, np.inf))
    with pytest.raises(ValueError, match="evenly"):
        optimal_log2_lr([0, 1, 3], [1, 0, 1])


# ----------------------------------------------------------------------------- metrics.hessian (Lanczos)
def _indefinite_problem(members: int, seed: int):
    """Per-member loss ½θᵀA_eθ + c·θ with A_e = Q diag(λ) Qᵀ, λ from −10 to ≤ 3: the most negative
    eigenvalue dominates in magnitude."""
    g = torch.Generator().manual_seed(seed)
    dim = 12
    q, _ = torch.linalg.qr(torch.randn(members, dim, dim, generator=g, dtype=torch.float64))
    lam = torch.linspace(-10.0, 3.0, dim, dtype=torch.float64) * torch.linspace(1.0, 0.8, members, dtype=torch.float64)[:, None]
    a = q @ torch.diag_embed(lam) @ q.transpose(1, 2)
    theta = torch.randn(members, dim, generator=g, dtype=torch.float64, requires_grad=True)

    def loss() -> torch.Tensor:
        return 0.5 * torch.einsum("ei,eij,ej->e", theta, a, theta) + theta.sum(1)

    return loss, theta, a


def test_lanczos_finds_the_largest_algebraic_eigenvalue_where_power_iteration_does_not():
    loss, theta, dense = _indefinite_problem(3, 0)
    exact = torch.linalg.eigvalsh(dense)
    got = ensemble_hessian_top_algebraic(loss, [theta], iters=12).values
    torch.testing.assert_close(got, exact[:, -1], rtol=1e-8, atol=1e-8)
    power = hessian_top_eigenvalue(lambda: loss()[0], [theta], iters=2000, tol=1e-6)
    assert power == pytest.approx(float(exact[0, 0]), rel=1e-3)  # power iteration: the wrong end


def test_lanczos_preconditioned_by_lr_multipliers():
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64)
    y = torch.randn(5, 4, generator=g, dtype=torch.float64)

    def loss() -> torch.Tensor:  # a bilinear model: its Hessian couples u and v
        pred = torch.einsum("pi,ei,ej->epj", x, u, v)
        return (pred - y).pow(2).mean((1, 2))

    mult = [4.0, 0.25]
    got = ensemble_hessian_top_algebraic(loss, [u, v], lr_multipliers=mult, iters=7).values
    for e in range(2):
        def one(flat: torch.Tensor, e: int = e) -> torch.Tensor:
            pred = torch.einsum("pi,i,j->pj", x, flat[:3], flat[3:])
            return (pred - y).pow(2).mean()
        h = torch.autograd.functional.hessian(one, torch.cat([u[e], v[e]]).detach())
        p = torch.diag(torch.tensor([2.0] * 3 + [0.5] * 4, dtype=torch.float64))
        assert float(got[e]) == pytest.approx(float(torch.linalg.eigvalsh(p @ h @ p)[-1]), rel=1e-8)
    with pytest.raises(ValueError, match="lr_multipliers"):
        ensemble_hessian_top_algebraic(loss, [u, v], lr_multipliers=[1.0])


# ----------------------------------------------------------------------------- models.resmlp
def test_resmlp_mup_forward_matches_the_formula():
    cfg = ResMLPConfig(dim=5, width=7, depth=3, out=2, parameterization="mup_depth", beta0=1.5, gamma0=2.0,
                       members=2, dtype=torch.float64)
    net = ResMLP(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for e in range(2):
        h = x @ net.w_in[e].T / math.sqrt(5)
        for layer in range(3):
            h = h + 1.5 / math.sqrt(3) / math.sqrt(7) * torch.relu(h) @ net.w_hidden[e, layer].T
        f = torch.relu(h) @ net.w_out[e] / (2.0 * 7)
        torch.testing.assert_close(net(x)[e], f)
    assert cfg.lr_multiplier == pytest.approx(4.0 * 7)
    assert net.lr_multipliers() == [28.0] * 3


def test_resmlp_sp_and_mup_branches():
    sp = ResMLPConfig(dim=4, width=400, depth=8, parameterization="sp", members=3)
    net = ResMLP(sp)
    assert sp.branch_multiplier == 1.0 and sp.lr_multiplier == 1.0
    assert float(net.w_hidden.detach().std()) == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    assert ResMLPConfig(dim=4, width=8, depth=16, parameterization="mup").branch_multiplier == 1.0
    assert ResMLPConfig(dim=4, width=8, depth=16, parameterization="mup_depth").branch_multiplier == 0.25
    with pytest.raises(ValueError, match="parameterization"):
        ResMLPConfig(dim=4, width=8, depth=2, parameterization="ntk")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input must be"):
        net(torch.zeros(2, 5))


# ----------------------------------------------------------------------------- experiment helpers
def test_linear_net_end_to_end_and_parameterisations():
    task = ex.linear_task(6, 10, 3.0, torch.Generator().manual_seed(0), dtype=torch.float64)
    assert float(task.y.var()) > 0
    for p, c, mult in (("mup", lambda n, d: 1 / (n * math.sqrt(d)), 16.0), ("ntp", lambda n, d: 1 / math.sqrt(n * d), 1.0)):
        net, m = ex.linear_net(6, 16, p, members=2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert m == mult
        torch.testing.assert_close(ex.end_to_end(net) @ task.x.T, net(task.x)[..., 0])
        (u, v) = net.weights
        torch.testing.assert_close(ex.end_to_end(net)[0], c(16, 6) * (v[0] @ u[0])[0])
        assert ex.mse(net, task).shape == (2,)


def test_probe_steps():
    assert ex.probe_steps(100, 20) == [0, 20, 40, 60, 80, 99]


def test_sharpness_run_small_steps_measure_the_hessian_at_the_point():
    task = ex.linear_task(8, 32, 1.0, torch.Generator().manual_seed(0), dtype=torch.float64)
    net, _ = ex.linear_net(8, 32, "ntp", members=2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    init = ensemble_hessian_top_algebraic(lambda: ex.mse(net, task), list(net.parameters()), iters=40).values
    tiny = ex.sharpness_run(task, parameterization="ntp", width=32, steps=1, lr0=1e-4, every=50, members=2,
                            generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(tiny.s0, init.numpy(), rtol=1e-3)  # the step's centre is the point itself
    r = ex.sharpness_run(task, parameterization="ntp", width=32, steps=300, lr0=1.0, every=50, members=2,
                         generator=torch.Generator().manual_seed(1), lanczos_iters=30, precise_iters=40)
    assert list(r.steps) == ex.probe_steps(300, 50) and r.rise.shape == (2,)
    with pytest.raises(ValueError, match="steps"):
        ex.sharpness_run(task, parameterization="ntp", width=32, steps=0, lr0=1.0, every=50, members=1,
                         generator=torch.Generator().manual_seed(1))
