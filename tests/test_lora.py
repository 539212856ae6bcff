"""LoRA adapters on the batched MLP, checked against per-member dense computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from phenomena.models.lora import LoRAConfig, LoRAMLP, adapter_parameters
from phenomena.models.mlp import MLP, MLPConfig


def _net(members: int = 3) -> MLP:
    return MLP(MLPConfig([6, 9, 7, 4], members=members, dtype=torch.float64), generator=torch.Generator().manual_seed(0))


def _randomize(model: LoRAMLP, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in model.B:
            b.copy_(torch.randn(b.shape, generator=g, dtype=b.dtype))


def test_scaling_lora_and_rank_stabilized():
    assert LoRAConfig(8, 16.0).scaling == pytest.approx(2.0)
    assert LoRAConfig(64, 16.0, rank_stabilized=True).scaling == pytest.approx(2.0)
    assert LoRAConfig(1, 2.0, rank_stabilized=True).scaling == LoRAConfig(1, 2.0).scaling


def test_starts_at_the_base_network_and_leaves_it_untouched():
    net = _net()
    before = [w.detach().clone() for w in net.weights]
    lora = LoRAMLP(net, LoRAConfig(2, 4.0), generator=torch.Generator().manual_seed(3))
    x = torch.randn(5, 6, dtype=torch.float64)
    torch.testing.assert_close(lora(x), net(x), rtol=0, atol=0)
    _randomize(lora)
    lora(x).sum().backward()
    for w, b in zip(net.weights, before):
        assert torch.equal(w, b)


def test_forward_matches_a_dense_per_member_loop():
    net = _net()
    lora = LoRAMLP(net, LoRAConfig(2, 3.0, rank_stabilized=True), generator=torch.Generator().manual_seed(4))
    _randomize(lora)
    x = torch.randn(5, 6, dtype=torch.float64)
    out = lora(x)
    gamma = 3.0 / math.sqrt(2)
    for e in range(3):
        h = x
        for i in range(3):
            w = net.weights[i][e].detach()
            if i < 2:
                w = w + gamma * lora.B[i][e].detach() @ lora.A[i][e].detach()
            h = F.linear(h, w)
            if i < 2:
                h = torch.relu(h)
        torch.testing.assert_close(out[e], h)


def test_update_has_the_rank_and_members_are_independent():
    net = _net()
    lora = LoRAMLP(net, LoRAConfig(2, 2.0), generator=torch.Generator().manual_seed(5))
    _randomize(lora)
    for layer in lora.layers:
        d = lora.delta(layer)
        assert (torch.linalg.matrix_rank(d) <= 2).all()
    x = torch.randn(5, 6, dtype=torch.float64)
    y0 = lora(x).detach()
    with torch.no_grad():
        lora.A[0][1].mul_(3.0)
    y1 = lora(x).detach()
    torch.testing.assert_close(y1[0], y0[0], rtol=0, atol=0)
    torch.testing.assert_close(y1[2], y0[2], rtol=0, atol=0)
    assert not torch.allclose(y1[1], y0[1])


def test_only_adapters_and_head_train():
    net = _net()
    lora = LoRAMLP(net, LoRAConfig(1, 2.0), generator=torch.Generator().manual_seed(6))
    params = adapter_parameters(lora)
    assert len(params) == 2 + 2 + 1
    frozen = LoRAMLP(net, LoRAConfig(1, 2.0, train_head=False))
    assert len(adapter_parameters(frozen)) == 4
    # peft's default init: A uniform on ±1/sqrt(in), B = 0
    assert lora.A[0].abs().max() <= 1 / math.sqrt(6) and lora.A[1].abs().max() <= 1 / math.sqrt(9)
    assert all(bool((b == 0).all()) for b in lora.B)


def test_merge_and_unmerge_round_trip():
    net = _net()
    lora = LoRAMLP(net, LoRAConfig(2, 4.0), generator=torch.Generator().manual_seed(7))
    _randomize(lora)
    x = torch.randn(5, 6, dtype=torch.float64)
    y = lora(x).detach()
    merged = lora.merged_weights()
    lora.merge()
    torch.testing.assert_close(lora(x).detach(), y)
    for i in lora.layers:
        torch.testing.assert_close(lora.base.weights[i], merged[i])
    lora.unmerge()
    for i in range(3):
        torch.testing.assert_close(lora.base.weights[i], net.weights[i])
    torch.testing.assert_close(lora(x).detach(), y)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="rank"):
        LoRAConfig(0, 1.0)
    with pytest.raises(ValueError, match="alpha"):
        LoRAConfig(1, -1.0)
    with pytest.raises(ValueError, match="layers"):
        LoRAMLP(_net(), LoRAConfig(1, 1.0, layers=(5,)))
    with pytest.raises(ValueError, match="exceeds"):
        LoRAMLP(_net(), LoRAConfig(7, 1.0))
    with pytest.raises(TypeError, match="MLP"):
        LoRAMLP(torch.nn.Linear(2, 2), LoRAConfig(1, 1.0))  # type: ignore[arg-type]
