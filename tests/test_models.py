import pytest
import torch

from phenomena.data import linear_target, whitened_inputs
from phenomena.models import DeepLinearConfig, DeepLinearNetwork


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_whitened_inputs_are_exactly_white():
    x = whitened_inputs(16, 8, gen(), torch.float64)
    assert torch.allclose(x.T @ x / 16, torch.eye(8, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError, match="at least as many samples"):
        whitened_inputs(4, 8, gen())


def test_linear_target_has_the_singular_values():
    m, u, v = linear_target([5.0, 3.0, 1.0], 6, 8, gen(), torch.float64)
    assert torch.allclose(torch.linalg.svdvals(m)[:3], torch.tensor([5.0, 3.0, 1.0], dtype=torch.float64))
    assert torch.allclose(u.T @ u, torch.eye(3, dtype=torch.float64), atol=1e-12)
    with pytest.raises(ValueError):
        linear_target([1.0] * 7, 6, 8, gen())


def test_orthogonal_init_is_an_isometry():
    net = DeepLinearNetwork(DeepLinearConfig([8] * 6, init="orthogonal", members=3, dtype=torch.float64), generator=gen())
    sv = torch.linalg.svdvals(net.end_to_end())
    assert torch.allclose(sv, torch.ones_like(sv), atol=1e-10)


def test_gaussian_init_variance():
    net = DeepLinearNetwork(DeepLinearConfig([400, 300], init="gaussian", init_scale=2.0), generator=gen())
    assert net.weights[0].var().item() == pytest.approx(4.0 / 400, rel=0.02)


def test_decoupled_init_sets_every_mode_and_nothing_else():
    _, u, v = linear_target([5.0, 4.0, 1.0], 8, 8, gen(), torch.float64)
    cfg = DeepLinearConfig([8, 16, 16, 8], init="decoupled", init_scale=1e-3, members=2, dtype=torch.float64)
    net = DeepLinearNetwork(cfg, generator=gen(), modes=(u, v))
    assert torch.allclose(net.mode_strengths(u, v), torch.full((2, 3), 1e-3, dtype=torch.float64))
    assert torch.allclose(net.end_to_end(), 1e-3 * (u @ v.T).expand(2, -1, -1), atol=1e-15)
    with pytest.raises(ValueError, match="needs modes"):
        DeepLinearNetwork(cfg, generator=gen())


def test_forward_shapes_and_members_are_independent():
    net = DeepLinearNetwork(DeepLinearConfig([3, 5, 2], members=4), generator=gen())
    x = torch.randn(7, 3)
    assert net(x).shape == (4, 7, 2)
    assert net(x.expand(4, -1, -1)).shape == (4, 7, 2)
    out = net(x)
    assert torch.allclose(out[1], x @ (net.weights[1][1] @ net.weights[0][1]).T, atol=1e-6)


@pytest.mark.parametrize("bad", [dict(widths=[3]), dict(widths=[3, 0]), dict(init="xavier"),
                                 dict(init_scale=0.0), dict(members=0)])
def test_bad_config(bad):
    with pytest.raises(ValueError):
        DeepLinearConfig(**({"widths": [3, 4]} | bad))
