"""Feature-noise data, the ReLU^q patch CNN and the benign-oscillation experiment."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from phenomena.data.feature_noise import feature_noise, features, weak_only
from phenomena.experiments import benign_oscillation as bo
from phenomena.models.patch_cnn import PatchCNN, PatchCNNConfig


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- data
def test_feature_noise_layout_and_statistics():
    data = feature_noise(4000, 50, gen(), weak_norm=0.2, strong_norm=2.0, strong_prob=0.3, noise_std=0.5, sets=2,
                         dtype=torch.float64)
    assert data.x.shape == (2, 4000, 3, 50) and data.y.shape == (2, 4000)
    assert set(data.y.unique().tolist()) == {-1.0, 1.0}
    torch.testing.assert_close(data.x[:, :, 0], data.y[..., None] * data.v)  # weak patch everywhere
    strong = data.x[:, :, 1][data.strong]
    torch.testing.assert_close(strong, data.y[data.strong][:, None] * data.u)
    assert abs(data.strong.double().mean().item() - 0.3) < 4 * math.sqrt(0.3 * 0.7 / 8000)
    noise = torch.cat([data.x[:, :, 1][~data.strong], data.x[:, :, 2].reshape(-1, 50)])
    assert float(noise[:, :2].abs().max()) == 0.0  # orthogonal to u and v
    assert abs(noise[:, 2:].var().item() - 0.25) < 0.01  # σ_p² per remaining coordinate
    assert data.u.norm().item() == pytest.approx(2.0) and data.v.norm().item() == pytest.approx(0.2)
    assert float(data.u @ data.v) == 0.0


def test_weak_only_has_no_strong_feature():
    data = weak_only(500, 20, gen(1), noise_std=0.1)
    torch.testing.assert_close(data.x[:, :, 0], data.y[..., None] * data.v)
    assert float(data.x[:, :, 1:, 0].abs().max()) == 0.0  # no patch carries u
    assert not bool(data.strong.any())


def test_bad_data_inputs_are_named():
    with pytest.raises(ValueError, match="strong_prob"):
        feature_noise(10, 10, gen(), strong_prob=1.5)
    with pytest.raises(ValueError, match="patches"):
        feature_noise(10, 10, gen(), patches=1)
    with pytest.raises(ValueError, match="d must be"):
        features(2, 1.0, 1.0)


# ----------------------------------------------------------------------------- model
def explicit_output(weight: torch.Tensor, x: torch.Tensor, q: float, per_patch: bool) -> torch.Tensor:
    """F(W, x) summed term by term, for one member and one example."""
    m = weight.shape[1]
    total = torch.zeros((), dtype=x.dtype)
    for j, sign in enumerate((1.0, -1.0)):
        for r in range(m):
            for p in range(x.shape[0]):
                w = weight[j, r, p] if per_patch else weight[j, r]
                total = total + sign / m * torch.relu(w @ x[p]) ** q
    return total


@pytest.mark.parametrize("per_patch", [False, True])
@pytest.mark.parametrize("q", [1.0, 2.0, 3.0])
def test_forward_matches_the_formula_and_gradient_matches_autograd(per_patch, q):
    cfg = PatchCNNConfig(d=7, width=4, q=q, init_std=0.7, per_patch=per_patch, patches=3)
    model = PatchCNN(cfg, members=3, generator=gen(2), dtype=torch.float64)
    x = torch.randn(3, 5, 3, 7, generator=gen(3), dtype=torch.float64)  # one batch per member
    y = torch.randint(0, 2, (3, 5), generator=gen(4)).double() * 2 - 1
    out = model(x)
    for e in range(3):
        for b in range(5):
            assert out[e, b].item() == pytest.approx(explicit_output(model.weight[e], x[e, b], q, per_patch).item(), rel=1e-12)
    w = model.weight.clone().requires_grad_(True)
    model.weight = w
    loss = (0.5 * (model(x) - y) ** 2).mean(-1).sum()
    (auto,) = torch.autograd.grad(loss, w)
    with torch.no_grad():
        out2, grad = model.loss_grad(x, y)
    torch.testing.assert_close(grad, auto)
    torch.testing.assert_close(out2, out.detach())
    shared = model(x[0])  # a batch shared by all members gives member 0 the same outputs
    torch.testing.assert_close(shared[0], out[0])


def test_model_rejects_bad_shapes():
    model = PatchCNN(PatchCNNConfig(d=5), members=2, generator=gen())
    with pytest.raises(ValueError, match="dimension d=5"):
        model(torch.zeros(4, 3, 6))
    with pytest.raises(ValueError, match="members=2"):
        model(torch.zeros(3, 4, 3, 5))
    with pytest.raises(ValueError, match="q must be"):
        PatchCNNConfig(d=5, q=0.5)


# ----------------------------------------------------------------------------- experiment
def test_memorization_lr_is_the_stability_edge_of_a_noise_fit():
    """η* = 2/‖∇F‖² at a fit F = y = 1 built from two orthogonal noise patches, via autograd."""
    m, d, sigma = 6, 40, 0.3
    cfg = PatchCNNConfig(d=d, width=m, q=2.0, init_std=0.0)
    model = PatchCNN(cfg, members=1, generator=gen(), dtype=torch.float64)
    xi = torch.zeros(2, d, dtype=torch.float64)
    norm = sigma * math.sqrt(d - 2)
    xi[0, 5], xi[1, 9] = norm, norm  # orthogonal, each of squared norm σ²(d − 2)
    x = torch.stack([torch.zeros(d, dtype=torch.float64), xi[0], xi[1]])[None]  # (1, 3, d)
    w = torch.randn(1, 2, m, d, generator=gen(5), dtype=torch.float64).abs()
    w[:, 1] = -w[:, 1].abs()  # the group voting −1 stays silent
    model.weight = w
    model.weight = w / model(x).sqrt()  # F = 1 exactly (F is 2-homogeneous)
    weight = model.weight.clone().requires_grad_(True)
    model.weight = weight
    (g,) = torch.autograd.grad(model(x).sum(), weight)
    assert model(x).item() == pytest.approx(1.0)
    assert 2.0 / g.pow(2).sum().item() == pytest.approx(bo.memorization_lr(m, sigma, d), rel=1e-10)


def test_alignment_reads_the_best_filter_of_each_group():
    w = torch.zeros(1, 2, 3, 4)
    w[0, 0, 1, 1] = 2.0  # group +1: best filter has ⟨w, v̂⟩ = 2
    w[0, 1, 2, 1] = -4.0  # group −1 grows along −v: signed projection 4
    v = torch.tensor([0.0, 0.2, 0.0, 0.0])
    assert bo.feature_alignment(w, v).item() == pytest.approx(3.0)


def test_training_marks_diverging_members_and_keeps_the_others():
    res = bo.train_benign(lrs=[0.05, 50.0], inits=2, n=10, d=30, steps=300, n_test=50, records=5, test_records=2,
                          check_every=20, data_generator=gen(0), init_generator=gen(1), sample_generator=gen(2),
                          init_std=0.1)
    assert res.lr.tolist() == [0.05, 0.05, 50.0, 50.0] and res.init.tolist() == [0, 1, 0, 1]
    assert res.diverged.tolist() == [False, False, True, True]
    assert np.isfinite(res.train_loss[-1, :2]).all() and np.isnan(res.train_loss[-1, 2:]).all()
    assert res.residual.shape == (300, 4)
    assert res.test_acc.shape == (len(res.test_steps), 4)
    with pytest.raises(ValueError, match="window"):
        res.window_median(100, 400)


def test_members_of_one_init_share_their_start():
    res = bo.train_benign(lrs=[0.0, 0.0], inits=2, n=8, d=20, steps=10, n_test=20, records=2, test_records=1,
                          data_generator=gen(0), init_generator=gen(1), sample_generator=gen(2))
    # lr = 0: nothing moves, so members of the same init measure the same alignment and accuracy
    np.testing.assert_array_equal(res.weak_alignment[:, 0], res.weak_alignment[:, 2])
    np.testing.assert_array_equal(res.test_acc[:, 1], res.test_acc[:, 3])
    assert res.weak_alignment[0, 0] != res.weak_alignment[0, 1]
