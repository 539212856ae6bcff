"""Command line: ``python -m phenomena list | run | run-all | sweep | gather | scoreboard | cache-book``.

Examples::

    python -m phenomena list
    python -m phenomena run saxe-deep-linear --scale smoke --seed 1 -p lr 0.002
    python -m phenomena run-all --scale smoke --jobs 2          # every chapter, in parallel
    python -m phenomena sweep saxe-deep-linear -p lr 0.004 0.005 --seeds 0 1 --scale smoke --jobs 2
    python -m phenomena gather sweeps/saxe-deep-linear-smoke-lr-123abc
    python -m phenomena scoreboard [--sweep DIR]
    python -m phenomena cache-book --jobs 2                      # the book's chapters, for jupyter-book

Exit codes: ``run``: 0 all claims passed, 1 a claim failed (or the chapter raised).
``cache-book``: 0 every chapter cached, 1 a chapter could not be executed.
``sweep``: 0 every point finished (its claims, passed or not, are in the table), 1 a point failed,
130 interrupted (rerun the same command to resume). Any command: 2 bad input (a :class:`~phenomena.contract.ContractError`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import scales
from .contract import ContractError


def _parse_pairs(pairs: Sequence[Sequence[str]] | None) -> dict[str, Any]:
    from .chapters import parse_value

    out: dict[str, Any] = {}
    for name, value in pairs or []:
        if name in out:
            raise ContractError(f"parameter {name!r} given twice; give each -p NAME once")
        out[name] = parse_value(value)
    return out


def cmd_list(args: argparse.Namespace) -> int:
    from .chapters import discover

    chapters = discover()
    if not chapters:
        print("no chapters found in _toc.yml")
        return 0
    for ch in chapters.values():
        print(f"{ch.slug}  ({ch.part})" if ch.part else ch.slug)
        print(f"    {ch.title}")
        knobs = [p for p in ch.parameters.values() if p.name not in ("scale", "seed", "device")]
        if knobs and args.verbose:
            print("    parameters:")
            for p in knobs:
                print(f"      {p.name} = {p.default!r}" + (f"  # {p.comment}" if p.comment else ""))
        elif knobs:
            print("    parameters: " + ", ".join(p.name for p in knobs))
        print("    claims: " + (", ".join(ch.claims) if ch.claims else "(none found)"))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .chapters import get
    from .execute import build_parameters, execute
    from .scoreboard import SYMBOL

    chapter = get(args.chapter)
    params = _parse_pairs(args.param)
    build_parameters(chapter, args.scale, args.seed, args.device, params)  # validate before any kernel starts
    print(f"running {chapter.slug} at scale={args.scale} seed={args.seed}" + (f" with {params}" if params else ""))
    ex = execute(
        chapter,
        scale=args.scale,
        seed=args.seed,
        device=args.device,
        params=params,
        output=Path(args.output) if args.output else None,
        results=Path(args.results) if args.results else None,
        timeout=args.timeout,
        progress=not args.quiet,
    )
    if ex.result:
        width = max(len(c["name"]) for c in ex.result["claims"]) if ex.result["claims"] else 10
        print(f"\n{'claim':<{width}}  {'measured':>10}  accepts                 status")
        for c in ex.result["claims"]:
            measured = "—" if c["measured"] is None else f"{c['measured']:.4g}"
            print(f"{c['name']:<{width}}  {measured:>10}  {c['tolerance']:<22}  {SYMBOL[c['status']]} {c['status']}")
        print(f"\n{chapter.slug}: {ex.result['seconds']:.1f} s on {ex.result['device']}")
        print(f"results: {ex.result_path}")
    print(f"executed notebook: {ex.notebook}")
    if ex.error:
        print(f"error: the chapter raised {ex.error}", file=sys.stderr)
        return 1
    if ex.result is None:
        print("error: the chapter finished without writing its results (does it end with run.finish()?)",
              file=sys.stderr)
        return 1
    return 0 if ex.result.get("passed") else 1


def cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepInterrupted, make_grid, run_sweep

    if args.jobs is not None and args.jobs < 1:
        raise ContractError(f"--jobs is the number of workers of the embedded cluster, at least 1; got {args.jobs}")
    grid = make_grid(
        args.chapter,
        args.param,
        args.seeds,
        args.scale,
        device=args.device,
        threads=args.threads,
        timeout=args.timeout,
    )
    out = Path(args.out) if args.out else grid.default_out()
    extra = ["--scheduler", args.scheduler] if args.scheduler else (["--jobs", str(args.jobs)] if args.jobs else [])
    try:
        outcome = run_sweep(
            grid,
            out,
            jobs=args.jobs,
            scheduler=args.scheduler,
            progress=not args.quiet,
            command=grid.command(out, extra),
        )
    except SweepInterrupted as err:
        print(str(err), file=sys.stderr)
        return 130
    return 0 if outcome.ok else 1


def cmd_run_all(args: argparse.Namespace) -> int:
    """Every chapter (or the ones named) at one scale and the given seeds, one process per point, on Dask."""
    import shutil

    from .chapters import discover
    from .contract import project_root, run_name
    from .sweep import SweepInterrupted, is_finished, make_grid, result_path, run_sweeps

    if args.jobs is not None and args.jobs < 1:
        raise ContractError(f"--jobs is the number of workers of the embedded cluster, at least 1; got {args.jobs}")
    root = project_root()
    chapters = discover(root)
    slugs = args.chapters or list(chapters)
    unknown = [s for s in slugs if s not in chapters]
    if unknown:
        raise ContractError(f"unknown chapter(s) {', '.join(unknown)}; chapters are: {', '.join(chapters)}")
    out = Path(args.out) if args.out else root / "_build" / "runs" / args.scale
    grids = [make_grid(chapters[s], [], args.seeds, args.scale, device=args.device, threads=args.threads,
                       timeout=args.timeout, root=root) for s in slugs]
    words = ["python", "-m", "phenomena", "run-all", *(args.chapters or []), "--scale", args.scale,
             "--seeds", *map(str, args.seeds)]
    for flag, value in (("--device", args.device), ("--jobs", args.jobs), ("--scheduler", args.scheduler),
                        ("--out", args.out), ("--ledger", args.ledger)):
        if value is not None:
            words += [flag, str(value)]
    try:
        outcomes = run_sweeps([(g, out / g.chapter) for g in grids], jobs=args.jobs, scheduler=args.scheduler,
                              progress=not args.quiet, command=" ".join(words), label="run")
    except SweepInterrupted as err:
        print(str(err), file=sys.stderr)
        return 130
    if args.ledger:
        ledger = Path(args.ledger)
        copied = 0
        for grid in grids:
            for point in grid.points():
                if is_finished(out / grid.chapter, point):
                    target = ledger / grid.chapter / f"{run_name(point.scale, point.seed)}.json"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(result_path(out / grid.chapter, point), target)
                    copied += 1
        print(f"ledger: {copied} result file(s) -> {ledger} (the scoreboard reads it)")
    return 0 if all(o.ok for o in outcomes) else 1


def cmd_cache_book(args: argparse.Namespace) -> int:
    """Execute the chapters missing from jupyter-book's cache, several at once (then the build only renders)."""
    import time

    from . import bookcache

    started = time.time()
    outcome = bookcache.fill(args.chapters or None, scale=scales.resolve(args.scale), jobs=args.jobs,
                             timeout=args.timeout)
    failed = [c.slug for c in outcome if c.status == "failed"]
    ran = [c for c in outcome if c.status == "executed"]
    print(f"book cache: {len(ran)} chapter(s) executed in {time.time() - started:.0f} s "
          f"(their serial sum: {sum(c.seconds for c in ran):.0f} s)"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def cmd_gather(args: argparse.Namespace) -> int:
    from .sweep import FIGURE, TABLE_CSV, TABLE_PARQUET, gather

    out = Path(args.dir)
    result = gather(out, figure=not args.no_figure)
    print(
        f"gathered {out}: {result.finished} point(s) finished, {result.failed} failed, {result.pending} not run; "
        f"{len(result.table)} row(s)\n  {out / TABLE_PARQUET}\n  {out / TABLE_CSV}"
        + ("" if args.no_figure else f"\n  {out / FIGURE}")
    )
    return 1 if result.failed else 0


def cmd_scoreboard(args: argparse.Namespace) -> int:
    from .chapters import discover
    from .contract import LEDGERS, project_root, results_dir
    from .scoreboard import SWEEP_TABLE, load_results, render, render_sweeps, write_if_changed

    root = project_root()
    if args.results:
        folders = [Path(f) for f in args.results]
    else:  # the tracked ledgers first, so that this machine's own fresh runs win over them
        folders = [root / path for path in LEDGERS.values() if (root / path).is_dir()] + [results_dir()]
    unique: dict[tuple, dict] = {}
    for folder in folders:
        for rec in load_results(folder):
            unique[(rec["chapter"], rec["scale"], rec["seed"], rec.get("device"))] = rec
    records = list(unique.values())
    try:
        chapters = discover(root)
    except ContractError:
        chapters = {}
    titles = {slug: ch.title for slug, ch in chapters.items()}
    docs = {slug: "/" + ch.path.resolve().relative_to(root.resolve()).with_suffix("").as_posix()
            for slug, ch in chapters.items()}
    text = render(records, titles, docs)
    out = Path(args.out) if args.out else root / "book" / "_generated" / "scoreboard-table.md"
    changed = write_if_changed(out, text)
    from . import benchmarks

    bench_out = out.parent / "benchmarks-table.md"
    write_if_changed(bench_out, benchmarks.render(benchmarks.load(root / "benchmarks" / "results")))
    if not args.quiet:
        print(text)
    print(f"scoreboard: {len(records)} result file(s) -> {out}" + ("" if changed else " (unchanged)"))
    # The page also includes a sweeps section: written with --sweep, otherwise left as it is (made empty if missing).
    sweep_out = Path(args.sweep_out) if args.sweep_out else out.parent / SWEEP_TABLE
    if args.sweep is not None or not sweep_out.is_file():
        sweep_text = render_sweeps([Path(d) for d in args.sweep or []], sweep_out.parent, titles)
        changed = write_if_changed(sweep_out, sweep_text)
        if args.sweep:
            if not args.quiet:
                print(sweep_text)
            print(f"scoreboard: {len(args.sweep)} sweep(s) -> {sweep_out}" + ("" if changed else " (unchanged)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m phenomena", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,run,run-all,sweep,gather,scoreboard,cache-book}")

    p_list = sub.add_parser("list", help="chapters, their parameters and claims")
    p_list.add_argument("-v", "--verbose", action="store_true", help="show parameter defaults and comments")
    p_list.set_defaults(func=cmd_list)

    p_run = sub.add_parser("run", help="execute one chapter through papermill and print its claims")
    p_run.add_argument("chapter", help="chapter slug (see `list`)")
    p_run.add_argument("--scale", default=None, help=f"one of {', '.join(scales.SCALES)} (default: $PHENOMENA_SCALE or default)")
    p_run.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p_run.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    p_run.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
                       help="set a chapter parameter (repeatable); VALUE is a Python literal or a string")
    p_run.add_argument("--output", help="executed notebook path (default _build/executed/CHAPTER/SCALE-seedN.ipynb)")
    p_run.add_argument("--results", help="results folder (default results/)")
    p_run.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p_run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_run.set_defaults(func=cmd_run)

    p_sw = sub.add_parser(
        "sweep",
        help="run a chapter over a grid of parameters and seeds on Dask (resumable), gathered into one table",
        description="Run CHAPTER at every point of the grid (the -p values times the seeds) through papermill, "
        "each point into DIR/runs/<point-id>/, on an embedded Dask cluster or an existing scheduler. "
        "Rerunning the same command skips finished points. Exit status: 0 every point finished, "
        "1 a point failed, 2 bad input, 130 interrupted.",
    )
    p_sw.add_argument("chapter", help="chapter slug (see `list`)")
    p_sw.add_argument("-p", "--param", nargs="+", action="append", metavar=("NAME", "VALUE"),
                      help="a parameter and its values: -p lr 0.004 0.005 (repeatable: the grid is the product)")
    p_sw.add_argument("--seeds", nargs="*", type=int, default=[0], metavar="SEED", help="seeds (default: 0)")
    p_sw.add_argument("--scale", default=None, help=f"one of {', '.join(scales.SCALES)} (default: $PHENOMENA_SCALE or default)")
    p_sw.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available on each worker)")
    engine = p_sw.add_mutually_exclusive_group()
    engine.add_argument("--jobs", type=int, default=None,
                        help="workers of the embedded Dask cluster, one point each (default: CPU cores / --threads)")
    engine.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="submit to an existing Dask scheduler instead (its workers must share this file system)")
    p_sw.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per point (default 1)")
    p_sw.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p_sw.add_argument("--out", metavar="DIR",
                      help="sweep folder (default sweeps/CHAPTER-SCALE-PARAMS-HASH: the same command, the same folder)")
    p_sw.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_sw.set_defaults(func=cmd_sweep)

    p_ra = sub.add_parser(
        "run-all",
        help="every chapter (or those named) at one scale on Dask, one process per chapter and seed (resumable)",
        description="Run the book's chapters (all in _toc.yml, or the CHAPTERs named) at --scale for each of "
        "--seeds, every run in its own process on an embedded Dask cluster (or an existing scheduler), "
        "longest-running ones sharing the workers with the rest. Each chapter's runs go into "
        "DIR/<chapter>/ as a sweep folder; finished runs are skipped when the same command is run again. "
        "With --ledger, finished results are copied into a tracked folder the scoreboard reads. "
        "Exit status: 0 every run finished, 1 a run failed, 2 bad input, 130 interrupted.",
    )
    p_ra.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter slugs (default: every chapter)")
    p_ra.add_argument("--scale", default=None, help=f"one of {', '.join(scales.SCALES)} (default: $PHENOMENA_SCALE or default)")
    p_ra.add_argument("--seeds", nargs="+", type=int, default=[0], metavar="SEED", help="seeds (default: 0)")
    p_ra.add_argument("--device", default=None, help="cpu, cuda, mps (default: the best available on each worker)")
    engine_ra = p_ra.add_mutually_exclusive_group()
    engine_ra.add_argument("--jobs", type=int, default=None, help="workers of the embedded Dask cluster (default: CPU cores)")
    engine_ra.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="an existing Dask scheduler")
    p_ra.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads per run (default 1)")
    p_ra.add_argument("--timeout", type=float, default=None, help="per-cell timeout in seconds")
    p_ra.add_argument("--out", metavar="DIR", help="runs folder (default _build/runs/SCALE)")
    p_ra.add_argument("--ledger", metavar="DIR", help="copy finished results here (e.g. book/results-full)")
    p_ra.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p_ra.set_defaults(func=cmd_run_all)

    p_cb = sub.add_parser(
        "cache-book",
        help="execute the chapters missing from jupyter-book's cache, several at once (make book does this)",
        description="Execute every chapter (or the CHAPTERs named) as stored, at --scale, several at once, and "
        "put the executed notebooks into jupyter-book's execution cache (_build/.jupyter_cache), so that "
        "`jupyter-book build` finds them and only renders. Chapters already cached are skipped. "
        "Exit status: 0 every chapter cached, 1 a chapter could not be executed (the build will retry it), "
        "2 bad input.",
    )
    p_cb.add_argument("chapters", nargs="*", metavar="CHAPTER", help="chapter slugs (default: every chapter)")
    p_cb.add_argument("--scale", default=None, help=f"one of {', '.join(scales.SCALES)} (default: $PHENOMENA_SCALE or default)")
    p_cb.add_argument("--jobs", type=int, default=None, help="chapters executed at once (default: CPU cores)")
    p_cb.add_argument("--timeout", type=float, default=900, help="per-cell timeout in seconds (as _config.yml)")
    p_cb.set_defaults(func=cmd_cache_book)

    p_ga = sub.add_parser("gather", help="rebuild a sweep's table (Parquet + CSV) and summary figure from its runs")
    p_ga.add_argument("dir", metavar="DIR", help="the sweep folder (holds sweep.json)")
    p_ga.add_argument("--no-figure", action="store_true", help="only the table")
    p_ga.set_defaults(func=cmd_gather)

    p_sb = sub.add_parser("scoreboard", help="render the scoreboard table from results JSON")
    p_sb.add_argument("--results", nargs="*", help="results folders (default results/)")
    p_sb.add_argument("--out", help="Markdown file to write (default book/_generated/scoreboard-table.md)")
    p_sb.add_argument("--sweep", nargs="*", metavar="DIR",
                      help="also show these sweeps on the scoreboard page (no DIR: remove the sweeps shown)")
    p_sb.add_argument("--sweep-out", help="Markdown file for the sweeps (default: sweep-table.md beside --out)")
    p_sb.add_argument("-q", "--quiet", action="store_true", help="do not print the table")
    p_sb.set_defaults(func=cmd_scoreboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "scale", None) is not None or args.command in ("run", "sweep", "run-all"):
        try:
            args.scale = scales.resolve(getattr(args, "scale", None))
        except ContractError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    try:
        return int(args.func(args))
    except ContractError as err:  # bad input only: any other exception is a bug and shows its traceback
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
