"""Tests of phenomena.compression and the deep-gradient-compression experiment, each against an
independent computation: a dense momentum-SGD loop, the closed forms of a waiting coordinate's
accumulator, a Python run-length encoder, and sorting for the top-k."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena import compression as c
from phenomena.experiments import deep_gradient_compression as ex

SIZES = [16384, 65536, 2560, 256, 256, 10]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_selected_count_is_a_ceiling_per_layer():
    assert [c.selected_count(n, 0.001) for n in SIZES] == [17, 66, 3, 1, 1, 1]
    assert c.selected_count(30, 0.1) == 3  # 0.1·30 = 3.0000000000000004 in floating point
    assert c.selected_count(10, 1.0) == 10
    with pytest.raises(ValueError, match="density"):
        c.selected_count(10, 0.0)


def test_exact_topk_matches_sorting():
    v = torch.randn(3, 1000, generator=gen(1), dtype=torch.float64)
    mask = c.exact_topk_mask(v, 0.01)
    for row in range(3):
        order = torch.argsort(v[row].abs(), descending=True)[:10]
        assert set(torch.nonzero(mask[row]).flatten().tolist()) == set(order.tolist())


def test_sampled_mask_sends_between_0_8k_and_k_of_the_largest():
    v = torch.randn(6, sum(SIZES), generator=gen(2))
    for density in (0.25, 0.01, 0.001):
        mask = c.sampled_topk_mask(v, density, 0.01, gen(3), sizes=SIZES)
        lo = 0
        for n in SIZES:
            k = c.selected_count(n, density)
            seg, m = v[:, lo:lo + n].abs(), mask[:, lo:lo + n]
            counts = m.sum(1)
            assert bool((counts <= k).all()) and bool((counts >= math.floor(0.8 * k)).all()), (n, density, counts)
            for row in range(v.shape[0]):  # every sent entry is among the 1.3k largest (the threshold passed at most 1.3k)
                if m[row].any() and k < n:
                    rank_limit = min(n, math.floor(1.3 * k))
                    assert seg[row][m[row]].min() >= seg[row].sort(descending=True).values[rank_limit - 1]
            lo += n


def test_sampled_mask_with_sample_ratio_one_is_exact():
    v = torch.randn(2, 5000, generator=gen(4))
    assert torch.equal(c.sampled_topk_mask(v, 0.002, 1.0, gen(0)), c.exact_topk_mask(v, 0.002))


def test_sampled_mask_rejects_bad_sizes():
    with pytest.raises(ValueError, match="add up"):
        c.sampled_topk_mask(torch.zeros(2, 10), 0.1, sizes=[3, 3])


def _python_encode_bits(row: list[bool]) -> int:
    """An independent run-length encoder: (16-bit zero run, 32-bit value) pairs, long runs split by fillers."""
    bits, run = 0, 0
    for sent in row:
        if sent:
            while run > 65535:
                bits += 48
                run -= 65536
            bits += 48
            run = 0
        else:
            run += 1
    return bits


def test_message_bits_match_an_independent_encoder():
    for n, k in ((1000, 7), (70000, 3), (200000, 2)):
        mask = torch.zeros(2, n, dtype=torch.bool)
        mask[0, torch.randperm(n, generator=gen(n))[:k]] = True
        mask[1, -1] = True  # one value after a run of n − 1 zeros
        got = c.message_bits(mask)
        for row in range(2):
            assert int(got[row]) == _python_encode_bits(mask[row].tolist())


def test_closed_form_message_at_the_papers_sparsity():
    closed = c.closed_form_bits(SIZES, 0.001)
    assert closed == (17 + 66 + 3 + 1 + 1 + 1) * 48
    ratio = c.dense_bits(SIZES) / closed
    assert 270 < ratio < 700
    # with an exact top-k the measured message equals the closed form
    v = torch.randn(4, sum(SIZES), generator=gen(5))
    mask = c.sampled_topk_mask(v, 0.001, 1.0, sizes=SIZES)
    bounds = np.cumsum([0, *SIZES])
    measured = sum(c.message_bits(mask[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:]))
    assert torch.equal(measured, torch.full((4,), closed, dtype=torch.int64))


def test_warmup_density_follows_the_papers_stages():
    got = [c.warmup_density(t, 1000, 0.001) for t in (0, 24, 25, 50, 75, 99, 100, 999)]
    assert got == [0.25, 0.25, 0.0625, 0.015625, 0.004, 0.004, 0.001, 0.001]
    assert c.warmup_density(80, 1000, 0.01) == 0.01  # stages sparser than the final density are raised to it
    assert c.warmup_steps(8000) == 800


def test_dgc_at_density_one_without_masking_is_dense_momentum_sgd():
    """An explicit loop of Eq. 3 against DGCState with every coordinate sent (float64)."""
    g = torch.randn(50, 2, 3, 40, generator=gen(6), dtype=torch.float64)  # steps, clusters, workers, n
    dgc = c.DGCState(momentum=0.9, masking=False, sample_ratio=1.0)
    dense = c.DenseMomentum(momentum=0.9)
    u = torch.zeros(2, 40, dtype=torch.float64)
    for t in range(50):
        u = 0.9 * u + g[t].sum(1)
        a = dgc.step(g[t], 1.0).update
        b = dense.step(g[t]).update
        assert torch.allclose(a, u, atol=1e-12, rtol=0) and torch.allclose(b, u, atol=1e-12, rtol=0)


def test_masking_removes_momentum_of_coordinates_sent_every_step():
    g = torch.randn(5, 1, 4, generator=gen(7), dtype=torch.float64)
    dgc = c.DGCState(momentum=0.9, masking=True, sample_ratio=1.0)
    for t in range(5):
        assert torch.allclose(dgc.step(g[t], 1.0).update, g[t].sum(0))


@pytest.mark.parametrize("corrected", [True, False])
def test_waiting_coordinate_accumulates_the_closed_form(corrected):
    rule = c.DGCState(momentum=0.9, sample_ratio=1.0) if corrected else c.GradientDropping(momentum=0.9, sample_ratio=1.0)
    grad = torch.tensor([[1e6, 0.01]], dtype=torch.float64)
    for wait in range(1, 120):
        rule.step(grad, 0.5)
        want = ex.accumulator_after_wait(0.01, 0.9, wait, corrected=corrected)
        # independent: the momentum recursion written out, u_τ = Σ_{j<τ} m^j g
        direct = sum(sum(0.9**j * 0.01 for j in range(tau)) for tau in range(1, wait + 1)) if corrected else 0.01 * wait
        assert float(rule.v[0, 1]) == pytest.approx(want, rel=1e-12)
        assert want == pytest.approx(direct, rel=1e-12)


def test_gradient_dropping_applies_momentum_after_aggregation():
    g = torch.randn(6, 3, 20, generator=gen(8), dtype=torch.float64)
    rule = c.GradientDropping(momentum=0.5, sample_ratio=1.0)
    u = torch.zeros(20, dtype=torch.float64)
    for t in range(6):
        u = 0.5 * u + g[t].sum(0)  # density 1: everything is sent at once
        assert torch.allclose(rule.step(g[t], 1.0).update, u)


def test_local_clipping_scales_the_threshold_by_inverse_sqrt_workers():
    g = torch.zeros(1, 4, 3, dtype=torch.float64)
    g[0, :, 0] = 10.0  # every worker's norm is 10
    rule = c.DGCState(momentum=0.0, clip=4.0, masking=False, sample_ratio=1.0)
    update = rule.step(g, 1.0).update
    assert float(update[0, 0]) == pytest.approx(4 * 4.0 / math.sqrt(4), rel=1e-6)  # each clipped at 2


def test_dense_clips_the_summed_gradient():
    g = torch.zeros(1, 4, 2, dtype=torch.float64)
    g[0, :, 1] = 3.0
    update = c.DenseMomentum(momentum=0.0, clip=6.0).step(g).update
    assert float(update[0, 1]) == pytest.approx(6.0, rel=1e-6)


def test_experiment_keeps_replicas_identical_and_measures():
    res = ex.train_compression(task="digits", methods=("dense", "gradient_dropping", "dgc"), seeds=1, workers=2,
                               widths=(64, 32, 10), steps=60, density=0.05, eval_every=30, data_generator=gen(0),
                               init_generator=gen(1), sample_generator=gen(2))
    assert res.replica_spread == 0.0
    assert res.metric.shape == (3, 3, 1) and np.all(res.metric[-1] > 0.5)
    assert np.all(np.isnan(res.sent[0])) and np.all(res.sent[1:] > 0)
    assert np.all(res.ratio_r[np.isfinite(res.ratio_r)] >= 1 / 2 - 1e-6)  # r ≥ 1/N, the triangle inequality


def test_teacher_task_runs():
    res = ex.train_compression(task="teacher", methods=("dense", "dgc"), seeds=2, workers=2, widths=(8, 16, 1),
                               steps=20, density=0.1, eval_every=20, n_test=64, teacher_width=4,
                               data_generator=gen(0), init_generator=gen(1), sample_generator=gen(2))
    assert res.final().shape == (2, 2) and np.all(np.isfinite(res.final()))


def test_experiment_rejects_unknown_method():
    with pytest.raises(ValueError, match="unknown methods"):
        ex.train_compression(methods=("adam",), data_generator=gen(0), init_generator=gen(1), sample_generator=gen(2))
