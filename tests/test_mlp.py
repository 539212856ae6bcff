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
    cfg = MLPConfig([3, 10, 2], members=4, bias=True, output_scale=2.0)
    net = MLP(cfg, generator=gen())
    x = torch.randn(6, 3)
    assert net(x).shape == (4, 6, 2) and net.features(x).shape == (4, 6, 10)
    half = MLP(MLPConfig([3, 10, 2], members=4, bias=True, output_scale=1.0), generator=gen())
    assert torch.allclose(net(x), 2 * half(x))


def test_ensemble_member_trains_like_a_single_model():
    x, y = torch.randn(16, 3, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    many = MLP(MLPConfig([3, 8, 1], activation="tanh", members=3, dtype=torch.float64), generator=gen())
    one = MLP(MLPConfig([3, 8, 1], activation="tanh", members=1, dtype=torch.float64), generator=gen(1))
    with torch.no_grad():
        for a, b in zip(one.weights, many.weights):
            a.copy_(b[2:3])
    train_full_batch(many, x, y, lr=torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), steps=20)
    train_full_batch(one, x, y, lr=0.3, steps=20)
    assert torch.allclose(one.weights[0][0], many.weights[0][2], atol=1e-12)


@pytest.mark.parametrize("bad", [dict(activation="swish9"), dict(parameterization="sp"), dict(init_scale=0.0),
                                 dict(output_scale=0.0), dict(widths=[3]), dict(members=0)])
def test_bad_config_names_valid_choices(bad):
    with pytest.raises(ValueError):
        MLPConfig(**({"widths": [3, 4, 1]} | bad))
    if "activation" in bad:
        with pytest.raises(ValueError, match="relu, tanh"):
            MLPConfig(widths=[3, 1], activation="swish9")


def _grads(net, x, y, fused, monkeypatch):
    """Output and gradients (parameters, and ``x`` when it requires grad) on the one-node ReLU path or
    on the layer-by-layer autograd path."""
    if not fused:
        monkeypatch.setattr(MLP, "_fused", lambda self: False)
    out = net(x)
    loss = (out - y).pow(2).mean(dim=(1, 2)).sum()
    grads = torch.autograd.grad(loss, list(net.parameters()) + ([x] if x.requires_grad else []))
    monkeypatch.undo()
    return out.detach(), grads


@pytest.mark.parametrize("widths", [[5, 8, 1], [5, 8, 7, 3], [5, 6, 6, 6, 1]])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("parameterization", ["standard", "ntk", "mup"])
@pytest.mark.parametrize("shared_input", [True, False])
def test_fused_relu_path_matches_layer_by_layer_autograd_bit_for_bit(widths, bias, parameterization, shared_input,
                                                                      monkeypatch):
    # the hand-written backward of _ReluMLP replays autograd's own formulas, so the book's numbers do
    # not depend on which path ran; exact equality, not a tolerance
    members = 3
    for dtype, output_scale in ((torch.float32, 1.0), (torch.float64, 3.0)):
        net = MLP(MLPConfig(widths, bias=bias, parameterization=parameterization, members=members, dtype=dtype,
                            output_scale=output_scale), generator=gen(1))
        with torch.no_grad():
            for b in net.biases:
                b.normal_(generator=gen(2))
        shape = (10, widths[0]) if shared_input else (members, 10, widths[0])
        x = torch.randn(*shape, dtype=dtype, generator=gen(3)).requires_grad_(True)
        y = torch.randn(10, widths[-1], dtype=dtype, generator=gen(4))
        assert net._fused()
        out_f, g_f = _grads(net, x, y, True, monkeypatch)
        out_p, g_p = _grads(net, x, y, False, monkeypatch)
        assert torch.equal(out_f, out_p)
        assert all(torch.equal(a, b) for a, b in zip(g_f, g_p))


def test_fused_relu_path_gives_exact_hessian_vector_products(monkeypatch):
    # create_graph=True sends the backward through a differentiable recomputation
    net = MLP(MLPConfig([5, 8, 8, 1], bias=True, members=2, dtype=torch.float64), generator=gen(5))
    x, y = torch.randn(12, 5, dtype=torch.float64), torch.randn(12, 1, dtype=torch.float64)
    params = list(net.parameters())
    v = [torch.randn_like(p) for p in params]

    def hvp(fused):
        if not fused:
            monkeypatch.setattr(MLP, "_fused", lambda self: False)
        g = torch.autograd.grad((net(x) - y).pow(2).mean(dim=(1, 2)).sum(), params, create_graph=True)
        out = torch.autograd.grad(sum((a * b).sum() for a, b in zip(g, v)), params)
        monkeypatch.undo()
        return out

    for a, b in zip(hvp(True), hvp(False)):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


def test_fused_path_is_off_under_torch_func_and_without_grad():
    net = MLP(MLPConfig([4, 6, 6, 1], members=1), generator=gen())
    seen = []
    torch.func.vmap(lambda row: (seen.append(net._fused()), net(row.unsqueeze(0)))[1])(torch.randn(3, 4))
    with torch.no_grad():
        seen.append(net._fused())
    assert seen == [False, False] and net._fused()
    assert not MLP(MLPConfig([4, 6, 6, 1], activation="tanh"))._fused()
