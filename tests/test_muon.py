"""Muon: the closed forms of theory.muon, the batched NS and ensemble.Muon against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.ensemble import Muon, fit, newton_schulz
from phenomena.theory import muon as theory

A, B, C = theory.NS5_COEFFICIENTS


def test_polynomial_is_the_composition_of_the_quintic():
    x = np.linspace(-1.3, 1.3, 101)
    y = x.copy()
    for _ in range(3):
        y = A * y + B * y**3 + C * y**5
    np.testing.assert_allclose(theory.ns_polynomial(x, 3), y, rtol=1e-13, atol=1e-15)
    np.testing.assert_array_equal(theory.ns_polynomial(x, 0), x)


def test_critical_points_are_where_the_derivative_vanishes():
    for x in theory.critical_points():
        assert abs(A + 3 * B * x**2 + 5 * C * x**4) < 1e-10


@pytest.mark.parametrize("lo,steps", [(3e-3, 5), (0.0, 5), (1.5e-3, 5), (0.1, 1), (0.02, 3)])
def test_image_matches_a_dense_grid(lo, steps):
    low, high = theory.ns_image(lo, steps)
    # independent: evaluate on a dense grid (log-spaced near lo, linear elsewhere) and refine the extremes
    grid = np.unique(np.concatenate([np.linspace(lo, 1, 400_001), np.geomspace(max(lo, 1e-9), 1, 400_001)]))
    values = theory.ns_polynomial(grid, steps)
    assert values.min() >= low - 1e-9 and values.max() <= high + 1e-9
    assert values.min() == pytest.approx(low, abs=1e-6) and values.max() == pytest.approx(high, abs=1e-6)


def test_the_numbers_the_chapter_quotes():
    low, high = theory.ns_image(3e-3, 5)
    assert 0.6815 < low < 0.6825 and 1.2020 < high < 1.2025
    assert theory.ns_bound() == pytest.approx(high)
    assert theory.ns_image(1.4e-3, 5)[0] < 0.68


def test_image_rejects_a_reversed_interval():
    with pytest.raises(ValueError, match="lo <= hi"):
        theory.ns_image(1.0, 5, hi=0.5)


def _svd_formula(g: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """U p∘steps(S/(‖G‖_F + eps)) Vᵀ in float64: the closed form, not the iteration."""
    g = g.double()
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    norm = torch.linalg.matrix_norm(g, keepdim=True)[..., 0]
    ps = torch.from_numpy(theory.ns_polynomial((s / (norm + eps)).numpy(), steps))
    return u @ torch.diag_embed(ps) @ vh


@pytest.mark.parametrize("shape", [(3, 8, 5), (2, 5, 8), (6, 6)])
def test_newton_schulz_acts_on_singular_values_only(shape):
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    out = newton_schulz(g)
    assert out.dtype == torch.float32 and out.shape == g.shape
    torch.testing.assert_close(out.double(), _svd_formula(g), rtol=0, atol=2e-5)


def test_newton_schulz_is_scale_free():
    g = torch.randn(4, 7, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(newton_schulz(1e3 * g), newton_schulz(g), rtol=0, atol=1e-5)


def _problem(members: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    params = {
        "w1": torch.randn(members, 5, 8, generator=g) / math.sqrt(5),   # in_out: 5 -> 8
        "w2": torch.randn(members, 8, 3, generator=g) / math.sqrt(8),   # in_out: 8 -> 3
        "b1": 0.1 * torch.randn(members, 8, generator=g),
        "gain": torch.ones(members, 3),
    }
    x = torch.randn(members, 16, 5, generator=g)
    y = torch.randn(members, 16, 3, generator=g)
    return params, x, y


def _forward(w1, w2, b1, gain, x):
    return (torch.tanh(x @ w1 + b1.unsqueeze(-2)) @ w2) * gain.unsqueeze(-2)


def _reference(params, x, y, lr, adamw_lr, momentum, wd, adamw_wd, steps):
    """One member at a time, written from Jordan's description: SGD-momentum (EMA form), Nesterov, the
    closed-form orthogonalisation by SVD, √max(1, out/in), and torch.optim.AdamW for the rest."""
    out = []
    for e in range(len(lr)):
        w1, w2, b1, gain = (params[k][e].clone().requires_grad_() for k in ("w1", "w2", "b1", "gain"))
        adam = torch.optim.AdamW([b1, gain], lr=float(adamw_lr[e]), betas=(0.9, 0.95), eps=1e-10,
                                 weight_decay=float(adamw_wd))
        buffers = [torch.zeros_like(w1), torch.zeros_like(w2)]
        for _ in range(steps):
            loss = ((_forward(w1, w2, b1, gain, x[e]) - y[e]) ** 2).mean()
            g1, g2, b1.grad, gain.grad = torch.autograd.grad(loss, [w1, w2, b1, gain])
            with torch.no_grad():
                for i, (w, grad) in enumerate(((w1, g1), (w2, g2))):
                    buffers[i] = momentum * buffers[i] + (1 - momentum) * grad
                    nesterov = (1 - momentum) * grad + momentum * buffers[i]
                    o = _svd_formula(nesterov).float()
                    fan_in, fan_out = w.shape
                    w.mul_(1 - float(lr[e]) * wd)
                    w.sub_(float(lr[e]) * math.sqrt(max(1.0, fan_out / fan_in)) * o)
            adam.step()
        out.append([t.detach() for t in (w1, w2, b1, gain)])
    return [torch.stack(ts) for ts in zip(*out)]


def test_muon_ensemble_equals_a_per_member_reference():
    members, steps = 3, 6
    params, x, y = _problem(members)
    lr = torch.tensor([0.01, 0.03, 0.05])
    adamw_lr = torch.tensor([1e-3, 3e-3, 1e-2])
    expected = _reference(params, x, y, lr, adamw_lr, 0.95, 0.1, 0.01, steps)

    p = {k: v.clone().requires_grad_() for k, v in params.items()}
    opt = Muon([p["w1"], p["w2"]], lr, weight_decay=0.1, layout="in_out",
               adamw_params=[p["b1"], p["gain"]], adamw_lr=adamw_lr, adamw_weight_decay=0.01)

    def loss():
        return ((_forward(p["w1"], p["w2"], p["b1"], p["gain"], x) - y) ** 2).flatten(1).mean(1)

    fit(opt, loss, steps)
    for name, want in zip(("w1", "w2", "b1", "gain"), expected):
        torch.testing.assert_close(p[name].detach(), want, rtol=1e-5, atol=1e-6, msg=name)


def test_muon_spectral_norm_of_a_step_is_bounded_for_any_gradient_size():
    for factor in (1.0, 1e3):
        params, x, y = _problem(2, seed=3)
        w = params["w1"].clone().requires_grad_()
        opt = Muon([w], 0.02, layout="in_out")
        before = w.detach().clone()
        loss = factor * ((torch.tanh(x @ w) @ params["w2"] - y) ** 2).flatten(1).mean(1)
        opt.step(torch.autograd.grad(loss.sum(), [w]))
        step = torch.linalg.matrix_norm(w.detach() - before, ord=2)
        assert bool((step <= 0.02 * math.sqrt(8 / 5) * theory.ns_bound() * (1 + 1e-5)).all())


def test_muon_keeps_the_last_inputs_and_updates():
    params, x, y = _problem(2)
    w = params["w1"].clone().requires_grad_()
    opt = Muon([w], 0.02, keep_updates=True)
    loss = ((torch.tanh(x @ w) @ params["w2"] - y) ** 2).flatten(1).mean(1)
    opt.step(torch.autograd.grad(loss.sum(), [w]))
    assert len(opt.last_inputs) == 1 and opt.last_updates[0].shape == w.shape
    torch.testing.assert_close(opt.last_updates[0].double(), _svd_formula(opt.last_inputs[0]), rtol=0, atol=2e-5)


def test_muon_frozen_member_does_not_move():
    params, x, y = _problem(2)
    w = params["w1"].clone().requires_grad_()
    opt = Muon([w], 0.02)
    opt.alive = torch.tensor([True, False])
    before = w.detach().clone()
    loss = ((torch.tanh(x @ w) @ params["w2"] - y) ** 2).flatten(1).mean(1)
    opt.step(torch.autograd.grad(loss.sum(), [w]))
    torch.testing.assert_close(w.detach()[1], before[1], rtol=0, atol=0)
    assert not torch.equal(w.detach()[0], before[0])


def test_muon_rejects_non_matrices_with_a_fix():
    with pytest.raises(ValueError, match="adamw_params"):
        Muon([torch.zeros(2, 3, requires_grad=True)], 0.02)
    with pytest.raises(ValueError, match="layout"):
        Muon([torch.zeros(2, 3, 3, requires_grad=True)], 0.02, layout="rows")
