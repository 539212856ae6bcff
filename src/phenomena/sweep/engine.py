"""The sweep engine: every unfinished point of a grid on Dask, with progress, locks and signals.

Points run on an embedded :class:`~distributed.LocalCluster` by default, or on the workers of an
existing Dask scheduler (``dask scheduler`` / ``dask worker``, or dask-jobqueue on Slurm). Dask is
imported only when a sweep starts. A killed worker, Ctrl-C or SIGTERM loses no finished point.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..claims import STATUSES
from .grid import Grid, Point, SweepError
from .layout import (
    ERROR_FILE,
    FIGURE,
    TABLE_PARQUET,
    is_finished,
    run_dir,
    save_grid,
    thread_env,
    write_failure,
)
from .table import gather
from .task import PointTask, _worker_check, run_point


class SweepInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped the sweep; finished points are kept and the message says how to resume."""


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
    return run_sweeps([(grid, out)], jobs=jobs, scheduler=scheduler, progress=progress, command=command,
                      stream=stream)[0]


def run_sweeps(
    sweeps: list[tuple[Grid, Path]],
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    command: str | None = None,
    stream: TextIO | None = None,
    label: str = "sweep",
) -> list[Outcome]:
    """:func:`run_sweep` for several grids (every chapter of the book, say) on one Dask cluster.

    Every unfinished point of every grid is submitted at once, so the workers stay busy until the
    last point: the wall time is about the longest point plus the rest divided over the workers,
    not the sum. Each grid keeps its own folder, table and figure; the outcomes come in the order
    of ``sweeps``. ``command`` is what resumes the whole run (default: the single grid's command).
    """
    stream = stream or sys.stderr
    resolved = [(grid, Path(out).resolve()) for grid, out in sweeps]
    with ExitStack() as stack:
        for _, out in resolved:
            out.mkdir(parents=True, exist_ok=True)
            stack.enter_context(sweep_lock(out))
        return _run_sweeps(resolved, jobs=jobs, scheduler=scheduler, progress=progress, command=command,
                           stream=stream, label=label)


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


@dataclass
class _Plan:
    """One grid of a run: its folder, its points, those still to run, and those that failed."""

    grid: Grid
    out: Path
    points: list[Point]
    todo: list[Point]
    command: str
    failed: list[str]


def _run_sweeps(
    sweeps: list[tuple[Grid, Path]], *, jobs: int | None, scheduler: str | None, progress: bool,
    command: str | None, stream: TextIO, label: str,
) -> list[Outcome]:
    from tqdm.auto import tqdm

    say = (lambda msg: print(msg, file=stream, flush=True)) if stream else (lambda msg: None)
    started = time.time()
    plans = []
    for grid, out in sweeps:
        resume = command or grid.command(out)
        save_grid(out, grid, resume)
        points = grid.points()
        plans.append(_Plan(grid, out, points, [p for p in points if not is_finished(out, p)], resume, []))
    total = sum(len(pl.points) for pl in plans)
    todo = sum(len(pl.todo) for pl in plans)
    skipped = total - todo
    threads = max(pl.grid.threads for pl in plans)
    name = plans[0].grid.chapter if len(plans) == 1 else f"{len(plans)} chapters"
    where = scheduler or f"an embedded Dask cluster of {jobs or default_jobs(todo, threads)} worker(s)"
    scales = ", ".join(dict.fromkeys(pl.grid.scale for pl in plans))
    say(
        f"{label} {name} at scale={scales}: {total} point(s)"
        + (f", {skipped} already finished (skipped)" if skipped else "")
        + (f"; running {todo} on {where}" if todo else "; nothing to run")
        + "".join(f"\n  folder: {pl.out}" for pl in plans[:3])
        + (f"\n  ... and {len(plans) - 3} more" if len(plans) > 3 else "")
    )
    resume_all = command or plans[0].command
    done, failed = skipped, 0
    if todo:
        jobs = jobs or default_jobs(todo, threads)
        token = uuid.uuid4().hex[:6]
        with dask_client(jobs, scheduler, threads) as client, _sigterm_as_interrupt():
            for pl in plans:
                if pl.todo:
                    _check_workers(client, pl.grid, pl.out, say)
            tasks = {
                client.submit(run_point, PointTask.make(pl.grid, pl.out, p),
                              key=f"{pl.grid.chapter}-{p.id}-{token}", pure=False): (pl, p)
                for pl in plans
                for p in pl.todo
            }
            bar = tqdm(total=total, initial=skipped, unit="point", desc=name, disable=not progress, file=stream,
                       dynamic_ncols=True)

            def postfix() -> None:
                bar.set_postfix_str(f"done {done} · failed {failed} · remaining {total - done - failed}",
                                    refresh=False)

            postfix()
            try:
                from dask.distributed import as_completed

                for future in as_completed(list(tasks)):
                    pl, point = tasks[future]
                    if future.status == "finished" and is_finished(pl.out, point):
                        done += 1
                    else:
                        error = _record_future_failure(pl.out, point, future)
                        pl.failed.append(point.id)
                        failed += 1
                        bar.write(
                            f"point {point.id} of {point.chapter} ({point.describe()}) failed: {error}\n"
                            f"  see {run_dir(pl.out, point) / ERROR_FILE}",
                            file=stream,
                        )
                    postfix()
                    bar.update(1)
                    future.release()
            except KeyboardInterrupt:
                bar.close()
                client.cancel([f for f in tasks if not f.done()])
                finished_now = sum(is_finished(pl.out, p) for pl in plans for p in pl.points)
                for pl in plans:
                    _safe_gather(pl.out, say)
                raise SweepInterrupted(
                    f"interrupted: {finished_now} of {total} point(s) are finished and kept; "
                    f"the other {total - finished_now} were cancelled. "
                    f"To resume (finished points are skipped), rerun:\n  {resume_all}"
                ) from None
            bar.close()
    return [_report(pl, started, label, say) for pl in plans]


def _report(pl: _Plan, started: float, label: str, say: Any) -> Outcome:
    """Gather one grid's table and say how it ended."""
    table = _safe_gather(pl.out, say)
    finished = sum(is_finished(pl.out, p) for p in pl.points)
    outcome = Outcome(
        total=len(pl.points),
        skipped=len(pl.points) - len(pl.todo),
        finished=finished,
        failed=pl.failed,
        pending=len(pl.points) - finished - len(pl.failed),
        out=pl.out,
        seconds=time.time() - started,
    )
    claims = ""
    if table is not None and len(table) and "status" in table:
        counts = table.loc[table["point_status"] == "finished", "status"].value_counts()
        claims = " · claims: " + ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if s in counts)
    say(
        f"{label} {pl.grid.chapter}: {finished}/{len(pl.points)} point(s) finished, {len(pl.failed)} failed "
        f"in {outcome.seconds:.0f} s{claims}\n  table: {pl.out / TABLE_PARQUET} (and .csv), figure: {pl.out / FIGURE}"
    )
    if pl.failed:
        say(f"  failed points are tried again when you rerun: {pl.command}")
    return outcome


def _check_workers(client: Any, grid: Grid, out: Path, say: Any) -> None:
    """Every worker must see the chapter and the sweep folder (a shared file system) and import this package."""
    workers = client.scheduler_info().get("workers", {})
    if not workers:
        say("  the scheduler has no workers yet; the points wait until workers join")
        return
    try:
        seen = client.run(_worker_check, grid.chapter_path, str(out))
    except Exception as err:
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
    except Exception as err:
        say(f"  could not write the table ({type(err).__name__}: {err}); rebuild it with: "
            f"python -m phenomena gather {out}")
        return None
