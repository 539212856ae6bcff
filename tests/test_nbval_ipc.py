"""nbval's kernels start over IPC with the phenomena.nbval_ipc plugin (and over TCP without it)."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest

CHECK = (
    "from ipykernel.kernelapp import IPKernelApp\n"
    "transport = IPKernelApp.instance().transport\n"
    "assert transport == 'ipc', transport"
)


def _nbval(tmp_path, *plugins: str) -> subprocess.CompletedProcess:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(CHECK)]
    path = tmp_path / "transport.ipynb"
    nbformat.write(nb, str(path))
    args = [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "-p", "no:xdist"]
    for plugin in plugins:
        args += ["-p", plugin]
    return subprocess.run([*args, "--rootdir", str(tmp_path), "-c", os.devnull, str(path)],
                          capture_output=True, text=True, cwd=tmp_path)


@pytest.mark.skipif(os.name != "posix", reason="IPC transport is POSIX only")
def test_the_plugin_starts_nbval_kernels_over_ipc(tmp_path):
    proc = _nbval(tmp_path, "phenomena.nbval_ipc")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]


def test_without_the_plugin_nbval_kernels_use_tcp(tmp_path):
    """The control: the same check fails on nbval's default kernel, so the test above can fail."""
    proc = _nbval(tmp_path)
    assert proc.returncode != 0 and "tcp" in proc.stdout, proc.stdout[-3000:]
