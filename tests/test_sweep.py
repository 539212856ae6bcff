"""`python -m phenomena sweep` and `gather`: validation, a real sweep on the embedded Dask cluster,
Ctrl-C and resume, failed points, an existing scheduler with a worker killed mid-sweep, the table,
the figure and the scoreboard's sweep section.

The sweeps run a tiny chapter made for these tests (tests/fixtures/tiny-sweep.ipynb: it doubles
`x` with seeded noise, raises for a negative `x`, fails its claim for a large `shift` and can
`pause`), found through a temporary _toc.yml and $PHENOMENA_ROOT, so that each point takes a
second or two.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from phenomena.__main__ import main
from phenomena.chapters import ChapterError
from phenomena.claims import write_json_atomic
from phenomena.sweep import (
    ERROR_FILE,
    POINT_FILE,
    TRACEBACK_FILE,
    Grid,
    collect,
    make_grid,
    point_id,
    result_path,
    save_grid,
    sweep_lock,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "tiny-sweep.ipynb"
ROOT = Path(__file__).resolve().parents[1]
TOC = "format: jb-book\nroot: book/intro\nparts:\n  - caption: Tests\n    chapters:\n      - file: book/tiny-sweep\n"
WAIT = 150  # seconds: generous, for a loaded 2-core machine


@pytest.fixture
def book(tiny_book) -> Path:
    """A book whose only chapter is the tiny test chapter."""
    return tiny_book


def env_for(book: Path) -> dict[str, str]:
    return {**os.environ, "PHENOMENA_ROOT": str(book), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
            "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}


def sweep(book: Path, *args: str, timeout: float = WAIT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "phenomena", "sweep", "tiny-sweep", *args, "-q"],
                          capture_output=True, text=True, env=env_for(book), timeout=timeout, check=False)


def finished_results(out: Path) -> dict[Path, float]:
    """Complete results files under a sweep folder, with their modification times."""
    found = {}
    for path in (out / "runs").glob("*/tiny-sweep/*.json"):
        try:
            if json.loads(path.read_text()).get("complete"):
                found[path] = path.stat().st_mtime_ns
        except (OSError, ValueError):
            pass
    return found


def wait_for(condition, what: str, timeout: float = WAIT, proc: subprocess.Popen | None = None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended (rc={proc.returncode}) before {what}:\n{proc.stderr.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------------------ validation
def test_point_ids_are_stable_hashes():
    pid = point_id("saxe-deep-linear", {"lr": 0.004}, 0, "smoke")
    assert pid == point_id("saxe-deep-linear", {"lr": 0.004}, 0, "smoke") and len(pid) == 12
    assert pid == "8cd222b69f6d"  # fixed forever: a changed hash would orphan every finished point
    others = {point_id("saxe-deep-linear", {"lr": 0.005}, 0, "smoke"), point_id("saxe-deep-linear", {"lr": 0.004}, 1, "smoke"),
              point_id("saxe-deep-linear", {"lr": 0.004}, 0, "default"), point_id("other", {"lr": 0.004}, 0, "smoke")}
    assert pid not in others and len(others) == 4
    assert point_id("c", {"a": 1, "b": 2}, 0, "smoke") == point_id("c", {"b": 2, "a": 1}, 0, "smoke")


def test_grid_is_the_product_of_values_and_seeds(book):
    grid = make_grid("tiny-sweep", [["x", "1", "2.5"], ["label", "a", "b"]], [0, 1, 2], "smoke")
    assert grid.params == {"x": [1.0, 2.5], "label": ["a", "b"]}  # "1" is a float for a float knob
    points = grid.points()
    assert len(points) == 12 and len({p.id for p in points}) == 12
    assert points[0].params == {"x": 1.0, "label": "a"} and [p.seed for p in points[:3]] == [0, 1, 2]
    assert make_grid("tiny-sweep", [["x", "1.0"]], [0], "smoke").points()[0].id == \
        make_grid("tiny-sweep", [["x", "1"]], [0], "smoke").points()[0].id
    assert Grid.from_json(json.loads(json.dumps(grid.to_json()))) == grid
    # the same command, typed again (values in another spelling), finds the same folder; another grid another one
    again = make_grid("tiny-sweep", [["x", "1.0", "2.5"], ["label", "a", "b"]], [0, 1, 2], "smoke")
    assert again.default_out() == grid.default_out() and grid.default_out().parent == book / "sweeps"
    assert make_grid("tiny-sweep", [["x", "1", "2.5"]], [0, 1, 2], "smoke").default_out() != grid.default_out()
    assert make_grid("tiny-sweep", [["x", "1", "2.5"], ["label", "a", "b"]], [0, 1], "smoke").default_out() != \
        grid.default_out()
    assert "-p x 1.0 2.5 -p label a b --seeds 0 1 2 --scale smoke" in grid.command()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope", "-p", "x", "1"], "unknown chapter 'nope'; chapters are: tiny-sweep"),
        (["tiny-sweep", "-p", "lr", "1"], "has no parameter 'lr'; its parameters are: x, noise, pause, shift, label"),
        (["tiny-sweep", "-p", "x", "fast"], "parameter 'x' of 'tiny-sweep' expects a float"),
        (["tiny-sweep", "-p", "x", "1", "[2]"], "expects a float"),
        (["tiny-sweep", "-p", "label", "1"], "parameter 'label' of 'tiny-sweep' expects a str"),
        (["tiny-sweep", "-p", "x"], "empty grid: -p x has no values"),
        (["tiny-sweep", "-p", "x", "1", "--seeds"], "empty grid: --seeds has no values"),
        (["tiny-sweep", "-p", "seed", "1", "2"], "'seed' is set with --seed (--seeds in a sweep)"),
        (["tiny-sweep", "-p", "scale", "smoke"], "'scale' is set with --scale"),
        (["tiny-sweep", "-p", "x", "1", "-p", "x", "2"], "parameter 'x' is given twice"),
        (["tiny-sweep", "-p", "x", "1", "1.0"], "lists the value 1.0 twice"),
        (["tiny-sweep", "--seeds", "0", "0"], "lists a seed twice"),
        (["tiny-sweep", "--seeds", "-1"], "non-negative"),
        (["tiny-sweep", "--scale", "huge"], "valid scales are: smoke, default, full"),
        (["tiny-sweep", "--jobs", "0"], "--jobs is the number of workers"),
        (["tiny-sweep", "--threads", "0"], "--threads is the number of torch threads"),
    ],
)
def test_bad_input_is_rejected_before_anything_runs(book, capsys, argv, message):
    out = book / "out"
    assert main(["sweep", *argv, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and not (book / "sweeps").exists()


def test_jobs_and_scheduler_exclude_each_other(book, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "tiny-sweep", "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"])
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_gather_needs_a_sweep_folder(tmp_path, capsys):
    assert main(["gather", str(tmp_path)]) == 2
    assert "is not a sweep folder: it has no sweep.json" in capsys.readouterr().err


def test_unreachable_scheduler_is_a_clear_error(book):
    proc = sweep(book, "-p", "x", "1", "--scale", "smoke", "--scheduler", "tcp://127.0.0.1:9",
                 "--out", str(book / "out"), timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in proc.stderr


def test_a_second_sweep_into_the_same_folder_is_refused(book, capsys):
    out = book / "out"
    out.mkdir()
    with sweep_lock(out):
        assert main(["sweep", "tiny-sweep", "-p", "x", "1", "--scale", "smoke", "--out", str(out)]) == 2
    assert f"another sweep (pid {os.getpid()}) is running in {out}" in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_make_grid_names_valid_choices(book):
    with pytest.raises(ChapterError, match="its parameters are: x, noise, pause, shift, label"):
        make_grid("tiny-sweep", [["pace", "1"]], [0], "smoke")


# ----------------------------------------------------------------------------- table, scoreboard
def fake_sweep(out: Path) -> Grid:
    """A sweep folder written by hand: x in (1, 2) times seeds (0, 1); x=2 seed 1 failed, x=1 seed 1 pending."""
    grid = Grid(chapter="tiny-sweep", chapter_path=str(FIXTURE), root=str(out), scale="smoke", seeds=(0, 1),
                params={"x": [1.0, 2.0]})
    save_grid(out, grid, grid.command(out))
    for point in grid.points():
        folder = out / "runs" / point.id
        x = point.params["x"]
        if (x, point.seed) == (1.0, 1):
            continue
        folder.mkdir(parents=True)
        write_json_atomic(folder / POINT_FILE, {"id": point.id, "wall_seconds": 3.0, "host": "h"})
        if (x, point.seed) == (2.0, 1):
            (folder / ERROR_FILE).write_text("ValueError: boom\n")
            continue
        measured = 2 * x + 0.01 * (point.seed + 1)
        write_json_atomic(result_path(out, point), {
            "chapter": "tiny-sweep", "scale": "smoke", "seed": point.seed, "device": "cpu", "seconds": 1.5,
            "complete": True, "passed": True, "params": {"x": x},
            "claims": [{"name": "double", "measured": measured, "expected": 2 * x, "lower": None, "upper": None,
                        "tolerance": f"{2 * x:g} ± 0.05", "status": "pass"},
                       {"name": "positive", "measured": measured, "expected": None, "lower": 0.0, "upper": None,
                        "tolerance": "≥ 0", "status": "pass"}]})
    return grid


def test_collect_makes_a_tidy_table(tmp_path):
    fake_sweep(tmp_path)
    result = collect(tmp_path)
    t = result.table
    assert (result.finished, result.failed, result.pending) == (2, 1, 1)
    assert len(t) == 2 * 2 + 1
    assert list(t.columns[:5]) == ["point", "chapter", "scale", "seed", "x"]
    assert {"claim", "measured", "expected", "status", "passed", "point_status", "seconds", "device", "error"} <= set(t)
    done = t[t.point_status == "finished"]
    assert set(done.claim) == {"double", "positive"} and done.passed.all() and (done.device == "cpu").all()
    failed = t[t.point_status == "error"]
    assert failed.error.tolist() == ["ValueError: boom"] and failed.x.tolist() == [2.0]


def test_gather_and_scoreboard_show_a_sweep(tmp_path, capsys):
    sweep_dir = tmp_path / "sw"
    sweep_dir.mkdir()
    fake_sweep(sweep_dir)
    assert main(["gather", str(sweep_dir)]) == 1  # a point failed
    table = pd.read_parquet(sweep_dir / "table.parquet")
    assert len(table) == 5 and len(pd.read_csv(sweep_dir / "table.csv")) == 5
    assert (sweep_dir / "summary.png").stat().st_size > 10_000
    assert "2 point(s) finished, 1 failed, 1 not run" in capsys.readouterr().out

    out = tmp_path / "gen" / "scoreboard-table.md"
    (tmp_path / "res").mkdir()
    assert main(["scoreboard", "--results", str(tmp_path / "res"), "--out", str(out), "-q", "--sweep", str(sweep_dir)]) == 0
    text = (out.parent / "sweep-table.md").read_text()
    assert "| x | double | positive | failed points |" in text
    assert '| 1 | 2.01<br><span class="sb sb-pass">pass 1/1</span> | 2.01<br><span class="sb sb-pass">pass 1/1</span> | 0 |' in text
    assert "![tiny-sweep: measured claims against x](sweep-sw.png)" in text
    assert (out.parent / "sweep-sw.png").is_file()
    # a plain scoreboard run (as `make book` does) keeps the sweeps shown; --sweep with no folder removes them
    assert main(["scoreboard", "--results", str(tmp_path / "res"), "--out", str(out), "-q"]) == 0
    assert (out.parent / "sweep-table.md").read_text() == text
    assert main(["scoreboard", "--results", str(tmp_path / "res"), "--out", str(out), "-q", "--sweep"]) == 0
    assert "No sweep is shown here" in (out.parent / "sweep-table.md").read_text()


# --------------------------------------------------------------------------------- real sweeps
@pytest.mark.slow
def test_embedded_sweep_interrupt_resume_and_failures(book, tmp_path):
    out = tmp_path / "sweep"
    args = ["-p", "x", "0.5", "1.5", "-p", "pause", "1.0", "--seeds", "0", "1", "--scale", "smoke", "--out", str(out)]
    cmd = [sys.executable, "-m", "phenomena", "sweep", "tiny-sweep", *args, "--jobs", "1", "-q"]

    # 1. Ctrl-C (SIGINT to the whole process group, as a terminal sends it) once a point is finished.
    # Ctrl-C's default disposition in the sweep, even when this test runs in a background job (where the
    # shell starts everything with SIGINT ignored and Python then never raises KeyboardInterrupt)
    proc = subprocess.Popen(cmd, env=env_for(book), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_for(lambda: finished_results(out), "a finished point", proc=proc)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert "interrupted:" in err and "To resume (finished points are skipped), rerun:" in err
    assert f"--out {out}" in err
    before = finished_results(out)
    assert 1 <= len(before) < 4

    # 2. The same command resumes: finished points are skipped and untouched, the rest run.
    proc = sweep(book, *args, "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    assert f"{len(before)} already finished (skipped); running {4 - len(before)}" in proc.stderr
    after = finished_results(out)
    assert len(after) == 4 and all(after[p] == t for p, t in before.items())
    table = pd.read_parquet(out / "table.parquet")
    assert len(table) == 4 * 2 and set(table.claim) == {"double", "positive"}
    assert table.passed.all() and (table.point_status == "finished").all()
    assert sorted(table.x.unique()) == [0.5, 1.5] and sorted(table.seed.unique()) == [0, 1]
    assert (table.device == "cpu").all() and (table.seconds > 0).all() and (table.wall_seconds > 0).all()
    assert ((table.measured - 2 * table.x).abs() < 0.05).all()
    for nb in (out / "runs").glob("*/tiny-sweep.ipynb"):  # one math thread per point
        assert '"1 torch thread(s)' in nb.read_text()
    spec = json.loads((out / "sweep.json").read_text())
    assert spec["params"] == {"x": [0.5, 1.5], "pause": [1.0]} and spec["seeds"] == [0, 1]
    assert (out / "summary.png").is_file() and (out / "table.csv").is_file()

    # 3. Once more: nothing new runs (no cluster is even started), nothing is rewritten.
    proc = sweep(book, *args)
    assert proc.returncode == 0 and "4 already finished (skipped); nothing to run" in proc.stderr
    assert finished_results(out) == after

    # 4. gather rebuilds the same table from the run folders.
    for name in ("table.parquet", "table.csv", "summary.png"):
        (out / name).unlink()
    assert main(["gather", str(out)]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out / "table.parquet"), table)

    # 5. A failing value: its points record the error and traceback, the others are untouched, exit 1.
    proc = sweep(book, "-p", "x", "0.5", "1.5", "-1", *args[4:], "--jobs", "2")
    assert proc.returncode == 1, proc.stderr
    assert "4 already finished (skipped); running 2" in proc.stderr and "failed: ValueError" in proc.stderr
    assert finished_results(out) == after
    table = pd.read_parquet(out / "table.parquet")
    errors = table[table.point_status == "error"]
    assert len(errors) == 2 and errors.x.tolist() == [-1.0, -1.0]
    assert errors.error.str.contains("x must be non-negative").all()
    for pid in errors.point:
        assert "x must be non-negative" in (out / "runs" / pid / ERROR_FILE).read_text()
        assert "Traceback" in (out / "runs" / pid / TRACEBACK_FILE).read_text()


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.mark.slow
def test_scheduler_sweep_survives_a_killed_worker(book, tmp_path):
    bin_dir = Path(sys.executable).parent
    dask = [str(bin_dir / "dask")] if (bin_dir / "dask").exists() else [sys.executable, "-m", "dask"]
    sched_file = tmp_path / "scheduler.json"
    env = env_for(book)
    procs: list[subprocess.Popen] = []
    try:
        procs.append(start([*dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                            "--scheduler-file", str(sched_file)], tmp_path / "scheduler.log"))
        address = wait_for(lambda: sched_file.is_file() and json.loads(sched_file.read_text() or "{}").get("address"),
                           "the scheduler")
        assert address.startswith("tcp://127.0.0.1:") and not address.endswith(":8786")
        workers = [start([*dask, "worker", address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
                          "--local-directory", str(tmp_path / f"w{i}")], tmp_path / f"worker{i}.log") for i in range(2)]
        procs += workers

        out = tmp_path / "on-scheduler"
        # A sweep on the scheduler's workers; its point fails a claim: that is a result, not a failed point.
        proc = subprocess.run([sys.executable, "-m", "phenomena", "sweep", "tiny-sweep", "-p", "x", "2", "-p", "shift",
                               "1", "--seeds", "3", "--scale", "smoke", "--scheduler", address, "--out", str(out), "-q"],
                              capture_output=True, text=True, env=env, timeout=WAIT, check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"running 1 on {address}" in proc.stderr and "claims: 1 pass, 1 fail" in proc.stderr
        table = pd.read_parquet(out / "table.parquet").set_index("claim")
        assert table.status.to_dict() == {"double": "fail", "positive": "pass"}
        assert (table.point_status == "finished").all() and (table.seed == 3).all() and (table["shift"] == 1.0).all()

        # Kill (SIGKILL) a worker while it runs a point: no finished point is lost, the point reruns elsewhere.
        out = tmp_path / "killed"
        pids = {w.pid for w in workers}
        sweep_proc = subprocess.Popen(
            [sys.executable, "-m", "phenomena", "sweep", "tiny-sweep", "-p", "x", "0.5", "1.5", "-p", "pause", "1.0",
             "--seeds", "0", "1", "--scale", "smoke", "--scheduler", address, "--out", str(out), "-q"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def running_on_a_worker():
            if not finished_results(out):
                return None
            for meta in (out / "runs").glob(f"*/{POINT_FILE}"):
                try:
                    m = json.loads(meta.read_text())
                except ValueError:
                    continue
                done = any(json.loads(r.read_text()).get("complete") for r in meta.parent.glob("tiny-sweep/*.json"))
                if m.get("status") == "running" and m.get("pid") in pids and not done:
                    return m
            return None

        victim = wait_for(running_on_a_worker, "a finished point and a point running", proc=sweep_proc)
        before = finished_results(out)
        os.kill(victim["pid"], signal.SIGKILL)
        _, err = sweep_proc.communicate(timeout=WAIT)
        assert sweep_proc.returncode == 0, err
        after = finished_results(out)
        assert len(after) == 4 and all(after[p] == t for p, t in before.items())
        assert json.loads((out / "runs" / victim["id"] / POINT_FILE).read_text())["status"] == "finished"
        assert [w.poll() is not None for w in workers].count(True) == 1  # the victim is gone, the other worked on
        assert pd.read_parquet(out / "table.parquet").passed.all()
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.mark.slow
def test_one_real_chapter_point(tmp_path):
    """The real model chapter, one point at smoke, on the embedded cluster."""
    out = tmp_path / "saxe"
    env = {k: v for k, v in os.environ.items() if k != "PHENOMENA_ROOT"}
    proc = subprocess.run([sys.executable, "-m", "phenomena", "sweep", "saxe-deep-linear", "-p", "lr", "0.005",
                           "--seeds", "1", "--scale", "smoke", "--jobs", "1", "--out", str(out), "-q"],
                          capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"},
                          timeout=WAIT, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out / "table.parquet")
    assert {"decoupled-trajectory", "half-time-random-init"} <= set(table.claim)
    assert (table.lr == 0.005).all() and (table.seed == 1).all() and (table.scale == "smoke").all()
    assert (table.status != "fail").all()


def test_run_all_runs_every_chapter_on_one_cluster_resumes_and_fills_a_ledger(book, tmp_path):
    out, ledger = tmp_path / "runs", tmp_path / "ledger"
    cmd = [sys.executable, "-m", "phenomena", "run-all", "--scale", "smoke", "--seeds", "0", "1", "--jobs", "2",
           "--out", str(out), "--ledger", str(ledger), "-q"]
    proc = subprocess.run(cmd, env=env_for(book), capture_output=True, text=True, timeout=WAIT * 2)
    assert proc.returncode == 0, proc.stderr
    assert "run tiny-sweep at scale=smoke: 2 point(s); running 2 on an embedded Dask cluster of 2" in proc.stderr
    assert sorted(p.name for p in (ledger / "tiny-sweep").iterdir()) == ["smoke-seed0.json", "smoke-seed1.json"]
    assert (out / "tiny-sweep" / "table.parquet").is_file()
    again = subprocess.run(cmd, env=env_for(book), capture_output=True, text=True, timeout=WAIT)
    assert again.returncode == 0 and "2 already finished (skipped); nothing to run" in again.stderr
    bad = subprocess.run([*cmd[:4], "no-such-chapter"], env=env_for(book), capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown chapter(s) no-such-chapter" in bad.stderr
