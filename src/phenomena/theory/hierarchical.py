"""Exact Hermite analysis of hierarchical polynomials ``h = g∘p`` (Wang, Nichani & Lee 2023).

The feature is ``p(x) = Σ_i λ_i He_k(x_i) / √(d·k!)`` with signs ``λ_i ∈ {±1}`` and ``x ~ N(0, I_d)``,
so ``E p = 0`` and ``E p² = 1``; the link ``g(z) = Σ_j g_j z^j`` is a polynomial of degree ``q``.
``h`` is a polynomial of degree ``k·q`` in ``x``. A kernel (rotation-invariant, or any fixed kernel
with a spectrum spread over degrees) fitted on ``n ≪ d^ℓ`` samples resolves at most the Hermite
components of degree ``< ℓ``; the rest of ``h``'s variance is a floor on its test loss. That floor
needs the squared norms ``‖P_ℓ h‖²`` of ``h``'s degree-``ℓ`` Hermite components, computed here
exactly (no sampling):

* ``p`` is a sum of independent terms ``y_i = λ_i·c·He_k(x_i)``, ``c = 1/√(d·k!)``, so its cumulants
  are sums of the terms' cumulants and its moments follow (``feature_moments``). The terms'
  moments ``E He_k(z)^m`` come from Gauss–Hermite quadrature, exact for polynomials.
* A multivariate Hermite coefficient ``E[h·Π_{i∈S} He_{a_i}(x_i)]`` splits ``p = Σ_{i∈S} y_i + R``,
  expands ``g(p)`` multinomially and uses the independence of ``R`` (whose moments come from the
  cumulants of ``p`` minus those of the ``y_i``, ``i ∈ S``) from the coordinates in ``S``.
* The coefficient depends only on the multiset of (sign, degree) pairs of ``S``, so each degree
  sums over a handful of patterns times the number of index sets that realise them; the cost does
  not grow with ``d``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from numpy.polynomial import hermite_e
from numpy.typing import ArrayLike, NDArray


def _check_kd(d: int, k: int) -> None:
    for name, value in (("d", d), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_signs(signs: ArrayLike | None, d: int) -> NDArray[np.float64]:
    """``signs`` as a float array of ±1 of length ``d``; ``None`` means all ``+1``."""
    if signs is None:
        return np.ones(d)
    s = np.asarray(signs, dtype=np.float64).reshape(-1)
    if s.shape != (d,) or not np.all(np.abs(s) == 1):
        raise ValueError(f"signs must be {d} values in {{-1, +1}} (one per input coordinate), got shape {s.shape}")
    return s


def _check_link(link: Sequence[float]) -> list[float]:
    coeffs = [float(c) for c in link]
    if not coeffs or not all(math.isfinite(c) for c in coeffs):
        raise ValueError(f"link must be the monomial coefficients [g_0, g_1, ...] of g, finite numbers; got {link!r}")
    return coeffs


def hermite_products(k: int, powers: int, degrees: int) -> NDArray[np.float64]:
    """``M[b, a] = E[He_k(z)^b · He_a(z)]`` for ``z ~ N(0, 1)``, ``b < powers``, ``a < degrees``.

    Gauss–Hermite quadrature with enough nodes to be exact (the integrand is a polynomial of degree
    ``k·b + a``). ``M[b, 0]`` are the moments of ``He_k``.
    """
    nodes_needed = (k * (powers - 1) + degrees) // 2 + 2
    z, w = hermite_e.hermegauss(nodes_needed)
    w = w / w.sum()
    hk = hermite_e.hermeval(z, [0] * k + [1])
    out = np.empty((powers, degrees))
    for a in range(degrees):
        ha = hermite_e.hermeval(z, [0] * a + [1])
        for b in range(powers):
            out[b, a] = float(np.sum(w * hk**b * ha))
    return out


def _cumulants(moments: NDArray[np.float64]) -> NDArray[np.float64]:
    """Cumulants ``κ_1..κ_M`` (index 0 unused, set 0) from raw moments ``μ_0 = 1, …, μ_M``."""
    m = len(moments) - 1
    kappa = np.zeros(m + 1)
    for n in range(1, m + 1):
        kappa[n] = moments[n] - sum(math.comb(n - 1, j - 1) * kappa[j] * moments[n - j] for j in range(1, n))
    return kappa


def _moments(kappa: NDArray[np.float64]) -> NDArray[np.float64]:
    """Raw moments ``μ_0..μ_M`` from cumulants ``κ_1..κ_M`` (the inverse of :func:`_cumulants`)."""
    m = len(kappa) - 1
    mu = np.zeros(m + 1)
    mu[0] = 1.0
    for n in range(1, m + 1):
        mu[n] = sum(math.comb(n - 1, j - 1) * kappa[j] * mu[n - j] for j in range(1, n + 1))
    return mu


def _term_cumulants(d: int, k: int, order: int) -> NDArray[np.float64]:
    """Cumulants of one term ``c·He_k(z)``, ``c = 1/√(d·k!)``, up to ``order``."""
    c = 1.0 / math.sqrt(d * math.factorial(k))
    mom = hermite_products(k, order + 1, 1)[:, 0] * c ** np.arange(order + 1)
    return _cumulants(mom)


def feature_moments(d: int, k: int, order: int, signs: ArrayLike | None = None) -> NDArray[np.float64]:
    """Exact raw moments ``E p^m``, ``m = 0..order``, of ``p = Σ λ_i He_k(x_i)/√(d·k!)``.

    Cumulants add over independent terms and a sign ``λ`` multiplies the ``m``-th cumulant by ``λ^m``.
    ``E p = 0`` and ``E p² = 1`` by the normalisation; for ``k = 2`` the excess kurtosis is ``12/d``.
    """
    _check_kd(d, k)
    lam = _check_signs(signs, d)
    kappa_term = _term_cumulants(d, k, order)
    m = np.arange(order + 1)
    kappa = kappa_term * (lam[None, :] ** m[:, None]).sum(1)
    kappa[0] = 0.0
    return _moments(kappa)


def link_moments(link: Sequence[float], d: int, k: int, signs: ArrayLike | None = None) -> tuple[float, float]:
    """Exact mean and variance of ``g(p)`` for ``g(z) = Σ_j link[j]·z^j``."""
    g = _check_link(link)
    q = len(g) - 1
    mu = feature_moments(d, k, 2 * q, signs)
    mean = sum(gj * mu[j] for j, gj in enumerate(g))
    second = sum(gi * gj * mu[i + j] for i, gi in enumerate(g) for j, gj in enumerate(g))
    return float(mean), float(second - mean * mean)


def _partitions(n: int, largest: int | None = None):
    """Integer partitions of ``n`` as non-increasing tuples."""
    largest = n if largest is None else largest
    if n == 0:
        yield ()
        return
    for first in range(min(n, largest), 0, -1):
        for rest in _partitions(n - first, first):
            yield (first,) + rest


def _patterns(degree: int) -> list[tuple[tuple[float, int], ...]]:
    """Multisets of (sign, per-coordinate degree) pairs whose degrees add to ``degree``."""
    seen: set[tuple[tuple[float, int], ...]] = set()
    for parts in _partitions(degree):
        for signs in itertools.product((1.0, -1.0), repeat=len(parts)):
            seen.add(tuple(sorted(zip(signs, parts))))
    return sorted(seen)


def _pattern_count(pattern: tuple[tuple[float, int], ...], n_plus: int, n_minus: int) -> int:
    """How many multi-indices (sets of coordinates with degrees) realise ``pattern``."""
    total = 1
    for sign, n_avail in ((1.0, n_plus), (-1.0, n_minus)):
        groups: dict[int, int] = {}
        for s, a in pattern:
            if s == sign:
                groups[a] = groups.get(a, 0) + 1
        used = sum(groups.values())
        if used > n_avail:
            return 0
        ways = math.factorial(n_avail) // math.factorial(n_avail - used)
        for count in groups.values():
            ways //= math.factorial(count)
        total *= ways
    return total


def projection_norms(
    d: int, k: int, link: Sequence[float], signs: ArrayLike | None = None, max_degree: int = 2
) -> NDArray[np.float64]:
    """``‖P_ℓ h‖² = Σ_{|α|=ℓ} E[h·He_α(x)]²/α!`` for ``ℓ = 0..max_degree``, ``h = g∘p`` exact.

    ``ℓ = 0`` is ``(E h)²``. Summed over all ``ℓ ≤ k·q`` the norms give ``E h²`` (Parseval), which
    the tests check. The cost depends on ``max_degree`` and ``q``, not on ``d``.
    """
    _check_kd(d, k)
    lam = _check_signs(signs, d)
    g = _check_link(link)
    if isinstance(max_degree, bool) or not isinstance(max_degree, int) or max_degree < 0:
        raise ValueError(f"max_degree must be a non-negative integer, got {max_degree!r}")
    q = len(g) - 1
    c = 1.0 / math.sqrt(d * math.factorial(k))
    prod = hermite_products(k, q + 1, max_degree + 1)  # E[He_k^b He_a]
    kappa_term = _term_cumulants(d, k, q)
    order = np.arange(q + 1)
    kappa_p = kappa_term * (lam[None, :] ** order[:, None]).sum(1)
    n_plus = int((lam > 0).sum())
    n_minus = d - n_plus
    norms = np.zeros(max_degree + 1)
    mean = sum(gj * mj for gj, mj in zip(g, _moments(np.where(order > 0, kappa_p, 0.0))))
    norms[0] = mean**2
    for ell in range(1, max_degree + 1):
        for pattern in _patterns(ell):
            count = _pattern_count(pattern, n_plus, n_minus)
            if count == 0:
                continue
            kappa_r = kappa_p.copy()
            for s, _ in pattern:
                kappa_r -= kappa_term * s**order
            kappa_r[0] = 0.0
            mu_r = _moments(kappa_r)
            value = 0.0
            for j, gj in enumerate(g):
                if gj == 0.0:
                    continue
                for bs in itertools.product(range(j + 1), repeat=len(pattern)):
                    r = j - sum(bs)
                    if r < 0:
                        continue
                    term = math.factorial(j) / math.factorial(r)
                    for (s, a), b in zip(pattern, bs):
                        term *= (s * c) ** b * prod[b, a] / math.factorial(b)
                    value += gj * term * mu_r[r]
            norms[ell] += count * value**2 / math.prod(math.factorial(a) for _, a in pattern)
    return norms


def kernel_floor(
    d: int, k: int, link: Sequence[float], signs: ArrayLike | None = None, resolved_degree: int = 2
) -> float:
    """Normalised test loss of the best predictor of degree ``≤ resolved_degree``: ``1 − Σ_{1≤ℓ≤L}‖P_ℓ h‖²/Var h``.

    A kernel fitted on far fewer samples than the ``~d^{L+1}`` Hermite features of the next degree
    cannot go below it (the loss of predicting the mean is 1). For ``k = 2``, ``g(z) = z³`` it tends
    to ``1 − 9/15 = 0.4`` as ``d → ∞`` (``p`` becomes Gaussian and only ``He_1(p) = p`` is of degree 2).
    """
    _, var = link_moments(link, d, k, signs)
    if var <= 0:
        raise ValueError("g∘p is constant: its variance is 0, there is nothing to learn")
    norms = projection_norms(d, k, link, signs, resolved_degree)
    return float(1.0 - norms[1:].sum() / var)
