"""Zhai et al. (2023)'s attention-entropy bound and the chapter's probes of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.data import markov_language
from phenomena.experiments import attention_entropy_collapse as experiment
from phenomena.models import GPT, GPTConfig
from phenomena.theory import attention_entropy_bound, entropy_lower_bound, extremal_logits, softmax_entropy


@pytest.mark.parametrize("keys", [2, 3, 8, 64])
def test_bound_is_log_t_at_zero_and_falls_below_it(keys: int) -> None:
    assert entropy_lower_bound(0.0, keys) == pytest.approx(math.log(keys), abs=1e-12)
    radii = np.linspace(0, 40, 400)
    f = entropy_lower_bound(radii, keys)
    assert np.all(f <= math.log(keys) + 1e-12)
    assert np.all(np.diff(f) < 0)  # a larger ball of logits allows a smaller entropy
    assert f[-1] < 1e-12  # exponentially small for large spectral norms


def test_bound_decays_like_t_r_exp_minus_r() -> None:
    # the paper's Ω(T σ e^{-σ}): for large r, f(r, T) / (T r e^{-r√(T/(T−1))}) → 1 (up to the √ factors)
    t, r = 16, np.array([30.0, 60.0])
    delta = r * np.sqrt(t / (t - 1))
    ratio = entropy_lower_bound(r, t) / ((t - 1) * delta * np.exp(-delta))
    assert ratio == pytest.approx([1.0, 1.0], rel=0.05)


@pytest.mark.parametrize("keys", [2, 5, 16])
@pytest.mark.parametrize("radius", [0.1, 1.0, 3.0, 10.0])
def test_bound_is_attained_by_the_extremal_logits(keys: int, radius: float) -> None:
    z = extremal_logits(radius, keys)
    assert np.linalg.norm(z) == pytest.approx(radius)
    assert z.mean() == pytest.approx(0.0, abs=1e-12)
    assert softmax_entropy(z) == pytest.approx(entropy_lower_bound(radius, keys), rel=1e-10, abs=1e-14)


def test_bound_holds_on_random_logits_of_every_norm() -> None:
    rng = np.random.default_rng(0)
    for keys in (2, 3, 4, 8, 32):
        z = rng.normal(size=(20000, keys)) * rng.exponential(3.0, size=(20000, 1))
        z[:500] = rng.standard_cauchy(size=(500, keys))  # heavy tails: one or two logits far out
        slack = softmax_entropy(z) - entropy_lower_bound(np.linalg.norm(z, axis=1), keys)
        assert slack.min() >= -1e-12


def test_theorem_holds_for_random_attention_and_is_tight_for_orthogonal_inputs() -> None:
    rng = np.random.default_rng(1)
    t, d = 6, 8
    for _ in range(200):
        x = rng.normal(size=(t, d)) * rng.exponential(1.0)
        w = rng.normal(size=(d, d)) * rng.exponential(0.5)
        logits = x @ w @ x.T  # row i: x_i W x_j over keys j
        bound = attention_entropy_bound(np.linalg.norm(w, 2), np.linalg.norm(x @ x.T, 2), t)
        assert softmax_entropy(logits).min() >= bound - 1e-12
    # tightness: orthogonal inputs of equal norm s, W sending x_0 to the extremal logit vector
    s, sigma = 1.5, 0.7
    x = s * np.eye(t, d)
    z = extremal_logits(sigma * s**2, t)
    w = np.outer(x[0], x.T @ z) / s**4  # x_0 W x_jᵀ = z_j
    assert np.linalg.norm(w, 2) == pytest.approx(sigma)
    entropy = softmax_entropy(x[0] @ w @ x.T)
    assert entropy == pytest.approx(attention_entropy_bound(sigma, np.linalg.norm(x @ x.T, 2), t), rel=1e-10)


def test_bound_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="keys"):
        entropy_lower_bound(1.0, 0)
    with pytest.raises(ValueError, match="keys"):
        entropy_lower_bound(1.0, 2.5)
    with pytest.raises(ValueError, match="radius"):
        entropy_lower_bound(-1.0, 4)
    with pytest.raises(ValueError, match="norms"):
        attention_entropy_bound(-1.0, 1.0, 4)
    assert entropy_lower_bound(5.0, 1) == 0.0  # one key: a point mass


def test_prefix_sigma_x_is_the_top_eigenvalue_of_each_prefix() -> None:
    x = torch.randn(3, 7, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    got = experiment.prefix_sigma_x(x)
    for b in range(3):
        for i in range(7):
            prefix = x[b, : i + 1]
            assert got[b, i] == pytest.approx(float(torch.linalg.matrix_norm(prefix @ prefix.T, ord=2)), rel=1e-10)


@pytest.mark.parametrize("sigma_reparam", [False, True])
def test_head_query_key_reproduces_the_models_attention(sigma_reparam: bool) -> None:
    config = GPTConfig(vocab_size=11, context=6, layers=2, heads=2, width=8, norm="post",
                       sigma_reparam=sigma_reparam, members=2, dtype=torch.float64)
    model = GPT(config, torch.Generator().manual_seed(3))
    tokens = torch.randint(0, 11, (3, 6), generator=torch.Generator().manual_seed(4))
    probed = experiment.bound_probe(model, tokens)
    assert float(probed["probe_error"].max()) < 1e-12  # we recompute exactly what the model attended with
    assert float(probed["margin"].min()) >= -1e-12
    assert float(probed["logit_margin"].min()) >= -1e-12
    assert float(probed["logit_ratio"].max()) <= 1 + 1e-12


def test_short_training_run_records_every_step_and_the_sigma_gamma_ratio() -> None:
    language = markov_language(8, 2, generator=torch.Generator().manual_seed(0))
    runs = [experiment.train_lr_grid(language, [0.01, 0.3], sigma_reparam=switch, steps=4, width=8, layers=1,
                                     heads=2, batch=4, length=6, probe_batch=2,
                                     generator=torch.Generator().manual_seed(1)) for switch in (False, True)]
    base, reparam = runs
    assert base.entropy.shape == (5, 2, 1, 2) and base.loss.shape == (5, 2)
    assert base.gamma_ratio.shape == (5, 2, 0)
    assert reparam.gamma_ratio.shape == (5, 2, 7)  # q, k, v, out, fc, proj of the block, and the read-out
    assert np.all(reparam.gamma_ratio >= 1 - 1e-9)  # u·Wv never exceeds σ(W)
    assert reparam.gamma_ratio[0] == pytest.approx(1.0, abs=1e-2)  # 31 power steps on the initial W
    assert np.all(reparam.margin >= -1e-12) and np.all(base.margin >= -1e-12)
    assert base.loss[0, 0] == base.loss[0, 1]  # same init and data across the learning rates
    assert experiment.collapse_step(base).shape == (2,)


def test_collapse_and_divergence_steps_are_first_crossings_and_never_is_inf() -> None:
    from types import SimpleNamespace

    entropy = np.array([[2.0, 2.0], [1.5, 2.0], [0.9, 1.9], [0.5, 1.8]])[:, :, None, None]  # (record, member, 1, 1)
    loss = np.array([[1.0, 1.0], [0.9, 0.8], [1.2, 0.7], [3.0, 0.6]])
    run = SimpleNamespace(entropy=entropy, loss=loss)
    assert experiment.collapse_step(run).tolist() == [2.0, float("inf")]  # below half of 2.0 first at record 2
    assert experiment.divergence_step(run).tolist() == [2.0, float("inf")]  # above the initial loss first at 2


def test_train_lr_grid_checks_its_arguments() -> None:
    language = markov_language(8, 2, generator=torch.Generator().manual_seed(0))
    kwargs = {"sigma_reparam": False, "width": 8, "layers": 1, "heads": 2, "batch": 2, "length": 4,
              "probe_batch": 1, "generator": torch.Generator().manual_seed(0)}
    with pytest.raises(ValueError, match="learning rates"):
        experiment.train_lr_grid(language, [0.1, -1.0], steps=2, **kwargs)
    with pytest.raises(ValueError, match="steps"):
        experiment.train_lr_grid(language, [0.1], steps=0, **kwargs)
    with pytest.raises(ValueError, match="power_iterations"):
        experiment.train_lr_grid(language, [0.1], steps=2, power_iterations=0, **kwargs)


def test_more_power_steps_track_the_spectral_norm_more_closely() -> None:
    """The lag explanation of σ(Ŵ) ≠ |γ|: more power steps per training step, smaller deviation."""
    language = markov_language(8, 2, generator=torch.Generator().manual_seed(0))
    dev = {}
    for k in (1, 10):
        r = experiment.train_lr_grid(language, [0.03], sigma_reparam=True, steps=8, width=8, layers=1, heads=2,
                                     batch=4, length=6, probe_batch=2, power_iterations=k,
                                     generator=torch.Generator().manual_seed(1))
        dev[k] = float(np.abs(r.gamma_ratio - 1).max())
    assert dev[10] < dev[1]
