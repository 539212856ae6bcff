"""The scoreboard: which claims reproduce, at which scale, on which seeds and devices.

Read from the results files (``results/<chapter>/<scale>-seed<seed>.json``) and written as a
Markdown table that the book's scoreboard page includes.
"""

from __future__ import annotations

import json
from collections import defaultdict
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


BADGE_CLASS = {"pass": "sb-pass", "fail": "sb-fail", "skipped": "sb-skip", "not reproduced": "sb-nr"}
ORDER = ("pass", "fail", "not reproduced", "skipped")


def _fmt_value(x: Any) -> str:
    """A number in four significant digits; anything else as text."""
    try:
        return f"{float(x):.4g}"
    except (TypeError, ValueError):
        return str(x)


def badge(status: str, text: str | None = None) -> str:
    """A verdict as text in a coloured box (CSS in ``book/_static/scoreboard.css``): no emoji font needed."""
    return f'<span class="sb {BADGE_CLASS.get(status, "sb-skip")}">{text or status}</span>'


def _measured(values: list[Any]) -> str:
    """The median over seeds, and the range where there are several."""
    import math
    import statistics

    nums = [float(v) for v in values if v is not None]
    finite = [v for v in nums if math.isfinite(v)]
    if not nums:
        return "—"
    if len(nums) == 1:
        return _fmt_value(nums[0])
    if not finite:
        return _fmt_value(nums[0])
    text = f"{_fmt_value(statistics.median(finite))} [{_fmt_value(min(finite))}, {_fmt_value(max(finite))}]"
    return text + (f" ({len(nums) - len(finite)} non-finite)" if len(finite) < len(nums) else "")


def _verdicts(statuses: list[str]) -> str:
    counts = defaultdict(int)
    for st in statuses:
        counts[st] += 1
    n = len(statuses)
    return " ".join(badge(st, f"{st} {counts[st]}/{n}") for st in ORDER if counts[st])


def _link(chapter: str, titles: dict[str, str], docs: dict[str, str]) -> str:
    title = titles.get(chapter, chapter)
    return f"{{doc}}`{title} <{docs[chapter]}>`" if chapter in docs else title


def render(records: list[dict[str, Any]], chapter_titles: dict[str, str] | None = None,
           chapter_docs: dict[str, str] | None = None) -> str:
    """Markdown: an overview (chapter × scale: claims passed of checked, not reproduced, skipped),
    then per chapter one row per claim with what the paper says, what it accepts, and per scale the
    measured value (median and range over seeds) with the verdicts.

    ``chapter_docs`` maps a slug to its document name (``/book/part1-solvable/saxe-deep-linear``),
    so that the chapter names link to the chapters.
    """
    if not records:
        return (
            "No results yet. Run `make book` (chapters at `default`), `make test` (at `smoke`), or\n"
            "`python -m phenomena run CHAPTER --scale S --seed N` and rebuild the book.\n"
        )
    titles = chapter_titles or {}
    docs = chapter_docs or {}
    by_chapter: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_chapter[rec["chapter"]].append(rec)
    order = [c for c in titles if c in by_chapter] + sorted(c for c in by_chapter if c not in titles)
    scales_seen = [sc for sc in SCALES if any(r["scale"] == sc for recs in by_chapter.values() for r in recs)]
    lines = ["## Overview", "",
             "Per chapter and scale: the claims that passed on every seed run, of the claims checked at that scale "
             "(green when that is all of them, amber when the rest are reported as not reproduced); "
             "then claims that failed on some seed, claims the chapter reports as not reproduced, and claims "
             "skipped because they need a larger scale. The number of seeds run is in brackets.", "",
             "| chapter | " + " | ".join(scales_seen) + " |", "|---|" + "---|" * len(scales_seen)]
    for chapter in order:
        cells = []
        for sc in scales_seen:
            recs = [r for r in by_chapter[chapter] if r["scale"] == sc]
            if not recs:
                cells.append("—")
                continue
            per_claim: dict[str, list[str]] = defaultdict(list)
            for r in recs:
                for c in r["claims"]:
                    per_claim[c["name"]].append(c["status"])
            checked = [n for n, st in per_claim.items() if not all(x == "skipped" for x in st)]
            passed = sum(all(x == "pass" for x in per_claim[n]) for n in checked)
            failed = sum(any(x == "fail" for x in per_claim[n]) for n in checked)
            nr = sum(any(x == "not reproduced" for x in per_claim[n]) and not any(x == "fail" for x in per_claim[n])
                     for n in checked)
            skipped = len(per_claim) - len(checked)
            seeds = len({r["seed"] for r in recs})
            # passed of every checked claim: a claim not reproduced on some seed counts against it, in amber
            colour = "fail" if failed else "not reproduced" if passed < len(checked) else "pass"
            text = [badge(colour, f"{passed}/{len(checked)} pass")]
            if failed:
                text.append(badge("fail", f"{failed} fail"))
            if nr:
                text.append(badge("not reproduced", f"{nr} not reproduced"))
            if skipped:
                text.append(badge("skipped", f"{skipped} skipped"))
            cells.append(" ".join(text) + f" <small>({seeds} seed{'s' if seeds > 1 else ''})</small>")
        lines.append(f"| {_link(chapter, titles, docs)} | " + " | ".join(cells) + " |")
    lines.append("")
    if "full" not in scales_seen:
        lines.append("No `full`-scale result is recorded yet. `make full` runs every chapter at `full` on a "
                     "one-GPU machine and records the results in the tracked ledger `book/results-full/`, "
                     "which this page reads.\n")
    for chapter in order:
        recs = by_chapter[chapter]
        lines.append(f"## {titles.get(chapter, chapter)}\n")
        lines.append(f"`{chapter}`" + (f" · {_link(chapter, {chapter: 'open the chapter'}, docs)}" if chapter in docs
                                        else "") + "\n")
        seen = [sc for sc in SCALES if any(r["scale"] == sc for r in recs)]
        lines.append("| claim | the paper says | accepts | " + " | ".join(f"measured at {sc}" for sc in seen) + " |")
        lines.append("|---|---|---|" + "---|" * len(seen))
        claims: dict[str, dict[str, Any]] = {}
        for r in recs:
            for c in r["claims"]:
                claims.setdefault(c["name"], c)
        for name, first in claims.items():
            cells = []
            for sc in seen:
                sel = [c for r in recs if r["scale"] == sc for c in r["claims"] if c["name"] == name]
                if not sel:
                    cells.append("—")
                elif all(c["status"] == "skipped" for c in sel):
                    cells.append(badge("skipped", f"skipped: needs {first.get('min_scale', 'a larger scale')}"))
                else:
                    cells.append(_measured([c.get("measured") for c in sel]) + "<br>" +
                                 _verdicts([c["status"] for c in sel]))
            law = str(first.get("law", "")).replace("|", "\\|").replace("\n", " ")
            accepts = str(first.get("tolerance", "")).replace("|", "\\|")
            lines.append(f"| {name} | {law} | {accepts} | " + " | ".join(cells) + " |")
        lines.append("")
        runs: dict[tuple[str, str], list[float]] = {}
        for rec in recs:
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
                    badge(s, f"{s} {int(counts[s])}/{len(rows_)}") for s in ORDER if s in counts
                )
                cells.append(text)
            if len(errors):
                cells.append(str(int((sub["point_status"] == "error").sum())))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Cells: the mean measured value over seeds [min, max], then the number of seeds per verdict "
                     "(skipped: the claim needs a larger scale).\n")
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
