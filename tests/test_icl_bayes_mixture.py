"""The mixture prior, the Bayes predictors of theory.icl, the real-valued GPT and the chapter's experiment.

Each closed form is checked against an independent computation: importance sampling from the
prior (the posterior mean and the component posterior), a direct constrained least-squares solve
(the noiseless component posterior means, as the paper's own evaluation computes them), the prior
densities of the two exact solutions (the component posterior at k = d − 1), and Monte-Carlo risks.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.data.icl import ICLTasks, interleave
from phenomena.experiments import icl_bayes_mixture as experiment
from phenomena.models.icl_gpt import ICLGPT, ICLGPTConfig
from phenomena.theory import icl as theory


def _draw(d: int, k: int, prompts: int, seed: int, noise: float = 0.0):
    tasks = ICLTasks(d=d, n=k, noise=noise, prior="gmm")
    b = tasks.sample(prompts, torch.Generator().manual_seed(seed))
    return b.points_x.numpy(), b.points_y.numpy(), b.w.numpy()


# ----------------------------------------------------------------------------- data
def test_gmm_prior_pins_first_coordinate_and_mixes_evenly():
    tasks = ICLTasks(d=4, n=3, noise=0.0, prior="gmm", centre=3.0, mixing=0.5)
    b = tasks.sample(20000, torch.Generator().manual_seed(0))
    w1 = b.w[:, 0]
    assert torch.allclose(w1.abs(), torch.full_like(w1, 3.0), atol=1e-3)  # std of w_1 is 1e-4
    assert abs((w1 > 0).double().mean().item() - 0.5) < 0.02
    rest = b.w[:, 1:]
    assert abs(rest.mean().item()) < 0.03 and abs(rest.var().item() - 1) < 0.03
    assert torch.allclose(b.y, torch.einsum("bnd,bd->bn", b.x, b.w))  # noiseless labels
    second = (b.w.T @ b.w / len(b.w)).numpy()
    assert np.allclose(second, tasks.prior_second_moment.numpy(), atol=0.05 * 9)


def test_gaussian_prior_draws_are_unchanged_by_the_new_fields():
    a = ICLTasks(d=3, n=5).sample(7, torch.Generator().manual_seed(1))
    b = ICLTasks(d=3, n=5, prior="gaussian", centre=5.0).sample(7, torch.Generator().manual_seed(1))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.w, b.w)


def test_bad_prior_arguments_are_named():
    with pytest.raises(ValueError, match="unknown prior"):
        ICLTasks(prior="laplace")
    with pytest.raises(ValueError, match="mixing"):
        ICLTasks(prior="gmm", mixing=1.5)
    with pytest.raises(ValueError, match="jitter"):
        ICLTasks(prior="gmm", jitter=0.0)


def test_interleave_layouts():
    x = torch.arange(12.0).view(1, 3, 4) + 1
    y = torch.tensor([[-1.0, -2.0, -3.0]])
    t = interleave(x, y)
    assert t.shape == (1, 6, 4)
    assert torch.equal(t[0, 0::2], x[0])
    assert torch.equal(t[0, 1::2, 0], y[0]) and not t[0, 1::2, 1:].any()
    s = interleave(x, y, label_channel=True)
    assert s.shape == (1, 6, 5)
    assert torch.equal(s[0, 0::2, :4], x[0]) and not s[0, 0::2, 4].any()
    assert torch.equal(s[0, 1::2, 4], y[0]) and not s[0, 1::2, :4].any()
    with pytest.raises(ValueError, match="disagree"):
        interleave(x, y[:, :2])


# ----------------------------------------------------------------------------- theory
def _importance(x, y, w_prior, noise):
    """E[w | x, y] and the posterior weight of w_1 > 0, by weighting prior draws with the likelihood."""
    resid = y[None, :] - w_prior @ x.T  # (S, k)
    logw = -0.5 * (resid**2).sum(1) / noise
    wts = np.exp(logw - logw.max())
    wts /= wts.sum()
    return wts @ w_prior, wts[w_prior[:, 0] > 0].sum()


def test_gaussian_posterior_mean_matches_importance_sampling():
    rng = np.random.default_rng(0)
    d, k, noise = 2, 2, 0.5
    mean, cov = np.array([0.5, -1.0]), np.array([[2.0, 0.3], [0.3, 0.5]])
    x = rng.standard_normal((k, d))
    y = rng.standard_normal(k)
    draws = rng.multivariate_normal(mean, cov, size=400_000)
    expected, _ = _importance(x, y, draws, noise)
    got = theory.gaussian_posterior_mean(x, y, mean, cov, noise=noise, jitter=0.0 + 1e-12)
    assert np.allclose(got, expected, atol=0.01)


def test_gmm_posterior_matches_importance_sampling_with_noise():
    rng = np.random.default_rng(1)
    d, noise, c = 2, 0.5, 1.0
    # jitter 0.3 here: a broad first coordinate makes the sampled check informative
    s = theory.gmm_component_covariance(d, jitter=0.3)
    for k in (1, 2, 3):
        x = rng.standard_normal((k, d))
        y = rng.standard_normal(k) * 1.5
        sign = np.where(rng.random(400_000) < 0.3, 1.0, -1.0)
        draws = rng.multivariate_normal(np.zeros(d), s, size=400_000)
        draws[:, 0] += sign * c
        expected, _ = _importance(x, y, draws, noise)
        resid = y[None, :] - draws @ x.T
        logw = -0.5 * (resid**2).sum(1) / noise
        wts = np.exp(logw - logw.max())
        p_expected = wts[sign > 0].sum() / wts.sum()
        w, p = theory.gmm_posterior(x, y, centre=c, mixing=0.3, noise=noise, jitter=0.3, floor=0.0)
        assert np.allclose(w, expected, atol=0.015), (k, w, expected)
        assert abs(p - p_expected) < 0.01, (k, p, p_expected)


def test_noiseless_component_means_are_the_constrained_min_norm_fits():
    # The paper's evaluation solves min ||w - mu|| s.t. w_1 = mu_1, Xw = y for each component;
    # with (Sigma_1)_11 -> 0 that is the Gaussian posterior mean. Solve it here as a dense system.
    x, y, _ = _draw(d=5, k=3, prompts=20, seed=2)
    x, y = x[:, :3], y[:, :3]
    for sign in (1.0, -1.0):
        mu = sign * theory.gmm_centre(5, 3.0)
        got = theory.gaussian_posterior_mean(x, y, mu, theory.gmm_component_covariance(5), jitter=1e-12)
        for b in range(len(x)):
            a = x[b, :, 1:]  # the free coordinates
            free = np.linalg.lstsq(a, y[b] - x[b, :, 0] * mu[0], rcond=None)[0]  # min-norm: mu_rest = 0
            assert np.allclose(got[b, 1:], free, atol=1e-5)
            assert abs(got[b, 0] - mu[0]) < 1e-5


def test_component_posterior_at_k_equal_d_minus_1_is_a_ratio_of_prior_densities():
    # With k = d - 1 noiseless points each component has exactly one solution; its evidence is the
    # prior density of that solution's free part (same Jacobian for both), so p+ = sigmoid(-(|w+|^2 - |w-|^2)/2).
    d = 4
    x, y, _ = _draw(d=d, k=d - 1, prompts=50, seed=3)
    x, y = x[:, : d - 1], y[:, : d - 1]
    _, p = theory.gmm_posterior(x, y, centre=3.0, jitter=1e-10, floor=1e-12)
    w_sq = []
    for sign in (1.0, -1.0):
        free = np.linalg.solve(x[:, :, 1:], (y - sign * 3.0 * x[:, :, 0])[..., None])[..., 0]
        w_sq.append((free**2).sum(-1))
    expected = 0.5 * (1 - np.tanh(0.25 * (w_sq[0] - w_sq[1])))  # the logistic function of -(a - b)/2
    assert np.allclose(p, expected, atol=1e-4)


def test_min_norm_least_squares_risk_matches_monte_carlo():
    d = 4
    x, y, _ = _draw(d=d, k=d, prompts=40000, seed=4)
    for k in (1, 2, 3, 4):
        pred = np.einsum("bd,bd->b", theory.min_norm_least_squares(x[:, :k], y[:, :k]), x[:, k])
        err = (pred - y[:, k]) ** 2
        closed = theory.min_norm_least_squares_risk(d, k, 9 + d - 1)
        assert abs(err.mean() - closed) < 4 * err.std() / np.sqrt(len(err)) + 1e-9, (k, err.mean(), closed)


def test_ridge_risk_depends_on_the_second_moment_only():
    # A linear predictor's risk is E_X tr((I - Q)E[ww^T](I - Q)^T): compare the Monte-Carlo risk on
    # mixture tasks with that trace averaged over the same inputs (no task draws at all).
    d, k = 3, 2
    x, y, _ = _draw(d=d, k=k, prompts=40000, seed=5)
    pred = theory.mixture_predictions(x[:, :k], y[:, :k], x[:, k])["ridge"]
    err = (pred - y[:, k]) ** 2
    s = np.diag([9.0 + 1e-8, 1.0, 1.0])
    xs = x[:, :k]
    q = s @ np.swapaxes(xs, 1, 2) @ np.linalg.inv(xs @ s @ np.swapaxes(xs, 1, 2)) @ xs
    resid = np.eye(d) - q
    trace = np.einsum("bij,jk,bik->b", resid, s, resid).mean()
    assert abs(err.mean() - trace) < 4 * err.std() / np.sqrt(len(err))


def test_bayes_beats_ridge_beats_ols_and_spec_numbers_are_sane():
    d = 3
    x, y, _ = _draw(d=d, k=d, prompts=40000, seed=6)
    for k, spec in ((1, {"pme": 1.36, "ridge": 1.67, "ols": 2.48}), (2, {"pme": 0.24, "ridge": 0.62, "ols": 1.20})):
        pred = theory.mixture_predictions(x[:, :k], y[:, :k], x[:, k])
        mse = {name: float(((p - y[:, k]) ** 2).mean() / d) for name, p in pred.items()}
        assert mse["pme"] < mse["ridge"] < mse["ols"]
        for name, value in spec.items():  # those came from 4,000 tasks: a sanity check only
            assert abs(mse[name] - value) < 0.1 + 0.1 * value, (k, name, mse[name], value)
    pred = theory.mixture_predictions(x[:, :d], y[:, :d], np.eye(d)[None, 0].repeat(len(x), 0))
    assert np.allclose(pred["ols"], pred["pme"], atol=1e-3)  # k = d: every method recovers w


def test_theory_errors_are_named():
    with pytest.raises(ValueError, match="contexts"):
        theory.gmm_posterior(np.zeros((3, 2)), np.zeros(2))
    with pytest.raises(ValueError, match="mixing"):
        theory.gmm_posterior(np.zeros((3, 2)), np.zeros(3), mixing=1.0)
    with pytest.raises(ValueError, match="jitter"):
        theory.gmm_component_covariance(3, 0.0)


def test_zero_context_gives_the_prior_mean():
    x, y = np.zeros((5, 0, 3)), np.zeros((5, 0))
    w, p = theory.gmm_posterior(x, y, mixing=0.5)
    assert np.allclose(w, 0) and np.allclose(p, 0.5)
    assert np.allclose(theory.min_norm_least_squares(x, y), 0)


# ----------------------------------------------------------------------------- model
@pytest.mark.parametrize("label_channel", [False, True])
def test_icl_gpt_is_causal_and_batched(label_channel):
    config = ICLGPTConfig(dim=3, points=5, layers=2, width=16, members=2, label_channel=label_channel)
    model = ICLGPT(config, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(4, 5, 3, generator=g), torch.randn(4, 5, generator=g)
    out = model(x, y)
    assert out.shape == (2, 4, 5)
    x2, y2 = x.clone(), y.clone()
    x2[:, 3:] += 1.0
    y2[:, 2:] -= 1.0  # y_2 is never seen by the prediction of y_2
    out2 = model(x2, y2)
    assert torch.allclose(out[:, :, :3], out2[:, :, :3], atol=1e-6)
    assert not torch.allclose(out[:, :, 3:], out2[:, :, 3:])
    assert model.loss(x, y).shape == (2,)
    per_member = model(x.expand(2, -1, -1, -1), y.expand(2, -1, -1))
    assert torch.allclose(per_member, out)


def test_icl_gpt_errors_are_named():
    model = ICLGPT(ICLGPTConfig(dim=3, points=2, layers=1, width=8))
    with pytest.raises(ValueError, match="exceed"):
        model(torch.zeros(1, 3, 3), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="expected x"):
        model(torch.zeros(1, 2, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="multiple of heads"):
        ICLGPTConfig(dim=3, points=2, width=10, heads=3)


# ----------------------------------------------------------------------------- experiment
def test_experiment_trains_evaluates_and_probes():
    tasks = experiment.mixture_tasks(3, 4)
    trained = experiment.train(tasks, members=2, steps=30, batch=16, lr=[1e-3, 3e-3], layers=1, width=16, heads=2,
                               generator=torch.Generator().manual_seed(0), label_channel=True)
    assert trained.loss.shape == (31, 2) and np.isfinite(trained.loss).all()
    table = experiment.evaluate(trained.model, tasks, prompts=300, generator=torch.Generator().manual_seed(1),
                                chunk=128)
    assert set(table["predictor"]) == {"transformer", "pme", "ridge", "ols"}
    assert len(table) == 4 * 2 + 4 * 3
    at0 = table[table["k"] == 0].set_index("predictor")["mse"]
    assert np.isclose(at0["pme"], at0["ols"])  # no context: every reference predicts 0
    probe = experiment.probe_posterior(trained.model, tasks, [1, 2], prompts=50,
                                       generator=torch.Generator().manual_seed(2))
    assert len(probe) == 2 * 2 * 50
    expected = 3 * (2 * probe["p_plus"] - 1)
    assert np.allclose(probe["pme"], expected, atol=1e-3)
    with pytest.raises(ValueError, match="at least 2"):
        experiment.mixture_tasks(3, 1)
