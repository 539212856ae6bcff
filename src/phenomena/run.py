"""Start of every chapter: scale, seeds, device, provenance, and the chapter's claims report.

A chapter calls :func:`setup` once, right after its ``parameters`` cell, and ends with
``run.finish()``. Everything a result file needs to say where a number came from (chapter,
scale, seed, device, versions, git revision, wall time) is collected here, so that chapters
cannot forget any of it.
"""

from __future__ import annotations

import inspect
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from . import scales
from .claims import Report
from .contract import THREADS_ENV, project_root, result_path
from .runtime import retain_freed_memory

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")


@lru_cache(maxsize=4)
def git_revision(root: Path | None = None, *, ignore: tuple[str, ...] = ()) -> str:
    """Short git revision of the book, with ``-dirty`` if the working tree has changes outside ``ignore``
    (paths relative to the root: a benchmark's own results file should not mark its next run dirty)."""
    where = str(root or project_root())
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if rev.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *(f":(exclude){p}" for p in ignore)],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device asked for, or the best available one (cuda > mps > cpu).

    An unknown name, or a device this machine lacks, is a ``ValueError`` naming what is valid.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is not None and not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda', got {device!r}")
    name = (device or "auto").strip().lower()
    available = ["cpu"]
    if torch.cuda.is_available():
        available.insert(0, "cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        available.insert(0 if "cuda" not in available else 1, "mps")
    if name == "auto":
        return torch.device(available[0])
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise ValueError(f"unknown device {device!r}; valid devices are: {', '.join(DEVICE_CHOICES)} (or 'cuda:N')")
    if kind not in available:
        raise ValueError(
            f"device {device!r} is not available on this machine; available here: {', '.join(available)} "
            "(or pass device=None to pick the best one)"
        )
    try:
        dev = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"bad device {device!r}: {err}") from None
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    return dev


def set_threads(device: torch.device, threads: int | None = None) -> int:
    """Set torch's CPU threads once per run: ``threads``, else ``$PHENOMENA_THREADS``, else 1.

    The book's models are tiny (a few hundred thousand numbers per op): splitting each op across
    threads buys nothing, and on a busy machine the threads' spin-waits cost ten times the work;
    several chapters (or sweep points) run side by side instead. Does nothing off the CPU.
    Returns the number of threads in use.
    """
    if threads is None:
        raw = os.environ.get(THREADS_ENV)
        try:
            threads = int(raw) if raw else 1
        except ValueError:
            raise ValueError(f"${THREADS_ENV} must be a positive integer, got {raw!r}") from None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer, got {threads!r}")
    if device.type == "cpu":
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices) from one integer."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_label(device: torch.device) -> str:
    """A short human name for a device, e.g. ``cpu`` or ``cuda (NVIDIA H100 80GB HBM3)``."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def versions() -> dict[str, str]:
    """Versions that matter for reproducing a number."""
    from . import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "phenomena": __version__,
    }


@dataclass
class Run:
    """One execution of one chapter: its settings, its provenance and its claims.

    Made by :func:`setup`; chapters use ``run.sizes``, ``run.generator``, ``run.check``,
    ``run.report()`` and ``run.finish()``.
    """

    chapter: str
    scale: str
    seed: int
    device: torch.device
    git_revision: str
    versions: dict[str, str]
    params: dict[str, Any] = field(default_factory=dict)
    threads: int = 1
    resolved_sizes: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    started_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    claims: Report = field(init=False)

    def __post_init__(self) -> None:
        self.claims = Report(chapter=self.chapter, scale=self.scale)

    def provenance(self) -> str:
        """The one-line header every chapter prints."""
        return (
            f"[phenomena] {self.chapter} | scale={self.scale} | seed={self.seed} | "
            f"device={device_label(self.device)} | torch {self.versions['torch']} | git {self.git_revision}"
        )

    def sizes(
        self,
        *,
        smoke: Mapping[str, Any],
        default: Mapping[str, Any],
        full: Mapping[str, Any],
        **overrides: Any,
    ) -> SimpleNamespace:
        """This chapter's sizes at the run's scale (see :func:`phenomena.scales.preset`).

        A chapter parameter named like a size overrides it when it is not ``None`` (the
        parameters cell's ``members = None  # None: the scale's preset``), so the notebook does
        not repeat its knobs here; explicit ``overrides`` win over both. The sizes that resolved
        are recorded in the results file, so a result says which ``p``, ``steps`` or ``members`` ran.
        """
        keys = set(smoke) | set(default) | set(full)
        from_params = {k: v for k, v in self.params.items() if k in keys and v is not None}
        size = scales.preset(self.scale, smoke=smoke, default=default, full=full, **{**from_params, **overrides})
        self.resolved_sizes.update(_jsonable(vars(size)))
        return size

    def generator(self, stream: int = 0, device: torch.device | str | None = None) -> torch.Generator:
        """A torch generator seeded from the run's seed and a stream number.

        Separate streams (data, init, noise) keep one part of an experiment from shifting the
        random numbers of another when a knob changes.
        """
        gen = torch.Generator(device=device or "cpu")
        gen.manual_seed(self.seed * 1_000_003 + stream)
        return gen

    def check(self, name: str, measured: Any, **kwargs: Any):
        """Record a claim (see :meth:`phenomena.claims.Report.check`)."""
        return self.claims.check(name, measured, **kwargs)

    def report(self):
        """The claims table, rounded so that reruns print the same text."""
        return self.claims.table()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def result_path(self) -> Path:
        return result_path(self.chapter, self.scale, self.seed)

    def finish(self) -> Path:
        """Write the results file (atomically) and raise if any claim failed.

        Returns the path written. Raises :class:`phenomena.claims.ClaimsFailed` listing every
        failed claim, after the file is written, so that the scoreboard shows the failure.
        """
        seconds = self.seconds
        record = {
            "chapter": self.chapter,
            "scale": self.scale,
            "seed": self.seed,
            "device": device_label(self.device),
            "versions": self.versions,
            "git_revision": self.git_revision,
            "started_at": self.started_at,
            "seconds": round(seconds, 3),
            "params": self.params,
            "sizes": self.resolved_sizes,
            "threads": self.threads,
        }
        path = self.result_path()
        self.claims.write(path, record)
        print(f"[phenomena] {self.chapter}: {self.claims.summary()} | {seconds:.1f} s on {device_label(self.device)}")
        print(f"[phenomena] results written to {path}")
        self.claims.raise_if_failed()
        return path


def setup(
    scale: str | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    *,
    chapter: str = "scratch",
    params: Mapping[str, Any] | None = None,
    threads: int | None = None,
    quiet: bool = False,
) -> Run:
    """Resolve the scale, seed everything, pick the device, set the threads and print the provenance line.

    ``scale=None`` takes ``$PHENOMENA_SCALE`` or ``"default"``; ``device=None`` picks
    cuda > mps > cpu; ``threads`` (CPU math threads) defaults to ``$PHENOMENA_THREADS`` or 1
    (:func:`set_threads`). The chapter's knobs are recorded in the results file, so that a
    result and a sweep's table say what ran: by default every variable of the chapter's
    ``parameters`` cell, read from the caller's namespace (:func:`chapter_parameters`);
    ``params`` replaces that. Bad values raise ``ValueError``/``TypeError`` naming the valid choices.
    """
    name = scales.resolve(scale)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be a non-negative integer, got {seed!r} ({type(seed).__name__})")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if not isinstance(chapter, str) or not chapter:
        raise ValueError("chapter must be the chapter's slug, e.g. 'saxe-deep-linear'")
    dev = pick_device(device)
    if dev.type == "cpu":
        retain_freed_memory()  # page faults on fresh activations otherwise dominate small models (runtime.py)
    seed_everything(int(seed))
    inline_figures()
    if params is None:
        params = chapter_parameters(chapter, inspect.currentframe().f_back.f_globals)  # type: ignore[union-attr]
    run = Run(
        chapter=chapter,
        scale=name,
        seed=int(seed),
        device=dev,
        git_revision=git_revision(project_root()),
        versions=versions(),
        params=_jsonable(dict(params)),
        threads=set_threads(dev, threads),
    )
    if not quiet:
        print(run.provenance())
    return run


def inline_figures() -> bool:
    """In a Jupyter kernel, draw figures into the notebook even when ``$MPLBACKEND`` says ``Agg``.

    A kernel started with ``MPLBACKEND=Agg`` in its environment (test runs, headless builds) gets
    a backend that never shows a figure, so the executed notebook, and the book built from it,
    would have no figures at all. The inline backend renders with Agg too, needs no display, and
    puts each figure into its cell's output. Outside a kernel (a script, a plain Python shell)
    nothing changes. Returns whether the backend was switched.
    """
    shell = sys.modules.get("IPython")
    shell = shell.get_ipython() if shell is not None else None
    if shell is None or not hasattr(shell, "kernel"):
        return False
    import matplotlib

    if matplotlib.get_backend().lower() != "agg":
        return False
    shell.run_line_magic("matplotlib", "inline")
    return True


def chapter_parameters(chapter: str, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The values in ``namespace`` of the knobs of ``chapter``'s ``parameters`` cell (reserved ones excluded).

    The knob names come from the stored notebook (found through ``_toc.yml``). A chapter opened
    outside the book (downloaded alone, in Colab) has no ``_toc.yml`` to find it by: then every
    plain value of the namespace (numbers, strings, lists, ``None``) counts, which is what the
    parameters cell holds when ``setup`` runs right after it.
    """
    from .chapters import ChapterError, get
    from .contract import RESERVED

    try:
        names = [n for n in get(chapter).parameters if n not in RESERVED]
    except (ChapterError, OSError, ValueError):
        names = [
            n for n, v in namespace.items()
            if not n.startswith("_") and n not in RESERVED and n not in ("In", "Out") and _plain(v)
        ]
    return {n: namespace[n] for n in names if n in namespace}


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    return False


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, (np.generic,)):
            value = value.item()
        if isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return out
