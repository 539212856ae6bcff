"""Batch perceptron: the paper's worked examples, its closed-form count, and the large-step limit of GD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.data import separable_gaussian, tyurin_worst_case
from phenomena.theory import batch_perceptron, steps_to_separate, worst_case_steps


def test_first_step_is_the_half_step():
    a = np.array([[1.0, -1.0], [-1.0, -4.0]])
    y = np.array([1.0, -1.0])
    it = batch_perceptron(a, y, 2)
    # Tyurin's Theorem 4.1 example: θ̂₁ = (2/4, 3/4), θ̂₂ = (1, 1/4), which separates the data
    assert it[0].tolist() == [0.0, 0.0]
    assert it[1] == pytest.approx([0.5, 0.75])
    assert it[2] == pytest.approx([1.0, 0.25])
    assert steps_to_separate(it, a, y) == 2


def test_iterates_stop_once_separated():
    a = np.array([[1.0, 0.0], [-1.0, 0.0]])
    y = np.array([1.0, -1.0])
    it = batch_perceptron(a, y, 5)
    assert steps_to_separate(it, a, y) == 1
    assert np.all(it[1:] == it[1])


@pytest.mark.parametrize("n", [10, 11, 25, 99, 101, 250, 1001])
def test_worst_case_count_matches_the_algorithm(n):
    x, y = tyurin_worst_case(n)
    it = batch_perceptron(x.numpy(), y.numpy(), n)
    assert steps_to_separate(it, x.numpy(), y.numpy()) == worst_case_steps(n)


def test_worst_case_count_is_linear_in_n():
    assert worst_case_steps(1001) == (3 * 1001 - 8) // 10 + 2 == 301


def test_worst_case_refuses_degenerate_sizes():
    with pytest.raises(ValueError, match="mod 10"):
        worst_case_steps(16)
    with pytest.raises(ValueError, match="n >= 10"):
        worst_case_steps(5)


def test_large_step_gd_over_gamma_approaches_the_perceptron():
    from phenomena.experiments.large_step_logistic import logistic_gd

    x, y = separable_gaussian(40, 3, margin=0.2, generator=torch.Generator().manual_seed(0))
    scan = logistic_gd(x, y, [1.0, 1e3, 1e5], 15)  # this set's smallest perceptron margin is 3.7e-4
    d = scan.distance()
    assert d[2] < d[1] < d[0]
    assert d[2] < 1e-10


def test_not_separated_returns_never_and_bad_labels_raise():
    a = np.array([[1.0], [1.0]])
    y = np.array([1.0, -1.0])
    assert steps_to_separate(batch_perceptron(a, y, 3), a, y) == float("inf")
    with pytest.raises(ValueError, match="labels"):
        batch_perceptron(a, np.array([1.0, 0.0]), 3)


def _numpy_gd_distance(a: np.ndarray, y: np.ndarray, gamma: float, steps: int, path: np.ndarray) -> float:
    """GD on the logistic loss written out in numpy (an independent route to D(γ))."""
    from scipy.special import expit

    theta = np.zeros(a.shape[1])
    worst = 0.0
    for t in range(1, steps + 1):
        theta = theta + gamma * (expit(-(a @ theta) * y) * y) @ a / len(y)
        worst = max(worst, float(np.linalg.norm(theta / gamma - path[t])))
    return worst


def test_first_order_distance_matches_gradient_descent_inside_the_regime():
    """Inside the regime (GD misclassifies what the perceptron does), D(γ) equals its first-order sum."""
    from phenomena.experiments.large_step_logistic import (
        first_order_distance,
        logistic_gd,
        perceptron_margin_floor,
    )

    x, y = separable_gaussian(40, 3, margin=0.2, generator=torch.Generator().manual_seed(0))
    scan = logistic_gd(x, y, [1.0], 15)
    m_star = perceptron_margin_floor(scan, x, y, 16)
    gammas = [24 / m_star, 28 / m_star]  # γ·m* = 24, 28: γ·D·max‖a‖ < 1e-5, D far above round-off
    predicted = first_order_distance(scan.perceptron, x, y, gammas)
    a, lab = x.double().numpy(), y.double().numpy()
    for gamma, p in zip(gammas, predicted):
        measured = _numpy_gd_distance(a, lab, gamma, 15, scan.perceptron)
        assert measured == pytest.approx(p, rel=1e-3)  # the neglected feedback is ~γ·D·max‖a‖ < 1e-5


def test_decay_rate_extends_the_grid_and_says_when_it_cannot():
    from phenomena.experiments.large_step_logistic import (
        distance_decay_rate,
        logistic_gd,
        perceptron_margin_floor,
    )

    x, y = separable_gaussian(40, 3, margin=0.2, generator=torch.Generator().manual_seed(0))
    scan = logistic_gd(x, y, 2.0 ** np.arange(0, 4), 15)  # a grid far short of the regime (m* = 3.7e-4)
    m_star = perceptron_margin_floor(scan, x, y, 16)
    rate, used = distance_decay_rate(scan, x, y, m_star)
    assert len(used) == 2 and used[0] > 2.0**3  # found beyond the given grid
    assert rate / m_star == pytest.approx(1.0, rel=0.15)
    rate, used = distance_decay_rate(scan, x, y, m_star, max_log2_gamma=6)  # 2^6·m* ≪ 1: never reached
    assert np.isnan(rate)
