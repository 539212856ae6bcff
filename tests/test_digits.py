"""The digits split and its structure-free control."""

import pytest
import torch

from phenomena.data import gaussian_like, load_digits_split, random_labels


def test_split_is_stratified_standardised_and_seeded():
    a = load_digits_split(0.3, generator=torch.Generator().manual_seed(0))
    b = load_digits_split(0.3, generator=torch.Generator().manual_seed(0))
    c = load_digits_split(0.3, generator=torch.Generator().manual_seed(1))
    assert a.x_train.shape[1] == a.dim == 64 and a.n_classes == 10
    assert len(a.y_train) + len(a.y_test) == 1797
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.y_train, c.y_train) or not torch.equal(a.x_train, c.x_train)
    # every class keeps its share (±1 digit) in the test set
    counts_test = torch.bincount(a.y_test, minlength=10).double()
    counts_all = counts_test + torch.bincount(a.y_train, minlength=10).double()
    assert torch.all((counts_test - 0.3 * counts_all).abs() <= 1)
    # standardised with training statistics: zero mean, unit variance on non-constant pixels
    assert torch.allclose(a.x_train.mean(0), torch.zeros(64, dtype=a.x_train.dtype), atol=1e-10)
    sd = a.x_train.std(0)
    assert torch.allclose(sd[sd > 0], torch.ones_like(sd[sd > 0]))
    assert a.x_train.dtype == torch.float64 and a.y_train.dtype == torch.int64


def test_bad_fraction_is_an_error():
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits_split(1.0)


def test_gaussian_like_keeps_per_pixel_moments_and_drops_correlations():
    x = load_digits_split(generator=torch.Generator().manual_seed(0)).x_train
    z = gaussian_like(x, generator=torch.Generator().manual_seed(3), n=20000)
    assert z.shape == (20000, 64) and z.dtype == x.dtype
    assert torch.allclose(z.mean(0), x.mean(0), atol=0.05)
    assert torch.allclose(z.std(0), x.std(0), atol=0.05)
    corr_x = torch.corrcoef(x.T[x.std(0) > 0]).nan_to_num()
    corr_z = torch.corrcoef(z.T[x.std(0) > 0]).nan_to_num()
    off = ~torch.eye(corr_x.shape[0], dtype=torch.bool)
    assert corr_x[off].abs().max() > 0.5  # neighbouring pixels of a digit are correlated
    assert corr_z[off].abs().max() < 0.05  # the noise has no such structure
    with pytest.raises(ValueError):
        gaussian_like(x[0], generator=torch.Generator())


def test_random_labels_are_uniform_and_independent():
    y = torch.zeros(10000, dtype=torch.long)
    r = random_labels(y, generator=torch.Generator().manual_seed(0))
    assert r.shape == y.shape
    assert torch.bincount(r, minlength=10).min() > 850


def test_flip_labels_moves_exactly_the_asked_share_to_other_classes():
    from phenomena.data.digits import flip_labels

    y = torch.arange(100) % 10
    noisy, flipped = flip_labels(y, 0.3, generator=torch.Generator().manual_seed(0))
    assert int(flipped.sum()) == 30
    assert torch.all(noisy[flipped] != y[flipped]) and torch.equal(noisy[~flipped], y[~flipped])
    assert int(noisy.min()) >= 0 and int(noisy.max()) <= 9
    with pytest.raises(ValueError, match="flip_fraction"):
        flip_labels(y, 1.5, generator=torch.Generator())
