import numpy as np
import pytest
import torch

from phenomena.data import ICLTasks, input_covariance
from phenomena.theory import (
    gradient_second_moment,
    least_squares_risk,
    one_step_gd_prediction,
    one_step_risk,
    optimal_one_step_risk,
    optimal_preconditioner,
    preconditioner_isotropy_gap,
)

D, N, NOISE = 5, 20, 0.1


def _mc(tasks, batch, seed):
    return tasks.sample(batch, torch.Generator().manual_seed(seed))


def test_tasks_shapes_and_statistics():
    tasks = ICLTasks(d=D, n=N, noise=NOISE, covariance="anisotropic", rho=0.5)
    b = _mc(tasks, 20000, 0)
    assert b.tokens.shape == (20000, N + 1, D + 1) and b.y_query.shape == (20000,) and b.w.shape == (20000, D)
    assert torch.all(b.tokens[:, -1, -1] == 0), "the query's label slot is empty"
    x = b.tokens[:, :, :D].reshape(-1, D)
    torch.testing.assert_close(x.T @ x / x.shape[0], tasks.sigma, atol=0.02, rtol=0)
    resid = b.y - torch.einsum("bnd,bd->bn", b.x, b.w)
    assert abs(resid.var().item() - NOISE) < 0.005
    assert abs((b.y_query - (b.x_query * b.w).sum(1)).var().item() - NOISE) < 0.01
    torch.testing.assert_close(b.w.T @ b.w / 20000, torch.eye(D, dtype=b.w.dtype), atol=0.05, rtol=0)
    again = _mc(tasks, 20000, 0)
    assert torch.equal(again.tokens, b.tokens), "same generator state, same tasks"


def test_covariances_and_bad_arguments():
    assert torch.equal(input_covariance("isotropic", 3), torch.eye(3, dtype=torch.float64))
    s = input_covariance("anisotropic", 4, rho=0.5)
    assert s[0, 3] == pytest.approx(0.125) and torch.trace(s) == pytest.approx(4)
    with pytest.raises(ValueError, match="valid kinds"):
        ICLTasks(covariance="spiked")
    with pytest.raises(ValueError, match="rho"):
        ICLTasks(covariance="anisotropic", rho=1.0)
    with pytest.raises(ValueError, match="noise"):
        ICLTasks(noise=-1)
    with pytest.raises(ValueError, match="batch"):
        ICLTasks().sample(0, torch.Generator())


def test_gradient_moment_matches_monte_carlo():
    sigma = input_covariance("anisotropic", D, rho=0.5).numpy()
    b = _mc(ICLTasks(d=D, n=N, noise=NOISE, covariance="anisotropic", rho=0.5), 50000, 1)
    g = (b.x * b.y[..., None]).mean(1).numpy()
    h = gradient_second_moment(sigma, N, NOISE)
    assert np.abs(g.T @ g / len(g) - h).max() < 0.03 * np.abs(h).max()


@pytest.mark.parametrize("cov", ["isotropic", "anisotropic"])
def test_closed_form_risk_matches_monte_carlo(cov):
    """R(Γ) from Gaussian moments vs the mean squared error of one-step GD on sampled prompts (± 4 s.e.)."""
    tasks = ICLTasks(d=D, n=N, noise=NOISE, covariance=cov, rho=0.5)
    sigma = tasks.sigma.numpy()
    b = _mc(tasks, 100000, 2)
    rng = np.random.default_rng(0)
    for gamma in (optimal_preconditioner(sigma, N, NOISE), 0.5 * np.eye(D) + 0.1 * rng.standard_normal((D, D))):
        pred = one_step_gd_prediction(b.x, b.y, b.x_query, torch.as_tensor(gamma))
        err = ((pred - b.y_query) ** 2).numpy()
        se = err.std() / np.sqrt(len(err))
        assert abs(err.mean() - one_step_risk(gamma, sigma, N, NOISE)) < 4 * se


def test_optimal_preconditioner_is_the_minimum():
    sigma = input_covariance("anisotropic", D, rho=0.5).numpy()
    best = optimal_preconditioner(sigma, N, NOISE)
    r0 = one_step_risk(best, sigma, N, NOISE)
    assert r0 == pytest.approx(optimal_one_step_risk(sigma, N, NOISE))
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert one_step_risk(best + 0.01 * rng.standard_normal((D, D)), sigma, N, NOISE) > r0
    # not the inverse covariance: the tr Σ / n term shrinks it
    inv = np.linalg.inv(sigma)
    c = (best * inv).sum() / (inv * inv).sum()
    assert one_step_risk(c * inv, sigma, N, NOISE) > r0 * 1.05


def test_isotropic_step_size_and_least_squares():
    g = optimal_preconditioner(np.eye(D), N, NOISE)
    assert np.allclose(g, N / (N + 1 + D + NOISE) * np.eye(D))
    assert preconditioner_isotropy_gap(g) == pytest.approx(0, abs=1e-12)
    assert optimal_one_step_risk(np.eye(D), N, NOISE) == pytest.approx(D * (1 - N / (N + 1 + D + NOISE)) + NOISE)
    b = _mc(ICLTasks(d=D, n=N, noise=NOISE), 50000, 3)
    w_hat = torch.linalg.solve(b.x.transpose(1, 2) @ b.x, (b.x.transpose(1, 2) @ b.y[..., None]))[..., 0]
    err = (((b.x_query * w_hat).sum(1) - b.y_query) ** 2).numpy()
    assert abs(err.mean() - least_squares_risk(D, N, NOISE)) < 4 * err.std() / np.sqrt(len(err))
    assert least_squares_risk(D, D + 1, NOISE) == float("inf")


def test_theory_bad_arguments():
    with pytest.raises(ValueError, match="positive definite"):
        optimal_preconditioner(-np.eye(2), N, NOISE)
    with pytest.raises(ValueError, match="context length"):
        optimal_preconditioner(np.eye(2), 0, NOISE)
    with pytest.raises(ValueError, match="gamma must"):
        one_step_risk(np.eye(3), np.eye(2), N, NOISE)
