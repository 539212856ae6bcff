"""Give every chapter in _toc.yml its install cell (first cell, hidden in the HTML), or refresh it.

Run after changing ``repository.url`` in ``_config.yml`` or the package version:
``python tools/install_cells.py``. The tests check that every chapter's first cell is this one.
The notebook JSON is edited in place (same layout as Jupyter writes it), so the diff is the cell.
"""

from __future__ import annotations

import json
import sys
import uuid

from phenomena.chapters import INSTALL_TAG, discover, install_cell_source


def main() -> int:
    source = install_cell_source().splitlines(keepends=True)
    for chapter in discover().values():
        nb = json.loads(chapter.path.read_text())
        first = nb["cells"][0] if nb["cells"] else {}
        if INSTALL_TAG in first.get("metadata", {}).get("tags", []):
            if first["source"] == source:
                continue
            first["source"] = source
        else:
            nb["cells"].insert(0, {
                "cell_type": "code", "execution_count": None, "id": uuid.uuid4().hex[:8],
                "metadata": {"tags": ["remove-cell", INSTALL_TAG]}, "outputs": [], "source": source,
            })
        chapter.path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        print(f"install cell written: {chapter.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
