"""shPLRNN: forward pass, fused step and analytic Jacobian against direct and autograd computations."""

import pytest
import torch

from phenomena.models.plrnn import ShallowPLRNN, spectral_norm_3x3


def model(clipped=False, contraction=None):
    return ShallowPLRNN.init(4, 3, 7, generator=torch.Generator().manual_seed(0), contraction=contraction,
                             clipped=clipped, dtype=torch.float64)


@pytest.mark.parametrize("clipped", [False, True])
def test_forward_is_the_shplrnn_equation(clipped):
    m = model(clipped)
    z = torch.randn(4, 5, 3, dtype=torch.float64)
    out = m(z)
    for e in range(4):
        u = z[e] @ m.W2[e].T
        act = torch.relu(u + m.h2[e]) - (torch.relu(u) if clipped else 0)
        want = m.A[e] * z[e] + act @ m.W1[e].T + m.h1[e]
        assert torch.allclose(out[e], want)
    assert torch.allclose(m.fused_step()(z), out)


@pytest.mark.parametrize("clipped", [False, True])
def test_jacobian_matches_autograd(clipped):
    m = model(clipped)
    z = torch.randn(4, 6, 3, dtype=torch.float64)
    J = m.jacobian(z)
    for e in range(4):
        for b in range(6):
            def f(v, e=e, b=b):
                full = z.clone()
                full[e, b] = v
                return m(full)[e, b]
            auto = torch.autograd.functional.jacobian(f, z[e, b])
            assert torch.allclose(J[e, b], auto)


def test_contracting_init_bounds_every_jacobian():
    m = model(contraction=0.9)
    assert torch.allclose(m.norm_upper_bound(), torch.full((4,), 0.9, dtype=torch.float64))
    z = torch.randn(4, 300, 3, dtype=torch.float64) * 5
    assert (spectral_norm_3x3(m.jacobian(z)) <= 0.9 + 1e-12).all()
    orbit = m.orbit(torch.randn(4, 3, dtype=torch.float64), 300)
    assert orbit.shape == (301, 4, 3) and (orbit[-1] - orbit[-2]).abs().max() < 1e-6  # a fixed point


def test_closed_form_spectral_norm_matches_svd():
    J = torch.randn(1000, 3, 3, dtype=torch.float64)
    J[0] = torch.eye(3)  # repeated singular values
    J[1] = 0.0
    assert torch.allclose(spectral_norm_3x3(J), torch.linalg.matrix_norm(J, 2), atol=1e-7)


def test_bad_shapes_are_explained():
    m = model()
    with pytest.raises(ValueError, match="members"):
        m(torch.zeros(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="contraction"):
        ShallowPLRNN.init(2, 3, 4, generator=torch.Generator(), contraction=1.5)
