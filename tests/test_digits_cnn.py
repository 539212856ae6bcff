"""Tests of the batched digits CNN: each member equals the same network written with torch.nn layers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from phenomena.models.digits_cnn import DigitsCNN, DigitsCNNConfig


def _reference(model: DigitsCNN, e: int, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Member ``e`` computed with ordinary (ungrouped) torch.nn layers."""
    cfg = model.config
    c1, c2 = cfg.channels
    k = cfg.kernel
    conv1 = nn.Conv2d(1, c1, k, padding=k // 2).double()
    conv2 = nn.Conv2d(c1, c2, 3, padding=1).double()
    fc = nn.Linear(c2 * (cfg.side // 2) ** 2, cfg.width).double()
    out = nn.Linear(cfg.width, cfg.classes).double()
    with torch.no_grad():
        conv1.weight.copy_(model.conv1_weight[e])
        conv1.bias.copy_(model.conv1_bias[e])
        conv2.weight.copy_(model.conv2_weight[e])
        conv2.bias.copy_(model.conv2_bias[e])
        fc.weight.copy_(model.fc_weight[e].T)
        fc.bias.copy_(model.fc_bias[e, 0])
        out.weight.copy_(model.out_weight[e].T)
        out.bias.copy_(model.out_bias[e, 0])
    img = x.view(-1, 1, cfg.side, cfg.side)
    a1 = torch.relu(conv1(img))
    a2 = torch.relu(conv2(a1))
    h = torch.relu(fc(nn.Flatten()(F.max_pool2d(a2, 2))))
    return out(h), {"conv1": a1.permute(0, 2, 3, 1), "conv2": a2.permute(0, 2, 3, 1), "fc": h}


@pytest.mark.parametrize("kernel", [3, 5])
def test_every_member_equals_the_plain_network(kernel):
    cfg = DigitsCNNConfig(channels=(4, 6), width=7, members=3, kernel=kernel, dtype=torch.float64)
    model = DigitsCNN(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    logits = model(x)
    acts = model.activations(x)
    assert logits.shape == (3, 5, 10)
    for e in range(3):
        ref, ref_acts = _reference(model, e, x)
        assert torch.allclose(logits[e], ref, atol=1e-12)
        for k in ("conv1", "conv2", "fc"):
            assert torch.allclose(acts[k][e], ref_acts[k], atol=1e-12)
        assert torch.allclose(model.member(e)(x)[0], ref, atol=1e-12)


def test_members_differ_by_seed_and_do_not_interact():
    model = DigitsCNN(DigitsCNNConfig(channels=(3, 4), width=5, members=2), generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(model.conv1_weight[0], model.conv1_weight[1])
    x = torch.randn(6, 8, 8)
    model(x)[0].sum().backward()
    for p in model.parameters():
        assert p.grad[1].abs().max() == 0 and p.grad[0].abs().max() > 0


def test_bad_configs_and_inputs_raise():
    with pytest.raises(ValueError, match="odd"):
        DigitsCNNConfig(kernel=4)
    with pytest.raises(ValueError, match="channels"):
        DigitsCNNConfig(channels=(3,))
    with pytest.raises(ValueError, match="even"):
        DigitsCNNConfig(side=7)
    model = DigitsCNN(DigitsCNNConfig())
    with pytest.raises(ValueError, match="images must be"):
        model(torch.randn(2, 63))
    with pytest.raises(IndexError):
        model.member(1)
