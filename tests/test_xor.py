"""XOR cluster data and the chapter *xor-benign-grokking*'s experiment: shapes, seeding, closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.data import XorClusters, xor_clusters, xor_means
from phenomena.experiments import xor_benign_grokking as experiment


def test_xor_clusters_shapes_labels_and_flips():
    data = xor_clusters(400, 50, 4.0, 0.2, torch.Generator().manual_seed(0), sets=3)
    assert isinstance(data, XorClusters)
    assert data.x.shape == (3, 400, 50) and data.y.shape == (3, 400) and data.flipped.shape == (3, 400)
    assert set(data.y_clean.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(data.flipped, data.y != data.y_clean)
    # clean label +1 exactly on the ±μ₁ clusters: the μ₁ coordinate dominates there
    mu1, mu2 = data.x[..., 0].abs(), data.x[..., 1].abs()
    agree = ((mu1 > mu2) == (data.y_clean > 0)).double().mean()
    assert agree > 0.95
    assert abs(data.flipped.double().mean().item() - 0.2) < 0.05
    assert data.mu_norm == pytest.approx(4.0)


def test_xor_clusters_exact_flips_and_seeding():
    a = xor_clusters(30, 10, 2.0, 0.1, torch.Generator().manual_seed(1), sets=5, exact_flips=True)
    b = xor_clusters(30, 10, 2.0, 0.1, torch.Generator().manual_seed(1), sets=5, exact_flips=True)
    assert (a.flipped.sum(-1) == 3).all()
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    single = xor_clusters(30, 10, 2.0, 0.0, torch.Generator().manual_seed(1))
    assert single.x.shape == (30, 10) and not single.flipped.any()


@pytest.mark.parametrize(
    "kwargs, match",
    [({"flip_fraction": 0.5}, "flip_fraction"), ({"n": 0}, "n must"), ({"dim": 1}, "dim"), ({"mu_norm": 0.0}, "mu_norm")],
)
def test_xor_clusters_rejects_bad_arguments(kwargs, match):
    args = {"n": 10, "dim": 5, "mu_norm": 1.0, "flip_fraction": 0.1} | kwargs
    with pytest.raises(ValueError, match=match):
        xor_clusters(args["n"], args["dim"], args["mu_norm"], args["flip_fraction"], torch.Generator().manual_seed(0))


def test_means_are_orthogonal_and_equal_norm():
    m = xor_means(7, 3.0)
    assert float(m[0] @ m[1]) == 0.0 and m.norm(dim=1).tolist() == [3.0, 3.0]


def test_bayes_accuracy_matches_monte_carlo():
    mu = 1.5
    g = torch.Generator().manual_seed(0)
    data = xor_clusters(200_000, 2, mu, 0.0, g)
    bayes_pred = torch.where(data.x[:, 0].abs() > data.x[:, 1].abs(), 1.0, -1.0)
    mc = (bayes_pred == data.y_clean).double().mean().item()
    assert experiment.bayes_accuracy(mu) == pytest.approx(mc, abs=0.005)
    clean = experiment.bayes_accuracy(mu)
    assert experiment.bayes_accuracy(mu, 0.2) == pytest.approx(0.8 * clean + 0.2 * (1 - clean))
    assert experiment.bayes_accuracy(20.0) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        experiment.bayes_accuracy(1.0, flip_fraction=0.6)


def test_linear_classifier_scores_one_half_on_xor():
    """The symmetry the chapter's 'near chance' rests on: each class is symmetric under x → −x."""
    data = xor_clusters(100_000, 5, 3.0, 0.0, torch.Generator().manual_seed(2))
    v = torch.randn(5, generator=torch.Generator().manual_seed(3), dtype=data.x.dtype)
    acc = (torch.sign(data.x @ v) == data.y_clean).double().mean().item()
    assert acc == pytest.approx(0.5, abs=0.01)


def test_network_second_layer_is_fixed_and_frozen():
    net = experiment.xor_network(20, 6, 2, 0.01, torch.Generator().manual_seed(0))
    a = net.weights[1].detach()
    assert a.shape == (2, 1, 6) and not net.weights[1].requires_grad
    assert torch.allclose(a[0, 0], torch.tensor([1, 1, 1, -1, -1, -1]) / math.sqrt(6))
    with pytest.raises(ValueError, match="even"):
        experiment.xor_network(20, 5, 2, 0.01, torch.Generator().manual_seed(0))


def test_checkpoints_start_with_the_first_steps():
    marks = experiment.checkpoints(300)
    assert marks[:3].tolist() == [0, 1, 2] and marks[-1] == 300 and (np.diff(marks) > 0).all()


def test_train_xor_small_run_records_everything_and_fits_after_one_step():
    hist = experiment.train_xor(
        n=20, dim=2000, mu_norm=math.sqrt(40.0), flip_fraction=0.1, width=16, members=2, lr=0.08, steps=5,
        init_scale=1e-3, n_test=50, data_generator=torch.Generator().manual_seed(0),
        init_generator=torch.Generator().manual_seed(1),
    )
    t = len(hist.steps)
    assert hist.train_acc.shape == (t, 2) and hist.test_acc.shape == (t, 2)
    assert hist.projections.shape == (t, 2, 16, 2) and hist.loss.shape == (6, 2)
    assert (hist.flipped_count == 2).all()
    # p = 2000 ≫ n = 20: the first step memorises every label, flipped ones included
    assert hist.train_acc[hist.at(1)].min() == 1.0 and hist.flipped_acc[hist.at(1)].min() == 1.0
    assert hist.feature_selectivity(0).shape == (2,)
    with pytest.raises(ValueError, match="not recorded"):
        hist.at(1000)
