"""Addition as text (formats, samplers, hold-outs, tokenizer) and the 2×2 matrix-completion theory."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from phenomena.data import arithmetic as ar
from phenomena.theory import arithmetic as th


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- formats and tokenizer
def test_formats_write_the_papers_strings() -> None:
    assert ar.render(128, 367, "plain", 3) == "128+367=495\n"
    assert ar.render(128, 367, "reverse", 3) == "$128+367=594$"
    assert ar.render(5, 7, "padded", 3) == "005+007=0012\n"
    # units 8+7=15 (digit 5, carry 1), tens 2+6+1=9, hundreds 1+3=4
    assert ar.render(128, 367, "scratchpad", 3) == "128+367=A->5,C->1;A->9,C->0;A->4,C->0;495\n"
    with pytest.raises(ValueError, match="valid choices"):
        ar.render(1, 2, "binary", 3)


@pytest.mark.parametrize("fmt", ar.FORMATS)
def test_encode_masks_exactly_the_answer_and_round_trips(fmt: str) -> None:
    a, b = np.array([0, 9, 57, 99]), np.array([0, 99, 8, 99])
    enc = ar.encode(a, b, fmt, 2)
    assert enc.inputs.shape == enc.targets.shape == enc.mask.shape
    for i in range(len(a)):
        text = ar.render(int(a[i]), int(b[i]), fmt, 2)
        full = ar.detokenize(torch.cat([enc.inputs[i, :1], enc.targets[i]]))
        assert full == text
        answer = "".join(ar.ALPHABET[int(t)] for t in enc.targets[i][enc.mask[i]])
        assert answer == text[text.index("=") + 1 :]
        assert torch.equal(enc.inputs[i, 1:], enc.targets[i, :-1])  # targets are inputs shifted by one
    with pytest.raises(ValueError, match="operands must lie"):
        ar.encode([100], [1], fmt, 2)


def test_tokenizer_rejects_foreign_characters() -> None:
    assert ar.detokenize(ar.tokenize("$12+3=51$")) == "$12+3=51$"
    with pytest.raises(ValueError, match="alphabet"):
        ar.tokenize("1*2")


def test_carries_match_schoolbook_addition() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 1000, 500), rng.integers(0, 1000, 500)
    count = ar.carries(a, b, 3)
    for x, y, c in zip(a, b, count):
        digits_x, digits_y = f"{x:03d}"[::-1], f"{y:03d}"[::-1]
        carry = total = 0
        for dx, dy in zip(digits_x, digits_y):
            carry = int(int(dx) + int(dy) + carry >= 10)
            total += carry
        assert c == total
    assert ar.carries(999, 1, 3) == 3 and ar.carries(100, 200, 3) == 0


# ----------------------------------------------------------------------------- samplers and hold-outs
def test_uniform_sampler_is_distinct_and_respects_exclusions() -> None:
    exclude = ar.holdout_mask(2, [3, 14, 15])
    idx = ar.sample_pairs(3000, 2, gen(), exclude=exclude)
    assert len(np.unique(idx)) == 3000 and not exclude[idx].any()
    a, _ = ar.table(2)
    assert not np.isin(a[idx], [3, 14, 15]).any()
    # uniform: each allowed pair is picked with probability 3000/9700; first-operand counts ~ binomial
    counts = np.bincount(a[idx], minlength=100)[np.setdiff1d(np.arange(100), [3, 14, 15])]
    assert abs(counts.mean() - 3000 / 97) < 1e-9 and counts.std() < 3 * np.sqrt(100 * 0.31 * 0.69)
    with pytest.raises(ValueError, match="only"):
        ar.sample_pairs(9800, 2, gen(), exclude=exclude)


def test_balanced_sampler_spreads_examples_evenly_over_strata() -> None:
    idx = ar.sample_pairs(2000, 3, gen(1), sampler="balanced")
    group = ar.strata(3)
    sizes = np.bincount(group, minlength=group.max() + 1)
    got = np.bincount(group[idx], minlength=group.max() + 1)
    assert got.sum() == 2000 and len(np.unique(idx)) == 2000
    full = got == sizes  # strata too small for an even share give everything they have
    share = got[(~full) & (sizes > 0)]
    assert share.max() - share.min() <= 1  # the rest split evenly
    assert got[full].sum() + share.sum() == 2000
    # far more 1-digit operands than a uniform draw gives (1 pair in 10,000 has two of them)
    uniform = ar.sample_pairs(2000, 3, gen(1))
    a, b = ar.table(3)
    assert (np.maximum(a, b)[idx] < 10).sum() > 20 * max(1, (np.maximum(a, b)[uniform] < 10).sum())


def test_sampler_is_reproducible_and_checks_its_input() -> None:
    assert np.array_equal(ar.sample_pairs(50, 2, gen(5), sampler="balanced"),
                          ar.sample_pairs(50, 2, gen(5), sampler="balanced"))
    with pytest.raises(ValueError, match="sampler"):
        ar.sample_pairs(5, 2, gen(), sampler="stratified")
    with pytest.raises(ValueError, match="digits"):
        ar.sample_pairs(5, 7, gen())


# ----------------------------------------------------------------------------- 2×2 matrix completion
def test_closure_matches_the_one_cell_at_a_time_algorithm_and_fills_exact_sums() -> None:
    g = gen(2)
    n = 7
    truth = np.add.outer(np.arange(n), np.arange(n)).astype(float)
    for k in (8, 13, 18, 25):
        for mask in th.random_masks(n, k, 20, g):
            filled, known = th.complete(truth, mask)
            assert np.array_equal(known, th.closure(mask))
            assert np.allclose(filled[known], truth[known])  # the additive rule a + d = b + c is exact


def _connected(mask: np.ndarray) -> bool:
    """Is the bipartite graph rows–columns with an edge per revealed entry connected? (breadth-first)"""
    n, m = mask.shape
    seen_r, seen_c, frontier = {0}, set(), [("r", 0)]
    while frontier:
        side, i = frontier.pop()
        nbrs = np.flatnonzero(mask[i] if side == "r" else mask[:, i])
        for j in nbrs:
            seen, tag = (seen_c, "c") if side == "r" else (seen_r, "r")
            if j not in seen:
                seen.add(int(j))
                frontier.append((tag, int(j)))
    return len(seen_r) == n and len(seen_c) == m


def test_success_needs_a_connected_reveal_and_a_row_plus_column_suffices() -> None:
    g = gen(3)
    n = 6
    for k in range(2 * n - 1, 22):
        for mask in th.random_masks(n, k, 30, g):
            if th.closure(mask).all():
                assert _connected(mask)  # the rule only fills determined cells
    assert not th.closure(th.random_masks(n, 2 * n - 2, 200, g)).all(axis=(-1, -2)).any()  # < 2n−1: never
    cross = np.zeros((n, n), dtype=bool)
    cross[2, :] = True
    cross[:, 4] = True
    assert cross.sum() == 2 * n - 1 and th.closure(cross).all()


def test_exact_enumeration_agrees_with_brute_force_and_monte_carlo() -> None:
    # n = 2: success iff at least 3 of the 4 entries are known
    assert np.allclose(th.exact_success_probability(2), [0, 0, 0, 1, 1])
    exact = th.exact_success_probability(3)
    # brute force over subsets, independently of the bit tricks in exact_success_probability
    for k in range(10):
        ok = [th.closure(np.isin(np.arange(9), s).reshape(3, 3)).all() for s in itertools.combinations(range(9), k)]
        assert exact[k] == pytest.approx(np.mean(ok))
    exact4 = th.exact_success_probability(4)
    ks = np.arange(7, 12)
    trials = 4000
    mc = th.success_probability(4, ks, trials, gen(4))
    se = np.sqrt(exact4[ks] * (1 - exact4[ks]) / trials)
    assert np.all(np.abs(mc - exact4[ks]) <= 4 * se + 1e-12)
    assert np.all(np.diff(exact4) >= 0) and exact4[6] == 0 and exact4[-1] == 1


def test_k_at_interpolates_and_reports_never() -> None:
    assert th.k_at([10, 20, 30], [0.0, 0.4, 0.8], 0.5) == pytest.approx(22.5)
    assert th.k_at([10, 20], [0.6, 0.9], 0.5) == 10
    assert th.k_at([10, 20], [0.1, 0.2], 0.5) == float("inf")
