"""The experiment helpers of the muon-orthogonal-updates chapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.data import markov_language_of_order
from phenomena.experiments import muon_orthogonal_updates as ex
from phenomena.models import GPT, GPTConfig
from phenomena.theory import muon as theory


def test_running_mean_matches_a_loop():
    c = np.random.default_rng(0).normal(size=(30, 3))
    want = np.stack([c[i : i + 5].mean(0) for i in range(26)])
    np.testing.assert_allclose(ex.running_mean(c, 5), want, rtol=1e-12)
    with pytest.raises(ValueError, match="window"):
        ex.running_mean(c, 31)


def _result(loss: np.ndarray, lrs, inits) -> ex.RaceResult:
    return ex.RaceResult(optimizer="AdamW", lrs=np.asarray(lrs), inits=inits, loss=loss,
                         diverged_at=np.full(loss.shape[1], -1))


def test_steps_to_target_counts_the_step_that_ends_the_window():
    loss = np.full((20, 2), 2.0)
    loss[10:, 0] = 0.0  # window 4: mean <= 0.5 first for the window ending at step 12 (mean 0.5)
    r = _result(loss, [0.1, 0.2], 1)
    steps = ex.steps_to_target(r, floor=0.0, target=0.5, window=4)
    assert steps[0] == 12 and steps[1] == ex.NEVER


def test_best_lr_averages_inits_and_never_counts_as_never():
    loss = np.full((20, 4), 2.0)
    loss[5:, 0] = 0.0   # init 0, lr 0.1
    loss[9:, 2] = 0.0   # init 1, lr 0.1
    loss[2:, 1] = 0.0   # init 0, lr 0.2; init 1 at lr 0.2 never reaches
    best, lr, per_lr = ex.best_lr(_result(loss, [0.1, 0.2], 2), floor=0.0, target=0.5, window=1)
    assert lr == 0.1 and best == pytest.approx(7.0) and np.isinf(per_lr[1])


def test_hidden_matrices_are_the_block_weights():
    model = GPT(GPTConfig(vocab_size=8, context=4, layers=2, heads=2, width=8, members=2))
    matrices, others = ex.hidden_matrices(model)
    assert len(matrices) == 12 and all(p.dim() == 3 for p in matrices)
    assert len(matrices) + len(others) == len(list(model.parameters()))
    assert any(p is model.token_embedding for p in others) and any(p is model.head.weight for p in others)


def test_initial_models_repeat_each_init():
    config = GPTConfig(vocab_size=8, context=4, layers=1, heads=1, width=4)
    big = ex.initial_models(config, 2, 3, torch.Generator().manual_seed(0))
    w = big.token_embedding.detach()
    assert torch.equal(w[0], w[2]) and torch.equal(w[3], w[5]) and not torch.equal(w[0], w[3])


def test_flops_count_a_matmul_by_hand():
    config = GPTConfig(vocab_size=32, context=32, layers=1, heads=2, width=64)
    adamw = ex.flops_per_step(config, 1, 1, "AdamW")
    muon = ex.flops_per_step(config, 1, 1, "Muon")
    # one NS iteration on a 64 x 256 matrix: XXᵀ (2·64·64·256), A² (2·64³), (bA + cA²)X (2·64·64·256)
    one_wide = 5 * (2 * 64 * 64 * 256 + 2 * 64**3 + 2 * 64 * 64 * 256)
    one_square = 5 * 6 * 64**3
    assert muon - adamw == pytest.approx(4 * one_square + 2 * one_wide)


def test_a_short_muon_run_logs_spectra_on_the_closed_form():
    language = markov_language_of_order(2, 8, 2, generator=torch.Generator().manual_seed(0))
    data = ex.sample_batches(language, 4, 1, 4, 8, torch.Generator().manual_seed(1))
    r = ex.train(language, "Muon", [0.02], inits=1, steps=4, batch=4, length=8, width=8, layers=1, heads=1,
                 init_seed=0, data=data, adamw_lr=1e-3, log_steps=[1, 3])
    assert r.logged_steps == [1, 3] and ex.matrices_logged(r) == 12
    ratios, measured = ex.spectrum_check(r.ns_inputs, r.ns_outputs)
    assert np.abs(measured - theory.ns_polynomial(ratios, 5)).max() < 1e-4
    assert np.isfinite(r.loss).all()


def test_step_norms_obey_the_bound_and_sgd_does_not():
    language = markov_language_of_order(2, 8, 2, generator=torch.Generator().manual_seed(0))
    kw = dict(lr=0.02, steps=2, batch=4, length=8, width=8, layers=1, heads=1, init_seed=0, data_seed=1)
    muon, _ = ex.step_norms(language, loss_scale=1e3, **kw)
    sgd, _ = ex.step_norms(language, loss_scale=1e3, optimizer="SGD", **kw)
    assert muon.max() <= theory.ns_bound() + 1e-4 and sgd.max() > 10 * theory.ns_bound()
