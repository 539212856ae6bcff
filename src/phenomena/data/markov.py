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
        return _entropy_rate(self.transition, self.stationary)

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


def _entropy_rate(transition: Tensor, stationary: Tensor) -> float:
    """``Σ_s π_s H(P_{s·})`` in nats: the mean entropy of the next token, each row weighted by how often it is in use."""
    row_entropy = -(torch.where(transition > 0, transition * transition.log(), torch.zeros_like(transition))).sum(1)
    return float((stationary * row_entropy).sum())


def _stationary(transition: Tensor) -> Tensor:
    """The stationary distribution ``π = π P`` of an irreducible chain (one linear solve)."""
    v = transition.shape[0]
    a = transition.T - torch.eye(v, dtype=transition.dtype)
    a[-1] = 1.0  # replace one (redundant) balance equation by Σ π = 1
    b = torch.zeros(v, dtype=transition.dtype)
    b[-1] = 1.0
    pi = torch.linalg.solve(a, b)
    return pi.clamp_min(0) / pi.clamp_min(0).sum()


@dataclass(frozen=True)
class ContextMarkovLanguage:
    """A Markov chain of order ``order``: the next token depends on the last ``order`` tokens (a *context*).

    ``transition[c, s]`` = P(next = s | context c), with the context ``(a_1, ..., a_k)`` (oldest first)
    numbered ``c = Σ_i a_i v^{k-i}``. ``stationary[c]`` is the stationary distribution of the chain
    on contexts, so a sequence whose first ``order`` tokens are drawn from it is stationary and the best
    next-token cross-entropy from position ``order`` on is the entropy rate
    ``H = Σ_c π_c H(P_{c·})``. Positions before ``order`` see a shorter context and may do worse.
    """

    transition: Tensor
    stationary: Tensor
    order: int

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[1]

    @property
    def entropy_rate(self) -> float:
        """Nats per token from position ``order`` on: the loss floor of any next-token model."""
        return _entropy_rate(self.transition, self.stationary)

    def next_context(self, context: Tensor, token: Tensor) -> Tensor:
        """The context id after ``token`` follows ``context`` (drop the oldest token, append the new one)."""
        v = self.vocab_size
        return (context % v ** (self.order - 1)) * v + token

    def sample(self, batch: int, length: int, generator: torch.Generator) -> Tensor:
        """``(batch, length)`` token ids, each row a stationary run (the first ``order`` tokens from ``π``).

        For next-token training take ``x[:, :-1]`` as input and ``x[:, 1:]`` as target; the loss
        floor holds at targets with at least ``order`` tokens before them.
        """
        if batch < 1 or length < self.order:
            raise ValueError(f"batch must be >= 1 and length >= order={self.order}, got {batch}, {length}")
        v, k = self.vocab_size, self.order
        out = torch.empty(batch, length, dtype=torch.long)
        context = torch.multinomial(self.stationary.expand(batch, -1), 1, generator=generator).squeeze(1)
        for i in range(k):  # unpack the context id into its k tokens, oldest first
            out[:, i] = (context // v ** (k - 1 - i)) % v
        cumulative = self.transition.cumsum(1)
        cumulative[:, -1] = 1.0  # guard against rounding: every row's total is exactly 1
        for t in range(k, length):
            u = torch.rand(batch, 1, generator=generator, dtype=cumulative.dtype)
            out[:, t] = torch.searchsorted(cumulative[context], u).squeeze(1).clamp_max(v - 1)
            context = self.next_context(context, out[:, t])
        return out


def de_bruijn(v: int, k: int) -> list[int]:
    """A de Bruijn sequence B(v, k): read cyclically, every k-token word appears exactly once.

    Its successive windows form one cycle through all ``v**k`` contexts, which is what makes an
    order-k chain built on it irreducible (the Lyndon-word construction of Fredricksen and Maiorana).
    """
    a = [0] * (k + 1)
    out: list[int] = []

    def visit(t: int, p: int) -> None:
        if t > k:
            if k % p == 0:
                out.extend(a[1 : p + 1])
            return
        a[t] = a[t - p]
        visit(t + 1, p)
        for j in range(a[t - p] + 1, v):
            a[t] = j
            visit(t + 1, t)

    visit(1, 1)
    return out


def markov_language_of_order(
    order: int,
    vocab_size: int = 32,
    successors: int = 4,
    *,
    generator: torch.Generator,
    concentration: float = 0.5,
    tol: float = 1e-13,
    max_iterations: int = 200_000,
) -> ContextMarkovLanguage:
    """A random sparse order-``order`` chain: each context has ``successors`` next tokens, Dirichlet weights.

    One successor of every context continues a de Bruijn cycle through all contexts (relabelled by a
    random permutation), so the context chain is irreducible. The stationary distribution comes from
    power iteration of the lazy chain ``(I + P)/2`` (same fixed point, aperiodic), which needs only
    the ``v**k × successors`` non-zeros, so order 3 over 32 tokens (32,768 contexts) stays cheap.
    """
    if not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an integer >= 1, got {order!r}")
    if not isinstance(vocab_size, int) or vocab_size < 2:
        raise ValueError(f"vocab_size must be an integer >= 2, got {vocab_size!r}")
    if not isinstance(successors, int) or not 1 <= successors <= vocab_size:
        raise ValueError(f"successors must be an integer in [1, vocab_size={vocab_size}], got {successors!r}")
    if not concentration > 0:
        raise ValueError(f"concentration must be positive, got {concentration}")
    v, k = vocab_size, order
    n = v**k
    if n > 2**21:
        raise ValueError(f"vocab_size**order = {n} contexts is too many for a dense table; lower order or vocab_size")
    relabel = torch.randperm(v, generator=generator)
    cycle = relabel[torch.tensor(de_bruijn(v, k), dtype=torch.long)]
    # context id of each window of the cyclic sequence, and the token that follows it
    windows = torch.stack([cycle.roll(-i) for i in range(k)], 1)  # (n, k), oldest first
    ids = (windows * v ** torch.arange(k - 1, -1, -1)).sum(1)
    following = torch.empty(n, dtype=torch.long)
    following[ids] = cycle.roll(-k)
    # the other successors: successors-1 distinct random tokens other than the cycle's one
    scores = torch.rand(n, v, generator=generator)
    scores[torch.arange(n), following] = -1.0
    others = scores.argsort(1, descending=True)[:, : successors - 1]
    support = torch.cat([following[:, None], others], 1)  # (n, successors)
    rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=generator)))
    weights = torch.from_numpy(rng.dirichlet([concentration] * successors, size=n))
    transition = torch.zeros(n, v, dtype=torch.float64)
    transition.scatter_(1, support, weights)
    stationary = _stationary_by_power_iteration(transition, k, tol, max_iterations)
    return ContextMarkovLanguage(transition=transition, stationary=stationary, order=k)


def _stationary_by_power_iteration(transition: Tensor, order: int, tol: float, max_iterations: int) -> Tensor:
    """``π = π P`` on contexts by iterating the lazy chain; raises if it has not converged."""
    n, v = transition.shape
    base = (torch.arange(n) % v ** (order - 1)) * v  # next context = base + token
    support = transition > 0
    rows, tokens = support.nonzero(as_tuple=True)
    targets, probs = base[rows] + tokens, transition[rows, tokens]
    pi = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for _ in range(max_iterations):
        step = torch.zeros_like(pi).index_add_(0, targets, pi[rows] * probs)
        new = 0.5 * (pi + step)
        if (new - pi).abs().sum() < tol:
            return new / new.sum()
        pi = new
    raise RuntimeError(
        f"the stationary distribution did not converge in {max_iterations} iterations; "
        "raise max_iterations or use more successors (a faster-mixing chain)"
    )
