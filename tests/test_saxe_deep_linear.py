"""The depth experiment of the deep-linear chapter: random networks, each shared by every learning rate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.experiments import saxe_deep_linear as experiment


def task():
    return experiment.make_task(np.array([3.0, 2.0, 1.0]), d_in=6, d_out=6, generator=torch.Generator().manual_seed(0),
                                device=torch.device("cpu"))


def test_learning_time_is_the_median_over_networks_of_the_best_rate() -> None:
    table = experiment.learning_time_vs_depth(
        task(), depths=[2, 3], init_kinds=("gaussian",), lrs=[0.01, 0.05], steps=300, threshold=0.1,
        generator=torch.Generator().manual_seed(1), inits=3,
    )
    assert list(table["depth"]) == [2, 3]
    assert (table["time_min"] <= table["time"]).all() and (table["time"] <= table["time_max"]).all()
    assert (table["inits"] == 3).all()


def test_every_rate_of_a_network_trains_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Members are (network, rate) pairs, network-major: the initial weights repeat within a network's block."""
    seen = {}
    real = experiment.train_full_batch

    def spy(net, x, y, *, lr, **kwargs):
        seen["weights"] = [w.detach().clone() for w in net.weights]
        seen["lr"] = lr.clone()
        return real(net, x, y, lr=lr, **kwargs)

    monkeypatch.setattr(experiment, "train_full_batch", spy)
    experiment.learning_time_vs_depth(task(), depths=[3], init_kinds=("gaussian",), lrs=[0.01, 0.02, 0.04], steps=5,
                                      threshold=0.1, generator=torch.Generator().manual_seed(2), inits=2)
    assert seen["lr"].tolist() == [0.01, 0.02, 0.04] * 2
    for w in seen["weights"]:
        assert torch.equal(w[0], w[1]) and torch.equal(w[0], w[2]) and torch.equal(w[3], w[5])
        assert not torch.equal(w[0], w[3])


def test_bad_inits_is_named() -> None:
    with pytest.raises(ValueError, match="inits"):
        experiment.learning_time_vs_depth(task(), depths=[2], lrs=[0.01], steps=10, threshold=0.1,
                                          generator=torch.Generator(), inits=0)
