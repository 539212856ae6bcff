"""Helpers of the lora-intruders experiment: task B's transform and the power-law initial spectrum."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.experiments.lora_intruders import mirror_shift, power_law_matrix


def test_mirror_shift_moves_each_pixel_by_hand():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 64) + 1
    y = mirror_shift(x).reshape(8, 8)
    im = x.reshape(8, 8)
    assert torch.all(y[0] == 0)
    for r in range(7):
        for c in range(8):
            assert y[r + 1, c] == im[r, 7 - c]
    with pytest.raises(ValueError, match="64"):
        mirror_shift(torch.zeros(2, 10))


def test_power_law_matrix_has_the_prescribed_spectrum():
    g = torch.Generator().manual_seed(0)
    w = power_law_matrix((3, 20, 8), 0.5, 0.1, g)
    s = torch.linalg.svdvals(w.double())
    ref = torch.arange(1, 9, dtype=torch.float64) ** -0.5
    torch.testing.assert_close(s / s[:, :1], (ref / ref[0]).expand(3, 8), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w.double().pow(2).sum((1, 2)).sqrt(), torch.full((3,), 0.1 * math.sqrt(160), dtype=torch.float64),
                               rtol=1e-4, atol=0)


def test_continual_learning_machinery_at_a_tiny_size():
    """Pretrain, fine-tune on two languages in sequence by full FT and merged LoRA r = 1; check the bookkeeping
    and the closed form: after t merged rank-one adapters, rank(W_t − W_0) ≤ t for every adapted matrix."""
    from phenomena.experiments.lora_intruders import Method, continual_learning, markov_tasks

    g = [torch.Generator().manual_seed(s) for s in range(6)]
    languages = markov_tasks(2, vocab_size=8, successors=3, generator=g[0], task_vocab=4)
    assert len(languages) == 3
    methods = [Method("full FT", 1e-3), Method("LoRA r=1", 1e-2, rank=1, alpha=2.0)]
    res = continual_learning(languages, methods, members=2, width=16, layers=1, heads=2, seq_len=6, pretrain_steps=3,
                             pretrain_lr=1e-2, steps=3, batch=4, n_eval=8, spectrum_decay=0.5, k=4, generators=g[1:],
                             train_head=True)
    assert res.matrices == ("blocks.0.attention.query", "blocks.0.attention.key", "blocks.0.attention.value",
                            "blocks.0.attention.out", "blocks.0.fc", "blocks.0.proj")
    for m in methods:
        assert res.losses[m.name].shape == (3, 3, 2) and np.isfinite(res.losses[m.name]).all()
        assert res.intruders[m.name].shape == (3, 2, 6) and (res.intruders[m.name][0] == 0).all()
        np.testing.assert_array_equal(res.losses[m.name][0], res.losses[methods[0].name][0])  # same pretrained net
    for name, w in res.final["LoRA r=1"].items():
        assert (torch.linalg.matrix_rank((w - res.base[name]).double(), rtol=1e-6) <= 2).all(), name
    assert (torch.linalg.matrix_rank((res.final["full FT"]["blocks.0.fc"] - res.base["blocks.0.fc"]).double()) > 2).all()
    t = res.table()
    assert len(t) == 2 * 3 * 2 * 6 and set(t.columns) >= {"task", "method", "member", "matrix", "intruders", "counted",
                                                          "pretrain_loss", "task_loss"}
    tot = res.totals()
    assert len(tot) == 2 * 3 * 2
    with pytest.raises(ValueError, match="tasks"):
        markov_tasks(0, vocab_size=8, successors=3, generator=g[0])
    with pytest.raises(ValueError, match="task_vocab"):
        markov_tasks(2, vocab_size=8, successors=3, generator=g[0], task_vocab=2)


def test_markov_tasks_own_token_blocks():
    from phenomena.experiments.lora_intruders import markov_tasks

    langs = markov_tasks(3, vocab_size=6, successors=2, generator=torch.Generator().manual_seed(0), task_vocab=4)
    assert all(lang.vocab_size == 6 + 3 * 4 for lang in langs)
    g = torch.Generator().manual_seed(1)
    ranges = [(0, 6), (6, 10), (10, 14), (14, 18)]
    for lang, (lo, hi) in zip(langs, ranges):
        x = lang.sample(50, 7, g)
        assert int(x.min()) >= lo and int(x.max()) < hi
        assert lang.entropy_rate == lang.language.entropy_rate
    shared = markov_tasks(2, vocab_size=6, successors=2, generator=torch.Generator().manual_seed(0))
    assert all(lang.offset == 0 and lang.vocab_size == 6 for lang in shared)
