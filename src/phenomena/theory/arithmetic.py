"""Addition as low-rank matrix completion: the 2×2 completion rule and its success curve.

The addition table of two ``d``-digit numbers is the ``n × n`` matrix ``M_ij = i + j``
(``n = 10^d``): ``M = r 1ᵀ + 1 cᵀ`` has rank 2. Training examples reveal entries; a learner that
fills in the rest is doing low-rank matrix completion (LRMC). Lee et al. (2023) compare a NanoGPT
trained on ``N`` 2-digit pairs with the simplest LRMC algorithm (official repository,
``matrix_completion/iterative_mc_method.ipynb``): sweep over every *adjacent* 2×2 block
``(i, i+1) × (j, j+1)``; where exactly three of its four entries are known, fill the fourth;
repeat until a sweep fills nothing. It succeeds when the whole matrix is filled.

For an additive matrix the fill is exact: ``M_ij + M_{i+1,j+1} = M_{i+1,j} + M_{i,j+1}`` in every
block, so the missing entry is the sum of its two neighbours in the block minus the opposite
corner (the official notebook writes the multiplicative rule ``B·C/A`` of a rank-1 matrix instead;
which cells it fills, and so its success flag, is the same). The set of cells the sweeps end up
filling does not depend on the order of the sweeps (filling is monotone: a block that could be
completed stays completable), so :func:`closure` computes it with whole-array operations.

Two facts the tests pin: the rule can only fill cells the revealed entries determine, so success
needs the bipartite graph of revealed (row, column) pairs to be connected, hence at least
``2n − 1`` entries; and a whole revealed row and column (``2n − 1`` entries) always succeed.

The success probability with ``k`` uniformly random revealed entries has no closed form; for
``n ≤ 4`` :func:`exact_success_probability` enumerates all ``2^(n²)`` masks, and for larger ``n``
:func:`success_probability` simulates the algorithm itself (Monte-Carlo over random masks).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def _as_masks(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask, dtype=bool)
    if m.ndim < 2 or m.shape[-1] < 2 or m.shape[-2] < 2:
        raise ValueError(f"mask must be (..., rows, cols) with at least 2 rows and 2 columns, got shape {m.shape}")
    return m


def closure(mask: np.ndarray) -> np.ndarray:
    """Cells known after running the adjacent-2×2 rule to the end, for one or many masks ``(..., n, m)``."""
    known = _as_masks(mask).copy()
    while True:
        tl, tr, bl, br = known[..., :-1, :-1], known[..., :-1, 1:], known[..., 1:, :-1], known[..., 1:, 1:]
        three = (tl.astype(np.int8) + tr + bl + br) == 3
        if not three.any():
            return known
        fill = np.zeros_like(known)
        fill[..., :-1, :-1] |= three & ~tl
        fill[..., :-1, 1:] |= three & ~tr
        fill[..., 1:, :-1] |= three & ~bl
        fill[..., 1:, 1:] |= three & ~br
        known |= fill


def complete(values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fill an additive matrix from its revealed entries with the 2×2 rule ``a + d = b + c``.

    ``values``: ``(n, m)`` (only entries under ``mask`` are read); returns the filled matrix (``nan``
    where nothing was filled) and the final mask. One cell at a time, in sweep order, as the paper's
    algorithm does; the slow reference that :func:`closure` is tested against.
    """
    known = _as_masks(mask).copy()
    if known.ndim != 2:
        raise ValueError("complete takes one (rows, cols) mask")
    out = np.where(known, np.asarray(values, dtype=float), np.nan)
    n, m = known.shape
    changed = True
    while changed:
        changed = False
        for i in range(n - 1):
            for j in range(m - 1):
                cells = [(i, j), (i, j + 1), (i + 1, j), (i + 1, j + 1)]
                have = [known[c] for c in cells]
                if sum(have) != 3:
                    continue
                miss = have.index(False)
                (a, b, c, d) = (out[x] for x in cells)  # a=(i,j) b=(i,j+1) c=(i+1,j) d=(i+1,j+1)
                out[cells[miss]] = [b + c - d, a + d - c, a + d - b, b + c - a][miss]
                known[cells[miss]] = True
                changed = True
    return out, known


def random_masks(n: int, k: int, trials: int, generator: torch.Generator) -> np.ndarray:
    """``trials`` masks ``(trials, n, n)`` with ``k`` distinct entries revealed uniformly at random."""
    if not 0 <= k <= n * n:
        raise ValueError(f"k must lie in [0, n²] = [0, {n * n}], got {k}")
    keys = torch.rand(trials, n * n, generator=generator)
    order = keys.argsort(dim=1)[:, :k]
    masks = torch.zeros(trials, n * n, dtype=torch.bool)
    masks.scatter_(1, order, True)
    return masks.view(trials, n, n).numpy()


def success_probability(n: int, ks: Sequence[int] | np.ndarray, trials: int, generator: torch.Generator
                        ) -> np.ndarray:
    """Monte-Carlo estimate of P(the 2×2 rule fills the ``n × n`` matrix) from ``k`` random entries, per ``k``."""
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    return np.array([closure(random_masks(n, int(k), trials, generator)).all(axis=(-1, -2)).mean() for k in ks])


def exact_success_probability(n: int) -> np.ndarray:
    """Exact P(success | k revealed entries) for ``k = 0 … n²``, by enumerating all ``2^(n²)`` masks (``n ≤ 4``)."""
    if not 2 <= n <= 4:
        raise ValueError(f"exact enumeration needs 2 <= n <= 4 (2^(n²) masks), got {n}")
    cells = n * n
    codes = np.arange(2**cells, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(cells)) & 1).astype(bool)
    ok = closure(bits.reshape(-1, n, n)).all(axis=(-1, -2))
    k = bits.sum(1)
    hits = np.bincount(k, weights=ok, minlength=cells + 1)
    total = np.bincount(k, minlength=cells + 1)
    return hits / total


def k_at(ks: Sequence[int] | np.ndarray, probability: Sequence[float] | np.ndarray, level: float) -> float:
    """Where a success curve first reaches ``level``, interpolated linearly between grid points.

    ``inf`` if it never does; the first ``k`` if it starts above ``level``.
    """
    k, p = np.asarray(ks, dtype=float), np.asarray(probability, dtype=float)
    above = np.flatnonzero(p >= level)
    if above.size == 0:
        return float("inf")
    i = int(above[0])
    if i == 0:
        return float(k[0])
    return float(k[i - 1] + (level - p[i - 1]) * (k[i] - k[i - 1]) / (p[i] - p[i - 1]))
