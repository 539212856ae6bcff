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


# ----------------------------------------------------------------------------- GPT
from phenomena.models.gpt import GPT, GPTConfig  # noqa: E402
from phenomena.models.lora import LoRAGPT, gpt_weights  # noqa: E402

_GPT = dict(vocab_size=11, context=6, layers=2, heads=2, width=8, mlp_ratio=2, dtype=torch.float64)


def _gpt(members: int = 3, seed: int = 0, **switches) -> GPT:
    return GPT(GPTConfig(members=members, **{**_GPT, **switches}), torch.Generator().manual_seed(seed))


def _tokens(batch: int = 4, t: int = 6) -> torch.Tensor:
    return torch.randint(11, (batch, t), generator=torch.Generator().manual_seed(9))


def _randomize_gpt(model: LoRAGPT, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for b in model.B:
            b.copy_(0.3 * torch.randn(b.shape, generator=g, dtype=b.dtype))


def test_gpt_targets_name_the_linears():
    cfg = LoRAConfig(1, 2.0)
    assert cfg.adapted_linears(1) == ("blocks.0.attention.query", "blocks.0.attention.key", "blocks.0.attention.value",
                                      "blocks.0.attention.out", "blocks.0.fc", "blocks.0.proj")
    assert LoRAConfig(1, 2.0, targets=("mlp",)).adapted_linears(2) == ("blocks.0.fc", "blocks.0.proj", "blocks.1.fc",
                                                                       "blocks.1.proj")
    assert LoRAConfig(1, 2.0, targets=("attention.value",)).adapted_linears(1) == ("blocks.0.attention.value",)


def test_gpt_starts_at_the_base_and_leaves_it_untouched():
    net = _gpt()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lora = LoRAGPT(net, LoRAConfig(2, 4.0), generator=torch.Generator().manual_seed(3))
    x = _tokens()
    torch.testing.assert_close(lora(x), net(x), rtol=0, atol=0)  # bit for bit: B = 0
    _randomize_gpt(lora)
    lora(x).sum().backward()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_gpt_weights_are_out_by_in_and_the_update_is_gamma_ba():
    net = _gpt()
    w = gpt_weights(net)
    assert w["blocks.0.fc"].shape == (3, 16, 8) and w["blocks.0.proj"].shape == (3, 8, 16)
    lora = LoRAGPT(net, LoRAConfig(2, 3.0, rank_stabilized=True), generator=torch.Generator().manual_seed(4))
    _randomize_gpt(lora)
    gamma = 3.0 / math.sqrt(2)
    for j, name in enumerate(lora.names):
        expect = w[name] + gamma * lora.B[j].detach() @ lora.A[j].detach()
        torch.testing.assert_close(lora.merged_weights()[name], expect)
        # the (out, in) matrix acts as F.linear does: x W^T
        x = torch.randn(5, expect.shape[-1], dtype=torch.float64)
        torch.testing.assert_close(F.linear(x, expect[1]), x @ (net.get_submodule(name).weight[1] + (expect - w[name])[1].T))
    assert (torch.linalg.matrix_rank(lora.delta("blocks.1.fc").detach()) <= 2).all()


def test_gpt_members_equal_a_loop_over_single_members():
    """The batched adapted ensemble computes, for every member, what a one-member adapted GPT computes."""
    net = _gpt()
    lora = LoRAGPT(net, LoRAConfig(2, 4.0), generator=torch.Generator().manual_seed(5))
    _randomize_gpt(lora)
    x = _tokens()
    out = lora(x)
    for e in range(3):
        one = _gpt(members=1, seed=7)
        with torch.no_grad():
            for p_one, p_many in zip(one.parameters(), net.parameters()):
                p_one.copy_(p_many[e : e + 1])
        single = LoRAGPT(one, LoRAConfig(2, 4.0))
        with torch.no_grad():
            for a1, b1, a, b in zip(single.A, single.B, lora.A, lora.B):
                a1.copy_(a[e : e + 1])
                b1.copy_(b[e : e + 1])
        torch.testing.assert_close(single(x)[0], out[e], rtol=0, atol=1e-12)


def test_gpt_merge_then_forward_equals_unmerged_and_unmerge_restores():
    net = _gpt()
    lora = LoRAGPT(net, LoRAConfig(1, 2.0), generator=torch.Generator().manual_seed(6))
    _randomize_gpt(lora)
    x = _tokens()
    y = lora(x).detach()
    merged = lora.merged_weights()
    lora.merge()
    lora.merge()  # idempotent
    torch.testing.assert_close(lora(x), y, rtol=0, atol=1e-6)
    for name, w in gpt_weights(lora.base, lora.names).items():
        torch.testing.assert_close(w, merged[name], rtol=0, atol=1e-12)
    lora.unmerge()
    for name, w in gpt_weights(lora.base).items():
        torch.testing.assert_close(w, gpt_weights(net)[name], rtol=0, atol=1e-6)
    torch.testing.assert_close(lora(x), y, rtol=0, atol=1e-6)


def test_gpt_only_adapters_and_chosen_dense_parts_get_gradients():
    net = _gpt()
    x = _tokens()
    lora = LoRAGPT(net, LoRAConfig(1, 2.0, targets=("attn",)), generator=torch.Generator().manual_seed(7))
    _randomize_gpt(lora)
    lora(x).sum().backward()
    trained = {n for n, p in lora.named_parameters() if p.grad is not None}
    assert trained == {f"adapters.{m}.{j}" for m in "AB" for j in range(8)}
    assert len(adapter_parameters(lora)) == 16
    dense = LoRAGPT(net, LoRAConfig(1, 2.0, train_head=True, train_embeddings=True))
    _randomize_gpt(dense)
    dense(x).sum().backward()
    trained = {n for n, p in dense.named_parameters() if p.grad is not None}
    assert {"base.head.weight", "base.token_embedding", "base.position_embedding"} <= trained
    assert not any(n.startswith("base.blocks") for n in trained)  # LayerNorms and linears stay frozen
    # peft's default init: A uniform on ±1/sqrt(in), B = 0
    fresh = LoRAGPT(net, LoRAConfig(1, 2.0))
    for j, name in enumerate(fresh.names):
        fan_in = gpt_weights(net)[name].shape[-1]
        assert fresh.A[j].abs().max() <= 1 / math.sqrt(fan_in) and bool((fresh.B[j] == 0).all())


def test_gpt_rank_stabilized_scaling_is_alpha_over_sqrt_r():
    net = _gpt()
    rs = LoRAGPT(net, LoRAConfig(4, 8.0, rank_stabilized=True), generator=torch.Generator().manual_seed(8))
    plain = LoRAGPT(net, LoRAConfig(4, 8.0), generator=torch.Generator().manual_seed(8))
    _randomize_gpt(rs)
    _randomize_gpt(plain)
    assert rs.scaling == pytest.approx(4.0) and plain.scaling == pytest.approx(2.0)
    torch.testing.assert_close(rs.delta("blocks.0.fc"), 2.0 * plain.delta("blocks.0.fc"))


def test_gpt_bad_input_is_named():
    with pytest.raises(ValueError, match="exceeds min"):
        LoRAGPT(_gpt(), LoRAConfig(9, 1.0))  # 8 × 8 attention matrices
    with pytest.raises(ValueError, match="unknown target"):
        LoRAGPT(_gpt(), LoRAConfig(1, 1.0, targets=("ffn",)))
    with pytest.raises(ValueError, match="tuple"):
        LoRAConfig(1, 1.0, targets="attn")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="layers"):
        LoRAGPT(_gpt(), LoRAConfig(1, 1.0, layers=(0,)))
    with pytest.raises(ValueError, match="sigma_reparam"):
        LoRAGPT(_gpt(sigma_reparam=True), LoRAConfig(1, 1.0))
    with pytest.raises(TypeError, match="GPT"):
        LoRAGPT(_net(), LoRAConfig(1, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="targets"):
        LoRAMLP(_net(), LoRAConfig(1, 1.0, targets=("mlp",)))
    with pytest.raises(ValueError, match="has no adapter"):
        LoRAGPT(_gpt(), LoRAConfig(1, 1.0, targets=("mlp",))).delta("blocks.0.attention.query")
