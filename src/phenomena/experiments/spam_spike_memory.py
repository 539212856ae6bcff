"""Experiments of the chapter *spam-spike-memory*: one gradient spike through Adam and through SPAM.

(a) :func:`noisy_quadratic_spike`: elementwise Adam and SPAM on a noisy quadratic near its
minimum, where the gradient is almost pure noise of known size, so Adam's second moment has a
known level ``v₀``. One batched ensemble holds three optimizers (Adam, SPAM's clip alone, full
SPAM with resets) × a clean member and one member per spike size. Every member sees the *same*
noise, so a spiked member differs from its clean twin by the spike alone, and the ratio of their
second moments is the muting the spike leaves behind.

(b) :func:`gpt_spike_penalty`: a small GPT on an order-2 Markov language trained by Adam and by
SPAM, with and without ×``spike_size`` spikes injected into the LayerNorm-gain gradients at a few
steps. A clean and a spiked member share initial weights and minibatches, so their loss gap is
the spikes' cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data.markov import ContextMarkovLanguage
from ..ensemble import SPAM, fit
from ..models import GPT, GPTConfig, lm_loss
from ..models.gpt import LayerNorm

OPTIMIZERS: tuple[str, ...] = ("Adam", "SPAM clip", "SPAM")
"""Part (a)'s optimizers: Adam (θ = 0, no reset), SPAM's clip alone (no reset), full SPAM (clip, reset, warm-up)."""


@dataclass
class QuadraticSpike:
    """Part (a). Members are ``(optimizer, spike)`` pairs, listed in ``optimizer`` and ``spike`` (0 = clean).

    ``v``: mean raw second moment over coordinates before each step, ``(steps + 1, members)``;
    ``step_at_spike``: ``|Δθ|/lr`` of the spike's own update, ``(members, dim)``; ``grads``: the
    gradients the optimizer took on the first ``probe`` coordinates, ``(steps, members, probe)``;
    ``spike_at``: the update (1-based) that received the spike.
    """

    optimizer: list[str]
    spike: np.ndarray
    v: np.ndarray
    step_at_spike: np.ndarray
    grads: np.ndarray
    clipped: np.ndarray
    spike_at: int
    lr: float
    noise: float

    def member(self, optimizer: str, spike: float) -> int:
        """The index of the member trained by ``optimizer`` with a spike of size ``spike`` (0: clean)."""
        for i, (o, s) in enumerate(zip(self.optimizer, self.spike)):
            if o == optimizer and s == spike:
                return i
        raise KeyError(f"no member ({optimizer!r}, spike {spike}); optimizers {sorted(set(self.optimizer))}, "
                       f"spikes {sorted(set(self.spike.tolist()))}")

    def muting(self, optimizer: str, spike: float) -> np.ndarray:
        """``√(v_clean/v_spiked)`` from the spike's update on: entry ``k`` is ``k`` updates after it (k = 0: the spike's own)."""
        clean, hit = self.v[:, self.member(optimizer, 0)], self.v[:, self.member(optimizer, spike)]
        # v is recorded before each step: row `spike_at` holds the state after update `spike_at`
        return np.sqrt(clean[self.spike_at:] / hit[self.spike_at:])


def recovery_time(muting: np.ndarray, level: float = 0.5) -> float:
    """Steps after the spike until the muting is back to ``level`` for good: one past the last ``k`` below it.

    Linear interpolation between the two steps that bracket the last crossing; ``nan`` if the run
    ends muted (too short), 0 if it never dipped below ``level``.
    """
    below = np.flatnonzero(muting < level)
    if len(below) == 0:
        return 0.0
    last = int(below[-1])
    if last + 1 >= len(muting):
        return float("nan")
    a, b = muting[last], muting[last + 1]
    return last + (level - a) / (b - a)


def memory(muting: np.ndarray, tolerance: float = 0.01) -> float:
    """Steps after the spike during which the muting differs from 1 by more than ``tolerance``; ``nan`` if to the end."""
    off = np.flatnonzero(np.abs(muting - 1) > tolerance)
    if len(off) == 0:
        return 0.0
    return float("nan") if off[-1] + 1 >= len(muting) else float(off[-1] + 1)


class _SpikeHook:
    """``grad_transform`` for :func:`fit`: injects the spikes, keeps the parameters around the spike, records probes."""

    def __init__(self, x: Tensor, size: Tensor, spike_at: int, noise: float, probe: int) -> None:
        self.x, self.size, self.spike_at, self.noise, self.probe = x, size, spike_at, noise, probe
        self.before: Tensor | None = None
        self.after: Tensor | None = None
        self.grads: list[Tensor] = []

    def __call__(self, step: int, grads: Sequence[Tensor]) -> list[Tensor]:
        (g,) = grads
        if step == self.spike_at:  # the parameters after the spike's update
            self.after = self.x.detach().clone()
        if step == self.spike_at - 1:  # update number `spike_at` (1-based) takes the spike
            self.before = self.x.detach().clone()
            hit = self.size > 0
            g = torch.where(hit[:, None], self.size[:, None] * self.noise * torch.sign(g), g)
        self.grads.append(g[:, : self.probe].clone())
        return [g]


def noisy_quadratic_spike(
    spikes: Sequence[float] = (10.0, 100.0, 1000.0),
    *,
    dim: int,
    steps: int,
    spike_at: int,
    lr: float = 1e-3,
    curvature: float = 1.0,
    noise: float = 1.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    threshold: float = 5000.0,
    reset_interval: int = 500,
    warmup: int = 150,
    probe: int = 8,
    generator: torch.Generator,
) -> QuadraticSpike:
    """Train ``x`` on ``f(x) = ½·h·|x|²`` with gradient ``h·x + σ·ξ`` (``ξ`` standard normal, shared by all members).

    Update ``spike_at`` (1-based) gets, on every coordinate of a spiked member, the gradient
    ``s·σ·sign(g)``: ``s`` times the typical gradient size, in the noise's direction. ``x`` starts at
    0, and with ``lr·h`` small the gradient stays noise: ``v`` settles at ``σ²``. Choose ``spike_at``
    at least ``clip_delay = 20`` steps past a multiple of ``reset_interval``, where SPAM clips.
    """
    sizes = [float(s) for s in spikes]
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError(f"spikes must be positive sizes, got {list(spikes)}")
    if not 1 <= spike_at < steps:
        raise ValueError(f"spike_at must be an update within the run, 1 <= spike_at < steps={steps}, got {spike_at}")
    if reset_interval and spike_at % reset_interval < 20:
        raise ValueError(f"spike_at={spike_at} falls in the {20} steps after a reset, where SPAM does not clip; "
                         f"move it at least 20 steps past a multiple of reset_interval={reset_interval}")
    if dim < probe or noise <= 0 or curvature < 0:
        raise ValueError(f"need dim >= probe, noise > 0 and curvature >= 0, got {dim}, {probe}, {noise}, {curvature}")
    settings = {"Adam": (0.0, 0, 0), "SPAM clip": (threshold, 0, 0), "SPAM": (threshold, reset_interval, warmup)}
    optimizer_of, spike_of = [], []
    for name in OPTIMIZERS:
        for s in [0.0, *sizes]:
            optimizer_of.append(name)
            spike_of.append(s)
    members = len(spike_of)
    x = torch.zeros(members, dim, dtype=torch.float64, requires_grad=True)
    theta = [settings[o][0] for o in optimizer_of]
    every = [settings[o][1] for o in optimizer_of]
    warm = [settings[o][2] for o in optimizer_of]
    opt = SPAM([x], lr, betas=betas, eps=eps, threshold=theta, reset_interval=every, warmup=warm)
    xi = torch.randn(steps + 1, dim, generator=generator, dtype=torch.float64) * noise
    hook = _SpikeHook(x, torch.tensor(spike_of, dtype=torch.float64), spike_at, noise, probe)
    counter = [0]

    def loss() -> Tensor:
        t = counter[0]
        counter[0] += 1
        # the linear term adds the noise to the gradient without changing the quadratic's minimum
        return (0.5 * curvature * x * x + xi[t] * x).sum(1)

    history = fit(opt, loss, steps, grad_transform=hook, record={"v": lambda: opt.exp_avg_sq[0].mean(1)})
    return QuadraticSpike(
        optimizer=optimizer_of,
        spike=np.asarray(spike_of),
        v=history.recorded["v"].numpy(),
        step_at_spike=((hook.after - hook.before).abs() / lr).numpy(),
        grads=torch.stack(hook.grads).numpy(),
        clipped=opt.clipped.numpy(),
        spike_at=spike_at,
        lr=lr,
        noise=noise,
    )


@dataclass
class GPTSpikes:
    """Part (b). Members are ``(init, optimizer, spiked)`` triples (``init``, ``optimizer``, ``spiked``).

    ``loss``: training loss (nats/token) before each step, ``(steps + 1, members)``;
    ``entropy_rate``: the language's loss floor ``H``; ``ln_grads``: the LayerNorm-gain gradients of
    the first ``probe`` coordinates as the optimizer took them, ``(steps, members, probe)``;
    ``spike_steps``: the updates (1-based) that received spikes.
    """

    init: np.ndarray
    optimizer: list[str]
    spiked: np.ndarray
    loss: np.ndarray
    entropy_rate: float
    ln_grads: np.ndarray
    clipped: np.ndarray
    spike_steps: tuple[int, ...]
    diverged_at: np.ndarray

    def member(self, init: int, optimizer: str, spiked: bool) -> int:
        for i, (s, o, k) in enumerate(zip(self.init, self.optimizer, self.spiked)):
            if s == init and o == optimizer and bool(k) == spiked:
                return i
        raise KeyError(f"no member (init {init}, {optimizer!r}, spiked={spiked})")

    def penalty(self, init: int, optimizer: str, last: int = 100) -> float:
        """Mean training loss over the last ``last`` steps, spiked member minus its clean twin (nats/token)."""
        hit, clean = self.member(init, optimizer, True), self.member(init, optimizer, False)
        return float(np.mean(self.loss[-last:, hit]) - np.mean(self.loss[-last:, clean]))


def gpt_spike_penalty(
    language: ContextMarkovLanguage,
    *,
    inits: int,
    steps: int,
    spike_steps: Sequence[int],
    spike_size: float = 1000.0,
    lr: float = 3e-3,
    width: int = 64,
    layers: int = 2,
    heads: int = 2,
    batch: int = 16,
    seq_len: int = 32,
    betas: tuple[float, float] = (0.9, 0.999),
    threshold: float = 5000.0,
    reset_interval: int = 500,
    warmup: int = 150,
    probe: int = 64,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> GPTSpikes:
    """Train ``inits × {Adam, SPAM} × {clean, spiked}`` pre-LN GPTs as one ensemble.

    Within one init the four members share initial weights and minibatches (``generator`` draws the
    weights of every init, then each init's minibatches). A spiked member's LayerNorm-gain gradients
    are multiplied by ``spike_size`` at the updates ``spike_steps`` (1-based); Adam is SPAM with
    ``θ = 0`` and no reset. The learning rate is constant, and nothing else clips the gradients.
    """
    if inits < 1 or steps < 1:
        raise ValueError(f"need inits >= 1 and steps >= 1, got {inits}, {steps}")
    bad = [t for t in spike_steps if not 1 <= t <= steps or (reset_interval and t % reset_interval < 20)]
    if bad:
        raise ValueError(f"spike_steps {bad} are outside 1..steps={steps} or within 20 steps after a reset "
                         f"(every {reset_interval}), where SPAM does not clip; move them")
    device = torch.device(device)
    init_of, optimizer_of, spiked_of = [], [], []
    for s in range(inits):
        for name in ("Adam", "SPAM"):
            for hit in (False, True):
                init_of.append(s)
                optimizer_of.append(name)
                spiked_of.append(hit)
    members = len(init_of)
    config = GPTConfig(vocab_size=language.vocab_size, context=seq_len, layers=layers, heads=heads, width=width,
                       norm="pre", members=members)
    model = GPT(config, generator)
    with torch.no_grad():  # the four members of an init start from its first member
        for p in list(model.parameters()) + list(model.buffers()):
            p.copy_(p.view(inits, 4, *p.shape[1:])[:, :1].expand(-1, 4, *p.shape[1:]).reshape(p.shape))
    model = model.to(device)
    spam = torch.tensor([o == "SPAM" for o in optimizer_of])
    opt = SPAM(model.parameters(), lr, betas=betas, eps=1e-8,
               threshold=torch.where(spam, threshold, 0.0), reset_interval=torch.where(spam, reset_interval, 0),
               warmup=torch.where(spam, warmup, 0))
    gains = {id(m.weight) for m in model.modules() if isinstance(m, LayerNorm)}
    is_gain = [id(p) in gains for p in opt.params]
    factor = torch.where(torch.tensor(spiked_of), spike_size, 1.0).to(device)
    data = torch.stack([language.sample(batch * steps + batch, seq_len + 1, generator).view(steps + 1, batch, seq_len + 1)
                        for _ in range(inits)], 1)  # (steps + 1, inits, batch, seq_len + 1)
    data = data.repeat_interleave(4, dim=1).to(device)
    hits = {t - 1 for t in spike_steps}
    recorded: list[Tensor] = []

    def transform(step: int, grads: Sequence[Tensor]) -> list[Tensor]:
        out = []
        for g, gain in zip(grads, is_gain):
            if gain and step in hits:
                g = g * factor.view(-1, *([1] * (g.dim() - 1)))
            out.append(g)
        recorded.append(torch.cat([g.flatten(1) for g, gain in zip(out, is_gain) if gain], 1)[:, :probe].cpu())
        return out

    counter = [0]

    def loss() -> Tensor:
        x = data[counter[0]]
        counter[0] += 1
        return lm_loss(model(x[..., :-1]), x[..., 1:])[0]

    history = fit(opt, loss, steps, on_divergence="mask", grad_transform=transform)
    return GPTSpikes(
        init=np.asarray(init_of),
        optimizer=optimizer_of,
        spiked=np.asarray(spiked_of),
        loss=history.loss.numpy(),
        entropy_rate=float(language.entropy_rate),
        ln_grads=torch.stack(recorded).numpy(),
        clipped=opt.clipped.cpu().numpy(),
        spike_steps=tuple(int(t) for t in spike_steps),
        diverged_at=history.diverged_at.numpy(),
    )
