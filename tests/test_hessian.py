"""Top Hessian eigenvalue by power iteration: exact on quadratics with known Hessians."""

from __future__ import annotations

import warnings

import pytest
import torch

from phenomena.metrics import (
    ensemble_hessian_top_eigenvalue,
    hessian_top_eigenvalue,
    minibatch_hessian_top_eigenvalue,
)


def _sym(eigs, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.tensor(eigs, dtype=torch.float64)) @ q.T


def _quadratic(a):
    x = torch.randn(a.shape[0], dtype=torch.float64, requires_grad=True)
    return (lambda: 0.5 * x @ a @ x), [x]


def test_exact_top_eigenvalue_of_a_quadratic():
    loss, params = _quadratic(_sym([10.0, 5.0, 1.0, -2.0, 0.5]))
    assert hessian_top_eigenvalue(loss, params, tol=1e-8) == pytest.approx(10.0, rel=1e-6)


def test_negative_dominant_keeps_its_sign():
    loss, params = _quadratic(_sym([3.0, -7.0, 1.0, 0.0]))
    assert hessian_top_eigenvalue(loss, params, tol=1e-8) == pytest.approx(-7.0, rel=1e-6)


@pytest.mark.parametrize("tol", [1e-2, 1e-4, 1e-6])
def test_tolerance_is_respected(tol):
    # gap ratio 0.8 per product: slow convergence, so a loose tol stops early, yet within tol·|λ|
    loss, params = _quadratic(_sym([10.0, 8.0, 3.0, 1.0, 1.0, 0.2]))
    lam = hessian_top_eigenvalue(loss, params, tol=tol, iters=10_000)
    assert abs(lam - 10.0) <= tol * 10.0
    if tol >= 1e-2:  # and it did stop early: the loose answer is not the exact one
        assert abs(lam - 10.0) > 1e-9


def test_non_convergence_warns():
    loss, params = _quadratic(_sym([4.0, -4.0, 1.0]))
    with pytest.warns(RuntimeWarning, match="did not reach"):
        hessian_top_eigenvalue(loss, params, iters=20, tol=1e-12)


def test_deterministic_and_seeded():
    loss, params = _quadratic(_sym([10.0, 9.0, 1.0]))
    # 3 products cannot reach 1e-12 (a warning each time): the seeded start decides the estimate
    with pytest.warns(RuntimeWarning):
        a = hessian_top_eigenvalue(loss, params, iters=3, tol=1e-12, generator=torch.Generator().manual_seed(1))
    with pytest.warns(RuntimeWarning):
        b = hessian_top_eigenvalue(loss, params, iters=3, tol=1e-12, generator=torch.Generator().manual_seed(1))
    assert a == b


def test_several_parameter_tensors_and_a_network():
    # f(u, w) = ½ (u·w)² has Hessian [[w wᵀ, ...]] with top eigenvalue |u|² + |w|² at a point where the residual vanishes
    u = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)
    # H of ½(u·w − c)² at u·w = c is g gᵀ with g = (w, u): top eigenvalue |u|² + |w|²
    c = float((u * w).sum().detach())
    lam = hessian_top_eigenvalue(lambda: 0.5 * ((u * w).sum() - c) ** 2, [u, w], tol=1e-10)
    assert lam == pytest.approx(5.0 + 1.25, rel=1e-8)


def test_minibatch_variant_matches_per_batch_calls():
    a1, a2 = _sym([6.0, 1.0, 0.5]), _sym([2.0, 1.5, -0.5], seed=3)
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    out = minibatch_hessian_top_eigenvalue(lambda a: 0.5 * x @ a @ x, [x], [a1, a2], tol=1e-10)
    assert out.shape == (2,)
    assert out.tolist() == pytest.approx([6.0, 2.0], rel=1e-7)


def test_ensemble_variant_is_per_member():
    mats = [_sym([10.0, 1.0, 0.1]), _sym([-5.0, 2.0, 1.0], seed=1), _sym([0.0, 0.0, 0.0])]
    a = torch.stack(mats)
    x = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    res = ensemble_hessian_top_eigenvalue(lambda: 0.5 * torch.einsum("ei,eij,ej->e", x, a, x), [x], tol=1e-10)
    assert res.values.tolist() == pytest.approx([10.0, -5.0, 0.0], rel=1e-7, abs=1e-12)
    # a warm start from the converged vectors converges at once
    again = ensemble_hessian_top_eigenvalue(
        lambda: 0.5 * torch.einsum("ei,eij,ej->e", x, a, x), [x], tol=1e-10, init=res.vectors
    )
    assert again.iterations <= 3


def test_bad_arguments_raise():
    x = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="iters"):
        hessian_top_eigenvalue(lambda: (x**2).sum(), [x], iters=0)
    with pytest.raises(ValueError, match="requires_grad|require gradients"):
        hessian_top_eigenvalue(lambda: (x**2).sum(), [torch.zeros(2)])
    with pytest.raises(ValueError, match="scalar"):
        hessian_top_eigenvalue(lambda: x**2, [x])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hessian_top_eigenvalue(lambda: (x**2).sum(), [x]) == pytest.approx(2.0)
