"""Robust averaging of per-example gradients (winsorized mean, median of means) and its optimizer step."""

import numpy as np
import pytest
import torch
from scipy.stats.mstats import winsorize

from phenomena import ensemble, robust


def test_winsorized_mean_matches_scipy_and_resists_an_outlier():
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(20, 6, generator=gen, dtype=torch.float64)
    v[3, 2] = 1e6
    w = robust.winsorized_mean(v, 0.1, dim=0)
    ref = np.array([winsorize(v[:, j].numpy(), limits=(0.1, 0.1)).mean() for j in range(6)])
    assert np.allclose(w.numpy(), ref)
    assert abs(float(w[2])) < 3  # the outlier is clipped to the 18th value
    assert torch.allclose(robust.winsorized_mean(v, 0.0, dim=0), v.mean(0))


def test_median_of_means_and_dispatch():
    v = torch.tensor([[1.0, 5.0], [3.0, -2.0], [2.0, 9.0]])
    assert torch.equal(robust.median_of_means(v, 0), torch.tensor([2.0, 5.0]))
    assert torch.equal(robust.robust_mean(v, "mean"), v.mean(0))
    with pytest.raises(ValueError, match="valid ones"):
        robust.robust_mean(v, "trimmed")
    with pytest.raises(ValueError, match="fraction"):
        robust.winsorized_mean(v, 0.5)


def test_robust_step_applies_per_member():
    p = torch.nn.Parameter(torch.zeros(2, 3))
    opt = ensemble.SGD([p], lr=torch.tensor([1.0, 0.5]))
    g = torch.tensor([[[1.0, 1, 1], [2, 2, 2], [100, 3, 3]], [[0.0, 0, 0], [1, 1, 1], [2, 2, 2]]])
    robust.robust_step(opt, [g], "median")
    assert torch.allclose(p.detach(), torch.tensor([[-2.0, -2, -2], [-0.5, -0.5, -0.5]]))
    with pytest.raises(ValueError, match="members, groups"):
        robust.robust_step(opt, [g[:, 0]], "median")
