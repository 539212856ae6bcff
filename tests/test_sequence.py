"""Exact match from one teacher-forced pass equals exact match of greedy decoding."""

from __future__ import annotations

import math

import pytest
import torch

from phenomena.data import arithmetic as ar
from phenomena.metrics import sequence


class Oracle(torch.nn.Module):
    """A causal "model" that knows the answers but errs on some prefixes (member-dependent).

    Its prediction at position t depends only on tokens 0..t, as a causal model's does; it returns
    the true next character unless ``(sum of prefix ids + 3·member) % 4 == 0``, then a wrong one.
    """

    def __init__(self, texts: list[str], members: int) -> None:
        super().__init__()
        self.texts, self.members = texts, members

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(0).expand(self.members, -1, -1) if x.dim() == 2 else x
        e, n, t = x.shape
        out = torch.zeros(e, n, t, ar.VOCAB_SIZE)
        for m in range(e):
            for i in range(n):
                seq = ar.detokenize(x[m, i])
                text = next(s for s in self.texts if s.startswith(seq[: seq.index("=") + 1] if "=" in seq else seq))
                for p in range(t):
                    if x[m, i, p] == 0:
                        break
                    true = ar.tokenize(text[p + 1])[0] if p + 1 < len(text) else 0
                    wrong = int(x[m, i, : p + 1].sum()) + 3 * m
                    out[m, i, p, true if wrong % 4 else (true + 1) % ar.VOCAB_SIZE] = 1.0
        return out


def test_teacher_forced_exact_match_equals_greedy_decoding() -> None:
    """The one-pass rule and real token-by-token decoding agree, example by example and member by member."""
    fmt, digits = "reverse", 2
    a = torch.tensor([10, 23, 45, 67, 89, 99, 12, 50])
    b = torch.tensor([31, 77, 55, 12, 11, 99, 40, 50])
    texts = [ar.render(int(x), int(y), fmt, digits) for x, y in zip(a, b)]
    model = Oracle(texts, members=3)
    enc = ar.encode(a, b, fmt, digits)
    fast = sequence.exact_match(sequence.teacher_forced_predictions(model, enc.inputs), enc.targets, enc.mask)
    assert 0 < int(fast.sum()) < fast.numel()  # some right, some wrong: the comparison means something
    for i, text in enumerate(texts):
        start = ar.answer_start(text)
        out = sequence.greedy_decode(model, torch.tensor(ar.tokenize(text[:start])).unsqueeze(0), len(text) - start)
        for e in range(3):
            assert bool(fast[e, i]) == (ar.detokenize(out[e, 0, start:]) == text[start:])


def test_exact_match_on_planted_predictions() -> None:
    enc = ar.encode([12, 3], [40, 99], "plain", 2)
    pred = enc.targets.clone().unsqueeze(0).repeat(2, 1, 1)
    pred[1, 0, enc.mask[0].nonzero()[0, 0]] = 0  # member 1 gets example 0's first answer digit wrong
    pred[:, :, 0] = 5  # a wrong prediction outside the answer does not matter
    assert sequence.exact_match(pred, enc.targets, enc.mask).tolist() == [[True, True], [False, True]]
    pos = sequence.per_position_accuracy(pred, enc.targets, enc.mask)
    # answers "52\n" (3 tokens) and "102\n" (4 tokens): position 3 exists for example 1 only
    assert pos.shape == (2, 4)
    assert pos[0].tolist() == [1.0, 1.0, 1.0, 1.0] and pos[1].tolist() == [0.5, 1.0, 1.0, 1.0]
    empty = torch.zeros_like(enc.mask)
    with pytest.raises(ValueError, match="at least one answer"):
        sequence.exact_match(pred, enc.targets, empty)


def test_greedy_decode_appends_argmax_tokens() -> None:
    class Count(torch.nn.Module):
        """Logits that always favour (last token + 1) mod vocab."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x if x.dim() == 3 else x.unsqueeze(0)
            return torch.nn.functional.one_hot((x + 1) % 7, 7).float() * math.e

    out = sequence.greedy_decode(Count(), torch.tensor([[1, 2], [5, 6]]), 3)
    assert out.tolist() == [[[1, 2, 3, 4, 5], [5, 6, 0, 1, 2]]]
