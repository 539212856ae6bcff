"""upsample-vs-upweight: mixture weights, the minibatch-gradient variance law (exact enumeration), the SGD
noise floor and its exact finite-step form (dense solve, Monte-Carlo), the samplers, the domain data and
the experiment's written-out gradient (autograd)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from phenomena.data.domains import domain_features, imbalanced_domains, population_loss, zipf_sizes
from phenomena.experiments import upsample_vs_upweight as experiment
from phenomena.samplers import (
    scalarization_sampler,
    stack_minibatches,
    temperature_sampler,
    temperature_schedule,
)
from phenomena.theory.mixture import (
    minibatch_gradient_variance,
    scalarization_weights,
    sgd_noise_floor,
    sgd_stationary_excess,
    temperature_weights,
)


# ----------------------------------------------------------------------------- mixture weights
def test_temperature_weights_limits_and_errors():
    n = [400, 100, 25]
    np.testing.assert_allclose(temperature_weights(n, 1), np.array(n) / 525)
    np.testing.assert_allclose(temperature_weights(n, math.inf), np.full(3, 1 / 3))
    p2 = temperature_weights(n, 2)
    np.testing.assert_allclose(p2, np.array([20, 10, 5]) / 35)
    assert temperature_weights([1e300, 1.0], 1).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(scalarization_weights(n, p2) * np.array(n) / 525, p2)
    with pytest.raises(ValueError, match="tau"):
        temperature_weights(n, 0)
    with pytest.raises(ValueError, match="positive"):
        temperature_weights([3, 0], 1)


# ----------------------------------------------------------------------------- variance law
def _exact_minibatch_trace(grads, probs, weights, batch):
    """tr Cov of the mean of ``batch`` weighted draws, by enumerating every ordered tuple of examples."""
    n = len(probs)
    mean = sum(probs[i] * weights[i] * grads[i] for i in range(n))
    total = 0.0
    for tup in itertools.product(range(n), repeat=batch):
        pr = np.prod([probs[i] for i in tup])
        g = sum(weights[i] * grads[i] for i in tup) / batch
        total += pr * float((g - mean) @ (g - mean))
    return total, mean


@pytest.mark.parametrize("tau", [1.0, 3.0, math.inf])
def test_variance_law_matches_exact_enumeration(tau):
    rng = np.random.default_rng(0)
    sizes = [4, 2, 1]
    domain = np.repeat(np.arange(3), sizes)
    grads = rng.normal(size=(7, 3)) + np.array([0.5, -1.0, 2.0])
    p = temperature_weights(sizes, tau)
    q = np.array(sizes) / 7
    s = np.array([np.mean([grads[i] @ grads[i] for i in np.where(domain == k)[0]]) for k in range(3)])
    batch = 3
    # temperature sampling: example i with probability p_k / n_k, weight 1
    exact_ts, gbar = _exact_minibatch_trace(grads, p[domain] / np.array(sizes)[domain], np.ones(7), batch)
    # scalarization: example i with probability 1/N, weight p_k / q_k
    exact_s, gbar_s = _exact_minibatch_trace(grads, np.full(7, 1 / 7), (p / q)[domain], batch)
    np.testing.assert_allclose(gbar, gbar_s, atol=1e-12)
    assert minibatch_gradient_variance(s, gbar, p, q, batch, sampler="temperature") == pytest.approx(exact_ts, rel=1e-10)
    assert minibatch_gradient_variance(s, gbar, p, q, batch, sampler="scalarization") == pytest.approx(exact_s, rel=1e-10)
    if tau == 1.0:  # p = q: the two samplers are the same
        assert exact_ts == pytest.approx(exact_s, rel=1e-10)
    else:
        assert exact_s > exact_ts


def test_variance_law_errors():
    with pytest.raises(ValueError, match="sampler"):
        minibatch_gradient_variance([1, 1], [0, 0], [0.5, 0.5], [0.5, 0.5], 2, sampler="uniform")
    with pytest.raises(ValueError, match="sum to 1"):
        minibatch_gradient_variance([1, 1], [0, 0], [0.5, 0.6], [0.5, 0.5], 2)
    with pytest.raises(ValueError, match="batch"):
        minibatch_gradient_variance([1, 1], [0, 0], [0.5, 0.5], [0.5, 0.5], 0)


# ----------------------------------------------------------------------------- noise floor
def _dense_stationary(phi, pi, w, r, lr, batch):
    """Solve the stationary second-moment equation as one dense linear system (Kronecker form)."""
    p = phi.shape[1]
    hess = phi.T @ (phi * (pi * w)[:, None])
    noise = phi.T @ (phi * (pi * w * w * r * r)[:, None]) / batch
    eye = np.eye(p)
    op = np.kron(hess, eye) + np.kron(eye, hess) - lr * (1 - 1 / batch) * np.kron(hess, hess)
    for i in range(len(pi)):
        outer = np.outer(phi[i], phi[i])
        op -= lr / batch * pi[i] * w[i] ** 2 * np.kron(outer, outer)
    c = np.linalg.solve(op, lr * noise.reshape(-1)).reshape(p, p)
    return 0.5 * float(np.sum(hess * c)), hess, noise


def test_stationary_excess_matches_dense_solve_and_first_order_limit():
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(6, 3))
    pi = rng.dirichlet(np.ones(6))
    w = rng.uniform(0.5, 2.0, size=6)
    r = rng.normal(size=6)
    for lr in (0.05, 0.2):
        exact, hess, noise = _dense_stationary(phi, pi, w, r, lr, 2)
        assert sgd_stationary_excess(phi, pi, w, r, lr, 2) == pytest.approx(exact, rel=1e-7)
    small = 1e-4
    floor = sgd_noise_floor(small, float(np.trace(noise)))
    assert sgd_stationary_excess(phi, pi, w, r, small, 2) == pytest.approx(floor, rel=1e-3)
    with pytest.raises(ValueError, match="did not converge"):
        sgd_stationary_excess(phi, pi, w, r, 50.0, 2)


def test_noise_floor_matches_monte_carlo_sgd():
    """SGD with additive Gaussian gradient noise on a quadratic: the long-run excess loss is (η/4) tr Σ."""
    gen = torch.Generator().manual_seed(3)
    hess = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=torch.float64)
    chol = torch.tensor([[0.8, 0.0], [0.2, 0.5]], dtype=torch.float64)
    sigma = chol @ chol.T
    lr, members, steps = 0.01, 2000, 3000
    x = torch.zeros(members, 2, dtype=torch.float64)
    acc, count = 0.0, 0
    for t in range(steps):
        noise = torch.randn(members, 2, generator=gen, dtype=torch.float64) @ chol.T
        x = x - lr * (x @ hess + noise)
        if t >= steps // 2:
            acc += float(0.5 * ((x @ hess) * x).sum(1).mean())
            count += 1
    measured = acc / count
    assert measured == pytest.approx(sgd_noise_floor(lr, float(torch.trace(sigma))), rel=0.05)


# ----------------------------------------------------------------------------- samplers
def test_samplers_hit_their_mixtures_and_weights():
    sizes = [300, 60, 12]
    p = temperature_weights(sizes, 4.0)
    gen = torch.Generator().manual_seed(0)
    ts = temperature_sampler(sizes, p, batch=8, steps=4000, members=2, generator=gen)
    sc = scalarization_sampler(sizes, p, batch=8, steps=4000, members=2, generator=gen)
    domain = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    freq_ts = torch.bincount(domain[ts.index.flatten()], minlength=3).double() / ts.index.numel()
    freq_s = torch.bincount(domain[sc.index.flatten()], minlength=3).double() / sc.index.numel()
    np.testing.assert_allclose(freq_ts.numpy(), p, atol=0.01)
    np.testing.assert_allclose(freq_s.numpy(), np.array(sizes) / 372, atol=0.01)
    assert torch.all(ts.weight == 1)
    w = scalarization_weights(sizes, p)
    np.testing.assert_allclose(sc.weight.numpy(), w[domain[sc.index].numpy()])
    # within a domain, temperature sampling is uniform over its examples
    low = ts.index[(domain[ts.index] == 2)] - 360
    counts = torch.bincount(low, minlength=12).double()
    assert counts.min() > 0.8 * counts.mean()
    both = stack_minibatches([ts, sc])
    assert both.members == 4 and both.steps == 4000


def test_cooldown_schedule_switches_mixture():
    sizes = [100, 10]
    sched = temperature_schedule(sizes, 8, switch=0.25)
    np.testing.assert_allclose(sched[:2], np.full((2, 2), 0.5))
    np.testing.assert_allclose(sched[2:], np.tile(np.array(sizes) / 110, (6, 1)))
    gen = torch.Generator().manual_seed(0)
    mb = temperature_sampler(sizes, temperature_schedule(sizes, 2000, switch=0.5), batch=4, steps=2000, generator=gen)
    low_first = (mb.index[:1000] >= 100).double().mean().item()
    low_last = (mb.index[1000:] >= 100).double().mean().item()
    assert low_first == pytest.approx(0.5, abs=0.03) and low_last == pytest.approx(10 / 110, abs=0.02)
    with pytest.raises(ValueError, match="mixture"):
        temperature_sampler(sizes, [0.5, 0.6], batch=2, steps=3)


# ----------------------------------------------------------------------------- data and model
def test_domains_features_and_population_loss():
    data = imbalanced_domains([50, 20, 5], 4, noise=0.3, generator=torch.Generator().manual_seed(0))
    assert data.x.shape == (75, 4) and data.offsets == (0, 50, 70)
    assert torch.equal(data.domain, torch.repeat_interleave(torch.arange(3), torch.tensor([50, 20, 5])))
    phi = domain_features(data.x, data.domain, 3)
    assert phi.shape == (75, 16)
    np.testing.assert_allclose(phi[60, :4], data.x[60]) and np.testing.assert_allclose(phi[60, 8:12], data.x[60])
    assert float(phi[60, 4:8].abs().sum() + phi[60, 12:].abs().sum()) == 0.0
    # population loss against a Monte-Carlo sample of fresh inputs
    gen = torch.Generator().manual_seed(1)
    theta = torch.randn(16, generator=gen, dtype=torch.float64)
    x = torch.randn(200_000, 4, generator=gen, dtype=torch.float64)
    v = theta[:4] + theta[4:8]  # domain 0
    y = x @ data.teachers[0] + 0.3 * torch.randn(200_000, generator=gen, dtype=torch.float64)
    mc = 0.5 * ((x @ v - y) ** 2).mean()
    assert float(population_loss(theta, data)[0]) == pytest.approx(float(mc), rel=0.01)
    assert zipf_sizes(4, 1000) == [1000, 500, 333, 250]
    with pytest.raises(ValueError, match="coordinates"):
        population_loss(torch.zeros(5, dtype=torch.float64), data)


def test_written_out_gradient_matches_autograd_and_divergence_is_recorded():
    data = imbalanced_domains([40, 10], 3, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    p = temperature_weights(data.sizes, math.inf)
    mb = scalarization_sampler(data.sizes, p, batch=4, steps=1, members=3, generator=gen)
    theta0 = torch.randn(3, 9, generator=gen, dtype=torch.float64)
    out = experiment.train_sgd(data, mb, lr=0.1, theta0=theta0, record_every=1)
    t = theta0.clone().requires_grad_(True)
    phi = data.features
    idx, w = mb.index[0], mb.weight[0]
    loss = (w * 0.5 * ((phi[idx] * t[:, None, :]).sum(-1) - data.y[idx]) ** 2).mean(-1).sum()
    (grad,) = torch.autograd.grad(loss, t)
    torch.testing.assert_close(out.theta, theta0 - 0.1 * grad)
    # quadratic-form training losses equal the direct ones
    torch.testing.assert_close(
        experiment.quadratic_losses(theta0, experiment.loss_moments(data)),
        experiment.domain_losses(theta0, phi, data.y, data.domain, data.domains),
    )
    # a step far too large for the upweighted domain: recorded, not raised
    big = scalarization_sampler(data.sizes, p, batch=1, steps=400, members=2, generator=gen)
    res = experiment.train_sgd(data, big, lr=5.0, record_every=50)
    assert np.all(res.diverged_at >= 0) and torch.isfinite(res.theta).all()


def test_full_batch_equivalence_and_minimum():
    data = imbalanced_domains([60, 12], 3, generator=torch.Generator().manual_seed(2))
    p = temperature_weights(data.sizes, 3.0)
    res = experiment.full_batch_equivalence(data, p, lr=0.05, steps=200)
    assert res.max_difference < 1e-12
    theta, best = experiment.minimum(data, p)
    s, gbar = experiment.gradient_moments(data, theta, p)
    assert np.abs(gbar).max() < 1e-10 and s.shape == (2,)
    assert float(res.loss[-1, 0]) >= best - 1e-12
