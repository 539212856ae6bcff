import math

import pytest
import torch

from phenomena.metrics import feature_alignment, relative_change


def test_relative_change_per_member():
    g = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, generator=g)
    scale = torch.tensor([1.0, 1.5, 3.0])
    w, b = w0 * scale[:, None, None], b0 * scale[:, None]
    assert torch.allclose(relative_change([w, b], [w0, b0]), scale - 1)
    assert torch.equal(relative_change([w0], [w0]), torch.zeros(3))


def test_relative_change_rejects_mismatch_and_zero_init():
    with pytest.raises(ValueError):
        relative_change([torch.ones(2, 3)], [torch.ones(2, 4)])
    with pytest.raises(ValueError):
        relative_change([torch.ones(2, 3)], [torch.zeros(2, 3)])
    with pytest.raises(ValueError):
        relative_change([], [])


def test_top_direction_finds_a_planted_feature():
    g = torch.Generator().manual_seed(1)
    d, width = 50, 200
    beta = torch.randn(d, generator=g, dtype=torch.float64)
    noise = torch.randn(2, width, d, generator=g, dtype=torch.float64)
    planted = noise.clone()
    planted[1] += 3.0 * torch.randn(width, 1, generator=g, dtype=torch.float64) * beta / beta.norm()
    out = feature_alignment(planted, beta)
    assert out.shape == (2,)
    assert float(out[0]) < 4 / math.sqrt(d)  # a random top direction: |cos| ~ 1/√D
    assert float(out[1]) > 0.95
    assert float(feature_alignment(planted[1], beta)) == pytest.approx(float(out[1]))  # one matrix: a scalar


def test_mean_mode_is_one_when_every_neuron_points_along_beta():
    beta = torch.tensor([0.0, 3.0, 4.0])
    w = torch.tensor([[0.0, 0.6, 0.8], [0.0, -1.2, -1.6]]).unsqueeze(0)
    assert torch.allclose(feature_alignment(w, beta, mode="mean"), torch.ones(1))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="top, mean"):
        feature_alignment(torch.ones(1, 2, 3), torch.ones(3), mode="median")
    with pytest.raises(ValueError):
        feature_alignment(torch.ones(1, 2, 3), torch.ones(4))
