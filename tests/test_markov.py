"""Markov languages of order k: the de Bruijn cycle, the stationary distribution and the entropy-rate floor."""

from __future__ import annotations

import itertools

import pytest
import torch

from phenomena.data import de_bruijn, markov_language_of_order
from phenomena.data.markov import _stationary


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("v,k", [(2, 3), (3, 2), (4, 3), (5, 1)])
def test_de_bruijn_holds_every_word_once(v: int, k: int) -> None:
    seq = de_bruijn(v, k)
    assert len(seq) == v**k
    cyclic = seq + seq[: k - 1]
    words = {tuple(cyclic[i : i + k]) for i in range(len(seq))}
    assert words == set(itertools.product(range(v), repeat=k))


def dense_context_chain(language) -> torch.Tensor:
    """The (v^k, v^k) transition matrix on contexts, built by enumeration: an independent route to π."""
    n, v = language.transition.shape
    dense = torch.zeros(n, n, dtype=torch.float64)
    for c in range(n):
        for s in range(v):
            dense[c, int(language.next_context(torch.tensor(c), torch.tensor(s)))] += language.transition[c, s]
    return dense


@pytest.mark.parametrize("order", [1, 2, 3])
def test_stationary_distribution_matches_a_dense_solve(order: int) -> None:
    language = markov_language_of_order(order, vocab_size=4, successors=2, generator=gen(order))
    assert language.transition.shape == (4**order, 4)
    assert torch.allclose(language.transition.sum(1), torch.ones(4**order, dtype=torch.float64))
    assert ((language.transition > 0).sum(1) == 2).all()
    solved = _stationary(dense_context_chain(language))
    assert torch.allclose(language.stationary, solved, atol=1e-10)


def test_samples_are_stationary_and_reach_the_entropy_rate() -> None:
    """Monte-Carlo: context frequencies match π and the true conditional's mean NLL matches H."""
    language = markov_language_of_order(2, vocab_size=6, successors=3, generator=gen(3))
    x = language.sample(4000, 40, gen(4))
    v = language.vocab_size
    context = x[:, :-2] * v + x[:, 1:-1]
    freq = torch.bincount(context.flatten(), minlength=v * v).double() / context.numel()
    assert (freq - language.stationary).abs().max() < 0.01  # 1.5e5 draws: s.e. of a frequency <= 0.0013
    nll = -language.transition[context, x[:, 2:]].log().mean()
    assert abs(float(nll) - language.entropy_rate) < 0.01  # s.e. of the mean NLL ~ 0.002 here
    assert (language.transition[context, x[:, 2:]] > 0).all()  # never a zero-probability successor


def test_order_three_over_thirty_two_tokens_is_cheap_and_well_formed() -> None:
    language = markov_language_of_order(3, vocab_size=32, successors=4, generator=gen(0))
    assert language.stationary.shape == (32**3,)
    assert abs(float(language.stationary.sum()) - 1) < 1e-12
    assert 0 < language.entropy_rate < torch.log(torch.tensor(4.0))  # at most log(successors)


def test_bad_input_names_the_fix() -> None:
    with pytest.raises(ValueError, match="order"):
        markov_language_of_order(0, generator=gen())
    with pytest.raises(ValueError, match="successors"):
        markov_language_of_order(2, vocab_size=4, successors=5, generator=gen())
    with pytest.raises(ValueError, match="length"):
        markov_language_of_order(2, vocab_size=4, generator=gen()).sample(2, 1, gen())
