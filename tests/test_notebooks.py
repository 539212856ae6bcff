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

from phenomena.chapters import INSTALL_TAG, discover, install_cell_source
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
    ids = [c.get("id") for c in nb["cells"]]
    assert None not in ids and len(set(ids)) == len(ids), f"{slug}: every cell needs its own id (nbformat 4.5)"
    tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
    assert tags.count("parameters") == 1, f"{slug}: exactly one cell tagged 'parameters'"
    assert tags.count("nbval-check-output") == 1, f"{slug}: the claims table cell is tagged 'nbval-check-output'"
    first = nb["cells"][0]
    assert "".join(first["source"]) == install_cell_source(ROOT), f"{slug}: run tools/install_cells.py"
    assert {"remove-cell", INSTALL_TAG} <= set(first["metadata"].get("tags", [])), f"{slug}: hide the install cell"
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
    executed = json.loads(out.read_text())
    figures = [o for c in executed["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert figures, f"{slug}: no figure in the executed notebook (is the kernel's matplotlib backend inline?)"
    env = {**os.environ, "PHENOMENA_ROOT": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "phenomena.nbval_ipc",
         "--rootdir", str(out.parent), "-c", os.devnull, str(out)],
        capture_output=True, text=True, env=env, cwd=out.parent,
    )
    assert proc.returncode == 0, f"{slug}: nbval rerun differs or failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"


@pytest.mark.notebook
def test_a_downloaded_chapter_runs_against_the_installed_wheel(tmp_path):
    """Build a wheel of phenomena, install it (not editable) beside a fresh virtual environment outside
    the repository, and run one chapter from a folder that holds only its .ipynb, as a reader who
    downloaded it would. The environment borrows this one's third-party packages (torch, papermill,
    ...) through a .pth line, never its editable phenomena."""
    import shutil
    import site
    import sysconfig
    import venv

    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ behind in it
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("phenomena-*.whl")
    installed = tmp_path / "installed"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(installed),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    env_dir = tmp_path / "reader-env"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()] or [sysconfig.get_paths()["purelib"]]
    Path(purelib, "reader.pth").write_text("\n".join([str(installed), *borrowed]) + "\n")

    chapter = CHAPTERS["large-step-logistic"] if "large-step-logistic" in CHAPTERS else CHAPTERS[SLUGS[0]]
    folder = tmp_path / "downloads"
    folder.mkdir()
    shutil.copy(chapter.path, folder / chapter.path.name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHENOMENA_") and k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    where = subprocess.run([str(python), "-c", "import phenomena; print(phenomena.__file__)"],
                           capture_output=True, text=True, env=env, cwd=folder, check=True).stdout.strip()
    assert where.startswith(str(installed)), f"phenomena came from {where}, not from the wheel"
    proc = subprocess.run(
        [str(python), "-m", "papermill", chapter.path.name, "executed.ipynb", "-p", "scale", "smoke",
         "--kernel", "python3", "--no-progress-bar"],
        capture_output=True, text=True, env=env, cwd=folder, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result,) = (folder / "results" / chapter.slug).glob("smoke-seed0.json")
    record = json.loads(result.read_text())
    assert record["passed"] and record["complete"]
    assert record["params"], "the knobs are recorded even without the book's _toc.yml"
