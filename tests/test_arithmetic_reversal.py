"""The arithmetic-reversal experiment: shapes, hold-outs and the N50 / N90 read-outs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from phenomena.experiments import arithmetic_reversal as ex


def test_a_tiny_grid_trains_and_scores_every_member() -> None:
    members = ex.grid(["plain", "scratchpad"], [40, 80], 1, holdout=[("plain", 80)])
    out = ex.train_grid(members, digits=3, steps=3, batch=4, lr=1e-3, width=8, layers=1, heads=1, n_test=30,
                        sampler="balanced", held_out=[5, 7], generator=torch.Generator().manual_seed(0))
    t = out.table
    assert len(t) == 5 and list(t.holdout) == [False] * 4 + [True]
    assert t.test_acc.between(0, 1).all() and t.holdout_acc.between(0, 1).all()
    assert out.loss.shape == (4, 5) and np.isfinite(out.loss).all()
    assert out.positions.shape[0] == 5
    with pytest.raises(ValueError, match="held_out"):
        ex.train_grid(members, digits=2, steps=1, batch=2, lr=1e-3, width=8, layers=1, heads=1, n_test=10,
                      sampler="uniform", generator=torch.Generator())


def test_n_at_and_interpolated_n() -> None:
    t = pd.DataFrame({"n_train": [100, 100, 200, 200, 400, 400], "test_acc": [0.0, 0.2, 0.4, 0.6, 0.9, 1.0]})
    assert ex.n_at(t, 0.9) == 400 and ex.n_at(t, 0.99) == float("inf")
    # mean curve 0.1, 0.5, 0.95: 50 % exactly at 200; 0.7 between 200 and 400, in log N
    assert ex.interpolated_n(t, 0.5) == pytest.approx(200)
    assert ex.interpolated_n(t, 0.725) == pytest.approx(200 * 2**0.5)
    assert ex.interpolated_n(t, 0.05) == 100
