"""The top Hessian eigenvalue ("sharpness") by power iteration on Hessian-vector products.

The Hessian of a network's loss is far too large to form, but its product with a vector costs
about two gradients (``∇(∇L·v)``, double backward). Power iteration on that product converges
to the eigenvalue of largest *magnitude*; near the edge of stability that is the sharpness
``λ_max``, the number that decides whether gradient descent with step ``η`` is stable
(``λ_max < 2/η``) for the quadratic model of the loss.

Three entry points share one loop:

* :func:`hessian_top_eigenvalue`: one loss, any list of parameter tensors;
* :func:`minibatch_hessian_top_eigenvalue`: the same for each of several minibatches (the
  minibatch Hessian is not the full-batch one: its top eigenvalue is larger, by a term that
  shrinks with the batch size);
* :func:`ensemble_hessian_top_eigenvalue`: every member of a natively batched ensemble at once.
  Members share no parameters, so the Hessian of the *sum* of their losses is block diagonal,
  one block per member; a product with a stacked vector is every member's own product, and the
  power iteration runs per block (one norm and one Rayleigh quotient per member).

Convergence: iteration stops when every member's residual ``‖Hv − λv‖`` (``v`` of unit norm,
``λ`` its Rayleigh quotient) is at most ``tol·|λ|``. For a symmetric matrix that guarantees an
eigenvalue within ``tol·|λ|`` of ``λ`` (and the Rayleigh quotient's own error is smaller still,
about ``tol²·|λ|²/gap``). A test on the change of ``λ`` between iterations would not do: with
two eigenvalues ``±λ`` of equal magnitude the Rayleigh quotient stops changing at a wrong
value. Power iteration cannot converge then, and a :class:`RuntimeWarning` says so after
``iters`` products.
The start vector is drawn from a seeded generator, so the result is deterministic.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

DEFAULT_SEED = 0
"""Seed of the start vector when no generator is given (results are deterministic either way)."""


class TopEigen(NamedTuple):
    """Per-member top eigenvalues ``(members,)``, the eigenvectors (one tensor per parameter, stacked
    like the parameters) and the number of Hessian-vector products used."""

    values: Tensor
    vectors: list[Tensor]
    iterations: int


def _check(params: Sequence[Tensor], iters: int, tol: float) -> list[Tensor]:
    params = list(params)
    if not params:
        raise ValueError("params is empty: give the tensors to differentiate with respect to")
    if any(not p.requires_grad for p in params):
        raise ValueError("every tensor in params must require gradients (requires_grad=True)")
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol}")
    return params


def _start(params: Sequence[Tensor], generator: torch.Generator | None) -> list[Tensor]:
    """A Gaussian start vector drawn on the CPU from the generator, then moved to the parameters' device."""
    gen = generator if generator is not None else torch.Generator().manual_seed(DEFAULT_SEED)
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]


def _power(
    hvp: Callable[[list[Tensor]], list[Tensor]],
    dot: Callable[[list[Tensor], list[Tensor]], Tensor],
    scale: Callable[[list[Tensor], Tensor], list[Tensor]],
    v: list[Tensor],
    iters: int,
    tol: float,
) -> TopEigen:
    """Power iteration on ``hvp`` with per-block inner product ``dot`` (returns ``(blocks,)``)."""
    v = scale(v, dot(v, v).rsqrt())
    lam = torch.zeros(1)
    for k in range(1, iters + 1):
        hv = hvp(v)
        lam = dot(v, hv)  # Rayleigh quotient per block (v has unit norm per block)
        if not bool(torch.isfinite(lam).all()):
            raise FloatingPointError("the Hessian-vector product is not finite: the loss or its gradient overflowed")
        r = [h - lv for h, lv in zip(hv, scale(v, lam))]
        if bool((dot(r, r) <= (tol * lam) ** 2).all()):  # ‖Hv − λv‖ ≤ tol·|λ|
            return TopEigen(lam, v, k)
        norm = dot(hv, hv).sqrt()
        # a zero Hessian block (eigenvalue exactly 0) gets a zero vector, whose residual is 0 from then on
        v = scale(hv, 1 / norm.clamp_min(torch.finfo(norm.dtype).tiny))
    warnings.warn(
        f"power iteration did not reach tol={tol:g} in {iters} iterations (eigenvalues of nearly equal "
        "magnitude?); returning the last estimate. Raise iters, or loosen tol.",
        RuntimeWarning,
        stacklevel=3,
    )
    return TopEigen(lam, v, iters)


def _hvp_of(loss: Callable[[], Tensor], params: list[Tensor]) -> Callable[[list[Tensor]], list[Tensor]]:
    """``v ↦ H v`` for ``H = ∇²loss``: the gradient graph is built once and reused for every product."""
    value = loss()
    if value.numel() != 1:
        raise ValueError(f"loss() must return a scalar, got shape {tuple(value.shape)}")
    grads = torch.autograd.grad(value, params, create_graph=True)

    def hvp(v: list[Tensor]) -> list[Tensor]:
        dot = sum((g * u).sum() for g, u in zip(grads, v))
        out = torch.autograd.grad(dot, params, retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if o is None else o.detach() for o, p in zip(out, params)]

    return hvp


def _whole(a: list[Tensor], b: list[Tensor]) -> Tensor:
    return sum((x * y).sum() for x, y in zip(a, b)).reshape(1)


def _whole_scale(v: list[Tensor], s: Tensor) -> list[Tensor]:
    return [x * s[0] for x in v]


def hessian_top_eigenvalue(
    loss: Callable[[], Tensor],
    params: Sequence[Tensor],
    *,
    iters: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> float:
    """The eigenvalue of largest magnitude of the Hessian of ``loss()`` with respect to ``params``.

    ``loss`` is a zero-argument callable returning a scalar (evaluated once; its graph is reused
    for every Hessian-vector product). The sign is kept: a Hessian whose most negative
    eigenvalue dominates returns that negative number.
    """
    params = _check(params, iters, tol)
    result = _power(_hvp_of(loss, params), _whole, _whole_scale, _start(params, generator), iters, tol)
    return float(result.values[0])


def minibatch_hessian_top_eigenvalue(
    loss_of_batch: Callable[[object], Tensor],
    params: Sequence[Tensor],
    batches: Sequence[object],
    *,
    iters: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The top eigenvalue of each minibatch Hessian ``∇²loss_of_batch(b)``, one per batch: ``(len(batches),)``.

    Every batch starts power iteration from the same seeded vector, so that batches differ only
    by their data. (The full-batch Hessian is that of the mean loss: use
    :func:`hessian_top_eigenvalue` with ``loss = lambda: loss_of_batch(all_data)``.)
    """
    params = _check(params, iters, tol)
    if len(batches) == 0:
        raise ValueError("batches is empty")
    start = _start(params, generator)
    out = []
    for batch in batches:
        hvp = _hvp_of(lambda b=batch: loss_of_batch(b), params)
        out.append(_power(hvp, _whole, _whole_scale, [s.clone() for s in start], iters, tol).values[0])
    return torch.stack(out).detach().cpu().to(torch.float64)


def ensemble_hessian_top_eigenvalue(
    loss_per_member: Callable[[], Tensor],
    params: Sequence[Tensor],
    *,
    iters: int = 100,
    tol: float = 1e-4,
    generator: torch.Generator | None = None,
    init: Sequence[Tensor] | None = None,
) -> TopEigen:
    """Every member's top Hessian eigenvalue at once, for parameters with a leading ensemble axis.

    ``loss_per_member()`` returns ``(members,)`` losses (as :func:`phenomena.ensemble.fit` wants);
    ``params`` are the stacked parameters ``(members, ...)``. Power iteration runs per member on
    the block-diagonal Hessian of the summed loss and stops when every member has converged.
    ``init`` (e.g. the ``vectors`` of an earlier call) warm-starts the iteration: during training
    the top eigenvector moves slowly, so a few products suffice.
    """
    params = _check(params, iters, tol)
    members = params[0].shape[0]
    if any(p.dim() == 0 or p.shape[0] != members for p in params):
        raise ValueError(f"every parameter needs the leading ensemble axis of size {members}")

    def summed() -> Tensor:
        per = loss_per_member()
        if per.shape != (members,):
            raise ValueError(f"loss_per_member() must return shape ({members},), got {tuple(per.shape)}")
        return per.sum()

    def dot(a: list[Tensor], b: list[Tensor]) -> Tensor:
        return sum((x * y).reshape(members, -1).sum(1) for x, y in zip(a, b))

    def scale(v: list[Tensor], s: Tensor) -> list[Tensor]:
        return [x * s.view(-1, *([1] * (x.dim() - 1))) for x in v]

    if init is not None:
        start = [t.detach().clone() for t in init]
        if [t.shape for t in start] != [p.shape for p in params]:
            raise ValueError("init must have the shapes of params")
        empty = dot(start, start) == 0  # a member whose vector is zero (its Hessian was): restart it at random
        if bool(empty.any()):
            fresh = _start(params, generator)
            start = [torch.where(empty.view(-1, *([1] * (s.dim() - 1))), f, s) for s, f in zip(start, fresh)]
    else:
        start = _start(params, generator)
    return _power(_hvp_of(summed, params), dot, scale, start, iters, tol)


# ----------------------------------------------------------------------------- Lanczos, largest algebraic
class TopAlgebraic(NamedTuple):
    """Per-member largest *algebraic* eigenvalues ``(members,)`` and the Lanczos steps used."""

    values: Tensor
    iterations: int


def _lanczos_blocks(matvec: Callable[[Tensor], Tensor], start: Tensor, iters: int) -> tuple[Tensor, int]:
    """Lanczos with full reorthogonalisation on flat ``(blocks, N)`` vectors, one run per block: the
    largest Ritz value per block and the steps taken.

    Why Lanczos and not power iteration: power iteration finds the eigenvalue of largest
    *magnitude*, and early in training a Hessian can have a negative eigenvalue larger in
    magnitude than its top positive one, so power iteration would report the wrong end of the
    spectrum. The largest Ritz value of a Krylov space approaches ``λ_max`` from below and
    converges fastest at the ends of the spectrum.
    """
    blocks, dim = start.shape
    v = start / start.norm(dim=1, keepdim=True)
    basis = torch.empty(blocks, min(iters, dim), dim, dtype=start.dtype, device=start.device)
    alphas: list[Tensor] = []
    betas: list[Tensor] = []
    tiny = torch.finfo(start.dtype).tiny
    for k in range(min(iters, dim)):
        basis[:, k] = v
        w = matvec(v)
        a = (v * w).sum(1)
        if not bool(torch.isfinite(a).all()):
            raise FloatingPointError("the Hessian-vector product is not finite: the loss or its gradient overflowed")
        alphas.append(a)
        q = basis[:, : k + 1]
        for _ in range(2):  # full reorthogonalisation, twice: keeps Ritz values from ghosting
            w = w - torch.bmm(torch.bmm(q, w.unsqueeze(2)).transpose(1, 2), q).squeeze(1)
        b = w.norm(dim=1)
        betas.append(b)
        v = w / b.clamp_min(tiny).unsqueeze(1)
    k = len(alphas)
    t = torch.zeros(blocks, k, k, dtype=torch.float64)
    for i in range(k):
        t[:, i, i] = alphas[i].detach().cpu().to(torch.float64)
        if i + 1 < k:
            t[:, i, i + 1] = t[:, i + 1, i] = betas[i].detach().cpu().to(torch.float64)
    return torch.linalg.eigvalsh(t)[:, -1], k


def ensemble_hessian_top_algebraic(
    loss_per_member: Callable[[], Tensor],
    params: Sequence[Tensor],
    *,
    lr_multipliers: Sequence[float] | None = None,
    iters: int = 30,
    generator: torch.Generator | None = None,
) -> TopAlgebraic:
    """Every member's largest algebraic eigenvalue of its (preconditioned) Hessian, by Lanczos.

    ``loss_per_member()`` returns ``(members,)`` losses and ``params`` are the stacked
    parameters ``(members, ...)``, as for :func:`ensemble_hessian_top_eigenvalue`; members share
    no parameters, so the Hessian of the summed loss is block diagonal and Lanczos runs per block.

    ``lr_multipliers`` (one positive number per tensor in ``params``) gives the eigenvalue of
    ``P^{1/2} H P^{1/2}`` with ``P`` the diagonal of per-tensor learning-rate multipliers. Why:
    SGD with per-layer rates ``η₀·m_i`` is stable on a quadratic when the top eigenvalue of
    ``η₀·P^{1/2}HP^{1/2}`` is below 2, so this (not the raw Hessian's) is the sharpness to
    compare with ``2/η₀`` when a parameterisation scales its rates with width (μP: raw Hessian
    eigenvalues shrink as ``1/n`` while the rates grow as ``n``).
    ``iters`` Lanczos steps (each one Hessian-vector product); the result is a lower bound that
    converges to ``λ_max`` from below, typically in well under 30 steps when the top is separated.
    """
    params = _check(params, iters, 1.0)
    members = params[0].shape[0]
    if any(p.dim() == 0 or p.shape[0] != members for p in params):
        raise ValueError(f"every parameter needs the leading ensemble axis of size {members}")
    if lr_multipliers is None:
        roots = [1.0] * len(params)
    else:
        if len(lr_multipliers) != len(params) or any(not (float(m) > 0) for m in lr_multipliers):
            raise ValueError(
                f"lr_multipliers needs one positive number per parameter tensor ({len(params)}), got {list(lr_multipliers)}"
            )
        roots = [float(m) ** 0.5 for m in lr_multipliers]

    def summed() -> Tensor:
        per = loss_per_member()
        if per.shape != (members,):
            raise ValueError(f"loss_per_member() must return shape ({members},), got {tuple(per.shape)}")
        return per.sum()

    hvp = _hvp_of(summed, params)

    sizes = [p[0].numel() for p in params]

    def flat(v: list[Tensor]) -> Tensor:
        return torch.cat([r * x.reshape(members, -1) for r, x in zip(roots, v)], dim=1)

    def matvec(v: Tensor) -> Tensor:
        parts = torch.split(v, sizes, dim=1)
        return flat(hvp([r * x.reshape(p.shape) for r, x, p in zip(roots, parts, params)]))

    start = torch.cat([x.reshape(members, -1) for x in _start(params, generator)], dim=1)
    values, steps = _lanczos_blocks(matvec, start, iters)
    return TopAlgebraic(values, steps)
