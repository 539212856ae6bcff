"""The three scales every chapter runs at, and the per-chapter size presets.

A chapter's experiment has one shape and three sizes: ``smoke`` (CI, every commit, a 2-core CPU,
45 s per chapter), ``default`` (the rendered book, a laptop CPU, 3 min) and ``full`` (one GPU,
10 min). The chapter declares its sizes for each scale in one place with :func:`preset`, so that
the narrative never branches on the scale.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from .contract import SCALE_ENV, ContractError, ContractTypeError

SCALES: tuple[str, ...] = ("smoke", "default", "full")
"""Scales from smallest to largest; a claim's ``min_scale`` refers to this order."""

ENV_VAR = SCALE_ENV

BUDGET_SECONDS: dict[str, float] = {"smoke": 45.0, "default": 180.0, "full": 600.0}
"""Wall-clock budget of one chapter at each scale (smoke and default on 2 CPU cores, full on one GPU)."""


def resolve(scale: str | None = None) -> str:
    """Return a valid scale name.

    ``None`` means "not chosen here": ``$PHENOMENA_SCALE`` if set, else ``"default"``.
    Anything else must be one of :data:`SCALES`; the error names the valid ones.
    """
    if scale is None:
        scale = os.environ.get(ENV_VAR) or "default"
        source = f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default"
    else:
        source = "the scale argument"
    if not isinstance(scale, str):
        raise ContractTypeError(
            f"scale must be a string, one of {', '.join(SCALES)}; got {scale!r} ({type(scale).__name__})"
        )
    name = scale.strip().lower()
    if name not in SCALES:
        raise ContractError(f"unknown scale {scale!r} (from {source}); valid scales are: {', '.join(SCALES)}")
    return name


def rank(scale: str) -> int:
    """Position of ``scale`` in :data:`SCALES` (smoke=0, default=1, full=2)."""
    return SCALES.index(resolve(scale))


def at_least(scale: str, minimum: str) -> bool:
    """Whether ``scale`` is ``minimum`` or larger."""
    return rank(scale) >= rank(minimum)


def preset(
    scale: str | None,
    *,
    smoke: Mapping[str, Any],
    default: Mapping[str, Any],
    full: Mapping[str, Any],
    **overrides: Any,
) -> SimpleNamespace:
    """Pick a chapter's sizes for ``scale``.

    The three mappings must have the same keys, so a chapter cannot forget a size at one scale.
    ``overrides`` replace a preset value when they are not ``None`` (the chapter's parameters
    cell uses ``None`` for "take the scale's value"); an override that names no size is an error.

    >>> preset("smoke", smoke={"steps": 10}, default={"steps": 100}, full={"steps": 1000}).steps
    10
    """
    name = resolve(scale)
    tables = {"smoke": dict(smoke), "default": dict(default), "full": dict(full)}
    keys = set(tables["smoke"])
    for other in ("default", "full"):
        if set(tables[other]) != keys:
            missing = sorted(keys ^ set(tables[other]))
            raise ContractError(f"size presets must declare the same names at every scale; differ in: {missing}")
    chosen = dict(tables[name])
    for key, value in overrides.items():
        if key not in keys:
            raise ContractError(f"override {key!r} is not a size of this chapter; sizes are: {', '.join(sorted(keys))}")
        if value is not None:
            chosen[key] = value
    return SimpleNamespace(**chosen)
