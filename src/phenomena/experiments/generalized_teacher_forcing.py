"""Generalized teacher forcing (Hess, Monfared, Brenner & Durstewitz 2023) on Lorenz-63.

Two experiments.

(a) A grey-box recurrent model: the RK4 step of the Lorenz flow itself, with learnable
``θ = (σ, ρ, β)`` evaluated away from the data's parameters (``ρ = 28.3`` against 28). Its loss
over ``T`` steps is the mean squared error of the model's states against the data, and its
gradient is the exact derivative of that loss, computed by forward sensitivities (the
tangent of the RK4 step, :func:`phenomena.data.lorenz.rk4_tangent_step`) for every ``T`` at once.
Under GTF each model state is replaced by ``z̃_t = (1 − α)z_t + αx_t`` before the next step.

(b) A shallow PLRNN trained on the standardised orbit by Adam, GTF against BPTT
(``α = 0``) from the same contracting initialisation, every arm and seed one member of a batched
model (:mod:`phenomena.models.plrnn`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from phenomena.data.lorenz import LorenzData, rk4_map_jacobian, rk4_tangent_step
from phenomena.metrics.dynamics import state_space_divergence
from phenomena.models.plrnn import ShallowPLRNN, spectral_norm_3x3
from phenomena.theory.lyapunov import gtf_alpha, lyapunov_spectrum, spectral_norms


# ----------------------------------------------------------------------------- (a) grey box
@dataclass
class GreyBoxGradients:
    """``norms[i, k]``: ‖∂L_T/∂θ‖ for start ``i`` and ``T = Ts[k]``; ``losses`` likewise."""

    Ts: NDArray[np.int64]
    norms: NDArray[np.float64]
    losses: NDArray[np.float64]
    alpha: float


def start_indices(n_steps: int, starts: int, horizon: int, rng: np.random.Generator) -> NDArray[np.int64]:
    """``starts`` random start indices on an orbit of ``n_steps + 1`` states, each with ``horizon`` steps after it."""
    room = n_steps - horizon
    if room <= 0:
        raise ValueError(f"the orbit ({n_steps} steps) is shorter than the horizon ({horizon}); generate a longer one")
    return np.sort(rng.choice(room, size=starts, replace=False))


def segments(data: LorenzData, idx: NDArray[np.int64], horizon: int) -> NDArray[np.float64]:
    """Raw data windows ``(horizon + 1, starts, 3)`` beginning at each index."""
    return np.stack([data.raw[i : i + horizon + 1] for i in idx], axis=1)


def data_jacobian_norms(windows: NDArray[np.float64], dt: float, params) -> NDArray[np.float64]:
    """‖J_t‖₂ of the model's RK4 map at each forcing signal (data state) of each window: ``(starts, horizon)``."""
    J = rk4_map_jacobian(windows[:-1], dt, params)
    return spectral_norms(J).T


def greybox_gradients(
    data: LorenzData, windows: NDArray[np.float64], params, alpha: float, Ts
) -> GreyBoxGradients:
    """Exact ‖∇_θ L_T‖ for the GTF (``alpha > 0``) or BPTT (``alpha = 0``) loss of the RK4 grey box.

    ``L_T = (1/3T) Σ_{t=1..T} ‖(z_t − x_t)/std‖²`` with ``z_0 = x_0``,
    ``z_{t+1} = RK4_θ((1 − α)z_t + αx_t)``. The sensitivity ``S_t = ∂z_t/∂θ`` is propagated with the
    state, so the gradients for all ``T`` come from one pass.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"the forcing strength alpha must lie in [0, 1], got {alpha}")
    Ts = np.asarray(sorted(int(t) for t in Ts))
    horizon = windows.shape[0] - 1
    if Ts[0] < 1 or Ts[-1] > horizon:
        raise ValueError(f"every T must lie in [1, {horizon}] (the window length)")
    w = 1.0 / data.std**2
    z = windows[0].copy()
    S = np.zeros(z.shape + (3,))
    G = np.zeros(z.shape[:-1] + (3,))
    sq = np.zeros(z.shape[:-1])
    norms, losses = [], []
    for t in range(1, horizon + 1):
        zf = (1.0 - alpha) * z + alpha * windows[t - 1]
        z, S = rk4_tangent_step(zf, (1.0 - alpha) * S, data.dt, params, with_params=True)
        err = z - windows[t]
        G += np.einsum("bd,bdk->bk", err * w, S)
        sq += (err**2 * w).sum(-1)
        if t in Ts:
            norms.append(np.linalg.norm(2.0 * G / (3.0 * t), axis=-1))
            losses.append(sq / (3.0 * t))
    return GreyBoxGradients(Ts=Ts, norms=np.stack(norms, 1), losses=np.stack(losses, 1), alpha=float(alpha))


def lyapunov_slope(result: GreyBoxGradients, dt: float, t_min: int, t_max: int) -> float:
    """Least-squares slope of the mean (over starts) of log‖∇‖ against ``TΔt`` for ``t_min ≤ T ≤ t_max``.

    Non-finite gradients count as ``+inf`` and make the slope ``inf``.
    """
    sel = (result.Ts >= t_min) & (result.Ts <= t_max)
    if sel.sum() < 2:
        raise ValueError(f"need at least two T in [{t_min}, {t_max}], got {result.Ts.tolist()}")
    logs = np.log(result.norms[:, sel]).mean(0)
    if not np.isfinite(logs).all():
        return math.inf
    return float(np.polyfit(result.Ts[sel] * dt, logs, 1)[0])


def bounded_ratio(result: GreyBoxGradients, t_min: int, t_max: int) -> float:
    """``max_T / min_T`` of the mean (over starts) gradient norm for ``t_min ≤ T ≤ t_max``."""
    sel = (result.Ts >= t_min) & (result.Ts <= t_max)
    mean = result.norms[:, sel].mean(0)
    return float(mean.max() / mean.min()) if np.isfinite(mean).all() else math.inf


def forcing_alphas(windows: NDArray[np.float64], dt: float, params) -> dict[str, float]:
    """α*_max (largest Jacobian norm over all windows) and α*_prod (largest per-window geometric mean)."""
    norms = data_jacobian_norms(windows, dt, params)
    return {"max": gtf_alpha(norms, "max"), "geomean": gtf_alpha(norms, "geomean"), "max_norm": float(norms.max())}


# ----------------------------------------------------------------------------- (b) shPLRNN
@dataclass
class TrainResult:
    """A batched shPLRNN run. Member ``i`` trained with arm ``arms[i]`` (``"gtf"`` or ``"bptt"``)."""

    model: ShallowPLRNN
    arms: list[str]
    loss: NDArray[np.float64]  # (steps, members) training loss; inf/nan where the member's loss was not finite
    alpha: NDArray[np.float64]  # (steps, members) forcing strength used
    grad_norm: NDArray[np.float64]  # (steps, members)
    diverged_at: NDArray[np.float64]  # (members,) first step with a non-finite loss or gradient, inf if never


def forcing_alpha_max(model: ShallowPLRNN, states: Tensor) -> Tensor:
    """α*_max per member: ``1 − 1/max ‖J(x)‖₂`` over the forcing signals ``states (members, n, M)`` (0 if ≤ 1)."""
    with torch.no_grad():
        J = model.jacobian(states)
        norms = spectral_norm_3x3(J) if J.shape[-1] == 3 else torch.linalg.matrix_norm(J.double(), 2)
        return (1.0 - 1.0 / norms.amax(-1)).clamp(min=0.0).to(states.dtype)


def sequence_loss(model: ShallowPLRNN, x: Tensor, alpha: Tensor) -> Tensor:
    """Mean squared error of the forced model over windows ``x (T + 1, batch, M)``, per member.

    ``z_0 = x_0``; ``z_t = F((1 − α)z_{t−1} + αx_{t−1})``; loss ``mean_t ‖z_t − x_t‖²/M``. ``α = 0``
    is free-running BPTT, ``α = 1`` one-step teacher forcing.
    """
    E = model.members
    a = alpha.reshape(E, 1, 1).to(x.dtype)
    step = model.fused_step()
    ax = a.unsqueeze(0) * x[:-1].unsqueeze(1)  # (T, E, batch, M): the forcing term, in one op
    keep = 1 - a
    z = x[0].expand(E, *x.shape[1:])
    states = []
    for t in range(1, x.shape[0]):
        z = step(torch.addcmul(ax[t - 1], keep, z))
        states.append(z)
    return ((torch.stack(states) - x[1:].unsqueeze(1)) ** 2).mean(dim=(0, -1, -2))


def sequence_loss_and_grads(model: ShallowPLRNN, x: Tensor, alpha: Tensor) -> tuple[Tensor, list[Tensor]]:
    """:func:`sequence_loss` and its gradient for (A, W₁, W₂, h₁, h₂), by a hand-written BPTT.

    The same numbers as autograd, about twice as fast for long sequences of tiny matrices: the
    backward recursion needs three fused ops per time step, and the parameter gradients are
    summed over all steps at once afterwards. With ``δ_t = ∂L/∂z_t`` and
    ``q_t = D_t W₁ᵀδ_t``: ``∂L/∂z̃_{t−1} = A⊙δ_t + W₂ᵀq_t`` and ``δ_{t−1} += (1 − α)·∂L/∂z̃_{t−1}``.
    Only the plain (unclipped) shPLRNN.
    """
    if model.clipped:
        raise ValueError("the hand-written BPTT covers the plain shPLRNN; use sequence_loss with autograd")
    E = model.members
    T = x.shape[0] - 1
    A, W1, W2, h1, h2 = (p.detach() for p in (model.A, model.W1, model.W2, model.h1, model.h2))
    a = alpha.reshape(E, 1, 1).to(x.dtype)
    keep = 1 - a
    ax = a.unsqueeze(0) * x[:-1].unsqueeze(1)
    W1t, W2t, h1b, h2b, Ab = W1.transpose(1, 2), W2.transpose(1, 2), h1.unsqueeze(1), h2.unsqueeze(1), A.unsqueeze(1)
    z = x[0].expand(E, *x.shape[1:])
    zf, acts, zs = [], [], []
    for t in range(T):
        f = torch.addcmul(ax[t], keep, z)
        act = torch.relu(torch.baddbmm(h2b, f, W2t))
        z = torch.baddbmm(torch.addcmul(h1b, Ab, f), act, W1t)
        zf.append(f)
        acts.append(act)
        zs.append(z)
    err = torch.stack(zs) - x[1:].unsqueeze(1)  # (T, E, B, M)
    losses = (err**2).mean(dim=(0, -1, -2))
    direct = err * (2.0 / err[:, 0].numel())
    act_all = torch.stack(acts)
    mask = (act_all > 0).to(x.dtype)
    deltas, qs = [None] * T, [None] * T
    delta = direct[T - 1]
    for t in range(T - 1, -1, -1):
        q = torch.bmm(delta, W1) * mask[t]
        deltas[t], qs[t] = delta, q
        if t > 0:
            delta = torch.addcmul(direct[t - 1], keep, torch.addcmul(torch.bmm(q, W2), Ab, delta))
    D, Q, F = torch.stack(deltas), torch.stack(qs), torch.stack(zf)
    grads = [
        (D * F).sum(dim=(0, 2)),
        torch.einsum("tebm,tebl->eml", D, act_all),
        torch.einsum("tebl,tebm->elm", Q, F),
        D.sum(dim=(0, 2)),
        Q.sum(dim=(0, 2)),
    ]
    return losses, grads


def train_plrnn(
    model: ShallowPLRNN,
    arms: list[str],
    series: Tensor,
    *,
    steps: int,
    seq_len: int = 200,
    batch: int = 16,
    lr: tuple[float, float] = (2e-3, 2e-5),
    generator: torch.Generator,
) -> TrainResult:
    """Adam on every member at once, each with its own arm; every member sees the same batches.

    ``"gtf"`` recomputes α*_max from the batch's forcing signals at every step (the strict bound,
    not the geometric-mean heuristic); ``"bptt"`` uses α = 0. The learning rate decays
    exponentially from ``lr[0]`` to ``lr[1]``. A member whose loss or gradient turns non-finite is
    frozen and the step recorded: a result, not an error.
    """
    from phenomena.ensemble import Adam

    E = model.members
    if len(arms) != E or not set(arms) <= {"gtf", "bptt"}:
        raise ValueError(f"arms must list 'gtf' or 'bptt' for each of the {E} members, got {arms}")
    if series.dim() != 2 or series.shape[0] <= seq_len + 1:
        raise ValueError(f"series must be (time, M) and longer than seq_len + 1 = {seq_len + 1}")
    gtf = torch.tensor([a == "gtf" for a in arms])
    opt = Adam(list(model.parameters()), lr[0])
    decay = (lr[1] / lr[0]) ** (1.0 / max(steps - 1, 1))
    loss_h = np.full((steps, E), np.nan)
    alpha_h = np.zeros((steps, E))
    grad_h = np.full((steps, E), np.nan)
    diverged = np.full(E, np.inf)
    params = list(model.parameters())
    for step in range(steps):
        starts = torch.randint(0, series.shape[0] - seq_len - 1, (batch,), generator=generator)
        x = series[starts[None, :] + torch.arange(seq_len + 1)[:, None]]  # (T + 1, batch, M)
        forcing = x[:-1].reshape(1, -1, x.shape[-1]).expand(E, -1, -1)
        alpha = torch.where(gtf, forcing_alpha_max(model, forcing), torch.zeros(E))
        if model.clipped:
            losses = sequence_loss(model, x, alpha)
            grads = torch.autograd.grad(losses.sum(), params)
        else:
            losses, grads = sequence_loss_and_grads(model, x, alpha)
        with torch.no_grad():
            gnorm = torch.sqrt(sum((g.reshape(E, -1) ** 2).sum(1) for g in grads))
            bad = ~(torch.isfinite(losses) & torch.isfinite(gnorm)) & opt.alive
            if bad.any():
                diverged[bad.numpy()] = step
                opt.alive &= ~bad
            opt.lr = torch.full((E,), lr[0] * decay**step, dtype=opt.lr.dtype)
            opt.step(grads)
        loss_h[step], alpha_h[step], grad_h[step] = losses.detach().numpy(), alpha.numpy(), gnorm.numpy()
    return TrainResult(model=model, arms=list(arms), loss=loss_h, alpha=alpha_h, grad_norm=grad_h, diverged_at=diverged)


def one_step_mse(model: ShallowPLRNN, series: Tensor) -> NDArray[np.float64]:
    """Validation MSE of the one-step prediction ``F(x_t)`` against ``x_{t+1}``, per member (inf if not finite)."""
    with torch.no_grad():
        x = series.to(model.A.dtype)
        pred = model(x[:-1].expand(model.members, -1, -1))
        mse = ((pred - x[1:]) ** 2).mean(dim=(-1, -2)).numpy().astype(np.float64)
    return np.where(np.isfinite(mse), mse, np.inf)


def free_run(model: ShallowPLRNN, z0: Tensor, steps: int, discard: int = 1000) -> Tensor:
    """Each member's free-running orbit ``(steps, members, M)`` from ``z0``, after ``discard`` transient steps."""
    with torch.no_grad():
        return model.orbit(z0.expand(model.members, -1).to(model.A.dtype), steps + discard)[discard + 1 :]


def orbit_lyapunov(model: ShallowPLRNN, orbit: Tensor, dt: float) -> NDArray[np.float64]:
    """Lyapunov spectrum ``(members, M)`` along each member's orbit ``(T, members, M)``, per unit of data time.

    A member whose orbit left the float range gets ``nan``.
    """
    with torch.no_grad():
        J = model.jacobian(orbit.transpose(0, 1)).transpose(0, 1).double().numpy()
    out = np.full((model.members, model.A.shape[1]), np.nan)
    ok = np.isfinite(J).all(axis=(0, 2, 3))
    if ok.any():
        out[ok] = lyapunov_spectrum(J[:, ok], dt=dt, discard=100)
    return out


def free_run_lyapunov(model: ShallowPLRNN, z0: Tensor, steps: int, dt: float, discard: int = 1000) -> NDArray[np.float64]:
    """:func:`orbit_lyapunov` of the free-running orbit from ``z0``."""
    return orbit_lyapunov(model, free_run(model, z0, steps, discard), dt)


def gradient_norms(model: ShallowPLRNN, x: Tensor, alpha: Tensor) -> NDArray[np.float64]:
    """‖∇_θ L‖ per member for the sequence loss over windows ``x`` at forcing ``alpha`` (float64 copy)."""
    m64 = ShallowPLRNN(*(p.detach().double().clone().requires_grad_(True) for p in
                         (model.A, model.W1, model.W2, model.h1, model.h2)), clipped=model.clipped)
    losses = sequence_loss(m64, x.double(), alpha.double())
    grads = torch.autograd.grad(losses.sum(), list(m64.parameters()))
    norm = torch.sqrt(sum((g.reshape(m64.members, -1) ** 2).sum(1) for g in grads)).numpy()
    return np.where(np.isfinite(norm), norm, np.inf)


# ----------------------------------------------------------------------------- the chapter's two runs
@dataclass
class GreyBoxResult:
    """Part (a): gradients of BPTT, GTF at α*_max and GTF at α*_prod on the same windows."""

    bptt: GreyBoxGradients
    gtf_max: GreyBoxGradients
    gtf_prod: GreyBoxGradients
    alphas: dict[str, float]


def greybox_experiment(
    data: LorenzData, *, starts: int, horizon: int, model_params, rng: np.random.Generator, every: int = 25
) -> GreyBoxResult:
    """All of part (a): ``starts`` random windows of ``horizon`` steps; ‖∇‖ every ``every`` steps of T."""
    idx = start_indices(data.raw.shape[0] - 1, starts, horizon, rng)
    windows = segments(data, idx, horizon)
    alphas = forcing_alphas(windows, data.dt, model_params)
    Ts = np.arange(every, horizon + 1, every)
    return GreyBoxResult(
        bptt=greybox_gradients(data, windows, model_params, 0.0, Ts),
        gtf_max=greybox_gradients(data, windows, model_params, alphas["max"], Ts),
        gtf_prod=greybox_gradients(data, windows, model_params, alphas["geomean"], Ts),
        alphas=alphas,
    )


def summed_loss_slope(result: GreyBoxGradients, dt: float, t_min: int, t_max: int) -> float:
    """Slope of the mean log‖∇_θ Σ_{t≤T} ℓ_t‖ = log(T·‖∇L_T‖) against ``TΔt`` over ``[t_min, t_max]``.

    Multiplying by ``T`` undoes the ``1/T`` of the mean loss, a known factor that would otherwise
    subtract ``≈ 1/(TΔt)`` from the growth rate of the Jacobian products.
    """
    scaled = GreyBoxGradients(Ts=result.Ts, norms=result.norms * result.Ts, losses=result.losses, alpha=result.alpha)
    return lyapunov_slope(scaled, dt, t_min, t_max)


@dataclass
class PLRNNResult:
    """Part (b): the trained batched model, its history and its evaluation per member."""

    train: TrainResult
    arms: list[str]
    one_step: NDArray[np.float64]  # validation one-step MSE per member
    final_loss: NDArray[np.float64]  # mean training loss over the last tenth of the steps (inf if diverged)
    lyapunov: NDArray[np.float64]  # (members, M) free-running spectrum per unit time
    dstsp: NDArray[np.float64]  # (members,) state-space divergence of the free-running orbit from the validation data
    best_gtf: int  # member index of the GTF model with the lowest state-space divergence
    grad_ratio_T: int
    grad_bptt: float  # ‖∇‖ of the BPTT loss at T = grad_ratio_T at the best GTF model's parameters
    grad_gtf: float  # the same under GTF at α*_max


def plrnn_experiment(
    train_series: Tensor,
    val_series: Tensor,
    *,
    inits: int,
    width: int,
    steps: int,
    seq_len: int,
    batch: int,
    lr: tuple[float, float],
    contraction: float,
    lyapunov_steps: int,
    dt: float,
    generator: torch.Generator,
    grad_ratio_T: int = 800,
) -> PLRNNResult:
    """All of part (b): ``inits`` initialisations, each trained once with GTF and once with BPTT.

    The GTF model that reproduces the attractor's geometry best (lowest state-space divergence of
    its free-running orbit from the validation data) is the one whose gradients and Lyapunov
    exponent the chapter reports.
    """
    base = ShallowPLRNN.init(inits, train_series.shape[-1], width, generator=generator, contraction=contraction)
    model = ShallowPLRNN(*(torch.cat([p.detach()] * 2) for p in (base.A, base.W1, base.W2, base.h1, base.h2)))
    arms = ["gtf"] * inits + ["bptt"] * inits
    res = train_plrnn(model, arms, train_series, steps=steps, seq_len=seq_len, batch=batch, lr=lr, generator=generator)
    tail = res.loss[-max(steps // 10, 1):]
    final = np.where(np.isfinite(res.diverged_at), np.inf, tail.mean(0))
    one = one_step_mse(model, val_series)
    orbit = free_run(model, val_series[0], lyapunov_steps)
    lyap = orbit_lyapunov(model, orbit, dt)
    dstsp = np.array([state_space_divergence(val_series.numpy(), orbit[:, i].numpy()) for i in range(len(arms))])
    gtf_members = [i for i, a in enumerate(arms) if a == "gtf"]
    best = min(gtf_members, key=lambda i: (np.nan_to_num(dstsp[i], nan=np.inf), one[i]))
    n_win = 16
    room = val_series.shape[0] - grad_ratio_T - 1
    offsets = torch.linspace(0, room, n_win).long()
    x = val_series[offsets[None, :] + torch.arange(grad_ratio_T + 1)[:, None]]
    single = ShallowPLRNN(*(p.detach()[best : best + 1].clone() for p in (model.A, model.W1, model.W2, model.h1, model.h2)))
    a_max = forcing_alpha_max(single, x[:-1].reshape(1, -1, x.shape[-1]))
    g_bptt = gradient_norms(single, x, torch.zeros(1))[0]
    g_gtf = gradient_norms(single, x, a_max)[0]
    return PLRNNResult(train=res, arms=arms, one_step=one, final_loss=final, lyapunov=lyap, dstsp=dstsp, best_gtf=best,
                    grad_ratio_T=grad_ratio_T, grad_bptt=float(g_bptt), grad_gtf=float(g_gtf))
