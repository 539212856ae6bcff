"""The benchmark script's contract (its JSON line, its options) and the book's table of results.

Speed itself is never asserted here: it is measured by ``make bench`` and recorded.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

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


def test_width_256_flop_count_is_what_torch_counts_in_one_step_of_the_plain_model() -> None:
    """The GFLOP/s the benchmark reports rest on ``flops_per_model_step``; PyTorch's own FLOP counter,
    run on one SGD step of the loop's plain ``nn.Sequential`` (the input needs no gradient), must agree."""
    spec = importlib.util.spec_from_file_location("bench_ensemble", ROOT / "benchmarks" / "ensemble.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # type: ignore[union-attr]
    width, samples, d = 64, 128, 16
    model = nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 1))
    x, y = torch.randn(samples, d), torch.randn(samples, 1)
    with FlopCounterMode(display=False) as counter:
        (model(x) - y).pow(2).mean().backward()
    assert counter.get_total_flops() == bench.flops_per_model_step(width, samples=samples, d=d)
