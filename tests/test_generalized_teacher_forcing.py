"""The GTF experiment: grey-box gradients against autograd, the forced loss, and divergence as a result."""

import numpy as np
import torch

from phenomena.data import lorenz as L
from phenomena.experiments import generalized_teacher_forcing as ex
from phenomena.models.plrnn import ShallowPLRNN

DATA = L.lorenz_orbit(3000, rng=np.random.default_rng(0))
THETA = (10.0, 28.3, 8.0 / 3.0)


def autograd_gradient(window: np.ndarray, alpha: float, T: int) -> np.ndarray:
    """The same loss written directly in torch and differentiated by reverse-mode autograd."""
    th = torch.tensor(THETA, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(window, dtype=torch.float64)
    std = torch.tensor(DATA.std)

    def f(z):
        return torch.stack([th[0] * (z[1] - z[0]), z[0] * (th[1] - z[2]) - z[1], z[0] * z[1] - th[2] * z[2]])

    z, loss, dt = x[0], 0.0, DATA.dt
    for t in range(1, T + 1):
        z = (1 - alpha) * z + alpha * x[t - 1]
        k1 = f(z)
        k2 = f(z + dt / 2 * k1)
        k3 = f(z + dt / 2 * k2)
        k4 = f(z + dt * k3)
        z = z + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        loss = loss + (((z - x[t]) / std) ** 2).sum()
    (loss / (3 * T)).backward()
    return th.grad.numpy()


def test_greybox_gradients_match_reverse_mode_autograd():
    idx = np.array([100, 900])
    windows = ex.segments(DATA, idx, 300)
    for alpha in (0.0, 0.15):
        res = ex.greybox_gradients(DATA, windows, THETA, alpha, [40, 300])
        for i in range(2):
            for k, T in enumerate([40, 300]):
                want = np.linalg.norm(autograd_gradient(windows[:, i], alpha, T))
                assert np.isclose(res.norms[i, k], want, rtol=1e-8)


def test_strict_alpha_bounds_every_forced_factor():
    windows = ex.segments(DATA, np.array([0, 500, 1500]), 400)
    alphas = ex.forcing_alphas(windows, DATA.dt, THETA)
    norms = ex.data_jacobian_norms(windows, DATA.dt, THETA)
    assert ((1 - alphas["max"]) * norms <= 1 + 1e-12).all()
    assert alphas["geomean"] < alphas["max"]


def test_full_forcing_is_the_one_step_loss():
    m = ShallowPLRNN.init(2, 3, 10, generator=torch.Generator().manual_seed(0), contraction=0.9, dtype=torch.float64)
    x = torch.tensor(DATA.standardized[:51], dtype=torch.float64)
    seq = ex.sequence_loss(m, x[:, None, :], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(seq, torch.tensor(ex.one_step_mse(m, x)))


def test_gtf_alpha_is_zero_for_a_contracting_model():
    m = ShallowPLRNN.init(2, 3, 10, generator=torch.Generator().manual_seed(0), contraction=0.9)
    x = torch.tensor(DATA.standardized[:100], dtype=torch.float32)
    assert (ex.forcing_alpha_max(m, x.expand(2, -1, -1)) == 0).all()


def test_a_diverging_member_is_recorded_not_raised():
    m = ShallowPLRNN.init(2, 3, 10, generator=torch.Generator().manual_seed(0), contraction=None)
    with torch.no_grad():
        m.A[1] = 3.0  # member 1 explodes within a few dozen free-running steps
    series = torch.tensor(DATA.standardized, dtype=torch.float32)
    res = ex.train_plrnn(m, ["bptt", "bptt"], series, steps=3, seq_len=120, batch=2,
                         generator=torch.Generator().manual_seed(1))
    assert np.isfinite(res.diverged_at[1]) and not np.isfinite(res.loss[:, 1]).all()
    assert np.isfinite(res.loss[:, 0]).all() and res.diverged_at[0] == np.inf
    assert torch.isfinite(m.A[0]).all()


def test_hand_written_bptt_matches_autograd():
    m = ShallowPLRNN.init(4, 3, 12, generator=torch.Generator().manual_seed(2), contraction=None, dtype=torch.float64)
    x = torch.tensor(DATA.standardized[:81], dtype=torch.float64)[:, None, :].repeat(1, 3, 1)
    x[:, 1:] += 0.1 * torch.randn(81, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    alpha = torch.tensor([0.0, 0.2, 0.5, 1.0], dtype=torch.float64)
    want = torch.autograd.grad(ex.sequence_loss(m, x, alpha).sum(), list(m.parameters()))
    losses, got = ex.sequence_loss_and_grads(m, x, alpha)
    assert torch.allclose(losses, ex.sequence_loss(m, x, alpha).detach())
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=1e-10, atol=1e-12)
