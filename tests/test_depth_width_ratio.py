"""The chapter's samplers: real weight matrices and the conditional sampler draw the same networks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.experiments import depth_width_ratio as experiment
from phenomena.models.mlp import ACTIVATIONS


def test_weights_sampler_is_the_batched_mlp():
    """The sampler's G equals (C_W/n)‖σ(z)‖² of an explicit loop over one network's layers."""
    gen = torch.Generator().manual_seed(0)
    g, z = experiment.sample_variances("tanh", 6, 3, 4, gen, sampler="weights", keep_preactivations=True,
                                       dtype=torch.float64)
    assert g.shape == (4, 4) and z.shape == (4, 6, 3)
    assert torch.allclose(g[:, 0], torch.ones(4, dtype=torch.float64))
    for layer in range(3):
        assert torch.allclose(g[:, layer + 1], torch.tanh(z[:, :, layer]).square().mean(1))
    # replay the draws: same generator state gives the same weights
    gen = torch.Generator().manual_seed(0)
    x = torch.ones(6, dtype=torch.float64)
    w1 = torch.randn(4, 6, 6, generator=gen, dtype=torch.float64) / math.sqrt(6)
    assert torch.allclose(z[:, :, 0], w1 @ x)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_samplers_agree_in_distribution(activation):
    n, depth, m = 8, 4, 40_000
    gw, _ = experiment.sample_variances(activation, n, depth, m, torch.Generator().manual_seed(1), sampler="weights")
    gc, _ = experiment.sample_variances(activation, n, depth, m, torch.Generator().manual_seed(2),
                                        sampler="conditional")
    for q in (gw, gc):
        assert q.shape == (m, depth + 1)
    se_mean = np.sqrt(gw.var(0).numpy() / m + gc.var(0).numpy() / m)
    assert np.all(np.abs(gw.mean(0).numpy() - gc.mean(0).numpy()) <= 4 * se_mean + 1e-12)
    # quantiles of the last layer agree (two-sample Kolmogorov–Smirnov distance, 1% level ≈ 1.63·√(2/m))
    a, b = np.sort(gw[:, -1].numpy()), np.sort(gc[:, -1].numpy())
    grid = np.concatenate([a, b])
    ks = np.max(np.abs(np.searchsorted(a, grid, "right") / m - np.searchsorted(b, grid, "right") / m))
    assert ks < 1.63 * math.sqrt(2 / m)


def test_layer_table_and_scan_helpers():
    gen = torch.Generator().manual_seed(3)
    scan = experiment.width_scan(["relu"], [8, 16], 0.25, 2000, gen, replicates=20)
    assert set(scan["width"]) == {8, 16}
    row = experiment.at_ratio(scan, "relu", 0.25)
    assert list(row["width"]) == [8, 16] and list(row["layer"]) == [3, 5]
    assert list(experiment.at_depth(scan, "relu", 2)["layer"]) == [3, 3]
    assert {"kappa", "se", "kappa_exact", "kappa_recursion", "z_score"} <= set(scan.columns)


def test_bad_arguments():
    gen = torch.Generator()
    with pytest.raises(ValueError, match="sampler"):
        experiment.sample_variances("relu", 4, 2, 10, gen, sampler="exact")
    with pytest.raises(ValueError, match="activation"):
        experiment.sample_variances("swish", 4, 2, 10, gen)
    with pytest.raises(ValueError, match="critical"):
        experiment.sample_variances("gelu", 4, 2, 10, gen)
    assert "relu" in ACTIVATIONS
