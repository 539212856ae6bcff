"""A pytest plugin that makes nbval start its kernels over IPC instead of TCP.

nbval (``pytest --nbval-lax``) starts one kernel per notebook with jupyter_client's plain
``KernelManager``, which listens on TCP ports; ipykernel then warns at every start that the traffic
is unencrypted. The book's own runs (``phenomena run``, sweeps, the book cache) start their kernels
over IPC (:func:`phenomena.execute.use_ipc`); this plugin gives nbval's kernels the same transport,
so no kernel of the test suite listens on a port and none has a reason to warn.

Use: ``pytest --nbval-lax -p phenomena.nbval_ipc chapter.ipynb`` (the notebook tests do).
"""

from __future__ import annotations

from typing import Any

import pytest


def ipc_kernel_manager_class() -> type:
    """jupyter_client's ``KernelManager``, made to start its kernel over IPC."""
    from jupyter_client.manager import KernelManager

    from .execute import use_ipc

    class IPCKernelManager(KernelManager):
        def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            use_ipc(self)
            super().start_kernel(**kw)

    return IPCKernelManager


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """Swap the manager class that ``nbval.kernel.start_new_kernel`` instantiates (nbval 0.11 names it
    ``KernelManager`` at module level; it offers no option for the transport)."""
    try:
        import nbval.kernel as nbval_kernel
    except ImportError:  # nbval not installed: nothing to configure
        return
    if not hasattr(nbval_kernel, "KernelManager"):
        raise RuntimeError("phenomena.nbval_ipc: nbval.kernel has no KernelManager to replace; "
                           "this nbval version starts kernels differently, update the plugin")
    nbval_kernel.KernelManager = ipc_kernel_manager_class()
