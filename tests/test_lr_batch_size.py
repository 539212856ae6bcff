"""Tests of the lr-batch-size experiments: the fits recover known laws, the stability edge is read from below,
and the batched measurements agree with one-at-a-time ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from phenomena.experiments import lr_batch_size as ex
from phenomena.metrics import hessian_top_eigenvalue
from phenomena.train import half_mse


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: one CPU thread is faster than several spinning on a busy machine."""
    yield


@pytest.fixture(scope="module")
def problem() -> ex.Problem:
    return ex.make_problem(width=4, pretrain_steps=20, pretrain_lr=1e-2, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("k", [1.0, 0.5])
def test_fit_exponent_recovers_the_exponent_from_a_quarter_octave_grid(k):
    b = 2.0 ** np.arange(9)
    exact = np.exp(ex.power_law_with_plateau(b, np.log(0.01), k, np.log(16.0)))
    on_grid = 2.0 ** (np.round(np.log2(exact) * 4) / 4)  # what a 2^(1/4) learning-rate grid can report
    fit = ex.fit_exponent(b, on_grid)
    assert fit["exponent"] == pytest.approx(k, abs=0.15)
    assert ex.fit_exponent(b, exact)["exponent"] == pytest.approx(k, abs=1e-3)
    assert ex.fit_exponent(b, exact)["critical"] == pytest.approx(16.0, rel=1e-2)


def test_fit_exponent_leaves_out_censored_and_missing_points():
    b = 2.0 ** np.arange(6)
    lr = 0.1 * b
    lr[1] = np.nan
    censored = np.zeros(6, bool)
    censored[-1] = True
    lr[-1] = 1e6  # would wreck the fit if it were used
    assert ex.fit_exponent(b, lr, censored)["exponent"] == pytest.approx(1.0, abs=0.05)
    assert np.isnan(ex.fit_exponent(b[:3], lr[:3])["exponent"])  # fewer than four points


def test_max_lr_is_the_edge_of_the_stable_region_from_below():
    stable = np.array(
        [
            [[True, True, False, True]],  # a lucky stable run above an unstable one is ignored
            [[True, True, True, True]],  # the whole grid is stable: censored, edge at the top
            [[False, True, True, True]],  # the smallest rate already fails: no stable rate
        ]
    )
    scan = ex.StabilityScan("sgd", np.array([1.0, 2, 4]), np.array([0.1, 0.2, 0.4, 0.8]), stable,
                            np.zeros(stable.shape), np.full(stable.shape, np.nan), steps=1)
    np.testing.assert_allclose(scan.max_lr, [0.2, 0.8, np.nan])
    np.testing.assert_array_equal(scan.censored, [False, True, False])


def test_max_lr_takes_the_median_over_streams():
    rows = [[True, False, False], [True, True, True], [True, True, False]]
    scan = ex.StabilityScan("sgd", np.array([1.0]), np.array([0.1, 0.2, 0.4]), np.array([rows]),
                            np.zeros((1, 3, 3)), np.full((1, 3, 3), np.nan), steps=1)
    np.testing.assert_allclose(scan.max_lr_per_stream, [[0.1, 0.4, 0.2]])
    np.testing.assert_allclose(scan.max_lr, [0.2])


def test_make_problem_pretrains_and_replicate_copies_w0(problem):
    assert problem.loss < problem.initial_loss
    net = problem.replicate(3)
    for p, q in zip(net.parameters(), problem.model.parameters()):
        assert torch.equal(p, q.expand_as(p))
    np.testing.assert_allclose(problem.full_loss(net).detach().numpy(), problem.loss, rtol=1e-12)


def test_bad_arguments_name_the_valid_choices(problem):
    with pytest.raises(ValueError, match="sgd, adam"):
        ex.stability_scan(problem, "lion", [1], [0.1], steps=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="batch sizes"):
        ex.stability_scan(problem, "sgd", [0], [0.1], steps=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="batch sizes"):
        ex.batch_hessian_spectrum(problem, [], batches=2, generator=torch.Generator())
    with pytest.raises(ValueError, match="width"):
        ex.make_problem(width=0, pretrain_steps=1, pretrain_lr=0.1, generator=torch.Generator())


def test_stability_scan_small_rates_are_stable_and_huge_ones_are_not(problem):
    scan = ex.stability_scan(problem, "sgd", [1, 8], [1e-3, 1e3], steps=5, streams=2,
                             generator=torch.Generator().manual_seed(0))
    assert scan.stable.shape == (2, 2, 2)
    assert scan.stable[..., 0].all() and not scan.stable[..., 1].any()
    np.testing.assert_allclose(scan.max_lr, [1e-3, 1e-3])
    assert np.isnan(scan.preconditioner).all()  # SGD has no preconditioner


def test_adam_preconditioner_is_recorded(problem):
    scan = ex.stability_scan(problem, "adam", [2], [1e-4], steps=3, generator=torch.Generator().manual_seed(0))
    assert np.isfinite(scan.preconditioner).all() and (scan.preconditioner > 0).all()


def test_batched_minibatch_hessians_match_one_at_a_time(problem):
    """Member j of the batched power iteration is the top eigenvalue of its own minibatch's Hessian."""
    gen = torch.Generator().manual_seed(3)
    spectrum = ex.batch_hessian_spectrum(problem, [4], batches=3, generator=gen, iters=400, tol=1e-5)
    idx = torch.randint(0, problem.n, (3, 4), generator=torch.Generator().manual_seed(3))
    model = problem.model
    for j in range(3):
        x, y = problem.x[idx[j]], problem.y[idx[j]]
        alone = hessian_top_eigenvalue(lambda x=x, y=y: half_mse(model(x), y).sum(), list(model.parameters()),
                                       iters=400, tol=1e-5)
        assert spectrum.values[0, j] == pytest.approx(alone, rel=1e-3)
    full = hessian_top_eigenvalue(lambda: half_mse(model(problem.x), problem.y).sum(), list(model.parameters()),
                                  iters=1000, tol=1e-6)
    assert spectrum.full == pytest.approx(full, rel=1e-4)
