import math

import pytest
import torch

from phenomena.models import MLP, MLPConfig
from phenomena.train import train_full_batch


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_standard_and_ntk_compute_the_same_function_at_init():
    x = torch.randn(5, 7)
    sp = MLP(MLPConfig([7, 64, 64, 1], parameterization="standard", init_scale=1.3), generator=gen())
    ntk = MLP(MLPConfig([7, 64, 64, 1], parameterization="ntk", init_scale=1.3), generator=gen())
    assert torch.allclose(sp(x), ntk(x), atol=1e-5)


def test_mup_output_is_small_and_first_layer_is_order_one():
    x = torch.randn(256, 8)
    net = MLP(MLPConfig([8, 4096, 1], parameterization="mup", activation="linear"), generator=gen())
    pre = net._linear(x.T, 0)  # feature-major: (members, width, batch)
    assert pre.std().item() == pytest.approx(math.sqrt(x.pow(2).sum(-1).mean().item() / 8), rel=0.05)
    assert net(x).std().item() < 5 / math.sqrt(4096) * 8


def test_shapes_ensemble_and_output_scale():
    cfg = MLPConfig([3, 10, 2], ensemble=4, bias=True, output_scale=2.0)
    net = MLP(cfg, generator=gen())
    x = torch.randn(6, 3)
    assert net(x).shape == (4, 6, 2) and net.features(x).shape == (4, 6, 10)
    half = MLP(MLPConfig([3, 10, 2], ensemble=4, bias=True, output_scale=1.0), generator=gen())
    assert torch.allclose(net(x), 2 * half(x))


def test_ensemble_member_trains_like_a_single_model():
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    many = MLP(MLPConfig([3, 8, 1], activation="tanh", ensemble=3, dtype=torch.float64), generator=gen())
    one = MLP(MLPConfig([3, 8, 1], activation="tanh", ensemble=1, dtype=torch.float64), generator=gen(1))
    with torch.no_grad():
        for a, b in zip(one.weights, many.weights):
            a.copy_(b[2:3])
    train_full_batch(many, x, y, lr=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), steps=20)
    train_full_batch(one, x, y, lr=0.3, steps=20)
    assert torch.allclose(one.weights[0][0], many.weights[0][2], atol=1e-12)


@pytest.mark.parametrize("bad", [dict(activation="swish9"), dict(parameterization="sp"), dict(init_scale=0.0),
                                 dict(output_scale=0.0), dict(widths=[3]), dict(ensemble=0)])
def test_bad_config_names_valid_choices(bad):
    with pytest.raises(ValueError):
        MLPConfig(**({"widths": [3, 4, 1]} | bad))
    if "activation" in bad:
        with pytest.raises(ValueError, match="relu, tanh"):
            MLPConfig(widths=[3, 1], activation="swish9")
