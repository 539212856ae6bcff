"""Fill jupyter-book's execution cache with every chapter, several chapters at once.

``jupyter-book build`` (through myst-nb, ``execute_notebooks: cache``) executes the notebooks
whose code is not in its cache *one after another*. A chapter spends its time in its own kernel
process, so on a machine with several cores the book builds about as fast as its longest
chapter plus the rest divided over the cores, if the chapters run side by side first and their
executed notebooks are put into the same cache. That is what :func:`fill` does; the build then
finds every chapter cached and only renders.

The cache is jupyter-cache's (the one jupyter-book reads, ``_build/.jupyter_cache``), keyed by
a hash of the notebook's code cells and kernelspec. So each chapter is executed *as stored*:
no parameters are injected (papermill would add a cell and change the hash); the scale comes
from ``$PHENOMENA_SCALE`` as in the book build, and the kernel starts in the chapter's folder
like myst-nb's. Cell timings are not recorded, since they would enter the hash through the
cells' metadata. The execution time is stored as myst-nb stores it, so the book's runtime
table stays right.

Kernels talk over IPC (see :mod:`phenomena.execute`). Chapters run on threads, one kernel
process each; the cache database is written only by the calling thread.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from .chapters import Chapter, discover
from .contract import LEDGERS, ROOT_ENV, SCALE_ENV, ContractError, project_root, run_name

CACHE_FOLDER = Path("_build") / ".jupyter_cache"
"""Where jupyter-book 1.x keeps its execution cache (``<build dir>/.jupyter_cache``)."""


@dataclass(frozen=True)
class Cached:
    """What happened to one chapter: ``cached`` (already there), ``executed`` or ``failed``."""

    slug: str
    status: str
    seconds: float = 0.0
    error: str | None = None


def _read(path: Path):
    import nbformat

    return nbformat.read(str(path), as_version=4)


def is_cached(cache, path: Path) -> bool:
    """Whether jupyter-book would reuse a cached execution of the notebook at ``path``."""
    try:
        return cache.match_cache_notebook(_read(path)) is not None
    except KeyError:
        return False


def expected_seconds(slug: str, scale: str, root: Path) -> float:
    """A chapter's last recorded time at ``scale`` (seed 0, from the tracked ledgers), ``inf`` if none.

    Used only to start the longest chapters first: a long chapter started last would hold the
    build up after every other core has gone idle. Unknown chapters count as long.
    """
    for ledger in LEDGERS.values():
        path = root / ledger / slug / f"{run_name(scale, 0)}.json"
        try:
            return float(json.loads(path.read_text())["seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return float("inf")


def execute_stored(path: Path, env: Mapping[str, str], timeout: float | None, allow_errors: bool = True):
    """Execute the notebook at ``path`` as stored, in its own folder; return it with its outputs.

    ``allow_errors`` as in ``_config.yml`` (``execute.allow_errors``): a chapter whose claim
    fails still renders with its figures and the error, as the book build would show it.
    """
    from nbclient import NotebookClient

    from .execute import _kernel_manager_class

    nb = _read(path)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=allow_errors,
        record_timing=False,  # timings live in cell metadata, which the cache hashes
        resources={"metadata": {"path": str(path.parent)}},
        kernel_manager_class=_kernel_manager_class(env),
    )
    client.execute()
    return nb


def fill(
    slugs: Iterable[str] | None = None,
    *,
    scale: str = "default",
    jobs: int | None = None,
    timeout: float | None = 900,
    root: Path | None = None,
    cache_path: Path | None = None,
    log: Callable[[str], None] = print,
) -> list[Cached]:
    """Execute every chapter (or those in ``slugs``) missing from the book's cache, ``jobs`` at once.

    Chapters already cached are skipped, so a second call costs nothing until a chapter's code
    changes. Returns one :class:`Cached` per chapter, in book order.
    """
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    root = (root or project_root()).resolve()
    chapters = discover(root)
    chosen = list(slugs) if slugs is not None else list(chapters)
    unknown = [s for s in chosen if s not in chapters]
    if unknown:
        raise ContractError(f"unknown chapter(s) {', '.join(unknown)}; chapters are: {', '.join(chapters)}")
    jobs = os.cpu_count() or 1 if jobs is None else jobs
    if jobs < 1:
        raise ContractError(f"jobs is the number of chapters executed at once, at least 1; got {jobs}")
    cache = get_cache(str(cache_path or root / CACHE_FOLDER))
    outcome: dict[str, Cached] = {}
    todo: list[Chapter] = []
    for slug in chosen:
        if is_cached(cache, chapters[slug].path):
            outcome[slug] = Cached(slug, "cached")
        else:
            todo.append(chapters[slug])
    todo.sort(key=lambda ch: -expected_seconds(ch.slug, scale, root))
    env = {**os.environ, ROOT_ENV: str(root), SCALE_ENV: scale, "MPLBACKEND": "Agg"}
    log(f"book cache: {len(outcome)} chapter(s) cached, {len(todo)} to execute at {scale!r}, {jobs} at once")

    def one(chapter: Chapter):
        started = time.time()
        nb = execute_stored(chapter.path, env, timeout)
        return nb, time.time() - started

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        running: dict[Future, Chapter] = {pool.submit(one, ch): ch for ch in todo}
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                chapter = running.pop(future)
                try:
                    nb, seconds = future.result()
                except Exception as err:  # a timeout or a dead kernel: the book build will try again
                    outcome[chapter.slug] = Cached(chapter.slug, "failed", error=f"{type(err).__name__}: {err}")
                    log(f"  {chapter.slug}: failed ({type(err).__name__}: {err})")
                    continue
                cache.cache_notebook_bundle(
                    CacheBundleIn(nb, str(chapter.path), data={"execution_seconds": seconds}),
                    check_validity=False,
                    overwrite=True,
                )
                outcome[chapter.slug] = Cached(chapter.slug, "executed", seconds)
                log(f"  {chapter.slug}: {seconds:.0f} s")
    return [outcome[s] for s in chosen]
