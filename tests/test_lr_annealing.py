"""lr-annealing-scaling-law: schedules, the annealing law and its fitter, the power-law closed forms,
SGD's exact expected loss against Monte-Carlo, the power-law teacher, the fit schedule hook, curve metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from phenomena import schedules
from phenomena.data.powerlaw import powerlaw_task
from phenomena.ensemble import SGD, fit
from phenomena.experiments import lr_annealing_scaling_law as experiment
from phenomena.metrics import curves
from phenomena.theory import annealing, powerlaw


# ----------------------------------------------------------------------------- schedules
def test_schedules_shapes_ends_and_errors():
    T, lr = 100, 0.5
    assert np.all(schedules.constant(T, lr) == lr)
    cos = schedules.cosine(T, lr)
    assert cos[0] == lr and np.all(np.diff(cos) <= 0) and 0 < cos[-1] < 1e-3
    assert schedules.cosine(T, lr, floor=0.1)[-1] == pytest.approx(0.05, abs=1e-3)
    w = schedules.wsd(T, lr, cooldown=0.2)
    assert np.all(w[:80] == lr) and np.all(np.diff(w[79:]) < 0) and w[-1] == pytest.approx(lr / 21)
    ms = schedules.multistep(T, lr)
    assert ms[49] == lr and ms[50] == pytest.approx(0.3 * lr) and ms[75] == pytest.approx(0.09 * lr)
    stacked = schedules.stack(["constant", "cosine"], T, lr, repeat=3)
    assert stacked.shape == (T, 6) and np.all(stacked[:, 3] == cos)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.schedule("linear", T, lr)
    with pytest.raises(ValueError, match="lr"):
        schedules.constant(T, -1.0)


# ----------------------------------------------------------------------------- the annealing law
def test_areas_match_their_definitions_by_direct_loops():
    eta = schedules.multistep(50, 1.0)
    s1 = annealing.forward_area(eta)
    assert s1[0] == 0 and s1[10] == pytest.approx(10.0) and s1[-1] == pytest.approx(eta.sum())
    lam = 0.9
    m, total, expected = 0.0, 0.0, [0.0, 0.0]
    for i in range(1, 50):
        m = lam * m + (eta[i - 1] - eta[i])
        total += m
        expected.append(total)
    assert np.allclose(annealing.annealing_area(eta, lam), expected)
    assert np.all(annealing.annealing_area(schedules.constant(50, 1.0)) == 0)
    # with λ = 0 the momentum is the last drop, and S₂ telescopes to the total drop η₀ − η_{s−1}
    assert np.allclose(annealing.annealing_area(eta, 0.0)[1:], eta[0] - eta)


def test_fitter_recovers_the_parameters_of_noiseless_law_curves():
    T, true = 2000, {"l0": 0.5, "a": 2.0, "alpha": 0.6, "c": 0.005}
    steps = np.arange(20, T + 1, 5)
    curves_ = []
    for name in ("constant", "cosine"):
        eta = schedules.schedule(name, T, 0.5)
        s1, s2 = annealing.forward_area(eta)[steps], annealing.annealing_area(eta, 0.99)[steps]
        curves_.append((eta, steps, annealing.annealing_law(s1, s2, **true)))
    fitted = annealing.fit_annealing_law(curves_, decay=0.99)
    assert fitted.alpha == pytest.approx(0.6, rel=1e-3) and fitted.c == pytest.approx(0.005, rel=1e-2)
    assert fitted.l0 == pytest.approx(0.5, rel=1e-3) and fitted.a == pytest.approx(2.0, rel=1e-2)
    wsd = schedules.wsd(T, 0.5)
    truth = annealing.annealing_law(annealing.forward_area(wsd)[steps], annealing.annealing_area(wsd, 0.99)[steps], **true)
    assert curves.mape(fitted.predict(wsd)[steps], truth) < 0.05
    with pytest.raises(ValueError, match="positive"):
        annealing.fit_annealing_law([(wsd, steps, -truth)])


# ----------------------------------------------------------------------------- power-law closed forms
def test_asymptote_matches_quadrature_and_the_large_dim_sum():
    a, b = 2.0, 2.5
    assert powerlaw.alpha_star(a, b) == 0.75
    for s1 in (30.0, 300.0):
        def integrand(k, s=s1):
            return k ** (-b) * math.exp(-2 * k ** (-a) * s)
        integral = 0.5 * integrate.quad(integrand, 0, np.inf, limit=400)[0]
        assert powerlaw.gradient_flow_asymptote(s1, a, b) == pytest.approx(integral, rel=1e-6)
    # the discrete sum approaches the continuum at large S₁ (the modes near k ~ √S₁ are many)
    s1 = 1e4
    ratio = powerlaw.gradient_flow_loss(s1, a, b, 10_000) / powerlaw.gradient_flow_asymptote(s1, a, b)
    assert ratio == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError):
        powerlaw.alpha_star(2.0, 0.5)


def test_sgd_expected_loss_matches_monte_carlo():
    """The recursion against 4000 independent SGD runs, under a schedule with a drop."""
    dim, a, b, noise, batch, runs = 12, 1.5, 2.0, 0.1, 3, 4000
    lam, w_star = powerlaw.spectrum(dim, a, b)
    eta = np.concatenate([np.full(30, 0.6), np.full(20, 0.15)])
    exact = powerlaw.sgd_expected_loss(eta, lam, w_star, noise=noise, batch=batch)
    gen = np.random.default_rng(0)
    w = np.zeros((runs, dim))
    losses = [0.5 * ((w - w_star) ** 2 * lam).sum(1) + noise / 2]
    for t in range(len(eta)):
        x = gen.standard_normal((runs, batch, dim)) * np.sqrt(lam)
        y = x @ w_star + np.sqrt(noise) * gen.standard_normal((runs, batch))
        resid = np.einsum("rbd,rd->rb", x, w) - y
        w = w - eta[t] * np.einsum("rbd,rb->rd", x, resid) / batch
        losses.append(0.5 * ((w - w_star) ** 2 * lam).sum(1) + noise / 2)
    mc = np.array(losses)
    se = mc.std(1) / np.sqrt(runs)
    assert np.all(np.abs(mc.mean(1) - exact) < 4 * se + 1e-12)
    # capacity N: the unlearnable tail acts as label noise of variance Σ_{k>N} λ_k w*_k² (Gaussian, independent
    # coordinates), so the capped student is a full student of dim N with that much more noise
    capped = powerlaw.sgd_expected_loss(eta, lam, w_star, noise=noise, batch=batch, capacity=4)
    tail = (lam[4:] * w_star[4:] ** 2).sum()
    small = powerlaw.sgd_expected_loss(eta, lam[:4], w_star[:4], noise=noise + tail, batch=batch)
    assert np.allclose(capped, small)


# ----------------------------------------------------------------------------- teacher and training
def test_the_half_risk_is_the_students_population_loss():
    teacher = powerlaw_task(6, 2.0, 3.0, noise=0.2)
    gen = torch.Generator().manual_seed(0)
    x, y = teacher.sample(200_000, gen)
    w = torch.randn(3, 6, dtype=torch.float64, generator=gen)
    mc = 0.5 * ((x @ w.T - y[:, None]) ** 2).mean(0)
    assert torch.allclose(teacher.risk(w) / 2, mc, rtol=0.02)
    assert teacher.sample(4, gen, batch=(5,), dtype=torch.float32)[0].shape == (5, 4, 6)


def test_fit_schedule_hook_follows_each_members_schedule_like_torch_optim():
    torch.manual_seed(0)
    x, y = torch.randn(16, 5), torch.randn(16)
    lrs = np.stack([schedules.cosine(20, 0.1), schedules.multistep(20, 0.2)], axis=1)
    w = torch.zeros(2, 5, requires_grad=True)
    opt = SGD([w], lr=0.0)
    fit(opt, lambda: 0.5 * ((w @ x.T - y) ** 2).mean(1), 20, lr_schedule=torch.as_tensor(lrs))
    for member in range(2):
        ref = torch.zeros(5, requires_grad=True)
        topt = torch.optim.SGD([ref], lr=1.0)
        sched = torch.optim.lr_scheduler.LambdaLR(topt, lambda t, m=member: float(lrs[min(t, 19), m]))
        for _ in range(20):
            topt.zero_grad()
            (0.5 * ((x @ ref - y) ** 2).mean()).backward()
            topt.step()
            sched.step()
        assert torch.allclose(w[member], ref, atol=1e-6)
    # without a schedule the optimizer's lr is untouched, as before
    opt2 = SGD([torch.zeros(2, 5, requires_grad=True)], lr=0.3)
    fit(opt2, lambda: opt2.params[0].sum(1) * 0, 3)
    assert torch.all(opt2.lr == 0.3)
    with pytest.raises(ValueError, match="lr_schedule"):
        fit(opt, lambda: w.sum(1), 5, lr_schedule=torch.ones(5, 3))


def test_train_linear_agrees_with_the_exact_expected_loss():
    teacher = powerlaw_task(50, 2.0, 2.5, noise=0.05)
    lrs = schedules.stack(["constant", "wsd-20"], 300, 0.5)
    run = experiment.train_linear(teacher, lrs, seeds=64, batch=8, generator=torch.Generator().manual_seed(1))
    lam, w_star = powerlaw.spectrum(50, 2.0, 2.5)
    exact = powerlaw.sgd_expected_loss(lrs, lam, w_star, noise=0.05, batch=8)
    assert run.loss.shape == (301, 64, 2)
    assert np.all(np.abs(run.mean[::20] - exact[::20]) < 4 * run.se[::20] + 1e-6)  # float32 students


# ----------------------------------------------------------------------------- curve metrics
def test_ema_mape_kendall_and_offset_power_law():
    c = np.array([1.0, 2.0, 3.0])
    assert np.allclose(curves.ema(c, 0.0), c)
    assert curves.ema(c, 0.5)[0] == 1.0 and curves.ema(c, 0.5)[1] == pytest.approx((0.25 + 1.0) / 0.75)
    assert curves.mape([1.1, 0.9], [1.0, 1.0]) == pytest.approx(10.0)
    gen = np.random.default_rng(0)
    for _ in range(5):
        x, y = gen.integers(0, 4, 8).astype(float), gen.standard_normal(8)
        assert curves.kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y)[0])
    x = np.geomspace(1, 1e3, 40)
    fitted = curves.fit_offset_power_law(x, 0.2 + 3.0 * x**-0.7)
    assert fitted.exponent == pytest.approx(0.7, rel=1e-3) and fitted.offset == pytest.approx(0.2, rel=1e-3)
    assert fitted.r2 > 0.9999
    with pytest.raises(ValueError, match="positive"):
        curves.fit_offset_power_law(x, -x)
