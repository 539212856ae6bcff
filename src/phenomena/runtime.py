"""Process-wide settings that make small-model training on the CPU fast.

The ensemble engine's activations are a few MB each and are allocated afresh at every step.
glibc's ``malloc`` serves blocks that large with ``mmap`` and hands them back to the kernel on
``free``, so every step pays a page fault per 4 kB page of every activation, gradient and
temporary: on the 2-core CI machine that is about 0.3 ms per 1 MB tensor, more than the matmul
that fills it. Keeping freed memory in the heap for reuse removes that cost (about 1.5x per step
on ``benchmarks/ensemble.py``'s small case). PyTorch's CPU tuning guide recommends a caching
allocator (jemalloc, tcmalloc) for the same reason; this asks glibc itself, so nothing needs
installing or preloading.

:func:`phenomena.setup` calls :func:`retain_freed_memory`; set ``PHENOMENA_SYSTEM_MALLOC=1`` to
leave the allocator as it is (to measure the difference, or where memory must go back to the OS).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3

_state: dict[str, bool | str] = {"applied": False, "why": "not asked"}


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 1 << 30) -> bool:
    """Ask glibc to serve blocks up to ``mmap_threshold`` bytes from the heap and to keep up to
    ``trim_threshold`` bytes of freed heap for reuse. Returns whether the setting took effect.

    A no-op (returning ``False``, with the reason in :func:`allocator_status`) off glibc Linux, or
    when ``PHENOMENA_SYSTEM_MALLOC=1``. Safe to call more than once. The cost: the process keeps
    up to ``trim_threshold`` of freed memory instead of returning it to the OS.
    """
    if os.environ.get("PHENOMENA_SYSTEM_MALLOC", "") not in ("", "0"):
        _state.update(applied=False, why="PHENOMENA_SYSTEM_MALLOC is set")
        return False
    if not sys.platform.startswith("linux"):
        _state.update(applied=False, why=f"not glibc Linux ({sys.platform})")
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as err:  # musl and others have no mallopt
        _state.update(applied=False, why=f"no mallopt in the C library ({err})")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    _state.update(applied=ok, why="applied" if ok else "mallopt refused the values")
    return ok


def allocator_status() -> str:
    """One line for provenance and benchmark records: whether freed memory is retained, and why not."""
    return "retain-freed" if _state["applied"] else f"system ({_state['why']})"
