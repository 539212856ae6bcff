"""Sweeps: one chapter over a grid of parameters and seeds, on Dask, resumable, gathered into one table.

The package follows the seams of the job, each module usable without the ones after it:

- :mod:`.grid`: the grid (points, ids) validated against the chapter's ``parameters`` cell;
- :mod:`.layout`: the sweep folder, where each point's files go, and the one test of "finished";
- :mod:`.task`: the typed record a worker gets (:class:`PointTask`) and the function that runs it;
- :mod:`.engine`: the Dask engine (embedded cluster or an existing scheduler), progress, locks,
  Ctrl-C and SIGTERM; Dask is imported only when a sweep starts;
- :mod:`.table`: the tidy table (Parquet + CSV) and the summary figure, read from the folders only.

Finished points are never rerun or lost; a failed point is recorded in its folder and the others go on.
"""

from __future__ import annotations

from .engine import Outcome, SweepInterrupted, dask_client, default_jobs, run_sweep, run_sweeps, sweep_lock
from .grid import Grid, Point, SweepError, make_grid, point_id
from .layout import (
    ERROR_FILE,
    FIGURE,
    KERNEL_LOG,
    POINT_FILE,
    SWEEP_FILE,
    TABLE_CSV,
    TABLE_PARQUET,
    TRACEBACK_FILE,
    is_finished,
    load_grid,
    notebook_path,
    read_result,
    result_path,
    run_dir,
    save_grid,
)
from .table import Gathered, collect, gather, plot_summary
from .task import PointTask, run_point

__all__ = [
    "ERROR_FILE", "FIGURE", "KERNEL_LOG", "POINT_FILE", "SWEEP_FILE", "TABLE_CSV", "TABLE_PARQUET",
    "TRACEBACK_FILE", "Gathered", "Grid", "Outcome", "Point", "PointTask", "SweepError", "SweepInterrupted",
    "collect", "dask_client", "default_jobs", "gather", "is_finished", "load_grid", "make_grid",
    "notebook_path", "plot_summary", "point_id", "read_result", "result_path", "run_dir", "run_point", "run_sweep", "run_sweeps",
    "save_grid", "sweep_lock",
]
