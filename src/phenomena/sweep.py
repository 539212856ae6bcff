"""Sweeps: one chapter over a grid of parameters and seeds, on Dask, resumable, gathered into one table.

A sweep is the product of the ``-p NAME V1 V2 ...`` values and the seeds, at one scale. Every
point of the grid is one papermill execution of the chapter, in its own folder, on a Dask
worker: an embedded :class:`~distributed.LocalCluster` by default, or the workers of an existing
Dask scheduler (``dask scheduler`` / ``dask worker``, or dask-jobqueue on Slurm). The points are
independent, so the sweep trusts the file system, not the scheduler, with what is done:

- a point is *finished* when its results JSON exists and is complete (the chapter writes it
  atomically in ``run.finish()``); rerunning the same command skips finished points, so a sweep
  killed at any moment (Ctrl-C, a killed worker, a lost node) loses no finished point;
- a point that raised (or whose worker died too often) writes ``error.txt`` and
  ``traceback.txt`` into its folder, does not stop the others, and is tried again on resume;
- nothing runs before the whole grid is validated against the chapter's ``parameters`` cell.

Layout of a sweep folder ``DIR``::

    DIR/sweep.json                          the grid: chapter, scale, parameters, seeds (read by gather)
    DIR/runs/<point-id>/point.json          the point's settings, worker, wall time
    DIR/runs/<point-id>/<chapter>.ipynb     the executed notebook
    DIR/runs/<point-id>/<chapter>/<scale>-seed<seed>.json   the chapter's results file
    DIR/runs/<point-id>/kernel.log          the kernel process's own output (start-up warnings, a crash)
    DIR/runs/<point-id>/error.txt, traceback.txt            only for a point that failed
    DIR/table.parquet, DIR/table.csv        one row per point and claim (see :func:`gather`)
    DIR/summary.png                         each claim's measured value against the swept parameter

Point ids are the first 12 hex digits of a SHA-256 of (chapter, parameters, seed, scale), so the
same point has the same folder in every sweep that contains it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
import shlex
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from . import scales
from .chapters import Chapter, ChapterError, get, load, parse_value
from .claims import STATUSES, write_json_atomic
from .contract import ROOT_ENV, project_root

SWEEP_FILE = "sweep.json"
POINT_FILE = "point.json"
ERROR_FILE = "error.txt"
TRACEBACK_FILE = "traceback.txt"
KERNEL_LOG = "kernel.log"
TABLE_PARQUET = "table.parquet"
TABLE_CSV = "table.csv"
FIGURE = "summary.png"
FORMAT = 1
RESERVED = {"scale": "--scale", "seed": "--seeds", "device": "--device"}
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class SweepError(ChapterError):
    """A sweep that cannot start (bad grid, unreachable scheduler, missing folder); the message says why."""


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep; finished points are kept and the message says how to resume."""


# --------------------------------------------------------------------------------------------- grid
def point_id(chapter: str, params: Mapping[str, Any], seed: int, scale: str) -> str:
    """Stable id of one point: a hash of (chapter, parameters, seed, scale), 12 hex digits.

    Parameters are hashed after validation (``-p lr 1`` and ``-p lr 1.0`` are the same point of
    a float knob), by name, so their order on the command line does not matter.
    """
    key = json.dumps(
        {"chapter": chapter, "params": dict(params), "seed": int(seed), "scale": scale},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    """One execution of the grid: the chapter at one scale, one seed and one value per swept parameter."""

    chapter: str
    scale: str
    seed: int
    params: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        return point_id(self.chapter, self.params, self.seed, self.scale)

    def describe(self) -> str:
        """``lr=0.004, seed=1``: how progress messages name the point."""
        return ", ".join([*(f"{k}={v!r}" for k, v in self.params.items()), f"seed={self.seed}"])


@dataclass(frozen=True)
class Grid:
    """A validated sweep: the chapter, the scale, the values of every swept parameter and the seeds.

    Saved as ``DIR/sweep.json`` so that :func:`gather` knows which points and parameters make
    the sweep. ``params`` keeps the command line's order (the first is the summary figure's x axis).
    """

    chapter: str
    chapter_path: str
    root: str
    scale: str
    seeds: tuple[int, ...]
    params: dict[str, list[Any]] = field(hash=False)
    device: str | None = None
    threads: int = 1
    timeout: float | None = None

    def points(self) -> list[Point]:
        """Every point, parameters varying slowest in command-line order, seeds fastest."""
        names = list(self.params)
        combos = itertools.product(*(self.params[n] for n in names)) if names else [()]
        return [
            Point(self.chapter, self.scale, seed, dict(zip(names, combo, strict=True)))
            for combo in combos
            for seed in self.seeds
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chapter": self.chapter,
            "chapter_path": self.chapter_path,
            "root": self.root,
            "scale": self.scale,
            "seeds": list(self.seeds),
            "params": self.params,
            "device": self.device,
            "threads": self.threads,
            "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grid:
        return cls(
            chapter=data["chapter"],
            chapter_path=data["chapter_path"],
            root=data.get("root", ""),
            scale=data["scale"],
            seeds=tuple(int(s) for s in data["seeds"]),
            params={k: list(v) for k, v in data["params"].items()},
            device=data.get("device"),
            threads=int(data.get("threads", 1)),
            timeout=data.get("timeout"),
        )

    def command(self, out: Path | None = None, extra: Sequence[str] = ()) -> str:
        """The command line that runs (or resumes) this sweep."""
        words = ["python", "-m", "phenomena", "sweep", self.chapter]
        for name, values in self.params.items():
            words += ["-p", name, *(_cli_value(v) for v in values)]
        words += ["--seeds", *map(str, self.seeds), "--scale", self.scale]
        if self.device:
            words += ["--device", self.device]
        if self.threads != 1:
            words += ["--threads", str(self.threads)]
        if self.timeout:
            words += ["--timeout", f"{self.timeout:g}"]
        words += list(extra)
        if out is not None:
            words += ["--out", str(out)]
        return shlex.join(words)

    def default_out(self) -> Path:
        """``<root>/sweeps/<chapter>-<scale>-<parameters>-<hash>``: the same command finds the same folder."""
        spec = json.dumps({"params": self.params, "seeds": list(self.seeds)}, sort_keys=True)
        digest = hashlib.sha256(f"{self.chapter}|{self.scale}|{spec}".encode()).hexdigest()[:6]
        names = "-".join(re.sub(r"[^A-Za-z0-9_]+", "", n) for n in self.params) or "seeds"
        return Path(self.root) / "sweeps" / f"{self.chapter}-{self.scale}-{names}-{digest}"


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value).replace(" ", "")


def make_grid(
    chapter: str | Chapter,
    params: Sequence[Sequence[str]] | None,
    seeds: Sequence[int] | None,
    scale: str | None = None,
    *,
    device: str | None = None,
    threads: int = 1,
    timeout: float | None = None,
    root: Path | None = None,
) -> Grid:
    """Validate a sweep's command line against the chapter and return its :class:`Grid`.

    ``params`` is a list of ``[NAME, V1, V2, ...]`` as typed after ``-p`` (strings, parsed as
    Python literals) or already-parsed values. Raises :class:`~phenomena.chapters.ChapterError`
    naming the problem and the valid choices: unknown chapter or parameter, a value of the wrong
    type, a parameter given twice, a repeated value, no values, no seeds.
    """
    root = Path(root) if root else project_root()
    ch = chapter if isinstance(chapter, Chapter) else get(chapter, root)
    scale = scales.resolve(scale)
    for required in ("scale", "seed", "device"):
        if required not in ch.parameters:
            raise SweepError(f"chapter {ch.slug!r} lacks the {required!r} knob in its parameters cell")
    knobs = [n for n in ch.parameters if n not in RESERVED]
    grid: dict[str, list[Any]] = {}
    for spec in params or []:
        if not spec:
            raise SweepError(f"-p needs a parameter name and its values; parameters of {ch.slug!r}: {', '.join(knobs)}")
        name, raw = str(spec[0]), list(spec[1:])
        if name in RESERVED:
            raise SweepError(
                f"{name!r} is set with {RESERVED[name]}, not with -p "
                f"(e.g. --seeds 0 1 2, --scale smoke); parameters of {ch.slug!r}: {', '.join(knobs)}"
            )
        if name not in ch.parameters:
            raise SweepError(
                f"chapter {ch.slug!r} has no parameter {name!r}; its parameters are: {', '.join(knobs) or '(none)'}"
            )
        if name in grid:
            raise SweepError(f"parameter {name!r} is given twice; give all its values after one -p {name}")
        if not raw:
            p = ch.parameters[name]
            raise SweepError(
                f"empty grid: -p {name} has no values; give one or more, e.g. -p {name} "
                f"{_cli_value(p.default) if p.default is not None else 'V1 V2'}"
            )
        values: list[Any] = []
        for text in raw:
            value = parse_value(text) if isinstance(text, str) else text
            (coerced,) = ch.validate({name: value}).values()
            if any(_same(coerced, v) for v in values):
                raise SweepError(f"parameter {name!r} lists the value {coerced!r} twice")
            values.append(coerced)
        grid[name] = values
    if seeds is None:
        seeds = [0]
    seeds = list(seeds)
    if not seeds:
        raise SweepError("empty grid: --seeds has no values; give one or more seeds, e.g. --seeds 0 1 2")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"seeds are non-negative integers, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SweepError(f"--threads is the number of torch threads per point, at least 1; got {threads!r}")
    if timeout is not None and not timeout > 0:
        raise SweepError(f"--timeout is a number of seconds per cell, above 0; got {timeout!r}")
    return Grid(
        chapter=ch.slug,
        chapter_path=str(Path(ch.path).resolve()),
        root=str(root.resolve()),
        scale=scale,
        seeds=tuple(seeds),
        params=grid,
        device=device,
        threads=threads,
        timeout=timeout,
    )


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


# ------------------------------------------------------------------------------------- point files
def run_dir(out: Path, point: Point) -> Path:
    return Path(out) / "runs" / point.id


def result_path(out: Path, point: Point) -> Path:
    """Where the chapter writes this point's results (``$PHENOMENA_RESULTS/<chapter>/<scale>-seed<seed>.json``)."""
    return run_dir(out, point) / point.chapter / f"{point.scale}-seed{point.seed}.json"


def notebook_path(out: Path, point: Point) -> Path:
    return run_dir(out, point) / f"{point.chapter}.ipynb"


def read_result(path: Path, point: Point | None = None) -> dict[str, Any] | None:
    """The results record at ``path`` if it is complete (and belongs to ``point``), else ``None``."""
    try:
        rec = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(rec, dict) and rec.get("complete") is True and isinstance(rec.get("claims"), list)):
        return None
    if point is not None and (
        rec.get("chapter") != point.chapter or rec.get("scale") != point.scale or rec.get("seed") != point.seed
    ):
        return None
    return rec


def is_finished(out: Path, point: Point) -> bool:
    """Whether the point's results file exists and is complete: the only test of "done"."""
    return read_result(result_path(out, point), point) is not None


def write_failure(folder: Path, error: str, trace: str) -> None:
    """``error.txt`` (one line, and how to look further) and ``traceback.txt`` for a failed point."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(folder / TRACEBACK_FILE, trace.rstrip() + "\n")
    _write_text_atomic(folder / ERROR_FILE, error.strip() + "\n")


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def notebook_traceback(path: Path) -> str | None:
    """The traceback of the cell that raised in an executed notebook (colour codes removed), if any."""
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if output.get("output_type") == "error":
                lines = output.get("traceback") or [f"{output.get('ename')}: {output.get('evalue')}"]
                return _ANSI.sub("", "\n".join(lines))
    return None


def thread_env(threads: int) -> dict[str, str]:
    """Environment for one point's kernel: ``threads`` math threads (torch reads ``OMP_NUM_THREADS``)."""
    return {name: str(threads) for name in THREAD_VARIABLES}


# ------------------------------------------------------------------------------ the task on a worker
def run_point(task: Mapping[str, Any]) -> dict[str, Any]:
    """Execute one point on a Dask worker; a failing chapter is recorded, never raised.

    ``task`` holds plain data (paths, scale, seed, parameters), so that any worker that sees
    the same file system and has this package installed can run it. The kernel gets its
    own results folder (``$PHENOMENA_RESULTS`` = the point's folder) and ``threads`` math threads.
    """
    import socket

    started = time.time()
    out = Path(task["out"])
    point = Point(task["chapter"], task["scale"], int(task["seed"]), dict(task["params"]))
    folder = run_dir(out, point)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "id": point.id,
        "chapter": point.chapter,
        "scale": point.scale,
        "seed": point.seed,
        "params": point.params,
        "device": task.get("device"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",
    }
    if is_finished(out, point):  # e.g. by the kernel of a worker that died just after the chapter finished
        try:
            earlier = json.loads((folder / POINT_FILE).read_text())
        except (OSError, ValueError):
            earlier = meta
        if earlier.get("status") != "finished":
            write_json_atomic(folder / POINT_FILE, {**earlier, "status": "finished"})
        return {"id": point.id, "status": "finished", "seconds": 0.0, "host": meta["host"]}
    for name in (ERROR_FILE, TRACEBACK_FILE, KERNEL_LOG):
        (folder / name).unlink(missing_ok=True)
    write_json_atomic(folder / POINT_FILE, meta)
    error: str | None = None
    try:
        from .execute import execute

        chapter = load(Path(task["chapter_path"]))
        threads = int(task.get("threads", 1))
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        ex = execute(
            chapter,
            scale=point.scale,
            seed=point.seed,
            device=task.get("device"),
            params=point.params,
            output=notebook_path(out, point),
            results=folder,
            timeout=task.get("timeout"),
            env={**thread_env(threads), ROOT_ENV: str(task.get("root") or project_root())},
            kernel_log=folder / KERNEL_LOG,
        )
        if not is_finished(out, point):
            error = ex.error or (
                "the chapter finished without writing a complete results file (does it end with run.finish()?)"
            )
            write_failure(folder, error, notebook_traceback(ex.notebook) or error)
    except Exception as err:  # noqa: BLE001 - anything that goes wrong is this point's failure
        error = f"{type(err).__name__}: {err}"
        write_failure(folder, error, traceback.format_exc())
    seconds = time.time() - started
    meta.update(
        status="error" if error else "finished",
        wall_seconds=round(seconds, 3),
        finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    write_json_atomic(folder / POINT_FILE, meta)
    return {"id": point.id, "status": meta["status"], "error": error, "seconds": seconds, "host": meta["host"]}


def _worker_check(chapter_path: str, out: str) -> dict[str, Any]:
    """What a worker sees: the chapter notebook and the sweep folder (run on every worker first)."""
    import socket

    return {
        "host": socket.gethostname(),
        "chapter": os.path.isfile(chapter_path),
        "out": os.path.isdir(out) and os.access(out, os.W_OK),
    }


# ------------------------------------------------------------------------------------- the engine
@dataclass
class Outcome:
    """How a sweep ended: points finished (before and now), failed, not run, and the table's path."""

    total: int
    skipped: int
    finished: int
    failed: list[str]
    pending: int
    out: Path
    seconds: float

    @property
    def ok(self) -> bool:
        return not self.failed and self.pending == 0


@contextmanager
def dask_client(jobs: int | None, scheduler: str | None, threads: int = 1) -> Iterator[Any]:
    """A Dask client: on ``scheduler`` if given, else on an embedded LocalCluster of ``jobs`` workers.

    Embedded workers are processes with one thread each (a point runs in its own kernel
    process anyway), with one math thread per point (``threads``).
    """
    import logging

    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler)  # waits up to Dask's distributed.comm.timeouts.connect
        except (OSError, TimeoutError, ValueError) as err:
            raise SweepError(
                f"cannot reach the Dask scheduler at {scheduler}: {err}. Start one with `dask scheduler` "
                "and workers with `dask worker ADDRESS --nthreads 1` (see the README, 'Sweeping a chapter')"
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    # Ctrl-C in a terminal reaches every process of the group: the worker processes are started
    # with SIGINT ignored (inherited), so that only this process handles it and stops them cleanly.
    with _sigint_ignored():
        cluster = LocalCluster(
            n_workers=jobs,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
            memory_limit=0,  # the points' kernels are separate processes; Dask cannot see their memory
            env=thread_env(threads),
        )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def default_jobs(todo: int, threads: int = 1) -> int:
    """Workers of the embedded cluster: one per ``threads`` CPU cores, no more than there are points.

    Counts the cores this process may use (a Slurm job or a container may get fewer than the machine has).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(todo, cores // max(threads, 1)))


def save_grid(out: Path, grid: Grid, command: str) -> None:
    """Write ``DIR/sweep.json`` (the grid and the command that resumes it)."""
    path = Path(out) / SWEEP_FILE
    created = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if path.is_file():
        try:
            created = json.loads(path.read_text()).get("created_at", created)
        except ValueError:
            pass
    write_json_atomic(
        path,
        {**grid.to_json(), "command": command, "created_at": created, "updated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
    )


def load_grid(out: Path) -> Grid:
    """The grid saved in ``DIR/sweep.json``; a clear error if ``DIR`` is not a sweep folder."""
    path = Path(out) / SWEEP_FILE
    if not path.is_file():
        raise SweepError(f"{out} is not a sweep folder: it has no {SWEEP_FILE} (made by `python -m phenomena sweep`)")
    try:
        data = json.loads(path.read_text())
        return Grid.from_json(data)
    except (ValueError, KeyError, TypeError) as err:
        raise SweepError(f"{path} is not a valid sweep file: {err}") from None


def run_sweep(
    grid: Grid,
    out: Path,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    command: str | None = None,
    stream: TextIO | None = None,
) -> Outcome:
    """Run every unfinished point of ``grid`` into ``out`` on Dask, then gather the table.

    Finished points are skipped. A failed point is recorded in its folder and the sweep goes
    on. Ctrl-C (or SIGTERM) cancels the points not started, stops the embedded cluster, writes
    the table of what is finished and raises :class:`SweepInterrupted` with the command that resumes.
    A second sweep into the same folder while this one runs is refused (:func:`sweep_lock`).
    """
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with sweep_lock(out):
        return _run_sweep(grid, out, jobs=jobs, scheduler=scheduler, progress=progress,
                          command=command or grid.command(out), stream=stream or sys.stderr)


@contextmanager
def sweep_lock(out: Path) -> Iterator[None]:
    """Hold ``DIR/.sweep.lock`` while a sweep runs, so that a second sweep into the same folder
    refuses to start instead of running the same points twice. The operating system releases
    the lock when the process ends, however it ends."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    path = Path(out) / ".sweep.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise SweepError(f"another sweep ({holder}) is running in {out}; wait for it, or stop it") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_sweep(
    grid: Grid, out: Path, *, jobs: int | None, scheduler: str | None, progress: bool, command: str, stream: TextIO
) -> Outcome:
    from tqdm.auto import tqdm

    save_grid(out, grid, command)
    points = grid.points()
    todo = [p for p in points if not is_finished(out, p)]
    skipped = len(points) - len(todo)
    started = time.time()
    failed: list[str] = []
    done = skipped
    say = (lambda msg: print(msg, file=stream, flush=True)) if stream else (lambda msg: None)
    where = scheduler or f"an embedded Dask cluster of {jobs or default_jobs(len(todo), grid.threads)} worker(s)"
    say(
        f"sweep {grid.chapter} at scale={grid.scale}: {len(points)} point(s)"
        + (f", {skipped} already finished (skipped)" if skipped else "")
        + (f"; running {len(todo)} on {where}" if todo else "; nothing to run")
        + f"\n  folder: {out}"
    )
    if todo:
        jobs = jobs or default_jobs(len(todo), grid.threads)
        token = uuid.uuid4().hex[:6]
        with dask_client(jobs, scheduler, grid.threads) as client, _sigterm_as_interrupt():
            _check_workers(client, grid, out, say)
            tasks = {
                client.submit(
                    run_point,
                    _task(grid, out, p),
                    key=f"{grid.chapter}-{p.id}-{token}",
                    pure=False,
                ): p
                for p in todo
            }
            bar = tqdm(
                total=len(points),
                initial=skipped,
                unit="point",
                desc=grid.chapter,
                disable=not progress,
                file=stream,
                dynamic_ncols=True,
            )

            def postfix() -> None:
                remaining = len(points) - done - len(failed)
                bar.set_postfix_str(f"done {done} · failed {len(failed)} · remaining {remaining}", refresh=False)

            postfix()
            try:
                from dask.distributed import as_completed

                for future in as_completed(list(tasks)):
                    point = tasks[future]
                    if future.status == "finished" and is_finished(out, point):
                        done += 1
                    else:
                        error = _record_future_failure(out, point, future)
                        failed.append(point.id)
                        bar.write(
                            f"point {point.id} ({point.describe()}) failed: {error}\n"
                            f"  see {run_dir(out, point) / ERROR_FILE}",
                            file=stream,
                        )
                    postfix()
                    bar.update(1)
                    future.release()
            except KeyboardInterrupt:
                bar.close()
                client.cancel([f for f in tasks if not f.done()])
                finished_now = sum(is_finished(out, p) for p in points)
                _safe_gather(out, say)
                raise SweepInterrupted(
                    f"interrupted: {finished_now} of {len(points)} point(s) are finished and kept in {out}; "
                    f"the other {len(points) - finished_now} were cancelled. "
                    f"To resume (finished points are skipped), rerun:\n  {command}"
                ) from None
            bar.close()
    table = _safe_gather(out, say)
    finished = sum(is_finished(out, p) for p in points)
    outcome = Outcome(
        total=len(points),
        skipped=skipped,
        finished=finished,
        failed=failed,
        pending=len(points) - finished - len(failed),
        out=out,
        seconds=time.time() - started,
    )
    claims = ""
    if table is not None and len(table) and "status" in table:
        counts = table.loc[table["point_status"] == "finished", "status"].value_counts()
        claims = " · claims: " + ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if s in counts)
    say(
        f"sweep {grid.chapter}: {finished}/{len(points)} point(s) finished, {len(failed)} failed "
        f"in {outcome.seconds:.0f} s{claims}\n  table: {out / TABLE_PARQUET} (and .csv), figure: {out / FIGURE}"
    )
    if failed:
        say(f"  failed points are tried again when you rerun: {command}")
    return outcome


def _task(grid: Grid, out: Path, point: Point) -> dict[str, Any]:
    return {
        "out": str(out),
        "chapter": grid.chapter,
        "chapter_path": grid.chapter_path,
        "root": grid.root,
        "scale": point.scale,
        "seed": point.seed,
        "params": point.params,
        "device": grid.device,
        "threads": grid.threads,
        "timeout": grid.timeout,
    }


def _check_workers(client: Any, grid: Grid, out: Path, say: Any) -> None:
    """Every worker must see the chapter and the sweep folder (a shared file system) and import this package."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        say("  the scheduler has no workers yet; the points wait until workers join")
        return
    try:
        seen = client.run(_worker_check, grid.chapter_path, str(out))
    except Exception as err:  # noqa: BLE001 - typically: the workers cannot import phenomena
        raise SweepError(
            f"the Dask workers cannot run sweep points ({type(err).__name__}: {err}); "
            "install this package (pip install -e .) in the workers' environment"
        ) from None
    blind = [w for w, s in seen.items() if not (s["chapter"] and s["out"])]
    if blind:
        raise SweepError(
            f"worker(s) {', '.join(blind)} cannot see {grid.chapter_path} or write to {out}: "
            "sweep workers need the same file system at the same paths (a shared home or scratch folder)"
        )


def _record_future_failure(out: Path, point: Point, future: Any) -> str:
    """The error of a point whose task did not finish it; written to its folder if the task could not."""
    folder = run_dir(out, point)
    if future.status == "finished":
        error_file = folder / ERROR_FILE
        if error_file.is_file():
            return error_file.read_text().strip()
        error = "the point's task ended but its results file is missing or incomplete"
        write_failure(folder, error, error)
        return error
    if future.status == "cancelled":
        error = "the task was cancelled by the scheduler"
        write_failure(folder, error, error)
        return error
    exc = future.exception()
    error = f"{type(exc).__name__}: {exc}"
    if type(exc).__name__ == "KilledWorker":
        error += " (the worker process died: out of memory, killed, or its node was lost)"
    tb = future.traceback()
    trace = "".join(traceback.format_tb(tb)) + error if tb is not None else error
    write_failure(folder, error, trace)
    return error


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    try:
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (a batch system ending the job) like Ctrl-C: cancel, keep what is finished, say how to resume."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _safe_gather(out: Path, say: Any) -> Any:
    try:
        return gather(out).table
    except Exception as err:  # noqa: BLE001 - the runs are safe on disk; the table can be rebuilt
        say(f"  could not write the table ({type(err).__name__}: {err}); rebuild it with: "
            f"python -m phenomena gather {out}")
        return None


# ------------------------------------------------------------------------------------------ gather
FIXED_COLUMNS = (
    "point", "chapter", "scale", "seed", "claim", "measured", "expected", "lower", "upper", "tolerance",
    "status", "passed", "point_status", "seconds", "wall_seconds", "device", "host", "git_revision", "error",
    "notebook",
)


@dataclass
class Gathered:
    """The sweep's table and what it holds: finished, failed and not-yet-run points."""

    table: Any  # pandas.DataFrame
    grid: Grid
    finished: int
    failed: int
    pending: int
    param_columns: dict[str, str]


def param_column(name: str) -> str:
    """The table's column for a swept parameter: its name, or ``param_<name>`` if that is taken."""
    return f"param_{name}" if name in FIXED_COLUMNS else name


def _cell_value(value: Any) -> Any:
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return value


def collect(out: Path, grid: Grid | None = None) -> Gathered:
    """Read every point of the sweep in ``out`` into a tidy table, without writing anything.

    One row per (point, claim) for finished points: the swept parameters as columns, the claim's
    measured value, expected value or band, status (pass/fail/skipped/not reproduced) and
    ``passed``; the chapter's seconds, the point's wall seconds and the device. A failed point
    has one row with ``point_status="error"`` and its error. Points not run yet are left out
    (counted in ``pending``).
    """
    import pandas as pd

    out = Path(out)
    grid = grid or load_grid(out)
    columns = {name: param_column(name) for name in grid.params}
    rows: list[dict[str, Any]] = []
    finished = failed = pending = 0
    for point in grid.points():
        folder = run_dir(out, point)
        base: dict[str, Any] = {"point": point.id, "chapter": point.chapter, "scale": point.scale, "seed": point.seed}
        base.update({columns[k]: _cell_value(v) for k, v in point.params.items()})
        meta: dict[str, Any] = {}
        try:
            meta = json.loads((folder / POINT_FILE).read_text())
        except (OSError, ValueError):
            pass
        rec = read_result(result_path(out, point), point)
        notebook = str(notebook_path(out, point).relative_to(out))
        if rec is not None:
            finished += 1
            claims = rec["claims"] or [{}]
            for claim in claims:
                rows.append(
                    {
                        **base,
                        "claim": claim.get("name"),
                        "measured": claim.get("measured"),
                        "expected": claim.get("expected"),
                        "lower": claim.get("lower"),
                        "upper": claim.get("upper"),
                        "tolerance": claim.get("tolerance"),
                        "status": claim.get("status"),
                        "passed": claim.get("status") == "pass" if claim else None,
                        "point_status": "finished",
                        "seconds": rec.get("seconds"),
                        "wall_seconds": meta.get("wall_seconds"),
                        "device": rec.get("device"),
                        "host": meta.get("host"),
                        "git_revision": rec.get("git_revision"),
                        "error": None,
                        "notebook": notebook,
                    }
                )
        elif (folder / ERROR_FILE).is_file():
            failed += 1
            rows.append(
                {
                    **base,
                    "status": "error",
                    "passed": False,
                    "point_status": "error",
                    "wall_seconds": meta.get("wall_seconds"),
                    "device": meta.get("device"),
                    "host": meta.get("host"),
                    "error": (folder / ERROR_FILE).read_text().strip(),
                    "notebook": notebook,
                }
            )
        else:
            pending += 1
    order = ["point", "chapter", "scale", "seed", *columns.values()] + [
        c for c in FIXED_COLUMNS if c not in ("point", "chapter", "scale", "seed")
    ]
    table = pd.DataFrame(rows, columns=order)
    for col in ("measured", "expected", "lower", "upper", "seconds", "wall_seconds"):
        table[col] = pd.to_numeric(table[col], errors="coerce").astype("float64")
    table["seed"] = table["seed"].astype("int64")
    table["passed"] = table["passed"].astype("boolean")
    for col in ("claim", "tolerance", "status", "point_status", "device", "host", "git_revision", "error"):
        table[col] = table[col].astype("string")
    return Gathered(table, grid, finished, failed, pending, columns)


def gather(out: Path, *, figure: bool = True) -> Gathered:
    """Rebuild ``DIR/table.parquet``, ``DIR/table.csv`` and the summary figure from the run folders."""
    out = Path(out)
    result = collect(out)
    _write_table(result.table, out)
    if figure:
        plot_summary(result, out / FIGURE)
    return result


def _write_table(table: Any, out: Path) -> None:
    for name, write in ((TABLE_PARQUET, lambda p: table.to_parquet(p, index=False)),
                        (TABLE_CSV, lambda p: table.to_csv(p, index=False))):
        tmp = out / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            write(tmp)
            os.replace(tmp, out / name)
        finally:
            tmp.unlink(missing_ok=True)


def _numeric(values: Sequence[Any]) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_summary(result: Gathered, path: Path) -> Path | None:
    """One panel per claim: its measured value against the first swept parameter, mean and seed spread.

    Each seed is a dot; the line is the mean over seeds with a min–max band. Other swept
    parameters with several values get one line each. The expected value (or the accepted band)
    is drawn where the claims give one. Returns ``None`` when nothing is finished yet.
    """
    import logging

    import matplotlib

    matplotlib.use("Agg", force=False)
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt
    import numpy as np

    from . import plots

    grid, table = result.grid, result.table
    done = table[table["point_status"] == "finished"].dropna(subset=["claim"])
    if done.empty:
        Path(path).unlink(missing_ok=True)
        return None
    swept = [n for n, v in grid.params.items() if len(v) > 1]
    x_name = swept[0] if swept else "seed"
    x_col = result.param_columns.get(x_name, "seed")
    x_values = grid.params.get(x_name, list(grid.seeds))
    numeric = _numeric(x_values)
    positions = {v: i for i, v in enumerate(_cell_value(v) for v in x_values)}

    def position(values: Any) -> Any:
        return values.map(lambda v: v if numeric else positions.get(v, np.nan)).astype(float)

    others = swept[1:]
    claims = list(dict.fromkeys(done["claim"].tolist()))
    ncols = min(3, len(claims))
    nrows = math.ceil(len(claims) / ncols)
    fig, axes = plots.subplots(ncols=ncols, nrows=nrows, width=4.0, height=3.1)
    axes = np.atleast_1d(axes).ravel()
    combos = list(done.groupby([result.param_columns[n] for n in others], dropna=False)) if others else [((), done)]
    palette = plots.colors(max(1, len(combos)))
    for ax, claim in zip(axes, claims, strict=False):
        rows = done[done["claim"] == claim]
        expected_drawn = False
        for (key, sub), color in zip(combos, palette, strict=False):
            sub = sub[sub["claim"] == claim]
            if sub.empty:
                continue
            key = key if isinstance(key, tuple) else (key,)
            label = ", ".join(f"{n}={k}" for n, k in zip(others, key, strict=True)) or None
            xs = position(sub[x_col])
            ax.scatter(xs, sub["measured"], s=14, alpha=0.6, color=color, linewidths=0)
            if x_name == "seed":  # seeds only: their mean, no line through the seeds
                ax.axhline(sub["measured"].mean(), color=color, lw=1.5, label="mean over seeds")
            else:
                stats = sub.assign(_x=xs).groupby("_x")["measured"].agg(["mean", "min", "max"]).sort_index()
                ax.plot(stats.index, stats["mean"], marker="o", ms=4, color=color, label=label)
                if len(grid.seeds) > 1:
                    ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.15)
            if sub["expected"].notna().all():
                exp = sub.assign(_x=xs).groupby("_x")["expected"].mean().sort_index()
                ax.plot(exp.index, exp.values, ls="--", lw=1, color=color if others else "0.3",
                        label=None if expected_drawn else "expected")
                expected_drawn = True
        if not expected_drawn:
            lo, hi = rows["lower"].dropna().unique(), rows["upper"].dropna().unique()
            for i, bound in enumerate([*lo[:1], *hi[:1]] if len(lo) <= 1 and len(hi) <= 1 else []):
                ax.axhline(bound, ls=":", color="0.3", lw=1, label=None if i else "accepted bound")
        fails = rows[rows["status"] == "fail"]
        if len(fails):
            ax.scatter(position(fails[x_col]), fails["measured"], marker="x", color="crimson", s=28,
                       label="failed claim")
        if numeric:
            finite = [float(v) for v in x_values]
            if min(finite) > 0 and max(finite) / min(finite) >= 20:
                ax.set_xscale("log")
            elif len(finite) <= 6:
                ax.set_xticks(finite, [f"{v:g}" for v in finite])
        else:
            names = [str(v) for v in positions]
            ax.set_xticks(list(positions.values()), names, rotation=30 if max(map(len, names)) > 4 else 0)
        skipped = (rows["status"] == "skipped").all()
        plots.label(ax, x_name, "measured", claim + (f" (skipped at {grid.scale})" if skipped else ""))
    for ax in axes[len(claims):]:
        ax.set_visible(False)
    seeds = ", ".join(map(str, grid.seeds))
    missing = f"; {result.failed} failed point(s) not shown" if result.failed else ""
    how = "line their mean" if x_name == "seed" else "lines their mean, bands min–max"
    fig.suptitle(f"{grid.chapter} at {grid.scale}: dots are seeds ({seeds}), {how}{missing}", fontsize="medium")
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}{path.suffix}")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path
