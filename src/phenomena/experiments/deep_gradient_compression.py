"""Deep gradient compression: dense momentum SGD, Gradient Dropping and DGC on simulated workers.

Chapter ``deep-gradient-compression`` (Lin, Han, Mao, Wang & Dally 2018). ``workers`` simulated
workers train one MLP by data-parallel SGD; each worker is a member of one batched
:class:`~phenomena.models.mlp.MLP`, draws its own minibatch and computes its own gradient
``G^k = ∇(mean loss on its batch)/N`` (the paper's ``1/(Nb)·Σ∇f``). The workers exchange their
gradients by one of three rules (:mod:`phenomena.compression`) and every replica subtracts the same
aggregated update, so the replicas stay identical. The ensemble axis is
``(method, seed, worker)``: the methods of one seed start from the same weights and see the same
minibatches, so their results are paired.

Two tasks: ``"digits"`` (scikit-learn digits, cross-entropy, test accuracy on a held-out split) and
``"teacher"`` (online regression on Gaussian inputs labelled by a random tanh teacher network,
population MSE estimated on a fixed large sample).

Measured along the way (for the compressed methods, after the warm-up): how many coordinates each
worker sent per layer, the size of its message by the paper's encoding, the intervals between two
transmissions of a coordinate, and the ratio ``r = mean_k‖G^k‖/‖Σ_k G^k‖`` that motivates scaling
the local clipping threshold by ``N^{-1/2}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from phenomena.compression import (
    DenseMomentum,
    DGCState,
    GradientDropping,
    message_bits,
    warmup_density,
    warmup_steps,
)
from phenomena.data.digits import load_digits_split
from phenomena.models.mlp import MLP, MLPConfig

METHODS: tuple[str, ...] = ("dense", "gradient_dropping", "dgc")
"""Exchange rules by name."""
TASKS: tuple[str, ...] = ("digits", "teacher")


@dataclass
class CompressionResult:
    """What :func:`train_compression` measured. Arrays indexed ``[method, seed]`` follow ``methods``
    and the seeds in order; a method's ``sent`` and ``bits`` are ``nan`` where it sends densely."""

    methods: tuple[str, ...]
    layer_sizes: list[int]  # coordinates per parameter tensor, in the order weights, then biases
    layer_names: list[str]
    eval_steps: np.ndarray  # (evals,)
    metric: np.ndarray  # (evals, methods, seeds): test accuracy (digits) or population MSE (teacher)
    train_loss: np.ndarray  # (steps, methods, seeds) mean over workers of the minibatch loss
    density: np.ndarray  # (steps,) the density the compressed methods used at each step
    warmup_end: int  # first step after the warm-up
    sent: np.ndarray  # (methods, layers): mean coordinates sent per worker and step after the warm-up
    bits: np.ndarray  # (methods,): mean message bits per worker and step after the warm-up (logged steps)
    interval_hist: np.ndarray  # (steps,): DGC's transmission intervals after the warm-up, counts by length
    ratio_r: np.ndarray  # (steps, seeds): r = mean_k‖G^k‖ / ‖Σ_k G^k‖ for DGC's workers
    replica_spread: float  # max |θ_k − θ_0| over the workers of every method and seed (0: identical)
    params: list[np.ndarray]  # final parameters of worker 0, per layer (methods, seeds, n)

    def final(self) -> np.ndarray:
        """The last evaluation, ``(methods, seeds)``."""
        return self.metric[-1]

    def index(self, method: str) -> int:
        return self.methods.index(method)

    def interval_median(self) -> float:
        """Median interval between two transmissions of one coordinate by one DGC worker (after the
        warm-up, both ends included); ``nan`` if none was completed."""
        total = self.interval_hist.sum()
        if total == 0:
            return float("nan")
        cdf = np.cumsum(self.interval_hist)
        return float(np.searchsorted(cdf, 0.5 * total))


def _tanh_teacher(dim: int, width: int, seeds: int, generator: torch.Generator, dtype: torch.dtype) -> MLP:
    config = MLPConfig([dim, width, 1], activation="tanh", members=seeds, dtype=dtype, bias=False)
    return MLP(config, generator=generator)


def train_compression(
    *,
    task: str = "digits",
    methods: Sequence[str] = METHODS,
    seeds: int = 1,
    workers: int = 4,
    widths: Sequence[int] = (64, 256, 256, 10),
    batch: int = 16,
    steps: int = 2000,
    lr: float = 0.05,
    momentum: float = 0.9,
    density: float = 0.001,
    warmup_fraction: float = 0.1,
    clip: float | None = 5.0,
    masking: bool = True,
    sample_ratio: float = 0.01,
    eval_every: int = 100,
    bits_every: int = 25,
    n_test: int = 4096,
    teacher_width: int = 32,
    data_generator: torch.Generator,
    init_generator: torch.Generator,
    sample_generator: torch.Generator,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> CompressionResult:
    """Train ``methods × seeds`` clusters of ``workers`` replicas side by side (see the module docstring).

    ``density`` is the fraction each compressed worker sends per layer after the warm-up
    (``1 − s``); ``clip`` the global clipping threshold (dense clips the summed gradient at it,
    DGC each worker's gradient at ``clip·N^{-1/2}``, Gradient Dropping does not clip, as in
    Algorithm 1); ``sample_ratio = 1`` selects by exact top-k.
    """
    methods = tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)}")
    if workers < 1 or seeds < 1 or batch < 1 or steps < 1:
        raise ValueError(f"workers, seeds, batch and steps must be positive, got {workers}, {seeds}, {batch}, {steps}")
    device = torch.device(device)
    n_methods, n = len(methods), workers
    members = n_methods * seeds * n
    widths = list(widths)

    # ---------------------------------------------------------------- data
    if task == "digits":
        split = load_digits_split(0.2, generator=data_generator, dtype=dtype, device=device)
        if widths[0] != split.dim or widths[-1] != split.n_classes:
            raise ValueError(f"digits need widths from {split.dim} to {split.n_classes}, got {widths}")
        x_train, y_train, x_test, y_test = split.x_train, split.y_train, split.x_test, split.y_test
        teacher = None
    else:
        if widths[-1] != 1:
            raise ValueError(f"the teacher task has one output; widths must end in 1, got {widths}")
        teacher = _tanh_teacher(widths[0], teacher_width, seeds, data_generator, dtype).to(device)
        x_test = torch.randn(seeds, n_test, widths[0], generator=data_generator, dtype=dtype).to(device)
        with torch.no_grad():
            y_test = teacher(x_test)[..., 0]  # (seeds, n_test)

    # ---------------------------------------------------------------- model: one init per seed, copied
    base = MLP(MLPConfig(widths, bias=True, members=seeds, dtype=dtype), generator=init_generator)
    model = MLP(MLPConfig(widths, bias=True, members=members, dtype=dtype)).to(device)
    with torch.no_grad():
        for dst, src in zip(list(model.weights) + list(model.biases), list(base.weights) + list(base.biases)):
            rep = src.to(device).unsqueeze(0).unsqueeze(2).expand(n_methods, seeds, n, *src.shape[1:])
            dst.copy_(rep.reshape(dst.shape))
    params = list(model.weights) + list(model.biases)
    names = [f"W{i + 1}" for i in range(len(model.weights))] + [f"b{i + 1}" for i in range(len(model.biases))]
    sizes = [int(p[0].numel()) for p in params]

    states = {
        "dense": DenseMomentum(momentum=momentum, clip=clip, sizes=sizes),
        "gradient_dropping": GradientDropping(momentum=momentum, sample_ratio=sample_ratio, sizes=sizes),
        "dgc": DGCState(momentum=momentum, clip=clip, masking=masking, sample_ratio=sample_ratio, sizes=sizes),
    }
    bounds = np.cumsum([0, *sizes])
    bounds_t = torch.as_tensor(bounds, device=device)
    total_n = int(bounds[-1])
    warm_end = warmup_steps(steps, warmup_fraction)
    evals = list(range(0, steps, eval_every)) + [steps]
    metric = np.full((len(evals), n_methods, seeds), np.nan)
    train_loss = np.zeros((steps, n_methods, seeds))
    dens = np.zeros(steps)
    sent_sum = np.zeros((n_methods, len(sizes)))
    bits_sum, bits_count = np.zeros(n_methods), 0
    hist = np.zeros(steps + 1, dtype=np.int64)
    ratio_r = np.full((steps, seeds), np.nan)
    dgc_at = methods.index("dgc") if "dgc" in methods else None
    last_sent = torch.full((seeds, n, sum(sizes)), -1, dtype=torch.int64, device=device) if dgc_at is not None else None

    def evaluate() -> np.ndarray:
        with torch.no_grad():
            if task == "digits":
                out = model(x_test).view(n_methods, seeds, n, -1, widths[-1])[:, :, 0]
                return (out.argmax(-1) == y_test).to(torch.float64).mean(-1).cpu().numpy()
            xt = x_test.unsqueeze(0).expand(n_methods, *x_test.shape).reshape(n_methods * seeds, *x_test.shape[1:])
            w0 = [p.view(n_methods, seeds, n, *p.shape[1:])[:, :, 0].reshape(n_methods * seeds, *p.shape[1:]) for p in params]
            out = _forward(w0, len(model.weights), xt, model.multipliers)[..., 0]
            err = (out.view(n_methods, seeds, -1) - y_test.unsqueeze(0)) ** 2
            return err.mean(-1).cpu().numpy()

    ev = 0
    for t in range(steps):
        if t == evals[ev]:
            metric[ev] = evaluate()
            ev += 1
        # every (seed, worker) draws its own minibatch; the methods of a seed share it
        if task == "digits":
            idx = torch.randint(0, x_train.shape[0], (seeds, n, batch), generator=sample_generator)
            idx = idx.to(device).unsqueeze(0).expand(n_methods, seeds, n, batch).reshape(members, batch)
            xb, yb = x_train[idx], y_train[idx]
            out = model(xb)
            loss_each = F.cross_entropy(out.reshape(-1, widths[-1]), yb.reshape(-1), reduction="none").view(members, batch).mean(-1)
        else:
            xs = torch.randn(seeds, n, batch, widths[0], generator=sample_generator, dtype=dtype).to(device)
            with torch.no_grad():
                ys = teacher(xs.reshape(seeds, n * batch, widths[0]))[..., 0].view(seeds, n, batch)
            xb = xs.unsqueeze(0).expand(n_methods, seeds, n, batch, widths[0]).reshape(members, batch, widths[0])
            yb = ys.unsqueeze(0).expand(n_methods, seeds, n, batch).reshape(members, batch)
            out = model(xb)[..., 0]
            loss_each = ((out - yb) ** 2).mean(-1)
        grads = torch.autograd.grad(loss_each.sum() / n, params)
        train_loss[t] = loss_each.detach().view(n_methods, seeds, n).mean(-1).cpu().numpy()
        d = warmup_density(t, steps, density, warmup_fraction=warmup_fraction)
        dens[t] = d
        flat = torch.cat([g.reshape(n_methods, seeds, n, -1) for g in grads], -1)  # (methods, seeds, workers, Σn_l)
        after_warmup = t >= warm_end
        log_bits = after_warmup and (t - warm_end) % bits_every == 0
        if log_bits:
            bits_count += 1
        with torch.no_grad():
            for mi, name in enumerate(methods):
                g = flat[mi]
                if name == "dgc":
                    ratio_r[t] = (g.norm(dim=-1).mean(-1) / g.sum(-2).norm(dim=-1)).cpu().numpy()
                ex = states[name].step(g, d, sample_generator)
                for p, lo, hi in zip(params, bounds[:-1], bounds[1:]):
                    p.view(n_methods, seeds, n, -1)[mi].sub_(lr * ex.update[..., None, lo:hi])
                if ex.mask is None or not after_warmup:
                    continue
                coord = ex.sent % total_n
                layer_of = torch.bucketize(coord, bounds_t[1:], right=True)
                sent_sum[mi] += torch.bincount(layer_of, minlength=len(sizes)).double().cpu().numpy() / (seeds * n)
                if log_bits:
                    bits_sum[mi] += float(sum(message_bits(ex.mask[..., lo:hi]).sum().item()
                                              for lo, hi in zip(bounds[:-1], bounds[1:]))) / (seeds * n)
                if name == "dgc":
                    flat_last = last_sent.view(-1)
                    prev = flat_last[ex.sent]
                    done = prev >= warm_end
                    if bool(done.any()):
                        hist += np.bincount((t - prev[done]).cpu().numpy(), minlength=steps + 1)[: steps + 1]
                    flat_last[ex.sent] = t
    metric[ev] = evaluate()

    post = max(1, steps - warm_end)
    sent = sent_sum / post
    for mi, name in enumerate(methods):
        if name == "dense":
            sent[mi] = np.nan
    bits = np.where([m == "dense" for m in methods], np.nan, bits_sum / max(1, bits_count))
    with torch.no_grad():
        spread = max(float((p.view(n_methods, seeds, n, -1) - p.view(n_methods, seeds, n, -1)[:, :, :1]).abs().max()) for p in params)
        final = [p.view(n_methods, seeds, n, -1)[:, :, 0].double().cpu().numpy() for p in params]
    return CompressionResult(
        methods=methods, layer_sizes=sizes, layer_names=names, eval_steps=np.asarray(evals), metric=metric,
        train_loss=train_loss, density=dens, warmup_end=warm_end, sent=sent, bits=bits, interval_hist=hist,
        ratio_r=ratio_r, replica_spread=spread, params=final,
    )


def _forward(weights: list[Tensor], depth: int, x: Tensor, multipliers: Sequence[float]) -> Tensor:
    """A ReLU MLP with per-member weights ``(E, out, in)`` and biases ``(E, out)`` on ``x`` ``(E, batch, in)``."""
    h = x
    for layer in range(depth):
        w, b = weights[layer], weights[depth + layer]
        h = multipliers[layer] * torch.bmm(h, w.transpose(1, 2)) + b.unsqueeze(1)
        if layer < depth - 1:
            h = torch.relu(h)
    return h


def accumulator_after_wait(grad: float, momentum: float, wait: int, *, corrected: bool) -> float:
    """Closed form of a coordinate's accumulator after ``wait`` unsent steps of a constant gradient ``g``
    from zero state: ``g·Σ_{τ=1}^{T}(1 − m^τ)/(1 − m)`` with momentum correction (the discount
    dense momentum applies), ``g·T`` without it (Gradient Dropping)."""
    if wait < 0:
        raise ValueError(f"wait must be >= 0, got {wait}")
    if not corrected:
        return grad * wait
    if momentum == 1.0:
        return grad * wait * (wait + 1) / 2
    return grad * sum((1 - momentum**tau) / (1 - momentum) for tau in range(1, wait + 1))
