"""The benchmarks page: a table of the JSON lines benchmark scripts append to ``benchmarks/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

COLUMNS = [
    ("date", "date"),
    ("device", "device"),
    ("threads", "threads"),
    ("allocator", "allocator"),
    ("quick", "quick"),
    ("loop_steps_per_s", "loop (model-steps/s)"),
    ("ensemble_steps_per_s", "engine (model-steps/s)"),
    ("speedup", "speedup"),
    ("compiled_speedup", "compiled speedup"),
    ("wide_gflops", "width 256 GFLOP/s"),
    ("wide_fraction_of_sgemm", "fraction of sgemm"),
    ("wide_compiled_fraction_of_sgemm", "fraction, compiled"),
    ("wide_gemms_fraction_of_sgemm", "its GEMMs alone"),
    ("git", "git"),
]


def load(folder: Path) -> list[dict[str, Any]]:
    """Every JSON line under ``folder`` (``*.jsonl``); unreadable lines are skipped."""
    records = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                records.append(rec)
    return records


def render(records: list[dict[str, Any]]) -> str:
    """Markdown, one table per benchmark, newest first."""
    if not records:
        return "No benchmark results yet: run `make bench`.\n"
    out = []
    for name in sorted({r.get("benchmark", "?") for r in records}):
        rows = sorted((r for r in records if r.get("benchmark", "?") == name), key=lambda r: r.get("date", ""),
                      reverse=True)
        out.append(f"## {name}\n")
        if rows[0].get("case"):
            out.append(f"{rows[0]['case']}\n")
        cols = [(k, title) for k, title in COLUMNS if any(k in r for r in rows)]
        out.append("| " + " | ".join(t for _, t in cols) + " |")
        out.append("|" + "---|" * len(cols))
        for r in rows:
            out.append("| " + " | ".join(str(r.get(k, "")).split("T")[0] if k == "date" else str(r.get(k, ""))
                                         for k, _ in cols) + " |")
        out.append("")
    return "\n".join(out)
