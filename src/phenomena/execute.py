"""Execute one chapter through papermill and collect its results file.

Used by ``python -m phenomena run``, by the tests and by sweeps. Parameters are validated
against the chapter's ``parameters`` cell before a kernel starts.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from . import scales
from .chapters import Chapter
from .contract import RESULTS_ENV, ROOT_ENV, check_reserved, project_root, result_path, run_name


@dataclass
class Execution:
    """What one execution produced: the executed notebook, the results record (if written) and any error."""

    notebook: Path
    result_path: Path
    result: dict[str, Any] | None
    error: str | None
    seconds: float

    @property
    def claims_failed(self) -> bool:
        return self.result is not None and not self.result.get("passed", False)

    @property
    def ok(self) -> bool:
        return self.error is None and self.result is not None and bool(self.result.get("passed"))


@lru_cache(maxsize=1)
def _ipc_folder() -> str:
    """One private folder per process for the kernels' IPC sockets, removed when the process ends."""
    folder = tempfile.mkdtemp(prefix="phenomena-kernels-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def use_ipc(manager: Any) -> None:
    """Make a jupyter kernel manager start its kernel over IPC (Unix sockets in a private temporary
    folder) instead of TCP, on POSIX systems; call before the kernel starts.

    A local kernel needs no network port, and ipykernel warns at every start that TCP traffic is
    unencrypted; over IPC it has no reason to. Off POSIX systems TCP stays.
    """
    if os.name == "posix":
        manager.transport = "ipc"
        manager.ip = os.path.join(_ipc_folder(), f"kernel-{uuid.uuid4().hex[:12]}")


def _kernel_manager_class(env: Mapping[str, str], log: Path | None = None) -> type:
    """A jupyter kernel manager that starts its kernel with ``env`` added to this process's environment.

    The kernel gets its variables (results folder, thread counts) at launch, without touching
    ``os.environ``: two chapters executed at once by two threads of one process (a Dask worker
    with several threads) cannot see each other's results folder. With ``log``, the kernel
    process's own stdout and stderr (its start-up warnings, a crash) go to that file.

    The kernel talks to us over IPC (:func:`use_ipc`), not TCP.
    """
    from jupyter_client.manager import AsyncKernelManager

    extra = {str(k): str(v) for k, v in env.items()}

    class KernelManagerWithEnv(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            use_ipc(self)
            kw["env"] = {**os.environ, **(kw.get("env") or {}), **extra}
            if log is None:
                await super().start_kernel(**kw)
                return
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as fh:
                kw.update(stdout=fh, stderr=fh)
                await super().start_kernel(**kw)

    return KernelManagerWithEnv


def build_parameters(chapter: Chapter, scale: str, seed: int, device: str | None, params: dict[str, Any]) -> dict:
    """The papermill parameters for one run, validated against the chapter's ``parameters`` cell."""
    scale = scales.resolve(scale)
    check_reserved(chapter.slug, chapter.parameters, params)
    values = chapter.validate(dict(params))
    return {"scale": scale, "seed": int(seed), "device": device, **values}


def execute(
    chapter: Chapter,
    *,
    scale: str,
    seed: int = 0,
    device: str | None = None,
    params: dict[str, Any] | None = None,
    output: Path | None = None,
    results: Path | None = None,
    timeout: float | None = None,
    progress: bool = False,
    env: Mapping[str, str] | None = None,
    kernel_log: Path | None = None,
) -> Execution:
    """Run ``chapter`` at ``scale``/``seed`` with ``params``; never raises for a failing chapter.

    The executed notebook goes to ``output`` (default ``_build/executed/<slug>/<scale>-seed<seed>.ipynb``),
    the results file to ``results`` (default ``<root>/results``). A failed claim or an exception in
    the notebook is reported in the returned :class:`Execution`, not raised. ``env`` adds
    environment variables for the kernel only (e.g. ``OMP_NUM_THREADS``); this process's
    environment is left alone, so that threads may execute chapters side by side. ``kernel_log``
    receives the kernel process's own output (default: this process's stdout/stderr).
    """
    import papermill as pm

    parameters = build_parameters(chapter, scale, seed, device, params or {})
    root = project_root(chapter.path.parent)
    name = run_name(parameters["scale"], seed)
    output = Path(output or root / "_build" / "executed" / chapter.slug / f"{name}.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    results = Path(results or root / "results").resolve()
    path = result_path(chapter.slug, parameters["scale"], seed, results)
    started = time.time()
    error: str | None = None
    kernel_env = {ROOT_ENV: str(root), **(env or {}), RESULTS_ENV: str(results)}
    try:
        pm.execute_notebook(
            str(chapter.path),
            str(output),
            parameters=parameters,
            cwd=str(chapter.path.parent),
            progress_bar=progress,
            execution_timeout=timeout,
            kernel_name="python3",
            kernel_manager_class=_kernel_manager_class(kernel_env, Path(kernel_log) if kernel_log else None),
        )
    except pm.PapermillExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
    result = None
    if path.is_file() and path.stat().st_mtime >= started - 1:
        result = json.loads(path.read_text())
    if result is not None and error and error.startswith("ClaimsFailed"):
        error = None  # the claims table says what failed
    return Execution(output, path, result, error, time.time() - started)
