"""Write a chapter notebook from a list of (kind, source, metadata) cells, stored clean.

Authoring aid: chapters are edited as notebooks afterwards; this only saves typing JSON.
Usage from Python: ``write(path, cells)`` with cells as ("md"|"code", source[, metadata]).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat


def write(path: str | Path, cells: list[tuple[Any, ...]]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for cell in cells:
        kind, source = cell[0], cell[1].strip("\n")
        meta = cell[2] if len(cell) > 2 else {}
        if kind == "md":
            c = nbformat.v4.new_markdown_cell(source)
        else:
            c = nbformat.v4.new_code_cell(source)
        c.metadata.update(meta)
        nb.cells.append(c)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))


if __name__ == "__main__":
    sys.exit("import this module and call write(path, cells)")
