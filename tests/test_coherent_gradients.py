"""The coherent-gradients experiment: logging helpers and a tiny end-to-end run of both experiments."""

import dataclasses

import numpy as np
import torch

from phenomena.data.digits import load_digits_split
from phenomena.experiments import coherent_gradients as ex
from phenomena.metrics.curves import NEVER


def test_log_steps_and_learned_step():
    assert list(ex.log_steps(10, 5)) == [0, 2, 4, 6, 8, 10]
    correct = np.array([[0, 1, 1], [1, 0, 1], [1, 1, 0], [1, 1, 0]], dtype=bool)  # (logs, n)
    steps = np.array([0, 5, 10, 15])
    assert list(ex.learned_step(correct, steps)) == [5.0, 10.0, NEVER]


def _tiny_split():
    d = load_digits_split(generator=torch.Generator().manual_seed(0), dtype=torch.float32)
    return dataclasses.replace(d, x_train=d.x_train[:60], y_train=d.y_train[:60])


def test_paired_members_share_their_start():
    model = ex.paired_mlp([4, 5, 3], 2, 3, generator=torch.Generator().manual_seed(0))
    w = model.weights[0].detach()
    assert torch.equal(w[0], w[2]) and torch.equal(w[1], w[5]) and not torch.equal(w[0], w[1])


def test_tiny_runs_end_to_end():
    d = _tiny_split()
    g = [torch.Generator().manual_seed(s) for s in range(4)]
    r = ex.coherence_run(d, inits=1, steps=6, lr=0.1, width=8, probe_size=20, log_points=3, batches=50,
                         init_generator=g[0], label_generator=g[1], mc_generator=g[2])
    assert r.m_coherence.shape == (4, 2) and np.all(r.m_coherence > 0)
    assert set(r.minibatch["step"]) == {0} and len(r.learned_steps()[0]) == 60
    n = ex.noisy_run(d, inits=2, steps=4, lr=0.1, flip_fraction=0.5, robust="winsorize", groups=60, width=8,
                     log_points=2, init_generator=g[0], label_generator=g[1], group_generator=g[3])
    assert n.arms == ("plain", "robust") and n.clean_acc.shape == (3, 4)
    assert int(n.flipped[0].sum()) == 30
    table = ex.early_stopped(n, "robust")
    assert list(table["init"]) == [0, 1]
