"""The closed-form ridge linear probe."""

import pytest
import torch

from phenomena.data import load_digits_split, random_labels
from phenomena.metrics import probe_accuracy, ridge_probe


def _blobs(n: int, d: int, seed: int, sep: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    centres = torch.randn(3, d, generator=g, dtype=torch.float64) * sep
    return centres[y] + torch.randn(n, d, generator=g, dtype=torch.float64), y


def test_separable_blobs_are_read_perfectly_and_noise_at_chance():
    x, y = _blobs(600, 5, 0, sep=10.0)
    assert probe_accuracy(x[:400], y[:400], x[400:], y[400:]) == 1.0
    noise = torch.randn(600, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    acc = float(probe_accuracy(noise[:400], y[:400], noise[400:], y[400:], n_classes=3))
    assert abs(acc - 1 / 3) < 0.12


def test_digits_pixels_probe_well_and_random_labels_do_not():
    d = load_digits_split(generator=torch.Generator().manual_seed(0))
    acc = float(probe_accuracy(d.x_train, d.y_train, d.x_test, d.y_test, n_classes=10))
    assert acc > 0.9  # a linear classifier on the pixels reads digits well
    shuffled = random_labels(d.y_train, generator=torch.Generator().manual_seed(0))
    chance = float(probe_accuracy(d.x_train, shuffled, d.x_test, d.y_test, n_classes=10))
    assert chance < 0.2


def test_deterministic_and_batched_equals_one_by_one():
    a, y = _blobs(300, 4, 2, sep=1.0)
    b, _ = _blobs(300, 4, 3, sep=1.0)
    feats = torch.stack([a, b])
    batched = probe_accuracy(feats[:, :200], y[:200], feats[:, 200:], y[200:])
    single = torch.stack([probe_accuracy(f[:200], y[:200], f[200:], y[200:]) for f in feats])
    assert batched.shape == (2,)
    assert torch.equal(batched, single)
    assert torch.equal(batched, probe_accuracy(feats[:, :200], y[:200], feats[:, 200:], y[200:]))


def test_invariant_to_feature_scale_when_standardised():
    x, y = _blobs(300, 6, 4, sep=1.0)
    scaled = x * torch.tensor([1e-3, 1.0, 1e3, 5.0, 0.1, 20.0], dtype=x.dtype)
    assert probe_accuracy(x[:200], y[:200], x[200:], y[200:]) == probe_accuracy(
        scaled[:200], y[:200], scaled[200:], y[200:]
    )


def test_ridge_solution_solves_the_normal_equations():
    x, y = _blobs(100, 3, 5, sep=1.0)
    w, b, mean, scale = ridge_probe(x, y, n_classes=3, ridge=0.1)
    f = (x - mean[0]) / scale[0]
    t = torch.nn.functional.one_hot(y, 3).double() - b
    gram = f.T @ f / 100
    lhs = (gram + 0.1 * gram.diagonal().mean() * torch.eye(3, dtype=x.dtype)) @ w[0]
    assert torch.allclose(lhs, f.T @ t / 100, atol=1e-10)


def test_bad_arguments_are_errors():
    x, y = _blobs(50, 3, 6, sep=1.0)
    with pytest.raises(ValueError, match="ridge"):
        probe_accuracy(x, y, x, y, ridge=-1.0)
    with pytest.raises(ValueError, match="train_labels"):
        probe_accuracy(x, y[:10], x, y)
    with pytest.raises(ValueError, match="members axis"):
        probe_accuracy(x.unsqueeze(0), y, x, y)
