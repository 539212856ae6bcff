"""Finite-width statistics of deep MLPs at initialization, after Roberts, Yaida & Hanin (PDLT, 2021).

Convention (PDLT Ch. 2 and 4): one input ``x`` with ``‖x‖²/n₀ = 1``, equal hidden widths ``n``,
no biases unless ``c_b`` says so, weights ``W^{(ℓ)}_{ij} ~ N(0, C_W/n_{ℓ-1})``. The preactivations

    z^{(1)} = W^{(1)} x,        z^{(ℓ+1)} = W^{(ℓ+1)} σ(z^{(ℓ)})

are, *given the layer below*, independent Gaussians with the common variance

    G_ℓ = C_b + (C_W/n) ‖σ(z^{(ℓ-1)})‖²        (G₁ = C_b + C_W ‖x‖²/n₀).

So every moment of ``z^{(ℓ)}`` is a moment of the random variance ``G_ℓ``: ``E z² = E G`` and
``E z⁴ = 3 E G²``. The excess kurtosis ``κ_ℓ = E z⁴/(E z²)² − 3 = 3 Var G_ℓ / (E G_ℓ)²`` measures how
far one unit is from Gaussian; PDLT writes the connected four-point correlator of one input as
``3 V^{(ℓ)}/n``, so ``κ_ℓ = 3 V^{(ℓ)} / (n K^{(ℓ)2})`` to leading order in ``1/n``.

Two ways to compute it live here:

* **the PDLT recursions** (Ch. 4, eqs. for ``K`` and ``V``; §4.5 for the ``1/n`` shift of the kernel),
  for any activation, with Gaussian expectations by Gauss–Hermite quadrature::

      K^{(ℓ+1)} = C_b + C_W ⟨σ²⟩_{K^{(ℓ)}}
      V^{(ℓ+1)} = χ_∥² V^{(ℓ)} + C_W² (⟨σ⁴⟩_K − ⟨σ²⟩_K²),       χ_∥ = C_W d⟨σ²⟩_K/dK
      K^{{1}(ℓ+1)} = χ_∥ K^{{1}(ℓ)} + ½ C_W (d²⟨σ²⟩_K/dK²) V^{(ℓ)}

  with ``K^{(1)} = C_b + C_W``, ``V^{(1)} = K^{{1}(1)} = 0``. ``E G_ℓ = K^{(ℓ)} + K^{{1}(ℓ)}/n + O(1/n²)``.

* **the exact finite-width law** of the *scale-invariant* class ``σ(z) = a₊z (z>0), a₋z (z<0)``
  (PDLT §5.2; ReLU is ``a₊=1, a₋=0``, linear ``a₊=a₋=1``). There ``σ(√G u)² = G σ(u)²``, so
  ``G_{ℓ+1} = G_ℓ X_ℓ`` with independent ``X_ℓ = (C_W/n) Σ_i σ(u_i)²``. At criticality ``C_W = 1/A₂``
  (``A₂ = (a₊²+a₋²)/2``, ``A₄ = (a₊⁴+a₋⁴)/2``): ``E X = 1`` and ``E X² = 1 + c/n`` with
  ``c = 3A₄/A₂² − 1``, so, exactly at every ``n``,

      κ_ℓ = 3[(1 + c/n)^{ℓ−1} − 1]      (ReLU: c = 5;  deep linear: c = 2, PDLT §3.3).

  Its leading order ``3c(ℓ−1)/n`` is PDLT's ``V/(nK²) = (3A₄/A₂² − 1) ℓ/n`` (§5.4).

Numpy in, numpy out; no torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .ntk import ACTIVATION_PAIRS

CRITICAL_C_W: dict[str, float] = {"relu": 2.0, "linear": 1.0, "tanh": 1.0}
"""Critical weight variance ``C_W`` with ``C_b = 0`` (PDLT Ch. 5): ``1/A₂`` for the scale-invariant
class (ReLU ``2``, linear ``1``, PDLT §5.2) and ``1/σ'(0)² = 1`` for tanh, a ``K* = 0`` activation (§5.3)."""

SCALE_INVARIANT_SLOPES: dict[str, tuple[float, float]] = {"relu": (1.0, 0.0), "linear": (1.0, 1.0)}
"""``(a₊, a₋)`` of the scale-invariant activations the book uses."""

_ACTIVATIONS: dict[str, Callable[[NDArray], NDArray]] = {
    **{name: fn for name, (fn, _) in ACTIVATION_PAIRS.items()},
    "linear": lambda x: x,
}

_SQRT_2PI = np.sqrt(2 * np.pi)


def critical_c_w(activation: str) -> float:
    """The critical ``C_W`` (with ``C_b = 0``) of ``activation``; a clear error for one without a table entry."""
    try:
        return CRITICAL_C_W[activation]
    except KeyError:
        raise ValueError(
            f"no critical initialization is tabulated for activation {activation!r}; "
            f"known: {', '.join(CRITICAL_C_W)} (add its C_W to CRITICAL_C_W)"
        ) from None


@dataclass(frozen=True)
class UniversalityConstants:
    """``A₂``, ``A₄``, the critical ``C_W = 1/A₂`` and the ``ℓ/n`` coefficient ``3A₄/A₂² − 1`` of ``V/(nK²)``."""

    a2: float
    a4: float
    c_w: float
    coefficient: float


def scale_invariant_constants(a_plus: float, a_minus: float) -> UniversalityConstants:
    """Constants of the scale-invariant class ``σ(z) = a₊z (z>0), a₋z (z<0)`` (PDLT §5.2, §5.4)."""
    a2 = (a_plus**2 + a_minus**2) / 2
    a4 = (a_plus**4 + a_minus**4) / 2
    if a2 <= 0:
        raise ValueError(f"a_plus and a_minus cannot both be zero (got {a_plus}, {a_minus})")
    return UniversalityConstants(a2=a2, a4=a4, c_w=1 / a2, coefficient=3 * a4 / a2**2 - 1)


def scale_invariant_kurtosis(width: ArrayLike, layer: ArrayLike, a_plus: float = 1.0, a_minus: float = 0.0) -> NDArray:
    """Exact excess kurtosis ``3[(1 + c/n)^{ℓ−1} − 1]`` of a layer-``ℓ`` preactivation at criticality.

    ``layer`` counts preactivation layers from 1 (``z^{(1)} = W x`` is Gaussian: ``κ₁ = 0``); a
    network with ``L`` hidden layers has its output at ``ℓ = L + 1``. Exact at every width, not only
    to leading order: the only approximation in a measurement is Monte-Carlo error.
    """
    n = np.asarray(width, dtype=float)
    ell = np.asarray(layer, dtype=float)
    if np.any(n < 1) or np.any(ell < 1):
        raise ValueError("width and layer must be >= 1 (layer 1 is the first preactivation)")
    c = scale_invariant_constants(a_plus, a_minus).coefficient
    return 3 * ((1 + c / n) ** (ell - 1) - 1)


def relu_kurtosis(width: ArrayLike, layer: ArrayLike) -> NDArray:
    """ReLU at ``C_W = 2``: ``κ_ℓ = 3[(1 + 5/n)^{ℓ−1} − 1]`` (Hanin & Nica 2019's ``exp(5Σ1/n)`` at large n)."""
    return scale_invariant_kurtosis(width, layer, *SCALE_INVARIANT_SLOPES["relu"])


def deep_linear_kurtosis(width: ArrayLike, layer: ArrayLike) -> NDArray:
    """Deep linear network at ``C_W = 1``: ``κ_ℓ = 3[(1 + 2/n)^{ℓ−1} − 1]`` (PDLT §3.3)."""
    return scale_invariant_kurtosis(width, layer, *SCALE_INVARIANT_SLOPES["linear"])


def exact_kurtosis(activation: str, width: ArrayLike, layer: ArrayLike) -> NDArray:
    """The exact finite-width kurtosis for a scale-invariant ``activation`` (``relu`` or ``linear``)."""
    if activation not in SCALE_INVARIANT_SLOPES:
        raise ValueError(
            f"the exact finite-width form holds for scale-invariant activations only "
            f"({', '.join(SCALE_INVARIANT_SLOPES)}), not {activation!r}; use pdlt_recursion for it"
        )
    return scale_invariant_kurtosis(width, layer, *SCALE_INVARIANT_SLOPES[activation])


@dataclass(frozen=True)
class Recursion:
    """The PDLT recursions for one input, layer by layer: index ``i`` is preactivation layer ``ℓ = i + 1``.

    ``kernel`` is ``K^{(ℓ)}``, ``vertex`` ``V^{(ℓ)}``, ``kernel_shift`` ``K^{{1}(ℓ)}`` (so that
    ``E z² = K + K^{{1}}/n``) and ``chi`` the parallel susceptibility ``χ_∥^{(ℓ)}``.
    """

    activation: str
    c_w: float
    c_b: float
    kernel: NDArray
    vertex: NDArray
    kernel_shift: NDArray
    chi: NDArray

    @property
    def layers(self) -> NDArray:
        return np.arange(1, len(self.kernel) + 1)

    def kurtosis(self, width: float) -> NDArray:
        """Leading-order excess kurtosis ``3V/(nK²)`` at width ``n``."""
        return 3 * self.vertex / (width * self.kernel**2)

    def mean_variance(self, width: float) -> NDArray:
        """``E G_ℓ = E z² ≈ K + K^{{1}}/n``: the kernel with its ``1/n`` finite-width shift."""
        return self.kernel + self.kernel_shift / width


@lru_cache(maxsize=8)
def _hermite_nodes(nodes: int) -> tuple[NDArray, NDArray]:
    """Probabilists' Gauss–Hermite nodes and weights normalised to the standard normal (cached: costly)."""
    u, w = np.polynomial.hermite_e.hermegauss(nodes)
    return u, w / _SQRT_2PI


def gaussian_moments(fn: Callable[[NDArray], NDArray], kernel: ArrayLike, *, nodes: int = 201) -> dict[str, NDArray]:
    """``⟨σ²⟩_K``, ``⟨σ⁴⟩_K`` and the first two ``K``-derivatives of ``⟨σ²⟩_K``, by Gauss–Hermite quadrature.

    The derivatives use Hermite weights instead of differences, ``d⟨f⟩/dK = ⟨f·He₂(u)⟩/(2K)`` and
    ``d²⟨f⟩/dK² = ⟨f·He₄(u)⟩/(4K²)`` with ``z = √K u``, so they stay accurate as ``K → 0`` (tanh at
    large depth). A symmetric node set makes the ReLU moments exact despite the kink.
    """
    u, w = _hermite_nodes(nodes)
    k = np.atleast_1d(np.asarray(kernel, dtype=float))
    if np.any(k <= 0):
        raise ValueError(f"the kernel must be positive, got {k}")
    s2 = fn(np.sqrt(k)[:, None] * u[None, :]) ** 2
    he2, he4 = u**2 - 1, u**4 - 6 * u**2 + 3
    return {
        "s2": s2 @ w,
        "s4": (s2 * s2) @ w,
        "ds2": (s2 * he2) @ w / (2 * k),
        "d2s2": (s2 * he4) @ w / (4 * k * k),
    }


def pdlt_recursion(
    activation: str,
    layers: int,
    *,
    c_w: float | None = None,
    c_b: float = 0.0,
    input_norm: float = 1.0,
    nodes: int = 201,
) -> Recursion:
    """Iterate PDLT's single-input recursions for ``K``, ``V`` and ``K^{{1}}`` over ``layers`` preactivation layers.

    ``c_w=None`` takes the critical value (:data:`CRITICAL_C_W`); ``input_norm`` is ``‖x‖²/n₀`` (1 at
    criticality: anything else moves the kernel off its fixed point, PDLT §5.2).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(_ACTIVATIONS)}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    c_w = critical_c_w(activation) if c_w is None else float(c_w)
    fn = _ACTIVATIONS[activation]
    k = np.empty(layers)
    v = np.zeros(layers)
    k1 = np.zeros(layers)
    chi = np.empty(layers)
    k[0] = c_b + c_w * input_norm
    for i in range(layers):
        m = gaussian_moments(fn, k[i], nodes=nodes)
        chi[i] = c_w * m["ds2"][0]
        if i + 1 < layers:
            k[i + 1] = c_b + c_w * m["s2"][0]
            v[i + 1] = chi[i] ** 2 * v[i] + c_w**2 * (m["s4"][0] - m["s2"][0] ** 2)
            k1[i + 1] = chi[i] * k1[i] + 0.5 * c_w * m["d2s2"][0] * v[i]
    return Recursion(activation, c_w, c_b, k, v, k1, chi)
