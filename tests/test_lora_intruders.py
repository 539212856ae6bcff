"""Helpers of the lora-intruders experiment: task B's transform and the power-law initial spectrum."""

from __future__ import annotations

import math

import pytest
import torch

from phenomena.experiments.lora_intruders import mirror_shift, power_law_matrix


def test_mirror_shift_moves_each_pixel_by_hand():
    x = torch.arange(64, dtype=torch.float32).reshape(1, 64) + 1
    y = mirror_shift(x).reshape(8, 8)
    im = x.reshape(8, 8)
    assert torch.all(y[0] == 0)
    for r in range(7):
        for c in range(8):
            assert y[r + 1, c] == im[r, 7 - c]
    with pytest.raises(ValueError, match="64"):
        mirror_shift(torch.zeros(2, 10))


def test_power_law_matrix_has_the_prescribed_spectrum():
    g = torch.Generator().manual_seed(0)
    w = power_law_matrix((3, 20, 8), 0.5, 0.1, g)
    s = torch.linalg.svdvals(w.double())
    ref = torch.arange(1, 9, dtype=torch.float64) ** -0.5
    torch.testing.assert_close(s / s[:, :1], (ref / ref[0]).expand(3, 8), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(w.double().pow(2).sum((1, 2)).sqrt(), torch.full((3,), 0.1 * math.sqrt(160), dtype=torch.float64),
                               rtol=1e-4, atol=0)
