"""The scoreboard: which claims reproduce, at which scale, on which seeds and devices.

Read from the results files (``results/<chapter>/<scale>-seed<seed>.json``) and written as a
Markdown table that the book's scoreboard page includes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .contract import write_text_atomic
from .scales import SCALES

SYMBOL = {"pass": "✅", "fail": "❌", "skipped": "⏭️", "not reproduced": "⚠️"}


def load_results(folder: Path) -> list[dict[str, Any]]:
    """Every complete results record under ``folder`` (incomplete or unreadable files are skipped)."""
    records = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(rec, dict) and rec.get("complete") and "claims" in rec and "chapter" in rec:
            rec["_path"] = str(path)
            records.append(rec)
    return records


def rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, claim): chapter, claim, scale, seed, device, measured, status."""
    out = []
    for rec in records:
        for claim in rec["claims"]:
            out.append(
                {
                    "chapter": rec["chapter"],
                    "claim": claim["name"],
                    "scale": rec["scale"],
                    "seed": rec["seed"],
                    "device": rec.get("device", "?"),
                    "measured": claim.get("measured"),
                    "accepts": claim.get("tolerance", ""),
                    "status": claim["status"],
                    "seconds": rec.get("seconds"),
                    "git": rec.get("git_revision", "?"),
                }
            )
    return out


def _cell(statuses: list[str], seeds: list[int]) -> str:
    if not statuses:
        return "—"
    counts = defaultdict(int)
    for s in statuses:
        counts[s] += 1
    n = len(statuses)
    parts = [f"{SYMBOL[s]} {s} {counts[s]}/{n}" for s in ("pass", "fail", "not reproduced", "skipped") if counts[s]]
    return "<br>".join(parts) + f"<br><small>seeds {', '.join(map(str, sorted(set(seeds))))}</small>"


def render(records: list[dict[str, Any]], chapter_titles: dict[str, str] | None = None) -> str:
    """Markdown: per chapter, a claims × scale table, then runtimes per scale and device."""
    if not records:
        return (
            "No results yet. Run `make book` (chapters at `default`), `make test` (at `smoke`), or\n"
            "`python -m phenomena run CHAPTER --scale S --seed N` and rebuild the book.\n"
        )
    titles = chapter_titles or {}
    table = rows(records)
    by_chapter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in table:
        by_chapter[r["chapter"]].append(r)
    order = [c for c in titles if c in by_chapter] + sorted(c for c in by_chapter if c not in titles)
    lines: list[str] = []
    for chapter in order:
        chapter_rows = by_chapter[chapter]
        lines.append(f"## {titles.get(chapter, chapter)}\n")
        lines.append(f"`{chapter}`\n")
        scales_seen = [s for s in SCALES if any(r["scale"] == s for r in chapter_rows)]
        lines.append("| claim | " + " | ".join(f"{s}" for s in scales_seen) + " |")
        lines.append("|---|" + "---|" * len(scales_seen))
        claims = list(dict.fromkeys(r["claim"] for r in chapter_rows))
        for claim in claims:
            cells = []
            for s in scales_seen:
                sel = [r for r in chapter_rows if r["claim"] == claim and r["scale"] == s]
                cells.append(_cell([r["status"] for r in sel], [r["seed"] for r in sel]))
            lines.append(f"| {claim} | " + " | ".join(cells) + " |")
        lines.append("")
        runs = {}
        for rec in records:
            if rec["chapter"] == chapter:
                runs.setdefault((rec["scale"], rec.get("device", "?")), []).append(rec.get("seconds") or 0.0)
        lines.append(
            "Runtime: "
            + "; ".join(
                f"{scale} on {device}: {min(v):.0f}–{max(v):.0f} s ({len(v)} run{'s' if len(v) > 1 else ''})"
                for (scale, device), v in sorted(runs.items(), key=lambda kv: SCALES.index(kv[0][0]))
            )
            + "\n"
        )
    return "\n".join(lines)


def write_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` unless it already holds exactly that; return whether it wrote.

    Keeping the file untouched when nothing changed keeps the book build's cache valid.
    """
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    write_text_atomic(path, text)
    return True


# ------------------------------------------------------------------------------------------ sweeps
SWEEP_TABLE = "sweep-table.md"
"""The file (beside the scoreboard table) that the scoreboard page includes for sweeps."""


def _fmt_value(x: Any) -> str:
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)


def render_sweep(folder: Path, image_dir: Path | None = None, chapter_titles: dict[str, str] | None = None) -> str:
    """Markdown for one sweep: one row per parameter combination, per claim the mean measured value,
    its range over seeds and how many seeds passed; then the summary figure.

    The figure is copied into ``image_dir`` (the folder of the Markdown file) so that the book
    can show it; the Markdown refers to it by file name.
    """
    import re
    import shutil

    from .sweep.table import FIGURE, collect, plot_summary

    folder = Path(folder)
    result = collect(folder)
    grid, table = result.grid, result.table
    titles = chapter_titles or {}
    params = list(grid.params)
    cols = [result.param_columns[p] for p in params]
    lines = [
        f"### {titles.get(grid.chapter, grid.chapter)}: " + (" × ".join(params) or "seeds") + f" at `{grid.scale}`\n",
        (
            f"`{grid.chapter}`, seeds {', '.join(map(str, grid.seeds))}, folder `{folder.name}`: "
            f"{result.finished} point(s) finished, {result.failed} failed, {result.pending} not run.\n"
        ),
    ]
    done = table[table["point_status"] == "finished"]
    claims = [c for c in dict.fromkeys(done["claim"].dropna().tolist())]
    combos = [()] if not cols else list(dict.fromkeys(tuple(r) for r in table[cols].itertuples(index=False)))
    errors = table[table["point_status"] == "error"]
    if claims or len(errors):
        header = [*params, *claims] + (["failed points"] if len(errors) else [])
        lines.append("| " + " | ".join(header or ["claim"]) + " |")
        lines.append("|" + "---|" * max(1, len(header)))
        for combo in combos:
            mask = (table[cols] == list(combo)).all(axis=1) if cols else table.index == table.index
            sub = table[mask]
            cells = [_fmt_value(v) for v in combo]
            for claim in claims:
                rows_ = sub[(sub["claim"] == claim) & (sub["point_status"] == "finished")]
                values = rows_["measured"].dropna()
                if rows_.empty:
                    cells.append("—")
                    continue
                text = _fmt_value(values.mean()) if len(values) else "—"
                if len(values) > 1:
                    text += f" [{_fmt_value(values.min())}, {_fmt_value(values.max())}]"
                counts = rows_["status"].value_counts()
                text += "<br>" + " ".join(
                    f"{SYMBOL[s]} {int(counts[s])}/{len(rows_)}" for s in ("pass", "fail", "not reproduced", "skipped")
                    if s in counts
                )
                cells.append(text)
            if len(errors):
                cells.append(str(int((sub["point_status"] == "error").sum())))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: the mean measured value over seeds [min, max], then the number of seeds per status "
                     "(✅ pass, ❌ fail, ⚠️ not reproduced, ⏭️ skipped: the claim needs a larger scale).\n")
    figure = folder / FIGURE
    if image_dir is not None and claims:
        if not figure.is_file():
            plot_summary(result, figure)
        if figure.is_file():
            name = "sweep-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", folder.resolve().name) + ".png"
            Path(image_dir).mkdir(parents=True, exist_ok=True)
            target = Path(image_dir) / name
            if not target.is_file() or target.read_bytes() != figure.read_bytes():
                shutil.copyfile(figure, target)
            lines.append(f"![{grid.chapter}: measured claims against {params[0] if params else 'seed'}]({name})\n")
    return "\n".join(lines)


def render_sweeps(folders: list[Path], image_dir: Path | None = None,
                  chapter_titles: dict[str, str] | None = None) -> str:
    """The scoreboard page's sweeps section: one :func:`render_sweep` per folder, or a note if none."""
    if not folders:
        return (
            "No sweep is shown here. `python -m phenomena scoreboard --sweep DIR` adds the table of the\n"
            "sweep in `DIR` (see *Sweeping a chapter*).\n"
        )
    return "\n".join(render_sweep(f, image_dir, chapter_titles) for f in folders)
