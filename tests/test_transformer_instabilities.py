"""The LR-grid trainer and the LR-sensitivity statistic of the chapter *transformer-instabilities*."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from phenomena.data import markov_language
from phenomena.experiments import transformer_instabilities as ti


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one CPU thread is faster than several spinning on a busy machine."""
    yield


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SMALL = {"steps": 6, "warmup": 2, "width": 16, "layers": 1, "heads": 2, "batch": 4, "length": 8, "eval_batch": 8}


def test_schedule_warms_up_linearly_then_decays_to_zero() -> None:
    factors = [ti.schedule(t, 20, 4) for t in range(21)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4] == pytest.approx(1.0) and factors[12] == pytest.approx(0.5) and factors[20] == pytest.approx(0.0)
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


def test_lr_sensitivity_follows_the_paper_definition() -> None:
    """E_η[min(ℓ(η), ℓ₀) − ℓ*]: a diverged (nan) or worse-than-init run counts as ℓ₀."""
    final = np.array([2.0, 1.0, 1.5, np.nan, 9.0])
    assert ti.lr_sensitivity(final, initial_loss=3.0) == pytest.approx(((2 - 1) + 0 + 0.5 + 2 + 2) / 5)
    assert ti.lr_sensitivity(np.full(4, 1.3), initial_loss=3.0) == 0.0
    assert ti.lr_sensitivity(final, initial_loss=3.0, best_loss=0.5) == pytest.approx(
        ti.lr_sensitivity(final, initial_loss=3.0) + 0.5)


def test_grid_members_share_init_and_data_and_record_every_step() -> None:
    lang = markov_language(8, 2, generator=gen(1))
    run = ti.train_lr_grid(lang, [1e-3, 1e-2, 3e-2], qk_layernorm=False, z_loss=0.0, generator=gen(2), **SMALL)
    assert run.loss.shape == run.max_logit.shape == run.log_z.shape == (7, 3)
    assert run.final_loss.shape == (3,) and run.lrs.tolist() == [1e-3, 1e-2, 3e-2]
    # same weights and same first batch: identical step-0 probes and loss in every member
    assert np.allclose(run.max_logit[0], run.max_logit[0, 0]) and np.allclose(run.loss[0], run.loss[0, 0])
    assert not np.allclose(run.loss[-1], run.loss[-1, 0])  # the learning rates made them differ
    assert np.isfinite(run.final_loss).all() and math.isfinite(run.initial_loss)
    assert (run.diverged_at == -1).all()
    # log Z at init: logsumexp of small random logits is close to log(vocab)
    assert abs(run.log_z[0, 0] - math.log(8)) < 1.5


def test_qk_layernorm_bounds_the_initial_logits_and_z_loss_enters_the_loss() -> None:
    lang = markov_language(8, 2, generator=gen(1))
    kw = dict(SMALL, steps=1, warmup=0)
    plain = ti.train_lr_grid(lang, [1e-3], qk_layernorm=False, z_loss=0.0, generator=gen(2), **kw)
    qk = ti.train_lr_grid(lang, [1e-3], qk_layernorm=True, z_loss=0.0, generator=gen(2), **kw)
    zl = ti.train_lr_grid(lang, [1e-3], qk_layernorm=False, z_loss=0.1, generator=gen(2), **kw)
    assert qk.max_logit[0, 0] <= math.sqrt(16 // 2) * (1 + 1e-4)  # unit LN gains: |q·k|/√d_h ≤ √d_h
    # same weights and batch: the z-loss run's first loss is the plain one plus 0.1·mean(log Z²) > 0
    assert zl.loss[0, 0] > plain.loss[0, 0] and zl.log_z[0, 0] == pytest.approx(plain.log_z[0, 0])


def test_a_diverging_member_is_frozen_and_counted_as_the_initial_loss() -> None:
    lang = markov_language(8, 2, generator=gen(1))
    run = ti.train_lr_grid(lang, [1e-3, 1e30], qk_layernorm=False, z_loss=0.0, generator=gen(2), **SMALL)
    assert run.diverged_at[0] == -1 and run.diverged_at[1] > 0
    assert math.isnan(run.final_loss[1]) and math.isfinite(run.final_loss[0])
    sens = ti.lr_sensitivity(run.final_loss, run.initial_loss)
    assert sens == pytest.approx((run.initial_loss - min(run.final_loss[0], run.initial_loss)) / 2)
    table = ti.summary([run], lang.entropy_rate)
    assert table["diverged"].tolist() == [False, True]


@pytest.mark.parametrize("kwargs, match", [
    ({"steps": 0}, "steps"),
    ({"warmup": 10}, "warmup"),
    ({"weight_decay": -1.0}, "weight_decay"),
])
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    lang = markov_language(8, 2, generator=gen(1))
    with pytest.raises(ValueError, match=match):
        ti.train_lr_grid(lang, [1e-3], qk_layernorm=False, z_loss=0.0, generator=gen(2), **{**SMALL, **kwargs})
    with pytest.raises(ValueError, match="lrs"):
        ti.train_lr_grid(lang, [-1.0], qk_layernorm=False, z_loss=0.0, generator=gen(2), **SMALL)
