"""A sweep's results as one tidy table (Parquet + CSV), and its summary figure.

Reads only the point folders: no Dask, so the scoreboard can show a sweep without the engine.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract import write_bytes_atomic, write_text_atomic
from .grid import Grid
from .layout import (
    ERROR_FILE,
    FIGURE,
    POINT_FILE,
    TABLE_CSV,
    TABLE_PARQUET,
    load_grid,
    notebook_path,
    read_result,
    result_path,
    run_dir,
)

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
    import io

    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    write_bytes_atomic(out / TABLE_PARQUET, buffer.getvalue())
    write_text_atomic(out / TABLE_CSV, table.to_csv(index=False))


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

    from .. import plots

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
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
    return path
