"""The chapter contract, in one place: where the book lives, where results go, what a run is called.

Both sides of a chapter read this module: the kernel (:func:`phenomena.setup` writes the results
file) and the drivers (``python -m phenomena run``, sweeps, the tests, the scoreboard) that find
it. It imports no torch, so that ``python -m phenomena list`` and the scoreboard start quickly.

The contract:

- the book's root is the folder holding ``_toc.yml`` and ``src/phenomena`` (``$PHENOMENA_ROOT`` wins);
- a chapter's results go to ``<results>/<chapter>/<scale>-seed<seed>.json``, ``<results>`` being
  ``$PHENOMENA_RESULTS`` or ``<root>/results``;
- every chapter's ``parameters`` cell has the reserved knobs ``scale``, ``seed`` and ``device``,
  which drivers set with their own flags (``--scale``, ``--seed``/``--seeds``, ``--device``),
  never with ``-p``.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

RESULTS_ENV = "PHENOMENA_RESULTS"
ROOT_ENV = "PHENOMENA_ROOT"
SCALE_ENV = "PHENOMENA_SCALE"
THREADS_ENV = "PHENOMENA_THREADS"

#: The knobs every chapter's ``parameters`` cell must have, and the driver flag that sets each.
RESERVED: dict[str, str] = {"scale": "--scale", "seed": "--seed (--seeds in a sweep)", "device": "--device"}


#: Tracked folders of results that cost more than a build (full scale on a GPU, seed-robustness runs),
#: relative to the root; the scoreboard reads them besides ``results/``.
LEDGERS: dict[str, str] = {"full": "book/results-full", "seeds": "book/results-seeds"}


class ContractError(ValueError):
    """Bad input: a chapter, parameter, scale or value that breaks the contract; the message says what is valid.

    The command line maps exactly these (and their subclasses) to "bad input" (exit status 2); any
    other exception is a bug and shows its traceback.
    """


class ContractTypeError(ContractError, TypeError):
    """Bad input of the wrong type (a scale that is not a string, a seed that is not an integer)."""


def project_root(start: Path | None = None) -> Path:
    """The book's root folder (the one holding ``_toc.yml`` and ``src/phenomena``).

    ``$PHENOMENA_ROOT`` wins; otherwise walk up from ``start`` (default: the working directory,
    which is the notebook's folder under Jupyter, papermill and jupyter-book), then from this
    package's location (an editable install). Falls back to the working directory, so that a
    chapter downloaded on its own still runs and writes ``./results``.
    """
    if os.environ.get(ROOT_ENV):
        return Path(os.environ[ROOT_ENV]).resolve()
    for base in (start or Path.cwd(), Path(__file__).resolve()):
        for folder in (base, *base.parents):
            if (folder / "_toc.yml").is_file() and (folder / "src" / "phenomena").is_dir():
                return folder
    return Path.cwd()


def results_dir(root: Path | None = None) -> Path:
    """Where result files go: ``$PHENOMENA_RESULTS`` or ``<root>/results``."""
    if os.environ.get(RESULTS_ENV):
        return Path(os.environ[RESULTS_ENV]).resolve()
    return (root or project_root()) / "results"


def run_name(scale: str, seed: int) -> str:
    """The stem every file of one run of a chapter is named by: ``<scale>-seed<seed>``."""
    return f"{scale}-seed{int(seed)}"


def result_path(chapter: str, scale: str, seed: int, results: Path | None = None) -> Path:
    """``<results>/<chapter>/<scale>-seed<seed>.json``: the one file a finished run writes."""
    return Path(results or results_dir()) / chapter / f"{run_name(scale, seed)}.json"


def check_reserved(chapter: str, knobs: Iterable[str], given: Iterable[str] = ()) -> None:
    """The one check of the reserved knobs, for every driver.

    ``knobs`` are the chapter's parameter names: each reserved one must be among them.
    ``given`` are the names a user set as chapter parameters (``-p NAME ...``): none may be reserved.
    """
    knobs = list(knobs)
    missing = [name for name in RESERVED if name not in knobs]
    if missing:
        raise ContractError(
            f"chapter {chapter!r} lacks the {', '.join(map(repr, missing))} knob(s) in its parameters cell; "
            "every chapter's parameters cell sets scale, seed and device"
        )
    clash = [name for name in given if name in RESERVED]
    if clash:
        flags = ", ".join(f"{name!r} is set with {RESERVED[name]}" for name in clash)
        others = ", ".join(k for k in knobs if k not in RESERVED) or "(none)"
        raise ContractError(f"{flags}, not with -p (e.g. --seeds 0 1 2, --scale smoke); "
                            f"the parameters of {chapter!r} are: {others}")


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one, never a part.

    The bytes are flushed and fsynced in a temporary file beside ``path``, then renamed over it:
    a sweep killed at any moment (or a power cut) leaves no half-written file that looks finished.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """:func:`write_bytes_atomic` of ``text`` in UTF-8."""
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: Path, payload: Mapping[str, Any]) -> None:
    """:func:`write_text_atomic` of ``payload`` as indented JSON (NaN and infinity allowed)."""
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")
