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
from contextlib import contextmanager
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
                    PointTask.make(grid, out, p),
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
