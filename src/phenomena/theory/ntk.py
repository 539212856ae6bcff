"""The infinite-width neural tangent kernel of a two-layer network, and its Monte-Carlo spread.

Convention: the NTK parameterisation of :class:`phenomena.models.MLP` without biases,
``MLPConfig(widths=[d, n, 1], parameterization="ntk", init_scale=σ, output_scale=α)``::

    f(x) = α · (σ/√n) · Σ_i a_i φ(z_i(x)),     z_i(x) = (σ/√d) · w_i·x,     a_i, w_ij ~ N(0, 1).

The kernel ``Θ(x, x') = Σ_θ ∂f(x)/∂θ · ∂f(x')/∂θ`` is a sum over hidden units ``i`` of
independent, identically distributed terms divided by ``n``:

    Θ_n(x, x') = (α²σ²/n) Σ_i [ φ(z_i(x)) φ(z_i(x'))  +  c · a_i² φ'(z_i(x)) φ'(z_i(x')) ],

the first term from the output weights ``a``, the second from the input weights ``w``. By the law
of large numbers (Jacot, Gabriel & Hongler 2018) it tends, as ``n → ∞``, to

    Θ_∞(x, x') = α²σ² ( E[φ(u)φ(v)] + c · E[φ'(u)φ'(v)] ),

where ``(u, v)`` is a centred Gaussian pair with ``E u² = q = σ²‖x‖²/d``, ``E v² = q' = σ²‖x'‖²/d``
and ``E uv = c = σ² x·x'/d``. Because ``Θ_n`` is a mean of ``n`` i.i.d. terms, its error is
exactly ``Var(term)/n`` at every width (not only asymptotically): :func:`ntk_two_layer_std`
gives that standard deviation, the Monte-Carlo error the chapter *ntk-width* tests against.

ReLU has closed forms, the arc-cosine kernels of Cho & Saul (2009): with ``cos ϑ = c/√(qq')``,

    E[1(u>0) 1(v>0)] = (π − ϑ)/(2π)                                 (order 0)
    E[relu(u) relu(v)] = √(qq') (sin ϑ + (π − ϑ) cos ϑ)/(2π)        (order 1)
    E[relu(u)² relu(v)²] = qq' (3 sin ϑ cos ϑ + (π − ϑ)(1 + 2cos²ϑ))/(2π)   (order 2, for the variance)

For every other activation the Gaussian expectations are computed by Gauss–Hermite quadrature
on the two-dimensional Gaussian (exact for polynomials of degree < 2·nodes, e.g. ``poly``), so
every activation of :data:`phenomena.models.ACTIVATIONS` has a reference. Numpy in, numpy out.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import erf

_SQRT_2PI = np.sqrt(2 * np.pi)


MAX_NODES = 160


def _sigmoid(x: NDArray) -> NDArray:
    return 0.5 * (1 + np.tanh(x / 2))


def _normal_cdf(x: NDArray) -> NDArray:
    return 0.5 * (1 + erf(x / np.sqrt(2)))


ACTIVATION_PAIRS: dict[str, tuple[Callable[[NDArray], NDArray], Callable[[NDArray], NDArray]]] = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "gelu": (lambda x: x * _normal_cdf(x), lambda x: _normal_cdf(x) + x * np.exp(-x * x / 2) / _SQRT_2PI),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "erf": (erf, lambda x: 2 / np.sqrt(np.pi) * np.exp(-x * x)),
    "linear": (lambda x: x, lambda x: np.ones_like(x)),
    "quadratic": (lambda x: x * x, lambda x: 2 * x),
    "poly": (lambda x: x + 0.5 * x * x, lambda x: 1 + x),
}
"""``(φ, φ')`` in numpy for every activation of :data:`phenomena.models.ACTIVATIONS` (same names)."""


def _pair(activation: str) -> tuple[Callable[[NDArray], NDArray], Callable[[NDArray], NDArray]]:
    if activation not in ACTIVATION_PAIRS:
        raise ValueError(f"unknown activation {activation!r}; valid activations are: {', '.join(ACTIVATION_PAIRS)}")
    return ACTIVATION_PAIRS[activation]


def _covariances(x1: ArrayLike, x2: ArrayLike | None, init_scale: float) -> tuple[NDArray, NDArray, NDArray]:
    """``q`` (N1, 1), ``q'`` (1, N2) and ``c`` (N1, N2) of the first layer's pre-activations."""
    a = np.asarray(x1, dtype=np.float64)
    b = a if x2 is None else np.asarray(x2, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 must be (n, d) arrays with the same d, got {a.shape} and {b.shape}")
    if not init_scale > 0 or not np.isfinite(init_scale):
        raise ValueError(f"init_scale must be a positive number, got {init_scale}")
    s2 = init_scale**2 / a.shape[1]
    return s2 * (a * a).sum(1)[:, None], s2 * (b * b).sum(1)[None, :], s2 * a @ b.T


def _angle(q1: NDArray, q2: NDArray, c: NDArray) -> tuple[NDArray, NDArray]:
    """``(cos ϑ, ϑ)`` with the cosine clipped into [−1, 1] against rounding."""
    norm = np.sqrt(q1 * q2)
    cos = np.clip(np.divide(c, norm, out=np.zeros(np.broadcast_shapes(c.shape, norm.shape)), where=norm > 0), -1, 1)
    return cos, np.arccos(cos)


def arccos_kernel(order: int, q1: ArrayLike, q2: ArrayLike, c: ArrayLike) -> NDArray[np.float64]:
    """``E[Θ(u)Θ(v) u^k v^k]`` for a centred Gaussian pair (variances ``q1``, ``q2``, covariance ``c``).

    Orders ``k = 0, 1, 2`` (Cho & Saul 2009): ``k = 0`` is ``E[relu'(u) relu'(v)]``, ``k = 1``
    is ``E[relu(u) relu(v)]``, ``k = 2`` is ``E[relu(u)² relu(v)²]``. Inputs broadcast.
    """
    q1_, q2_, c_ = (np.asarray(v, dtype=np.float64) for v in (q1, q2, c))
    cos, th = _angle(q1_, q2_, c_)
    sin = np.sqrt(np.clip(1 - cos * cos, 0, None))
    if order == 0:
        j = np.pi - th
    elif order == 1:
        j = np.sqrt(q1_ * q2_) * (sin + (np.pi - th) * cos)
    elif order == 2:
        j = q1_ * q2_ * (3 * sin * cos + (np.pi - th) * (1 + 2 * cos * cos))
    else:
        raise ValueError(f"arc-cosine kernels are implemented for orders 0, 1, 2; got {order}")
    return j / (2 * np.pi)


def gaussian_expectation(
    fn: Callable[[NDArray, NDArray], NDArray],
    q1: ArrayLike,
    q2: ArrayLike,
    c: ArrayLike,
    *,
    nodes: int = 32,
    chunk: int = 256,
    stacked: int | None = None,
) -> NDArray[np.float64]:
    """``E[fn(u, v)]`` for centred Gaussian pairs, by Gauss–Hermite quadrature (``nodes²`` points).

    ``u = √q1·z₁``, ``v = √q2·(ρ z₁ + √(1−ρ²) z₂)`` with ``z`` standard normal and ``ρ = c/√(q1q2)``.
    Exact when ``fn`` is a polynomial of degree ``< 2·nodes`` in each variable; converges fast for
    smooth ``fn`` of moderate variance, slowly (algebraically) for kinks such as ReLU's, and needs
    more nodes when a saturating ``fn`` (tanh) sees a large variance (``q ≳ 2``: its poles come
    close to the real axis). ``fn`` must be elementwise;
    ``q1``, ``q2``, ``c`` broadcast to a common shape, which is returned. ``chunk`` bounds memory.
    ``stacked=k``: ``fn`` returns ``k`` functions at once, stacked on a new first axis (one
    evaluation of the activation for several moments); the result is then ``(k, *shape)``.
    """
    if not 1 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes must be in [1, {MAX_NODES}] (numpy's Gauss–Hermite weights overflow beyond), got {nodes}")
    q1_, q2_, c_ = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (q1, q2, c)))
    if np.any(q1_ < 0) or np.any(q2_ < 0):
        raise ValueError("variances q1 and q2 must be non-negative")
    rho, _ = _angle(q1_, q2_, c_)
    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / _SQRT_2PI
    weights = (w[:, None] * w[None, :]).ravel()
    z1 = np.broadcast_to(z[:, None], (nodes, nodes)).ravel()
    z2 = np.broadcast_to(z[None, :], (nodes, nodes)).ravel()
    flat = [a.ravel() for a in (q1_, q2_, rho)]
    k = 1 if stacked is None else int(stacked)
    out = np.empty((k, flat[0].size))
    for start in range(0, flat[0].size, chunk):
        s1, s2, r = (a[start : start + chunk, None] for a in flat)
        u = np.sqrt(s1) * z1
        v = np.sqrt(s2) * (r * z1 + np.sqrt(np.clip(1 - r * r, 0, None)) * z2)
        out[:, start : start + chunk] = (fn(u, v) @ weights).reshape(k, -1)
    return out[0].reshape(q1_.shape) if stacked is None else out.reshape(k, *q1_.shape)


def _moments(activation: str, q1: NDArray, q2: NDArray, c: NDArray, nodes: int, *, second: bool) -> dict[str, NDArray]:
    """Gaussian moments the kernel (and, with ``second``, its per-unit variance) is made of.

    ``ff = E[φ(u)φ(v)]``, ``dd = E[φ'(u)φ'(v)]``; with ``second`` also ``ff2 = E[φ(u)²φ(v)²]``,
    ``ffdd = E[φ(u)φ(v)φ'(u)φ'(v)]`` and ``dd2 = E[φ'(u)²φ'(v)²]``.
    """
    if activation == "relu":
        out = {"ff": arccos_kernel(1, q1, q2, c), "dd": arccos_kernel(0, q1, q2, c)}
        if second:  # relu·relu' = relu and relu'² = relu'
            out |= {"ff2": arccos_kernel(2, q1, q2, c), "ffdd": out["ff"], "dd2": out["dd"]}
        return out
    phi, dphi = _pair(activation)
    names = ("ff", "dd", "ff2", "ffdd", "dd2") if second else ("ff", "dd")

    def all_moments(u: NDArray, v: NDArray) -> NDArray:
        """Every moment from one evaluation of φ and φ' at the nodes: ``(len(names), ...)``."""
        ff, dd = phi(u) * phi(v), dphi(u) * dphi(v)
        return np.stack([ff, dd, ff * ff, ff * dd, dd * dd][: len(names)])

    values = gaussian_expectation(all_moments, q1, q2, c, nodes=nodes, stacked=len(names))
    return dict(zip(names, values))


def relu_ntk(x1: ArrayLike, x2: ArrayLike | None = None, *, init_scale: float = 1.0) -> NDArray[np.float64]:
    """Infinite-width NTK of the two-layer ReLU net (NTK parameterisation, no bias): arc-cosine kernels.

    ``Θ = σ² ( k₁(x, x') + c · k₀(x, x') )`` with ``c = σ² x·x'/d`` (module docstring). ``(N1, N2)``.
    """
    q1, q2, c = _covariances(x1, x2, init_scale)
    return init_scale**2 * (arccos_kernel(1, q1, q2, c) + c * arccos_kernel(0, q1, q2, c))


def ntk_two_layer(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    activation: str = "relu",
    *,
    init_scale: float = 1.0,
    output_scale: float = 1.0,
    nodes: int = 32,
    return_std: bool = False,
) -> NDArray[np.float64] | tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Infinite-width NTK of ``MLP([d, n, 1], parameterization="ntk")`` between the rows of ``x1`` and ``x2``.

    ReLU uses the arc-cosine closed forms (as :func:`relu_ntk`); every other activation uses
    Gauss–Hermite quadrature with ``nodes`` points per dimension (32 puts tanh's quadrature error
    near 1e-4 for inputs on the sphere, far below the Monte-Carlo error of any width we train).
    Returns ``Θ_∞`` ``(N1, N2)``; with ``return_std`` also ``s``, the per-unit standard deviation of
    every entry: at width ``n`` the empirical kernel at init has mean ``Θ_∞`` and standard deviation
    ``s/√n``, exactly (see :func:`ntk_two_layer_std`). With ``x2=None`` only one triangle of the
    symmetric matrices is computed.
    """
    _pair(activation)
    q1, q2, c = _covariances(x1, x2, init_scale)
    size = c.shape[0]
    if x2 is None:  # symmetric: compute the upper triangle, mirror it
        rows, cols = np.triu_indices(size)
        q1, q2, c = q1[rows, 0], q2[0, cols], c[rows, cols]
    m = _moments(activation, q1, q2, c, nodes, second=return_std)
    out = [m["ff"] + c * m["dd"]]
    if return_std:
        second = m["ff2"] + 2 * c * m["ffdd"] + 3 * c * c * m["dd2"]
        out.append(np.sqrt(np.clip(second - out[0] * out[0], 0, None)))
    if x2 is None:
        for k, v in enumerate(out):
            full = np.empty((size, size))
            full[rows, cols] = v
            full[cols, rows] = v
            out[k] = full
    scale = output_scale**2 * init_scale**2
    return (scale * out[0], scale * out[1]) if return_std else scale * out[0]


def ntk_two_layer_std(
    x1: ArrayLike,
    x2: ArrayLike | None = None,
    activation: str = "relu",
    *,
    width: int,
    init_scale: float = 1.0,
    output_scale: float = 1.0,
    nodes: int = 32,
) -> NDArray[np.float64]:
    """Standard deviation over initialisations of every entry of the empirical kernel at ``width`` n.

    ``Θ_n`` is a mean of ``n`` i.i.d. per-unit terms ``ξ = α²σ²(φ(u)φ(v) + c·a²·φ'(u)φ'(v))`` (module
    docstring), so ``Var Θ_n = Var ξ / n`` exactly, with ``E a² = 1`` and ``E a⁴ = 3``:

        E ξ² / (α²σ²)² = E[φ(u)²φ(v)²] + 2c E[φ(u)φ(v)φ'(u)φ'(v)] + 3c² E[φ'(u)²φ'(v)²].
    """
    if int(width) < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    _, std = ntk_two_layer(
        x1, x2, activation, init_scale=init_scale, output_scale=output_scale, nodes=nodes, return_std=True
    )
    return std / np.sqrt(int(width))
