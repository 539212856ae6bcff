"""State-space divergence against a hand-computed Kullback-Leibler divergence."""

import math

import numpy as np
import pytest

from phenomena.metrics.dynamics import state_space_divergence


def test_same_distribution_gives_zero():
    x = np.random.default_rng(0).normal(size=(5000, 2))
    assert state_space_divergence(x, x, bins=10) == pytest.approx(0.0, abs=1e-12)


def test_matches_the_kl_of_known_cell_counts():
    # data: 3 points in the left cell, 1 in the right (1-D, 2 bins); orbit: 1 left, 3 right
    x = np.array([[0.0], [0.1], [0.2], [1.0]])
    y = np.array([[0.05], [0.9], [0.95], [0.98]])
    a = 1e-5
    p = (np.array([3.0, 1.0]) + a) / (4 + 2 * a)
    q = (np.array([1.0, 3.0]) + a) / (4 + 2 * a)
    assert state_space_divergence(x, y, bins=2, alpha=a) == pytest.approx(np.sum(p * np.log(p / q)))


def test_an_orbit_outside_the_box_is_infinitely_far():
    x = np.random.default_rng(1).normal(size=(100, 3))
    assert state_space_divergence(x, x + 100.0) == math.inf
    assert state_space_divergence(x, np.full((10, 3), np.nan)) == math.inf


def test_bad_shapes_are_explained():
    with pytest.raises(ValueError, match="same N"):
        state_space_divergence(np.zeros((5, 2)), np.zeros((5, 3)))
