"""A synthetic language: a random sparse Markov chain whose entropy rate is the exact loss floor.

The transformer chapters need text on which "how good could the loss be?" has an exact
answer. A first-order Markov chain over ``vocab_size`` tokens, each token followed by only
``successors`` possible next tokens with random (Dirichlet) probabilities, gives one: a
sequence started from the stationary distribution ``π`` is stationary, so the best possible
next-token cross-entropy at every position is the chain's *entropy rate*

.. math:: H = \\sum_s π_s \\, H(P_{s\\cdot}) = -\\sum_s π_s \\sum_{s'} P_{ss'} \\log P_{ss'}

in nats per token, whatever the context length. A model's loss minus ``H`` is its excess
loss, with no estimate of an irreducible term needed.

Every token's successors include the next token of one random cycle through the whole
vocabulary, so the chain is irreducible and ``π`` is unique (computed by a linear solve).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class MarkovLanguage:
    """A Markov chain on ``vocab_size`` tokens: ``transition[s, s']`` = P(next = s' | current = s)."""

    transition: Tensor
    stationary: Tensor

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]

    @property
    def entropy_rate(self) -> float:
        """Nats per token: the cross-entropy of the true next-token distribution, the loss floor."""
        p = self.transition
        row_entropy = -(torch.where(p > 0, p * p.log(), torch.zeros_like(p))).sum(1)
        return float((self.stationary * row_entropy).sum())

    def sample(self, batch: int, length: int, generator: torch.Generator) -> Tensor:
        """``(batch, length)`` token ids, each row a stationary run of the chain (first token from ``π``).

        For next-token training take ``x[:, :-1]`` as input and ``x[:, 1:]`` as target.
        """
        if batch < 1 or length < 1:
            raise ValueError(f"batch and length must be >= 1, got {batch}, {length}")
        out = torch.empty(batch, length, dtype=torch.long)
        out[:, 0] = torch.multinomial(self.stationary.expand(batch, -1), 1, generator=generator).squeeze(1)
        cumulative = self.transition.cumsum(1)
        cumulative[:, -1] = 1.0  # guard against rounding: every row's total is exactly 1
        for t in range(1, length):
            u = torch.rand(batch, 1, generator=generator, dtype=cumulative.dtype)
            out[:, t] = torch.searchsorted(cumulative[out[:, t - 1]], u).squeeze(1)
        return out


def markov_language(
    vocab_size: int = 32,
    successors: int = 4,
    *,
    generator: torch.Generator,
    concentration: float = 1.0,
) -> MarkovLanguage:
    """A random sparse Markov chain: each token has ``successors`` next tokens, Dirichlet(``concentration``) weights.

    Smaller ``concentration`` makes rows peakier (lower entropy rate); ``successors = 1`` is a
    deterministic cycle (entropy rate 0).
    """
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if not isinstance(successors, int) or not 1 <= successors <= vocab_size:
        raise ValueError(f"successors must be an integer in [1, vocab_size={vocab_size}], got {successors!r}")
    if not concentration > 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    v = vocab_size
    cycle = torch.randperm(v, generator=generator)
    following = torch.empty(v, dtype=torch.long)
    following[cycle] = cycle.roll(-1)  # the token after each one on the cycle: makes the chain irreducible
    transition = torch.zeros(v, v, dtype=torch.float64)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))  # Dirichlet draws, seeded
    for s in range(v):
        others = torch.randperm(v, generator=generator)
        others = others[others != following[s]][: successors - 1]
        support = torch.cat([following[s : s + 1], others])
        transition[s, support] = torch.from_numpy(rng.dirichlet([concentration] * successors))
    stationary = _stationary(transition)
    return MarkovLanguage(transition=transition, stationary=stationary)


def _stationary(transition: Tensor) -> Tensor:
    """The stationary distribution ``π = π P`` of an irreducible chain (one linear solve)."""
    v = transition.shape[0]
    a = transition.T - torch.eye(v, dtype=transition.dtype)
    a[-1] = 1.0  # replace one (redundant) balance equation by Σ π = 1
    b = torch.zeros(v, dtype=transition.dtype)
    b[-1] = 1.0
    pi = torch.linalg.solve(a, b)
    return pi.clamp_min(0) / pi.clamp_min(0).sum()
