"""The task a Dask worker runs for one point: a typed, picklable record and the function that executes it.

The record holds plain data (paths, scale, seed, parameters), so that any worker that sees the
same file system and has this package installed can run it.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..chapters import load
from ..contract import ROOT_ENV, project_root, write_json_atomic
from .grid import Grid, Point
from .layout import (
    ERROR_FILE,
    KERNEL_LOG,
    POINT_FILE,
    TRACEBACK_FILE,
    is_finished,
    notebook_path,
    notebook_traceback,
    run_dir,
    thread_env,
    write_failure,
)


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point, and nothing it would have to look up."""

    out: str
    chapter: str
    chapter_path: str
    root: str
    scale: str
    seed: int
    params: dict[str, Any] = field(hash=False)
    device: str | None = None
    threads: int = 1
    timeout: float | None = None

    @classmethod
    def make(cls, grid: Grid, out: Path, point: Point) -> PointTask:
        return cls(
            out=str(out),
            chapter=grid.chapter,
            chapter_path=grid.chapter_path,
            root=grid.root,
            scale=point.scale,
            seed=point.seed,
            params=dict(point.params),
            device=grid.device,
            threads=grid.threads,
            timeout=grid.timeout,
        )

    @property
    def point(self) -> Point:
        return Point(self.chapter, self.scale, int(self.seed), dict(self.params))


def run_point(task: PointTask) -> dict[str, Any]:
    """Execute one point on a Dask worker; a failing chapter is recorded, never raised.

    The kernel gets its own results folder (``$PHENOMENA_RESULTS`` = the point's folder) and
    ``task.threads`` math threads.
    """
    import socket

    started = time.time()
    out = Path(task.out)
    point = task.point
    folder = run_dir(out, point)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "id": point.id,
        "chapter": point.chapter,
        "scale": point.scale,
        "seed": point.seed,
        "params": point.params,
        "device": task.device,
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
        from ..execute import execute

        chapter = load(Path(task.chapter_path))
        ex = execute(
            chapter,
            scale=point.scale,
            seed=point.seed,
            device=task.device,
            params=point.params,
            output=notebook_path(out, point),
            results=folder,
            timeout=task.timeout,
            env={**thread_env(task.threads), ROOT_ENV: str(task.root or project_root())},
            kernel_log=folder / KERNEL_LOG,
        )
        if not is_finished(out, point):
            error = ex.error or (
                "the chapter finished without writing a complete results file (does it end with run.finish()?)"
            )
            write_failure(folder, error, notebook_traceback(ex.notebook) or error)
    except Exception as err:
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
