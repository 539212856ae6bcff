"""The empirical neural tangent kernel, and regression with a given kernel.

``Θ(x, x') = Σ_θ ∂f(x)/∂θ · ∂f(x')/∂θ`` for a scalar-output model, computed with ``torch.func``
(per-example Jacobians by ``vmap(jacrev(...))``), so it works on CPU and CUDA alike.

Ensembles: the book's models carry a leading ensemble axis and return ``(members, batch, 1)``.
Members share no parameters, so the Jacobian of the *sum* of the members' outputs with respect
to a stacked parameter holds, in slice ``e``, exactly member ``e``'s own Jacobian. One Jacobian
call thus gives every member's kernel at once: ``(members, n1, n2)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap


def _member_count(model: nn.Module, x: Tensor) -> int:
    with torch.no_grad():
        return int(model(x[:1]).numel())


def empirical_ntk(model: nn.Module, x1: Tensor, x2: Tensor | None = None, *, chunk: int | None = None) -> Tensor:
    """Empirical NTK of ``model`` between the rows of ``x1`` and ``x2`` (default ``x1``).

    ``model`` maps a batch ``(n, d)`` to one scalar per example: ``(n,)``, ``(n, 1)``, or, for an
    ensemble of ``E`` members, ``(E, n, 1)``. Returns ``(n1, n2)``, or ``(E, n1, n2)`` for an
    ensemble with ``E > 1``. ``chunk`` limits how many examples' Jacobians are held at once
    (memory grows as ``chunk × #parameters``).
    """
    if x1.dim() != 2 or (x2 is not None and x2.dim() != 2):
        raise ValueError("x1 and x2 must be (n, d) batches of inputs")
    members = _member_count(model, x1)
    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    if not params:
        raise ValueError("the model has no trainable parameters: its tangent kernel is zero")

    def summed_output(p: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(model, p, (x.unsqueeze(0),)).sum()

    per_example = vmap(jacrev(summed_output), in_dims=(None, 0), chunk_size=chunk)

    def flat_jacobian(x: Tensor) -> Tensor:
        jac = per_example(params, x)  # name -> (n, *param.shape)
        blocks = []
        for name, j in jac.items():
            if members > 1:
                if params[name].shape[0] != members:
                    raise ValueError(
                        f"parameter {name!r} has no leading ensemble axis of size {members}; "
                        "an ensemble's parameters must all be stacked along axis 0"
                    )
                blocks.append(j.reshape(j.shape[0], members, -1))
            else:
                blocks.append(j.reshape(j.shape[0], 1, -1))
        return torch.cat(blocks, dim=-1)  # (n, members, P)

    j1 = flat_jacobian(x1)
    j2 = j1 if x2 is None else flat_jacobian(x2)
    kernel = torch.einsum("aep,bep->eab", j1, j2)
    return kernel if members > 1 else kernel[0]


def kernel_regression(k_train: Tensor, y_train: Tensor, k_test_train: Tensor, *, ridge: float = 0.0) -> Tensor:
    """Predictions of (ridge) kernel regression: ``K(test, train) (K(train, train) + ridge·I)⁻¹ y``.

    With ``ridge=0`` this is the limit of gradient flow on the squared loss of a model linearised
    around its init (the NTK regime), from a zero initial function. Leading batch axes (e.g.
    ensemble members) broadcast. Solved in float64 for accuracy, returned in the input dtype.
    """
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    n = k_train.shape[-1]
    if k_train.shape[-2] != n or k_test_train.shape[-1] != n:
        raise ValueError(
            f"shapes do not fit: K(train, train) {tuple(k_train.shape)}, K(test, train) {tuple(k_test_train.shape)}"
        )
    k = k_train.to(torch.float64) + ridge * torch.eye(n, dtype=torch.float64, device=k_train.device)
    y = y_train.to(torch.float64)
    squeeze = y.dim() == k.dim() - 1
    if squeeze:
        y = y.unsqueeze(-1)
    alpha = torch.linalg.solve(k, y)
    pred = k_test_train.to(torch.float64) @ alpha
    return (pred.squeeze(-1) if squeeze else pred).to(k_train.dtype)
