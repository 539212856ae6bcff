import math

import pytest
import torch

from phenomena.data import linear_target, whitened_inputs
from phenomena.ensemble import DivergenceError, assert_finite
from phenomena.models import DeepLinearConfig, DeepLinearNetwork
from phenomena.train import train_full_batch


def problem(members=3, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = whitened_inputs(8, 4, g, dtype)
    m, _, _ = linear_target([2.0, 1.0], 4, 4, g, dtype)
    net = DeepLinearNetwork(DeepLinearConfig([4, 6, 4], init_scale=0.5, members=members, dtype=dtype), generator=g)
    return net, x, x @ m.T


def test_ensemble_member_equals_training_it_alone():
    net, x, y = problem()
    lrs = torch.tensor([0.01, 0.05, 0.1], dtype=torch.float64)
    alone = DeepLinearNetwork(DeepLinearConfig([4, 6, 4], members=1, dtype=torch.float64))
    with torch.no_grad():
        for w_alone, w in zip(alone.weights, net.weights):
            w_alone.copy_(w[1:2])
    h_all = train_full_batch(net, x, y, lr=lrs, steps=50)
    h_one = train_full_batch(alone, x, y, lr=0.05, steps=50)
    assert torch.allclose(h_all.loss[:, 1], h_one.loss[:, 0], rtol=1e-12, atol=1e-14)
    assert torch.allclose(net.weights[0][1], alone.weights[0][0], rtol=1e-12, atol=1e-14)


def test_gradient_descent_decreases_the_loss_and_records():
    net, x, y = problem(1)
    h = train_full_batch(net, x, y, lr=0.05, steps=200, record={"norm": lambda m: m.end_to_end().norm()},
                         record_every=50)
    assert h.loss[-1, 0] < 0.01 * h.loss[0, 0]
    assert h.record_steps.tolist() == [0, 50, 100, 150, 200] and h.recorded["norm"].shape == (5,)


def test_divergence_raises_with_step_and_value():
    net, x, y = problem(1)
    with pytest.raises(DivergenceError, match=r"became (nan|inf) at step \d+.*lower the learning rate \(lr=50\)"):
        train_full_batch(net, x, y, lr=50.0, steps=200)


def test_divergence_mask_keeps_the_others():
    net, x, y = problem(3)
    h = train_full_batch(net, x, y, lr=torch.tensor([0.05, 50.0, 0.05]), steps=100, on_divergence="mask")
    assert h.diverged.tolist() == [False, True, False]
    assert torch.isfinite(h.loss[-1, [0, 2]]).all() and h.loss[-1, 0] < h.loss[0, 0]


def test_bad_arguments():
    net, x, y = problem(1)
    with pytest.raises(ValueError, match="lr must be finite and non-negative"):
        train_full_batch(net, x, y, lr=-1.0, steps=1)
    with pytest.raises(ValueError, match="steps"):
        train_full_batch(net, x, y, lr=0.1, steps=-1)
    with pytest.raises(ValueError, match="on_divergence"):
        train_full_batch(net, x, y, lr=0.1, steps=1, on_divergence="ignore")  # type: ignore[arg-type]


def test_assert_finite_names_member():
    with pytest.raises(DivergenceError, match=r"member 2"):
        assert_finite(torch.tensor([1.0, 2.0, math.nan]), step=7)
    assert_finite(torch.tensor([1.0]), step=0)
