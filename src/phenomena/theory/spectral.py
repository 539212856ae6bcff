"""The random-direction null for intruder dimensions: max |cos| of a random unit vector with an orthonormal basis.

An intruder dimension (Shuttleworth et al. 2024) is a top singular vector ``u`` of a fine-tuned
``(out, in)`` matrix whose largest absolute cosine with the pretrained left singular vectors,
``max_i |⟨u, u_i⟩|``, is below ``ε = 0.5``. What value would a direction with *no* relation to the
pretrained matrix give? Take ``u`` uniform on the unit sphere of ``R^n`` (``n = out``) and the
``p = min(out, in)`` orthonormal base vectors; by rotation invariance the statistic is

    M = max_{i ≤ p} |u_i|,   u uniform on S^{n−1},

the largest of the first ``p`` coordinates of a uniform unit vector. Its law depends on ``(n, p)``
only. There is no simple closed form for ``p > 1``, so :func:`max_cosine_null` samples it
(``u = z/‖z‖``, ``z`` standard Gaussian); three exact facts pin the sampler in the tests:

* ``p = 1``: ``u_1² ~ Beta(1/2, (n−1)/2)``, so ``P(M < t) = I_{t²}(1/2, (n−1)/2)``
  (:func:`single_cosine_cdf`);
* ``n = p = 2``: ``M = max(|cos θ|, |sin θ|)`` with ``θ`` uniform, ``P(M < t) = (arcsin t − arccos t)/(π/2)``;
* the union bound ``P(M ≥ t) ≤ p·P(|u_1| ≥ t)`` gives an upper bound on every upper quantile
  (:func:`union_bound_quantile`).

Numpy in, numpy out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import optimize, special


def _check_dims(n: int, p: int | None) -> tuple[int, int]:
    n = int(n)
    p = n if p is None else int(p)
    if n < 1 or not 1 <= p <= n:
        raise ValueError(f"need n >= 1 and 1 <= p <= n (p orthonormal vectors in R^n), got n={n}, p={p}")
    return n, p


def max_cosine_samples(n: int, p: int | None = None, *, samples: int = 100_000, seed: int = 0,
                       chunk: int = 20_000) -> np.ndarray:
    """``samples`` draws of ``M = max_{i≤p} |u_i|`` for ``u`` uniform on ``S^{n−1}`` (``p = n`` by default).

    Drawn in chunks so that memory stays at ``chunk × n`` numbers.
    """
    n, p = _check_dims(n, p)
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    rng = np.random.default_rng(seed)
    out = np.empty(int(samples))
    for start in range(0, int(samples), int(chunk)):
        m = min(int(chunk), int(samples) - start)
        z = rng.standard_normal((m, n))
        out[start : start + m] = np.abs(z[:, :p]).max(1) / np.linalg.norm(z, axis=1)
    return out


@dataclass(frozen=True)
class MaxCosineNull:
    """Summary of the null law of ``M`` for ``p`` orthonormal vectors in ``R^n``."""

    n: int
    p: int
    mean: float
    quantiles: dict[float, float] = field(default_factory=dict)
    samples: int = 0

    def quantile(self, q: float) -> float:
        if q not in self.quantiles:
            raise KeyError(f"quantile {q} was not computed; computed: {sorted(self.quantiles)}")
        return self.quantiles[q]


def max_cosine_null(n: int, p: int | None = None, *, quantiles: tuple[float, ...] = (0.5, 0.99),
                    samples: int = 100_000, seed: int = 0) -> MaxCosineNull:
    """Mean and quantiles of ``M`` by Monte-Carlo (``samples`` draws; standard error of a quantile
    ``≈ √(q(1−q)/samples)/density``, about 0.001 for the 99th percentile at the default)."""
    n, p = _check_dims(n, p)
    qs = tuple(float(q) for q in quantiles)
    if any(not 0.0 < q < 1.0 for q in qs):
        raise ValueError(f"quantiles must lie in (0, 1), got {quantiles}")
    x = max_cosine_samples(n, p, samples=samples, seed=seed)
    return MaxCosineNull(n=n, p=p, mean=float(x.mean()), quantiles={q: float(np.quantile(x, q)) for q in qs},
                         samples=int(samples))


def single_cosine_cdf(t: np.ndarray | float, n: int) -> np.ndarray:
    """Exact ``P(|u_1| < t)`` for ``u`` uniform on ``S^{n−1}``: ``I_{t²}(1/2, (n−1)/2)`` (``n ≥ 2``)."""
    if int(n) < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    return special.betainc(0.5, (int(n) - 1) / 2.0, t * t)


def union_bound_quantile(q: float, n: int, p: int | None = None) -> float:
    """The ``t`` with ``p·P(|u_1| ≥ t) = 1 − q``: by the union bound, ``P(M ≥ t) ≤ 1 − q``, so the
    ``q``-quantile of ``M`` is at most this ``t`` (tight for upper quantiles when ``p ≪ n``)."""
    n, p = _check_dims(n, p)
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    target = (1.0 - q) / p
    return float(optimize.brentq(lambda t: (1.0 - single_cosine_cdf(t, n)) - target, 0.0, 1.0, xtol=1e-12))
