"""The scoreboard: which claims reproduce, at which scale, on which seeds and devices.

Read from the results files (``results/<chapter>/<scale>-seed<seed>.json``) and written as a
Markdown table that the book's scoreboard page includes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return True
