"""Every chapter in _toc.yml: stored clean and well-formed, runs at `smoke`, reruns to the same claims table.

No per-chapter code: chapters are discovered from _toc.yml.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from phenomena.chapters import discover
from phenomena.execute import execute

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = discover(ROOT)
SLUGS = list(CHAPTERS)
BUILD = ROOT / "_build" / "test-notebooks"


def test_there_are_chapters():
    assert SLUGS, "no chapter notebook found in _toc.yml"


@pytest.mark.parametrize("slug", SLUGS)
def test_stored_clean_and_well_formed(slug):
    path = CHAPTERS[slug].path
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in code:
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"{slug}: store without outputs"
    tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert tags.count("parameters") == 1, f"{slug}: exactly one cell tagged 'parameters'"
    assert tags.count("nbval-check-output") == 1, f"{slug}: the claims table cell is tagged 'nbval-check-output'"
    params = CHAPTERS[slug].parameters
    assert {"scale", "seed", "device"} <= set(params), f"{slug}: parameters need scale, seed and device"
    assert params["scale"].default is None, f"{slug}: scale = None so that $PHENOMENA_SCALE applies"
    for p in params.values():
        assert p.comment, f"{slug}: parameter {p.name!r} needs a comment saying what it does"
    assert CHAPTERS[slug].claims, f"{slug}: checks no claim"
    for cell in code:
        src = "".join(cell["source"])
        if "plots.subplots(" in src or "plt.subplots(" in src:
            caption = cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption")
            assert caption, f"{slug}: a figure cell needs metadata mystnb.figure.caption"


@pytest.mark.parametrize("slug", SLUGS)
def test_papermill_parses_the_parameters_cell(slug):
    import papermill as pm

    inferred = pm.inspect_notebook(str(CHAPTERS[slug].path))
    assert set(inferred) == set(CHAPTERS[slug].parameters)


@pytest.mark.notebook
@pytest.mark.parametrize("slug", SLUGS)
def test_smoke_run_and_rerun(slug):
    """papermill at smoke (seed 0) passes its claims; nbval reruns it and must print the same claims table."""
    out = BUILD / slug / "smoke-seed0.ipynb"
    ex = execute(CHAPTERS[slug], scale="smoke", seed=0, output=out)
    assert ex.error is None, f"{slug} raised: {ex.error} (see {out})"
    assert ex.result is not None and ex.result["passed"], f"{slug}: claims failed, see {ex.result_path}"
    assert ex.result["scale"] == "smoke"
    assert any(c["status"] == "pass" for c in ex.result["claims"]), f"{slug}: no real claim checked at smoke"
    env = {**os.environ, "PHENOMENA_ROOT": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "--rootdir", str(out.parent), "-c", os.devnull, str(out)],
        capture_output=True, text=True, env=env, cwd=out.parent,
    )
    assert proc.returncode == 0, f"{slug}: nbval rerun differs or failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
