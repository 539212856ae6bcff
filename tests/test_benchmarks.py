"""The benchmark script's contract (its JSON line, its options) and the book's table of results.

Speed itself is never asserted here: it is measured by ``make bench`` and recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from phenomena.benchmarks import load, render

ROOT = Path(__file__).resolve().parents[1]


def test_quick_benchmark_prints_one_json_record_with_the_issue_keys() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ensemble.py"), "--quick", "--no-save",
                          "--device", "cpu"], capture_output=True, text=True, timeout=300, check=True).stdout
    record = json.loads(out.strip().splitlines()[-1])
    for key in ("ensemble_steps_per_s", "loop_steps_per_s", "speedup", "device", "wide_gflops", "sgemm_gflops",
                "wide_fraction_of_sgemm", "wide_gemms_fraction_of_sgemm", "torch"):
        assert key in record, key
    assert record["device"] == "cpu" and record["quick"] is True
    assert record["speedup"] > 0 and record["sgemm_gflops"] > 0


def test_results_table_lists_newest_first_and_skips_bad_lines(tmp_path: Path) -> None:
    lines = [
        {"benchmark": "ensemble", "date": "2026-01-01T00:00:00", "speedup": 3.0, "device": "cpu"},
        {"benchmark": "ensemble", "date": "2026-02-01T00:00:00", "speedup": 5.0, "device": "cpu"},
    ]
    (tmp_path / "ensemble.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\nnot json\n")
    table = render(load(tmp_path))
    assert table.index("2026-02-01") < table.index("2026-01-01")
    assert "| 5.0 |" in table
    assert render([]).startswith("No benchmark results yet")
