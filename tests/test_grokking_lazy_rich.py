import math

import numpy as np
import torch

from phenomena.data import single_index_task
from phenomena.experiments import grokking_lazy_rich as lazy_rich
from phenomena.metrics import empirical_ntk, kernel_regression


def test_network_is_the_papers_committee_machine():
    """MLP with init scale ε and output factor α/(ε²√N) computes (α/N)Σφ(w·x/√D), φ(h) = h + εh²/2."""
    d, n, eps, alphas = 6, 5, 0.3, [0.5, 2.0]
    net = lazy_rich.committee_machine(d, n, eps, len(alphas), torch.Generator().manual_seed(0))
    x = torch.randn(7, d, dtype=torch.float64)
    w = net.weights[0][0]
    assert torch.equal(net.weights[0][0], net.weights[0][1])  # one init shared by every α
    assert [p.requires_grad for p in net.parameters()] == [True, False]  # readouts fixed
    h = x @ w.T / math.sqrt(d)
    paper = (h + eps / 2 * h * h).sum(-1) / n
    out = lazy_rich.output_multiplier(alphas, n, eps)[:, None] * net(x)[..., 0]
    assert torch.allclose(out, torch.tensor(alphas, dtype=torch.float64)[:, None] * paper)


def test_kernel_baseline_converges_to_kernel_regression_and_matches_a_lazy_network():
    task = single_index_task(8, 20, 30, [0.5, 0.0, 0.5], torch.Generator().manual_seed(1))
    run = lazy_rich.train_lazy_rich(task, alphas=[1e4], width=16, eps=0.3, eta0=4.0, steps=60,
                                    generator=torch.Generator().manual_seed(2), record_every=10)
    base = lazy_rich.initial_kernel_baseline(run, task)
    assert base.test_loss.shape == run.test_loss[:, 0].shape
    assert np.allclose(base.test_loss, run.test_loss[:, 0], rtol=1e-3)  # α = 10⁴: the network is its linearisation
    net = lazy_rich.committee_machine(8, 16, 0.3, 1, torch.Generator().manual_seed(2))
    k, kt = empirical_ntk(net, task.x_train), empirical_ntk(net, task.x_test, task.x_train)
    limit = 0.5 * float((kernel_regression(k, task.y_train, kt) - task.y_test).pow(2).mean())
    assert base.limit == limit


def test_smallest_growth():
    assert lazy_rich.smallest_growth([1.0, 2.0, 6.0, np.inf, np.inf]) == 2.0
    assert lazy_rich.smallest_growth([1.0, 2.0, 1.5, np.inf]) == 0.75
    assert lazy_rich.smallest_growth([-1.0, 2.0, 4.0]) == 2.0
    assert np.isnan(lazy_rich.smallest_growth([1.0, 2.0, np.inf]))  # fewer than three finite delays
    assert lazy_rich.smallest_growth([1.0, 2.0, 3.0, np.inf, 5.0]) == 0.0  # a finite delay after a never
