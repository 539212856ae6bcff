"""The folder of a sweep: where each point's files go, and the one test of "finished".

Layout of a sweep folder ``DIR``::

    DIR/sweep.json                          the grid: chapter, scale, parameters, seeds (read by gather)
    DIR/runs/<point-id>/point.json          the point's settings, worker, wall time
    DIR/runs/<point-id>/<chapter>.ipynb     the executed notebook
    DIR/runs/<point-id>/<chapter>/<scale>-seed<seed>.json   the chapter's results file
    DIR/runs/<point-id>/kernel.log          the kernel process's own output (start-up warnings, a crash)
    DIR/runs/<point-id>/error.txt, traceback.txt            only for a point that failed
    DIR/table.parquet, DIR/table.csv        one row per point and claim (see :mod:`.table`)
    DIR/summary.png                         each claim's measured value against the swept parameter

The sweep trusts the file system, not the scheduler, with what is done: a point is finished
when its results JSON exists and is complete (the chapter writes it atomically).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .. import contract
from ..contract import write_json_atomic, write_text_atomic
from .grid import Grid, Point, SweepError

SWEEP_FILE = "sweep.json"
POINT_FILE = "point.json"
ERROR_FILE = "error.txt"
TRACEBACK_FILE = "traceback.txt"
KERNEL_LOG = "kernel.log"
TABLE_PARQUET = "table.parquet"
TABLE_CSV = "table.csv"
FIGURE = "summary.png"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def run_dir(out: Path, point: Point) -> Path:
    return Path(out) / "runs" / point.id


def result_path(out: Path, point: Point) -> Path:
    """Where the chapter writes this point's results (``$PHENOMENA_RESULTS/<chapter>/<scale>-seed<seed>.json``)."""
    return contract.result_path(point.chapter, point.scale, point.seed, run_dir(out, point))


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
    write_text_atomic(folder / TRACEBACK_FILE, trace.rstrip() + "\n")
    write_text_atomic(folder / ERROR_FILE, error.strip() + "\n")


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
    """Environment for one point's kernel: ``threads`` math threads (OpenMP/MKL, and torch through
    ``$PHENOMENA_THREADS``, which :func:`phenomena.setup` reads)."""
    return {**{name: str(threads) for name in THREAD_VARIABLES}, contract.THREADS_ENV: str(threads)}


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


