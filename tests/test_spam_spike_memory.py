"""SPAM, the spike closed forms and the gradient spike score, each against an independent computation."""

import math
import warnings

import numpy as np
import pytest
import torch

from phenomena import ensemble
from phenomena.experiments import spam_spike_memory as X
from phenomena.metrics.spikes import gradient_spike_score, spikes
from phenomena.theory import adam

DT = torch.float64


# ----------------------------------------------------------------------------- reference SPAM
class _CosineDecay:
    """The reference code's warm-up schedule, built on torch's own cosine scheduler as the code does."""

    def __init__(self, rate: float, t_max: int) -> None:
        self.sgd = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=rate)
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.sgd, t_max + 1, 0.0, -1)
        self.t_max = t_max

    def get_dr(self, step: int) -> float:
        if step >= self.t_max:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.sched.step(step)
        return self.sgd.param_groups[0]["lr"]


class _ReferenceSPAM:
    """One model, scalar hyper-parameters, the reference code's control flow (step counters and all)."""

    def __init__(self, x, lr, threshold, gap, warmup, betas=(0.9, 0.999), eps=1e-6, accu=20, wd=0.0):
        self.x, self.lr, self.thres, self.warmup_epoch, self.accu, self.wd = x, lr, threshold, warmup, accu, wd
        self.gap = gap if gap else 10**9
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.m, self.v = torch.zeros_like(x), torch.zeros_like(x)
        self.total_step, self.current_step, self.step = 0, warmup + 1, 0
        self.warm = _CosineDecay(0.99, warmup)

    def update(self, grad):
        grad = grad.clone()
        scale = 1 - self.warm.get_dr(self.current_step)
        if (self.total_step + 1) % self.gap == 0:
            self.m, self.v = torch.zeros_like(grad), torch.zeros_like(grad)
        self.step += 1
        if self.thres != 0:
            current = self.total_step + 1
            if current >= self.accu and current % self.gap >= self.accu:
                mask = grad**2 > self.thres * self.v
                grad[mask] = grad[mask].sign() * torch.sqrt(self.v[mask] * self.thres)
        self.m = self.m * self.b1 + (1 - self.b1) * grad
        self.v = self.v * self.b2 + (1 - self.b2) * grad * grad
        size = self.lr * math.sqrt(1 - self.b2**self.step) / (1 - self.b1**self.step)
        self.x = self.x - size * scale * self.m / (self.v.sqrt() + self.eps)
        if self.wd > 0:
            self.x = self.x - self.lr * self.wd * self.x
        self.total_step += 1
        self.current_step += 1
        if (self.total_step + 1) % self.gap == 0:
            self.current_step = 0
            self.warm = _CosineDecay(0.99, self.warmup_epoch)


def _problem(steps, members, dim, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(members, dim, generator=g, dtype=DT)
    noise = torch.randn(steps, members, dim, generator=g, dtype=DT)
    # occasional huge gradients on random coordinates, so that the clip has work to do
    kicks = (torch.rand(steps, members, dim, generator=g, dtype=DT) < 0.01) * 300.0
    return x0, noise + kicks * torch.sign(noise)


def test_spam_matches_independent_reference_per_member():
    steps, dim = 260, 6
    settings = [(5000.0, 0, 0), (50.0, 40, 10), (5.0, 25, 0), (0.0, 30, 7), (20.0, 0, 0)]
    lrs = [1e-2, 3e-2, 1e-2, 2e-2, 5e-3]
    wds = [0.0, 0.01, 0.0, 0.1, 0.0]
    members = len(settings)
    x0, noise = _problem(steps, members, dim)
    x = x0.clone().requires_grad_(True)
    opt = ensemble.SPAM([x], torch.tensor(lrs, dtype=DT), threshold=[s[0] for s in settings],
                        reset_interval=[s[1] for s in settings], warmup=[s[2] for s in settings],
                        weight_decay=wds, clip_delay=20)
    counter = [0]

    def loss():
        t = counter[0]
        counter[0] += 1
        return (0.5 * 0.3 * x * x + noise[min(t, steps - 1)] * x).sum(1)

    ensemble.fit(opt, loss, steps)
    assert int(opt.clipped.sum()) > 0
    for e, (theta, gap, warm) in enumerate(settings):
        ref = _ReferenceSPAM(x0[e].clone(), lrs[e], theta, gap, warm, wd=wds[e])
        for t in range(steps):
            ref.update(0.3 * ref.x + noise[t, e])
        torch.testing.assert_close(x.detach()[e], ref.x, rtol=1e-10, atol=1e-12)


def test_spam_without_clip_or_reset_is_adam():
    x0, noise = _problem(200, 3, 4, seed=1)
    xs = [x0.clone().requires_grad_(True) for _ in range(2)]
    opts = [ensemble.SPAM([xs[0]], 1e-2, threshold=0.0, reset_interval=0, warmup=0, eps=0.0),
            ensemble.Adam([xs[1]], 1e-2, eps=0.0)]
    for x, opt in zip(xs, opts):
        counter = [0]

        def loss(x=x, counter=counter):
            t = counter[0]
            counter[0] += 1
            return (0.5 * x * x + noise[min(t, 199)] * x).sum(1)

        ensemble.fit(opt, loss, 200)
    torch.testing.assert_close(xs[0].detach(), xs[1].detach(), rtol=1e-12, atol=1e-14)


def test_spam_rejects_bad_hyperparameters():
    x = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match="reset_interval"):
        ensemble.SPAM([x], 1e-3, reset_interval=[2.5, 3])
    with pytest.raises(ValueError, match="threshold"):
        ensemble.SPAM([x], 1e-3, threshold=[1.0, 2.0, 3.0])


def test_fit_grad_transform_sees_every_step_and_defaults_to_autograd():
    x = torch.ones(2, 3, dtype=DT, requires_grad=True)
    seen = []

    def transform(step, grads):
        seen.append(step)
        return [g * 0 for g in grads]  # a transform that zeroes the gradient freezes the model

    ensemble.fit(ensemble.SGD([x], 0.1), lambda: (x * x).sum(1), 5, grad_transform=transform)
    assert seen == [0, 1, 2, 3, 4]
    assert torch.equal(x.detach(), torch.ones(2, 3, dtype=DT))
    ensemble.fit(ensemble.SGD([x], 0.1), lambda: (x * x).sum(1), 1)
    torch.testing.assert_close(x.detach(), torch.full((2, 3), 0.8, dtype=DT))
    with pytest.raises(ValueError, match="one gradient per parameter"):
        ensemble.fit(ensemble.SGD([x], 0.1), lambda: (x * x).sum(1), 1, grad_transform=lambda s, g: [])
    with pytest.raises(ValueError, match="compile"):
        ensemble.fit(ensemble.SGD([x], 0.1), lambda: (x * x).sum(1), 1, grad_transform=transform, compile=True)


# ----------------------------------------------------------------------------- closed forms
def _scalar_adam(grads, beta1=0.9, beta2=0.999):
    """Plain Adam moments on a list of gradients: the steps |m̂/√v̂| and the v after each."""
    m = v = 0.0
    steps, vs = [], []
    for t, g in enumerate(grads, 1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        steps.append(abs(m / (1 - beta1**t)) / math.sqrt(v / (1 - beta2**t)))
        vs.append(v)
    return np.array(steps), np.array(vs)


@pytest.mark.parametrize("s", [3.0, 30.0, 1000.0])
def test_spike_step_matches_adam_recursion(s):
    # a long run of unit gradients of alternating sign settles m near 0 and v at 1 (up to β^t terms)
    t0 = 20000
    grads = [(-1.0) ** i for i in range(t0 - 1)]
    _, vs = _scalar_adam(grads)
    m_prev = sum((1 - 0.9) * 0.9 ** (t0 - 2 - i) * g for i, g in enumerate(grads))
    steps, _ = _scalar_adam(grads + [s])
    assert steps[-1] == pytest.approx(adam.spike_step(s, m=m_prev, v=vs[-1], t=t0), rel=1e-10)
    assert adam.spike_step(s, t=t0) <= adam.spike_step_limit(t=t0)


def test_spike_step_limit_is_the_large_spike_limit():
    assert adam.spike_step_limit() == pytest.approx(0.1 / math.sqrt(0.001))
    assert adam.spike_step(1e9) == pytest.approx(adam.spike_step_limit(), rel=1e-9)


@pytest.mark.parametrize(("s", "threshold"), [(1000.0, None), (100.0, None), (1000.0, 5000.0)])
def test_muting_and_recovery_match_the_v_recursion(s, threshold):
    beta2, k_max = 0.999, 8000
    v0 = 1.0
    g2 = s * s if threshold is None else min(s * s, threshold * v0)
    clean = np.full(k_max + 1, v0)  # typical gradients g² = v₀ keep v at v₀
    hit = np.empty(k_max + 1)
    hit[0] = beta2 * v0 + (1 - beta2) * g2
    for k in range(1, k_max + 1):
        hit[k] = beta2 * hit[k - 1] + (1 - beta2) * v0
    measured = np.sqrt(clean / hit)
    inflation = adam.spike_inflation(s, threshold=threshold)
    expected = adam.muting_factor(np.arange(k_max + 1), inflation)
    # the closed form counts the spike's g² on top of v₀; the recursion replaces one typical g² by it
    inflation_exact = (1 - beta2) * (g2 - v0)
    np.testing.assert_allclose(measured, adam.muting_factor(np.arange(k_max + 1), inflation_exact), rtol=1e-12)
    np.testing.assert_allclose(measured, expected, rtol=2e-3)
    k_half = adam.recovery_steps(inflation_exact)
    crossing = np.flatnonzero(measured >= 0.5)[0]
    assert crossing - 1 < k_half <= crossing


def test_recovery_steps_numbers_and_edges():
    assert adam.recovery_steps(adam.spike_inflation(1000.0)) == pytest.approx(5806, abs=1)
    assert adam.recovery_steps(adam.spike_inflation(1000.0, threshold=5000.0)) == pytest.approx(511, abs=1)
    assert adam.recovery_steps(adam.spike_inflation(10.0)) == 0.0
    with pytest.raises(ValueError, match="level"):
        adam.recovery_steps(5.0, level=1.5)


# ----------------------------------------------------------------------------- spike score
def test_gradient_spike_score_against_a_loop():
    g = torch.Generator().manual_seed(3)
    grads = torch.randn(200, 4, 3, generator=g, dtype=DT)
    grads[17, 2, 1] = 400.0
    grads[:, 0, 0] = 0.0
    score = gradient_spike_score(grads)
    for i in range(4):
        for j in range(3):
            series = [abs(float(v)) for v in grads[:, i, j]]
            mean = sum(series) / len(series)
            for t in range(50):
                want = series[t] / mean if mean > 0 else 0.0
                assert float(score[t, i, j]) == pytest.approx(want, rel=1e-12)
    flagged = spikes(grads)
    assert flagged[17, 2, 1] and int(flagged.sum()) == 1
    with pytest.raises(ValueError, match="at least 2 steps"):
        gradient_spike_score(torch.ones(1, 3))


# ----------------------------------------------------------------------------- the experiment
def test_noisy_quadratic_spike_small_run():
    r = X.noisy_quadratic_spike((100.0,), dim=16, steps=900, spike_at=620, reset_interval=200, warmup=20,
                                generator=torch.Generator().manual_seed(0))
    adam_hit = r.member("Adam", 100.0)
    assert r.step_at_spike[adam_hit].mean() < adam.spike_step_limit()
    mute = r.muting("SPAM clip", 100.0)
    assert mute.min() == pytest.approx(1 / math.sqrt(1 + 0.001 * 5000), rel=0.05)
    assert X.memory(r.muting("SPAM", 100.0)) <= 200
    assert r.clipped[r.member("SPAM clip", 100.0)] == 16
    with pytest.raises(ValueError, match="after a reset"):
        X.noisy_quadratic_spike((10.0,), dim=16, steps=900, spike_at=605, reset_interval=200,
                                generator=torch.Generator().manual_seed(0))


def test_recovery_time_and_memory_helpers():
    mute = np.array([0.2, 0.3, 0.45, 0.55, 0.7, 0.995, 1.0])
    assert X.recovery_time(mute) == pytest.approx(2.5)
    assert X.memory(mute) == 5.0
    assert np.isnan(X.recovery_time(np.array([0.9, 0.4])))
