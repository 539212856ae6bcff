"""Ensemble engine vs a per-model loop: model-steps per second, and GFLOP/s against the machine's sgemm.

Small case (the issue's): 64 MLPs 16→32→32→1 (ReLU, biases) on 128 samples, full-batch SGD,
100 steps, trained (a) one model at a time with ``torch.optim.SGD`` and (b) all at once by
``phenomena.ensemble`` (a natively batched ``MLP``). Wide case: the same at width 256, reported
as achieved GFLOP/s (:func:`flops_per_model_step`) and as a fraction of this machine's float32
matmul rate (2048², measured in the same run), next to the fraction the step's matrix products
reach alone (:func:`gemm_runner`), the ceiling of the step. ``--compile`` (``make bench``) also
races the engine with every whole step compiled, ``fit(compile=True)``, at both sizes.

Timing: the contenders of each comparison take turns and each keeps its best call (:func:`race`),
so that the shared host's bursts of contention cannot favour one side. The process keeps freed
memory in the heap, as :func:`phenomena.setup` does for the chapters (``--system-malloc`` not).

    python benchmarks/ensemble.py            # full run
    python benchmarks/ensemble.py --quick    # a few seconds
    python benchmarks/ensemble.py --device cuda --compile

The last line printed is one JSON object; it is also appended to ``benchmarks/results/ensemble.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from phenomena import ensemble
from phenomena.models import MLP, MLPConfig
from phenomena.run import device_label, git_revision, pick_device
from phenomena.runtime import allocator_status, retain_freed_memory

RESULTS = Path(__file__).resolve().parent / "results" / "ensemble.jsonl"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def race(contenders: dict[str, tuple[Callable[[], None], int]], device: torch.device, rounds: int) -> dict[str, float]:
    """Best wall time (seconds) of each contender's call, the contenders taking turns.

    ``contenders`` maps a name to ``(fn, calls per round)``. Every round calls each contender that
    many times in turn, after one untimed warm-up call each. The host this runs on is shared, and
    a burst of contention slows whatever runs during it: taking turns exposes every contender to
    the same bursts, and the best call of each is its speed on a quiet machine (noise only ever
    slows a run). Timing one contender in a block and the other later lets a burst land on one.
    """
    for fn, _ in contenders.values():
        fn()
    sync(device)
    best = {name: float("inf") for name in contenders}
    for _ in range(rounds):
        for name, (fn, calls) in contenders.items():
            for _ in range(calls):
                start = time.perf_counter()
                fn()
                sync(device)
                best[name] = min(best[name], time.perf_counter() - start)
    return best


def data(device: torch.device, samples: int = 128, d: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(samples, d, generator=g).to(device), torch.randn(samples, 1, generator=g).to(device)


def loop_trainer(members: int, width: int, steps: int, device: torch.device, lr: float = 0.01) -> Callable[[], None]:
    """Train ``members`` plain nn.Sequential MLPs one after another with ``torch.optim.SGD``."""
    x, y = data(device)
    models = [
        nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1)).to(
            device
        )
        for _ in range(members)
    ]

    def train_all() -> None:
        for model in models:
            opt = torch.optim.SGD(model.parameters(), lr=lr)
            for _ in range(steps):
                opt.zero_grad(set_to_none=True)
                loss = (model(x) - y).pow(2).mean()
                loss.backward()
                opt.step()

    return train_all


def engine_trainer(members: int, width: int, steps: int, device: torch.device, lr: float = 0.01,
                   compile: bool = False) -> Callable[[], None]:
    """Train all members as one batched MLP with the ensemble engine.

    ``compile=True`` runs every step (loss, gradient and update) as one ``torch.compile``d graph,
    ``fit(compile=True)``; the warm-up call of :func:`race` pays the compilation. The returned
    function's ``fallback_reason()`` says why it ran eagerly instead, if it did.
    """
    x, y = data(device)
    net = MLP(MLPConfig([16, width, width, 1], bias=True, members=members), generator=torch.Generator().manual_seed(0))
    net = net.to(device)
    lrs = torch.full((members,), lr, device=device)
    fallback: list[str | None] = [None]

    def loss() -> torch.Tensor:
        return (net(x) - y).pow(2).mean(dim=(1, 2))

    def train_all() -> None:
        opt = ensemble.SGD(net.parameters(), lrs)
        history = ensemble.fit(opt, loss, steps, check_every=steps if device.type == "cuda" else 1, compile=compile)
        fallback[0] = history.compile_fallback

    train_all.fallback_reason = lambda: fallback[0]  # type: ignore[attr-defined]
    return train_all


def sgemm_runner(device: torch.device, n: int = 2048) -> tuple[Callable[[], None], float]:
    """One call of this machine's float32 matmul on large square products, and its FLOPs."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    reps = 10 if device.type == "cuda" else 3

    def run() -> None:
        for _ in range(reps):
            torch.mm(a, b)

    return run, 2.0 * n**3 * reps


def flops_per_model_step(width: int, samples: int = 128, d: int = 16) -> float:
    """FLOPs of one SGD step of one 16→width→width→1 MLP: 2 per weight per sample for the forward
    product, 2 for the weight gradient, and 2 for the gradient to the layer's input, which the
    first layer does not need (nothing below it learns). Biases, ReLUs and the update (one or two
    FLOPs per element, not per sample) are left out, as GEMM benchmarks do."""
    return samples * (4.0 * d * width + 6.0 * (width * width + width))


def gemm_runner(members: int, width: int, steps: int, device: torch.device) -> tuple[Callable[[], None], float]:
    """The wide step's matrix products alone, chained as in the step, ``steps`` times, and their FLOPs.

    The engine's step (feature-major, :mod:`phenomena.models.mlp`) with everything but its matrix
    products removed: no ReLU or its mask, no loss, no bias gradient, no update, no autograd. Each
    product takes the fresh output of the one before, as in the step, so the caches see what they
    see there. It does the FLOPs :func:`flops_per_model_step` counts, and its rate is the ceiling
    of the engine's on this machine with these kernels.
    """
    x, _ = data(device)
    g = torch.Generator().manual_seed(0)
    w1, w2, w3 = (torch.randn(members, o, i, generator=g).to(device) / i**0.5
                  for o, i in ((width, x.shape[1]), (width, width), (1, width)))
    b1, b2, b3 = (torch.zeros(members, o, 1, device=device) for o in (width, width, 1))
    target = torch.randn(members, 1, x.shape[0], generator=g).to(device)

    def run() -> None:
        for _ in range(steps):
            h1 = torch.addmm(b1.reshape(-1, 1), w1.reshape(-1, w1.shape[-1]), x.T).view(members, width, -1)
            h2 = torch.baddbmm(b2, w2, h1)
            out = torch.baddbmm(b3, w3, h2)
            d3 = out - target  # the loss's gradient, up to a constant: one pass over (members, 1, samples)
            torch.bmm(d3, h2.transpose(1, 2))  # read-out weight gradient
            d2 = torch.mul(w3.transpose(1, 2), d3)  # gradient to the last hidden layer (outer product)
            torch.bmm(d2, h1.transpose(1, 2))  # hidden weight gradient
            d1 = torch.bmm(w2.transpose(1, 2), d2)  # gradient to the first hidden layer
            d1.reshape(-1, d1.shape[-1]).mm(x)  # first-layer weight gradient

    return run, members * steps * flops_per_model_step(width, samples=x.shape[0], d=x.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and models: a few seconds")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the engine with each whole step under torch.compile (make bench does)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc as it is, instead of what phenomena.setup() does (runtime.py)")
    parser.add_argument("--no-save", action="store_true", help="do not append to benchmarks/results/")
    args = parser.parse_args()
    device = pick_device(args.device)
    if device.type == "cpu" and not args.system_malloc:
        retain_freed_memory()  # as phenomena.setup() does for every chapter; the loop runs under it too
    members, steps = (64, 20) if args.quick else (64, 100)
    wide_steps = 5 if args.quick else steps  # "the same at width 256": the small case's 100 steps

    # small case: the loop and the engine take turns; loop calls are long, so one per round
    loop_members = members if not args.quick else 16
    contenders = {"loop": (loop_trainer(loop_members, 32, steps, device), 1),
                  "engine": (engine_trainer(members, 32, steps, device), 3)}
    if args.compile:  # the warm-up call of race() pays the compilation
        contenders["compiled"] = (engine_trainer(members, 32, steps, device, compile=True), 3)
    small = race(contenders, device, rounds=2 if args.quick else 3)
    loop, engine = loop_members * steps / small["loop"], members * steps / small["engine"]
    compiled = members * steps / small["compiled"] if args.compile else None
    compile_fallback = contenders["compiled"][0].fallback_reason() if args.compile else None
    # wide case: the engine at width 256, its matrix products alone, and the sgemm reference take turns
    sgemm, sgemm_flops = sgemm_runner(device)
    gemms, gemm_flops = gemm_runner(members, 256, wide_steps, device)
    # sgemm's calls are short: three a round give its best more chances at a quiet moment, so a burst
    # of contention cannot lower the reference and flatter the fractions
    wide_contenders = {"wide": (engine_trainer(members, 256, wide_steps, device), 1), "gemms": (gemms, 1),
                       "sgemm": (sgemm, 3)}
    if args.compile:
        wide_contenders["wide compiled"] = (engine_trainer(members, 256, wide_steps, device, compile=True), 1)
    wide_times = race(wide_contenders, device, rounds=2 if args.quick else 6)
    wide = members * wide_steps / wide_times["wide"]
    peak = sgemm_flops / wide_times["sgemm"] / 1e9
    gemm_gflops = gemm_flops / wide_times["gemms"] / 1e9

    def engine_gflops(seconds: float) -> float:
        return members * wide_steps * flops_per_model_step(256) / seconds / 1e9

    wide_gflops = engine_gflops(wide_times["wide"])
    wide_compiled_gflops = engine_gflops(wide_times["wide compiled"]) if args.compile else None
    record = {
        "benchmark": "ensemble",
        "case": "64 MLPs 16-32-32-1, 128 samples, full-batch SGD",
        "quick": args.quick,
        "steps": steps,
        "loop_steps_per_s": round(loop, 1),
        "ensemble_steps_per_s": round(engine, 1),
        "speedup": round(engine / loop, 1),
        "wide_width": 256,
        "wide_steps": wide_steps,
        "wide_steps_per_s": round(wide, 1),
        "wide_gflops": round(wide_gflops, 2),
        "sgemm_gflops": round(peak, 2),
        "wide_fraction_of_sgemm": round(wide_gflops / peak, 3),
        "wide_gemms_fraction_of_sgemm": round(gemm_gflops / peak, 3),
        "wide_compiled_fraction_of_sgemm": None if wide_compiled_gflops is None else round(wide_compiled_gflops / peak, 3),
        "flops_per_model_step": flops_per_model_step(256),
        "compiled_ensemble_steps_per_s": None if compiled is None else round(compiled, 1),
        "compiled_speedup": None if compiled is None else round(compiled / loop, 1),
        "compile_fallback": compile_fallback,
        "device": device_label(device),
        "threads": torch.get_num_threads(),
        "allocator": allocator_status(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "git": git_revision(ignore=("benchmarks/results",)),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if not args.no_save:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    print(f"loop: {loop:,.0f} model-steps/s | engine: {engine:,.0f} model-steps/s | speedup {engine / loop:.1f}x")
    if compiled is not None:
        why = f" (fell back to eager: {compile_fallback})" if compile_fallback else ""
        print(f"compiled engine: {compiled:,.0f} model-steps/s | speedup {compiled / loop:.1f}x{why}")
    print(f"width 256: {wide_gflops:.1f} GFLOP/s = {wide_gflops / peak:.0%} of sgemm ({peak:.1f} GFLOP/s); "
          f"its matrix products alone: {gemm_gflops / peak:.0%}")
    if wide_compiled_gflops is not None:
        print(f"width 256 compiled: {wide_compiled_gflops:.1f} GFLOP/s = {wide_compiled_gflops / peak:.0%} of sgemm")
    print(json.dumps(record))


if __name__ == "__main__":
    main()
