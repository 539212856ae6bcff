"""Exact match of generated answers, read off one teacher-forced forward pass.

A model *solves* an example when greedy decoding (the most likely token at every step) writes the
whole answer, terminator included. That needs no generation loop: greedy decoding reproduces the
answer ``y₁…y_m`` exactly iff ``argmax p(· | prompt, y₁…y_{k−1}) = y_k`` for every ``k`` (by
induction on ``k``: while the decoded prefix equals the true one, the next decoded token is the
argmax given the true prefix). So exact match is "every answer position is argmax-correct under
teacher forcing", which one batched forward pass computes for a whole ensemble at once.
:func:`greedy_decode` is the slow reference, kept for tests and for showing a model's outputs.

Per-position accuracy is the same argmax check at one answer position, *given the true prefix*;
it says which digit (units, tens, …) a model has not learned yet.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _check(predicted: Tensor, targets: Tensor, mask: Tensor) -> None:
    try:
        torch.broadcast_shapes(predicted.shape, targets.shape, mask.shape)
    except RuntimeError:
        raise ValueError(f"predictions {tuple(predicted.shape)}, targets {tuple(targets.shape)} and mask "
                         f"{tuple(mask.shape)} must broadcast (…, examples, positions)") from None
    if not bool(mask.any(-1).all()):
        raise ValueError("every example needs at least one answer position in mask")


def exact_match(predicted: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Per-example exact match, ``(..., n)`` bool: every masked position has ``predicted == targets``.

    ``predicted``: argmax token ids ``(..., n, T)`` (an ensemble axis in front is fine);
    ``targets`` and ``mask`` (the answer positions): ``(n, T)``, or with the same leading axes as
    ``predicted`` (one format per member).
    """
    _check(predicted, targets, mask)
    return ((predicted == targets) | ~mask).all(-1)


def per_position_accuracy(predicted: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """Accuracy at the k-th answer token, ``(..., K)``, given the true prefix; ``K`` the longest answer.

    Examples whose answer is shorter than ``k + 1`` tokens do not count at position ``k``
    (the entry is ``nan`` where no example has that many).
    """
    _check(predicted, targets, mask)
    rank = mask.long().cumsum(-1) - 1  # k for the k-th answer position, -1 before it
    k_max = int(mask.sum(-1).max())
    correct = (predicted == targets) & mask
    out = []
    for k in range(k_max):
        at = mask & (rank == k)
        count = at.flatten(-2).sum(-1).to(torch.float64)
        hits = (correct & at).flatten(-2).sum(-1).to(torch.float64)
        out.append(torch.where(count > 0, hits / count.clamp(min=1), torch.full_like(hits, float("nan"))))
    return torch.stack(out, -1)


@torch.no_grad()
def teacher_forced_predictions(model: Callable[[Tensor], Tensor], inputs: Tensor, *, chunk: int = 512) -> Tensor:
    """Argmax next-token ids ``(members, n, T)`` of an ensemble over ``inputs`` ``(n, T)``, in chunks."""
    return torch.cat([model(inputs[i : i + chunk]).argmax(-1) for i in range(0, inputs.shape[0], chunk)], dim=-2)


@torch.no_grad()
def greedy_decode(model: Callable[[Tensor], Tensor], prompt: Tensor, steps: int) -> Tensor:
    """Append ``steps`` greedy tokens to every prompt, ``(members, n, P + steps)``.

    ``prompt``: ``(n, P)`` token ids of equal length, shared by the members; the model maps
    ``(members, n, T)`` ids to logits ``(members, n, T, vocab)``. The reference for
    :func:`exact_match` (one forward pass per step, so slow).
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    seq = None
    for _ in range(steps):
        logits = model(prompt) if seq is None else model(seq)
        nxt = logits[..., -1, :].argmax(-1, keepdim=True)
        base = prompt.expand(nxt.shape[0], *prompt.shape) if seq is None else seq
        seq = torch.cat([base, nxt], -1)
    if seq is None:
        return prompt.unsqueeze(0)
    return seq
