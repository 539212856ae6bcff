"""Addition as text: the formats, samplers and hold-outs of Lee et al. (2023), with a char tokenizer.

Lee, Sreenivasan, Lee, Lee & Papailiopoulos (2023), "Teaching Arithmetic to Small Transformers",
train a character-level GPT on strings such as ``128+367=495`` and find that *how* the answer is
written decides how many examples it takes to learn addition. The formats here follow the paper's
data-format section:

* ``plain``: ``A+B=C`` then a newline, no padding (the paper's baseline; digits of ``C`` come out
  most-significant first, so the first output digit depends on every input digit through carries);
* ``reverse``: ``$A+B=rev(C)$``: the sum written least-significant digit first, between ``$``
  delimiters (the paper adds the delimiters to the reverse format only, a confound it notes itself);
* ``padded``: ``A+B=C`` with both operands zero-padded to ``digits`` digits and the sum to
  ``digits + 1`` (the paper's zero-padding ablation: every digit sits at a fixed position);
* ``scratchpad``: the *simplified scratchpad*: after ``=`` one step per digit, least significant
  first, ``A->s,C->c;`` with the digit sum ``s`` and the carry ``c`` it produces, then the sum
  (most-significant first) and a newline. The paper's *detailed* scratchpad (281 tokens per 3-digit
  example) is not implemented: it is too long for a CPU budget.

Training pairs come from a sampler: ``uniform`` draws distinct pairs uniformly from the table (the
revealed entries of low-rank matrix completion), ``balanced`` spreads them evenly over the strata
(number of digits of the longer operand, number of carries), as the paper's ``bal`` data sets do
because uniform pairs almost never have a 1-digit operand or a carry in every column. Operand
hold-outs (every pair whose first operand is in a set ``H``) remove whole rows of the addition
table, which matrix completion can never fill.

The tokenizer is character level with a fixed alphabet; id 0 is padding. :func:`encode` returns the
token ids and an *answer mask*: the positions whose next token belongs to the answer (everything
after ``=``, the terminator included). The loss is taken there only, and exact match reads the
same positions (:mod:`phenomena.metrics.sequence`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FORMATS: tuple[str, ...] = ("plain", "reverse", "padded", "scratchpad")
"""The answer formats :func:`render` writes (see the module docstring)."""

SAMPLERS: tuple[str, ...] = ("uniform", "balanced")
"""How training pairs are drawn: uniformly from the table, or balanced over digit counts and carries."""

PAD = "#"
ALPHABET: str = PAD + "0123456789+=$\nAC->,;"
"""Every character a rendered example may contain; the token id of a character is its index here."""

VOCAB_SIZE: int = len(ALPHABET)
_ID = {c: i for i, c in enumerate(ALPHABET)}


def _check_digits(digits: int) -> None:
    if not isinstance(digits, int) or isinstance(digits, bool) or not 1 <= digits <= 4:
        raise ValueError(f"digits must be an integer in 1..4 (the table has 10^(2·digits) pairs), got {digits!r}")


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; valid choices are: {', '.join(FORMATS)}")


def carries(a: np.ndarray | int, b: np.ndarray | int, digits: int) -> np.ndarray:
    """Number of columns of ``a + b`` (schoolbook, ``digits`` columns) that produce a carry."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    count = np.zeros(np.broadcast(a, b).shape, dtype=np.int64)
    carry = np.zeros_like(count)
    for k in range(digits):
        s = (a // 10**k) % 10 + (b // 10**k) % 10 + carry
        carry = (s >= 10).astype(np.int64)
        count += carry
    return count


def num_digits(x: np.ndarray | int) -> np.ndarray:
    """Decimal digits of each non-negative integer (``0`` has one digit)."""
    x = np.asarray(x, dtype=np.int64)
    return np.where(x > 0, np.floor(np.log10(np.maximum(x, 1))).astype(np.int64) + 1, 1)


def render(a: int, b: int, fmt: str, digits: int) -> str:
    """One example as text, e.g. ``render(128, 367, "reverse", 3) == "$128+367=594$"``."""
    _check_format(fmt)
    c = a + b
    if fmt == "plain":
        return f"{a}+{b}={c}\n"
    if fmt == "reverse":
        return f"${a}+{b}={str(c)[::-1]}$"
    if fmt == "padded":
        return f"{a:0{digits}d}+{b:0{digits}d}={c:0{digits + 1}d}\n"
    steps, carry = [], 0
    for k in range(digits):
        s = (a // 10**k) % 10 + (b // 10**k) % 10 + carry
        carry = int(s >= 10)
        steps.append(f"A->{s % 10},C->{carry};")
    return f"{a}+{b}={''.join(steps)}{c}\n"


def answer_start(text: str) -> int:
    """Index of the first answer character (the one after ``=``)."""
    return text.index("=") + 1


def max_length(fmt: str, digits: int) -> int:
    """The longest rendered example of ``digits``-digit addition in format ``fmt`` (characters)."""
    top = 10**digits - 1
    return len(render(top, top, fmt, digits))


def tokenize(text: str) -> list[int]:
    """Character ids of ``text``; a character outside :data:`ALPHABET` is an error."""
    try:
        return [_ID[c] for c in text]
    except KeyError as err:
        raise ValueError(f"character {err.args[0]!r} is not in the arithmetic alphabet {ALPHABET!r}") from None


def detokenize(ids: Sequence[int] | Tensor) -> str:
    """Inverse of :func:`tokenize` (padding is dropped)."""
    return "".join(ALPHABET[int(i)] for i in ids if int(i) != 0)


@dataclass(frozen=True)
class Encoded:
    """Examples as model input. ``inputs``/``targets``: ``(n, T)`` token ids (targets shifted by one;
    padding is id 0); ``mask``: ``(n, T)`` bool, the answer positions (where ``targets`` is an answer
    token, the terminator included); ``a``, ``b``: the operands, ``(n,)``."""

    inputs: Tensor
    targets: Tensor
    mask: Tensor
    a: Tensor
    b: Tensor


def encode(a: Sequence[int] | Tensor | np.ndarray, b: Sequence[int] | Tensor | np.ndarray, fmt: str,
           digits: int, *, length: int | None = None) -> Encoded:
    """Render and tokenize pairs ``(a[i], b[i])``, right-padded to one length.

    ``length`` (default :func:`max_length` ``− 1``) is the model's sequence length ``T``: the input
    is the example without its last character, the target without its first.
    """
    _check_format(fmt)
    _check_digits(digits)
    a_arr, b_arr = np.asarray(a, dtype=np.int64).ravel(), np.asarray(b, dtype=np.int64).ravel()
    if a_arr.shape != b_arr.shape:
        raise ValueError(f"a and b must have the same length, got {a_arr.size} and {b_arr.size}")
    if a_arr.size and (a_arr.min() < 0 or b_arr.min() < 0 or max(a_arr.max(), b_arr.max()) >= 10**digits):
        raise ValueError(f"operands must lie in [0, 10^{digits}) for {digits}-digit addition")
    t = max_length(fmt, digits) - 1 if length is None else int(length)
    ids = np.zeros((a_arr.size, t + 1), dtype=np.int64)
    mask = np.zeros((a_arr.size, t), dtype=bool)
    for i, (x, y) in enumerate(zip(a_arr.tolist(), b_arr.tolist())):
        text = render(x, y, fmt, digits)
        if len(text) > t + 1:
            raise ValueError(f"example {text!r} is longer than length + 1 = {t + 1}; raise length")
        ids[i, : len(text)] = tokenize(text)
        mask[i, answer_start(text) - 1 : len(text) - 1] = True
    full = torch.from_numpy(ids)
    return Encoded(inputs=full[:, :-1].contiguous(), targets=full[:, 1:].contiguous(), mask=torch.from_numpy(mask),
                   a=torch.from_numpy(a_arr), b=torch.from_numpy(b_arr))


# ----------------------------------------------------------------------------- the table and its samplers
def table(digits: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair ``(a, b)`` of ``digits``-digit addition, row-major: pair ``i`` is ``(i // 10^d, i % 10^d)``."""
    _check_digits(digits)
    n = 10**digits
    idx = np.arange(n * n, dtype=np.int64)
    return idx // n, idx % n


def strata(digits: int) -> np.ndarray:
    """Stratum of every pair of the table: ``(digits of the longer operand − 1)·(digits + 1) + carries``."""
    a, b = table(digits)
    longest = np.maximum(num_digits(a), num_digits(b))
    return (longest - 1) * (digits + 1) + carries(a, b, digits)


def holdout_mask(digits: int, first_operands: Sequence[int] | np.ndarray) -> np.ndarray:
    """Pairs (row-major over the table) whose first operand is in ``first_operands``: whole rows."""
    a, _ = table(digits)
    return np.isin(a, np.asarray(first_operands, dtype=np.int64))


def _keys(size: int, generator: torch.Generator) -> np.ndarray:
    return torch.rand(size, generator=generator, dtype=torch.float64).numpy()


def sample_pairs(n: int, digits: int, generator: torch.Generator, *, sampler: str = "uniform",
                 exclude: np.ndarray | None = None) -> np.ndarray:
    """``n`` distinct pair indices into :func:`table`, none of them in the boolean mask ``exclude``.

    ``uniform``: a uniformly random ``n``-subset of the allowed pairs. ``balanced``: the allowed
    pairs are grouped by :func:`strata` and ``n`` is split as evenly as the strata allow (a small
    stratum gives all it has and the rest is spread over the others), then each stratum is
    sampled uniformly. Returns sorted indices.
    """
    _check_digits(digits)
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid choices are: {', '.join(SAMPLERS)}")
    total = 10 ** (2 * digits)
    allowed = np.ones(total, dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    if allowed.shape != (total,):
        raise ValueError(f"exclude must be a boolean mask over the {total} pairs of the table, got shape {allowed.shape}")
    if not 0 <= n <= int(allowed.sum()):
        raise ValueError(f"cannot draw {n} distinct pairs: only {int(allowed.sum())} are allowed")
    keys = _keys(total, generator)
    keys[~allowed] = np.inf
    if sampler == "uniform":
        return np.sort(np.argsort(keys, kind="stable")[:n])
    group = strata(digits)
    labels = np.unique(group[allowed])
    available = np.array([int((allowed & (group == g)).sum()) for g in labels])
    quota = np.zeros_like(available)
    left, open_ = n, available > 0
    while left > 0:  # water-filling: an even share for every stratum that still has pairs
        share = left // int(open_.sum())
        extra = left - share * int(open_.sum())
        give = np.where(open_, share, 0)
        give[np.flatnonzero(open_)[:extra]] += 1
        give = np.minimum(give, available - quota)
        quota += give
        left -= int(give.sum())
        open_ = quota < available
    picked = []
    for g, q in zip(labels, quota):
        members = np.flatnonzero((group == g) & allowed)
        picked.append(members[np.argsort(keys[members], kind="stable")[:q]])
    return np.sort(np.concatenate(picked))
