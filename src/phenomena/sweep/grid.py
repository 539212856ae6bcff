"""The grid of a sweep: which points it has, validated against the chapter before anything runs.

A sweep is the product of the ``-p NAME V1 V2 ...`` values and the seeds, at one scale. A point
is one execution of the chapter; its id is the first 12 hex digits of a SHA-256 of (chapter,
parameters, seed, scale), so the same point has the same folder in every sweep that contains it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import scales
from ..chapters import Chapter, ChapterError, get, parse_value
from ..contract import RESERVED, check_reserved, project_root

FORMAT = 1


class SweepError(ChapterError):
    """A sweep that cannot start (bad grid, unreachable scheduler, missing folder); the message says why."""


def point_id(chapter: str, params: Mapping[str, Any], seed: int, scale: str) -> str:
    """Stable id of one point: a hash of (chapter, parameters, seed, scale), 12 hex digits.

    Parameters are hashed after validation (``-p lr 1`` and ``-p lr 1.0`` are the same point of
    a float knob), by name, so their order on the command line does not matter.
    """
    key = json.dumps(
        {"chapter": chapter, "params": dict(params), "seed": int(seed), "scale": scale},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Point:
    """One execution of the grid: the chapter at one scale, one seed and one value per swept parameter."""

    chapter: str
    scale: str
    seed: int
    params: dict[str, Any] = field(hash=False)

    @property
    def id(self) -> str:
        return point_id(self.chapter, self.params, self.seed, self.scale)

    def describe(self) -> str:
        """``lr=0.004, seed=1``: how progress messages name the point."""
        return ", ".join([*(f"{k}={v!r}" for k, v in self.params.items()), f"seed={self.seed}"])


@dataclass(frozen=True)
class Grid:
    """A validated sweep: the chapter, the scale, the values of every swept parameter and the seeds.

    Saved as ``DIR/sweep.json`` so that :func:`gather` knows which points and parameters make
    the sweep. ``params`` keeps the command line's order (the first is the summary figure's x axis).
    """

    chapter: str
    chapter_path: str
    root: str
    scale: str
    seeds: tuple[int, ...]
    params: dict[str, list[Any]] = field(hash=False)
    device: str | None = None
    threads: int = 1
    timeout: float | None = None

    def points(self) -> list[Point]:
        """Every point, parameters varying slowest in command-line order, seeds fastest."""
        names = list(self.params)
        combos = itertools.product(*(self.params[n] for n in names)) if names else [()]
        return [
            Point(self.chapter, self.scale, seed, dict(zip(names, combo, strict=True)))
            for combo in combos
            for seed in self.seeds
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "chapter": self.chapter,
            "chapter_path": self.chapter_path,
            "root": self.root,
            "scale": self.scale,
            "seeds": list(self.seeds),
            "params": self.params,
            "device": self.device,
            "threads": self.threads,
            "timeout": self.timeout,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Grid:
        return cls(
            chapter=data["chapter"],
            chapter_path=data["chapter_path"],
            root=data.get("root", ""),
            scale=data["scale"],
            seeds=tuple(int(s) for s in data["seeds"]),
            params={k: list(v) for k, v in data["params"].items()},
            device=data.get("device"),
            threads=int(data.get("threads", 1)),
            timeout=data.get("timeout"),
        )

    def command(self, out: Path | None = None, extra: Sequence[str] = ()) -> str:
        """The command line that runs (or resumes) this sweep."""
        words = ["python", "-m", "phenomena", "sweep", self.chapter]
        for name, values in self.params.items():
            words += ["-p", name, *(_cli_value(v) for v in values)]
        words += ["--seeds", *map(str, self.seeds), "--scale", self.scale]
        if self.device:
            words += ["--device", self.device]
        if self.threads != 1:
            words += ["--threads", str(self.threads)]
        if self.timeout:
            words += ["--timeout", f"{self.timeout:g}"]
        words += list(extra)
        if out is not None:
            words += ["--out", str(out)]
        return shlex.join(words)

    def default_out(self) -> Path:
        """``<root>/sweeps/<chapter>-<scale>-<parameters>-<hash>``: the same command finds the same folder."""
        spec = json.dumps({"params": self.params, "seeds": list(self.seeds)}, sort_keys=True)
        digest = hashlib.sha256(f"{self.chapter}|{self.scale}|{spec}".encode()).hexdigest()[:6]
        names = "-".join(re.sub(r"[^A-Za-z0-9_]+", "", n) for n in self.params) or "seeds"
        return Path(self.root) / "sweeps" / f"{self.chapter}-{self.scale}-{names}-{digest}"


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else repr(value).replace(" ", "")


def make_grid(
    chapter: str | Chapter,
    params: Sequence[Sequence[str]] | None,
    seeds: Sequence[int] | None,
    scale: str | None = None,
    *,
    device: str | None = None,
    threads: int = 1,
    timeout: float | None = None,
    root: Path | None = None,
) -> Grid:
    """Validate a sweep's command line against the chapter and return its :class:`Grid`.

    ``params`` is a list of ``[NAME, V1, V2, ...]`` as typed after ``-p`` (strings, parsed as
    Python literals) or already-parsed values. Raises :class:`~phenomena.chapters.ChapterError`
    naming the problem and the valid choices: unknown chapter or parameter, a value of the wrong
    type, a parameter given twice, a repeated value, no values, no seeds.
    """
    root = Path(root) if root else project_root()
    ch = chapter if isinstance(chapter, Chapter) else get(chapter, root)
    scale = scales.resolve(scale)
    check_reserved(ch.slug, ch.parameters)
    knobs = [n for n in ch.parameters if n not in RESERVED]
    grid: dict[str, list[Any]] = {}
    for spec in params or []:
        if not spec:
            raise SweepError(f"-p needs a parameter name and its values; parameters of {ch.slug!r}: {', '.join(knobs)}")
        name, raw = str(spec[0]), list(spec[1:])
        check_reserved(ch.slug, ch.parameters, [name])
        if name not in ch.parameters:
            raise SweepError(
                f"chapter {ch.slug!r} has no parameter {name!r}; its parameters are: {', '.join(knobs) or '(none)'}"
            )
        if name in grid:
            raise SweepError(f"parameter {name!r} is given twice; give all its values after one -p {name}")
        if not raw:
            p = ch.parameters[name]
            raise SweepError(
                f"empty grid: -p {name} has no values; give one or more, e.g. -p {name} "
                f"{_cli_value(p.default) if p.default is not None else 'V1 V2'}"
            )
        values: list[Any] = []
        for text in raw:
            value = parse_value(text) if isinstance(text, str) else text
            (coerced,) = ch.validate({name: value}).values()
            if any(_same(coerced, v) for v in values):
                raise SweepError(f"parameter {name!r} lists the value {coerced!r} twice")
            values.append(coerced)
        grid[name] = values
    if seeds is None:
        seeds = [0]
    seeds = list(seeds)
    if not seeds:
        raise SweepError("empty grid: --seeds has no values; give one or more seeds, e.g. --seeds 0 1 2")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise SweepError(f"seeds are non-negative integers, got {s!r}")
    if len(set(seeds)) != len(seeds):
        raise SweepError(f"--seeds lists a seed twice: {' '.join(map(str, seeds))}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise SweepError(f"--threads is the number of torch threads per point, at least 1; got {threads!r}")
    if timeout is not None and not timeout > 0:
        raise SweepError(f"--timeout is a number of seconds per cell, above 0; got {timeout!r}")
    return Grid(
        chapter=ch.slug,
        chapter_path=str(Path(ch.path).resolve()),
        root=str(root.resolve()),
        scale=scale,
        seeds=tuple(seeds),
        params=grid,
        device=device,
        threads=threads,
        timeout=timeout,
    )


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
