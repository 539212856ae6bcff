"""The unconstrained-features model, its training routine, Gaussian clusters and the scan helpers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.data import gaussian_clusters
from phenomena.experiments import neural_collapse as experiment
from phenomena.models import UFMConfig, UnconstrainedFeatures
from phenomena.theory import class_mean_gram, class_mean_norms


def small_model(depth: int = 2, bias=False, ensemble: int = 2) -> UnconstrainedFeatures:
    config = UFMConfig(samples=12, classes=3, dim=5, depth=depth, bias=bias, members=ensemble)
    return UnconstrainedFeatures(config, generator=torch.Generator().manual_seed(0))


def test_forward_is_the_product_head_and_loss_is_the_papers():
    model = small_model(depth=3)
    w1, w2, w3 = (w.detach() for w in model.weights)
    h = model.features.detach()
    product = w3 @ w2 @ w1
    assert model.classifier().shape == (2, 3, 5)
    torch.testing.assert_close(model.classifier().detach(), product)
    y = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).double()
    lw, lh = torch.tensor([1e-2, 3e-2]), torch.tensor([2e-2, 5e-3])
    expected = (
        ((h @ product.transpose(-1, -2) - y) ** 2).sum((-2, -1)) / (2 * 12)
        + lw / 2 * sum((w**2).sum((-2, -1)) for w in (w1, w2, w3))
        + lh / 2 * (h**2).sum((-2, -1))
    )
    torch.testing.assert_close(model.loss(y, lw, lh).detach(), expected.double())


def test_members_are_independent():
    """Member 0's gradient does not depend on member 1's regularisation."""
    model = small_model()
    y = torch.nn.functional.one_hot(torch.arange(12) % 3, 3).double()
    grads = []
    for other in (1e-3, 1.0):
        model.zero_grad()
        model.loss(y, torch.tensor([1e-2, other]), 1e-2).sum().backward()
        grads.append(model.features.grad[0].clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_per_member_bias_mask():
    model = small_model(depth=1, bias=(False, True))
    with torch.no_grad():
        model.bias.fill_(1.0)
    out = model().detach()
    torch.testing.assert_close(out[0], (model.features[0] @ model.weights[0][0].T).detach())
    torch.testing.assert_close(out[1], (model.features[1] @ model.weights[0][1].T + 1.0).detach())


def test_bad_config_raises():
    with pytest.raises(ValueError, match="dim"):
        UFMConfig(samples=10, classes=4, dim=3)
    with pytest.raises(ValueError, match="depth"):
        UFMConfig(samples=10, classes=2, dim=3, depth=0)
    with pytest.raises(ValueError, match="bias"):
        UFMConfig(samples=10, classes=2, dim=3, bias=(True,), members=2)


def test_training_reaches_the_closed_form():
    """Depth 1 and 2, balanced ± bias and imbalanced: a short run lands on Dang et al.'s minimum."""
    gen = torch.Generator().manual_seed(0)
    lam = 5e-3
    for depth in (1, 2):
        bal = experiment.train_ufm([20] * 3, depth=depth, weight_decay=lam, bias=[False, True], dim=6, lr=0.5,
                                   momentum=0.9, steps=400, generator=gen, record_every=100)
        for e, g in enumerate(bal.gram()):
            assert experiment.gram_error(g, class_mean_gram([20] * 3, depth, lam, lam, bias=bal.bias[e])) < 1e-3
        assert bal.nc1[-1].max() < 1e-8
        imb = experiment.train_ufm([40, 20, 10], depth=depth, weight_decay=lam, dim=6, lr=0.5, momentum=0.9,
                                   steps=400, generator=gen)
        np.testing.assert_allclose(imb.mean_norms()[0], class_mean_norms([40, 20, 10], depth, lam, lam), rtol=1e-3)
    metrics = imb.collapse_metrics()
    assert set(metrics.columns) >= {"nc1", "nc2", "nc3", "nc4"} and metrics["nc4"].max() == 0


def test_measured_threshold_is_the_midpoint_of_the_last_live_and_the_next_point():
    lam = [1.0, 2.0, 4.0, 8.0]
    assert experiment.measured_threshold(lam, [0.5, 0.2, 1e-6, 0.0], collapsed_below=1e-3) == pytest.approx(np.sqrt(8))
    assert np.isnan(experiment.measured_threshold(lam, [0.5] * 4, collapsed_below=1e-3))
    assert np.isnan(experiment.measured_threshold(lam, [0.0] * 4, collapsed_below=1e-3))


def test_gaussian_clusters_are_seeded_and_sized():
    a = gaussian_clusters([5, 3, 2], 4, torch.Generator().manual_seed(1))
    b = gaussian_clusters([5, 3, 2], 4, torch.Generator().manual_seed(1))
    x, y, centres = a
    assert x.shape == (10, 4) and centres.shape == (3, 4)
    assert torch.bincount(y).tolist() == [5, 3, 2]
    torch.testing.assert_close(x, b[0])
    torch.testing.assert_close(centres.norm(dim=1), torch.full((3,), 3.0))
    with pytest.raises(ValueError, match="class_sizes"):
        gaussian_clusters([5], 4, torch.Generator())


def test_mlp_collapse_runs_on_clusters():
    x, y, _ = gaussian_clusters([30, 20, 10], 8, torch.Generator().manual_seed(0), separation=4.0)
    trace, final = experiment.mlp_collapse(x, y, hidden=(32, 32), steps=200, record_every=100, lr=1e-2,
                                           generator=torch.Generator().manual_seed(0))
    assert list(trace["step"]) == [100, 200]
    assert final["train_accuracy"] == 1.0
    assert trace["nc1"].iloc[-1] < trace["nc1"].iloc[0]
