import pytest
import torch

from phenomena.data import OPERATIONS, modular_task


def test_table_holds_every_pair_once_and_the_right_answers():
    task = modular_task(7, 0.5, torch.Generator().manual_seed(0))
    assert task.pairs == 49 and task.a.numel() == 49
    assert set(zip(task.a.tolist(), task.b.tolist())) == {(a, b) for a in range(7) for b in range(7)}
    assert torch.equal(task.y, (task.a + task.b) % 7)


@pytest.mark.parametrize("op, fn", [("add", lambda a, b: (a + b) % 11), ("sub", lambda a, b: (a - b) % 11),
                                    ("mul", lambda a, b: (a * b) % 11)])
def test_operations(op, fn):
    task = modular_task(11, 0.3, torch.Generator().manual_seed(1), operation=op)
    for a, b, y in zip(task.a.tolist(), task.b.tolist(), task.y.tolist()):
        assert y == fn(a, b)
    assert set(OPERATIONS) >= {"add", "sub", "mul"}


def test_split_sizes_partition_and_no_overlap():
    task = modular_task(13, 0.3, torch.Generator().manual_seed(2))
    assert task.train.numel() == round(0.3 * 169) and task.test.numel() == 169 - task.train.numel()
    both = torch.cat([task.train, task.test])
    assert torch.equal(both.sort().values, torch.arange(169))  # a partition: no pair twice, none missing
    assert not set(task.train.tolist()) & set(task.test.tolist())
    assert abs(task.train_fraction - 0.3) < 1 / 169


def test_split_is_seeded():
    def make(s):
        return modular_task(17, 0.4, torch.Generator().manual_seed(s))
    assert torch.equal(make(3).train, make(3).train)
    assert not torch.equal(make(3).train, make(4).train)


def test_one_hot_inputs():
    task = modular_task(5, 0.5, torch.Generator().manual_seed(0))
    x_train, _y_train, x_test, y_test = task.split()
    assert x_train.shape == (task.train.numel(), 10) and x_test.shape == (task.test.numel(), 10)
    assert torch.equal(x_train.sum(1), torch.full((task.train.numel(),), 2.0))
    assert torch.equal(x_train[:, :5].argmax(1), task.a[task.train])
    assert torch.equal(x_train[:, 5:].argmax(1), task.b[task.train])
    assert torch.equal(y_test, task.y[task.test])


@pytest.mark.parametrize("kwargs, match", [({"p": 1, "train_fraction": 0.5}, "p must be"),
                                           ({"p": 7, "train_fraction": 1.0}, "train_fraction"),
                                           ({"p": 7, "train_fraction": 0.5, "operation": "div"}, "add, sub, mul")])
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        modular_task(generator=torch.Generator().manual_seed(0), **kwargs)


def test_sample_size_boundary_and_first_reached():
    import numpy as np
    import pandas as pd

    from phenomena.experiments.grokking_modular import smallest_generalising

    table = pd.DataFrame({"p": [5, 5, 5, 7, 7], "n": [10, 20, 30, 15, 25],
                          "generalised": [True, False, True, False, False]})
    out = smallest_generalising(table).set_index("p")
    assert out.loc[5, "n_min"] == 30 and out.loc[5, "n_below"] == 20  # a fluke at n=10 does not count
    assert np.isnan(out.loc[7, "n_min"]) and out.loc[7, "n_below"] == 25


def test_pair_forward_equals_the_mlp_on_one_hot_pairs():
    from phenomena.experiments.grokking_modular import pair_forward, pair_index
    from phenomena.models import MLP, MLPConfig

    task = modular_task(7, 0.5, torch.Generator().manual_seed(0))
    x = task.inputs()
    net = MLP(MLPConfig([14, 9, 7], activation="quadratic", members=3), generator=torch.Generator().manual_seed(1))
    index = pair_index(x, 7)
    assert index.tolist()[:2] == [[0, 7], [0, 8]]  # pair (a, b) = (0, 0), (0, 1): columns a and p + b
    assert torch.allclose(pair_forward(net, index), net(x), atol=1e-6)
    with pytest.raises(ValueError, match="one-hot"):
        pair_index(2 * x, 7)
    with pytest.raises(ValueError, match="two-layer"):
        pair_forward(MLP(MLPConfig([14, 5, 5, 7])), index)


def test_grokking_history_tracks_accuracy_and_fourier_share():
    from phenomena.experiments.grokking_modular import train_grokking

    task = modular_task(11, 0.5, torch.Generator().manual_seed(0))
    hist = train_grokking(task, weight_decays=[1.0, 0.0], width=16, lr=0.01, steps=20,
                          generator=torch.Generator().manual_seed(1), record_every=10)
    assert hist.steps.tolist() == [0, 10, 20]
    assert hist.train_acc.shape == hist.test_acc.shape == hist.fourier_share.shape == (3, 2)
    assert ((hist.fourier_share >= 0) & (hist.fourier_share <= 1)).all()
    with pytest.raises(ValueError, match="mse, ce"):
        train_grokking(task, weight_decays=[1.0], width=4, lr=0.01, steps=1, generator=torch.Generator(), loss="l1")
