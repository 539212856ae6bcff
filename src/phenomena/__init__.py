"""Learning Dynamics, Reproduced: the thin shared package behind the book's chapters.

A chapter starts with ``run = phenomena.setup(scale, seed, device, chapter="<slug>")`` and ends
with ``run.finish()``. The map of the package (which module holds what) and the glossary (one
name per concept) are in the README's "Writing a chapter" section; in one line each:

- :mod:`.contract` the chapter contract (root, results path, reserved knobs), no torch;
- :mod:`.run` ``setup`` and the ``Run`` it returns; :mod:`.scales`, :mod:`.claims`;
- :mod:`.ensemble` many models trained as one (``fit``, optimizers, ``DivergenceError``),
  :mod:`.train` shortcuts on top of it; :mod:`.samplers` minibatch samplers over multi-domain
  data; :mod:`.robust` robust averages of per-example gradients;
- :mod:`.models`, :mod:`.data`, :mod:`.metrics`, :mod:`.theory`; :mod:`.experiments` (one per chapter);
- the drivers :mod:`.chapters`, :mod:`.execute`, :mod:`.sweep`, :mod:`.scoreboard`, :mod:`.bookcache`,
  :mod:`.nbval_ipc` (a pytest plugin: nbval's kernels over IPC) and the CLI.

Torch is imported on first use of ``setup``, ``Run`` or ``DivergenceError``, so that the command
line (``python -m phenomena list``) and the scoreboard start without it.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .claims import Claim, ClaimsFailed, Report
from .scales import SCALES

_LAZY = {"setup": "run", "Run": "run", "DivergenceError": "ensemble"}

__all__ = ["SCALES", "Claim", "ClaimsFailed", "DivergenceError", "Report", "Run", "__version__", "setup"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
