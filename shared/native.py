"""Small C kernels compiled at first use with the system C compiler and called through ctypes.

Some inner loops have no fast torch op on CPU (the ReID metric's compare-and-count, k-NN attention's
per-row k-th largest score). Rather than a torch C++ extension (minutes of compiling against the torch
headers, ninja), such a loop is a few lines of plain C built in well under a second into a private
temporary directory of the process (removed as soon as the library is loaded: nothing is left behind)
and called through ctypes, which drops the GIL, so rows are split over ``torch.get_num_threads()``
Python threads.

Every caller keeps a pure-torch fallback: :func:`load_c` returns None without a compiler, when the build
fails, when the library cannot be loaded (e.g. a ``noexec`` temp folder), or when ``VISIONREPRO_NATIVE=0``
(or the kernel's own variable, e.g. ``VISIONREPRO_REID_NATIVE=0``) is set, and the caller then runs the
torch path.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

_libs: dict[str, ctypes.CDLL | None] = {}
_pool: dict[str, object] = {}


def native_enabled(env: str | None = None) -> bool:
    """False when ``VISIONREPRO_NATIVE=0`` or the kernel's own ``env`` variable is ``0``."""
    if os.environ.get("VISIONREPRO_NATIVE", "1") == "0":
        return False
    return env is None or os.environ.get(env, "1") != "0"


def load_c(name: str, source: str, functions: dict[str, Sequence[object]], env: str | None = None,
           openmp: bool = False) -> ctypes.CDLL | None:
    """Compile ``source`` once per process and return the library, or None (see module docstring).

    ``functions``: symbol -> ctypes argtypes (every function returns void). Tried with
    ``-O3 -march=native`` first, then plain ``-O3``. ``openmp``: also try ``-fopenmp`` first. The
    library then shares torch's OpenMP runtime (torch has already loaded ``libgomp.so.1``, and the
    loader reuses a library of that name), so its parallel loops run on torch's own worker threads
    instead of racing them for the cores; without OpenMP the pragmas are ignored (one thread).
    """
    if not native_enabled(env):
        return None
    if name not in _libs:
        _libs[name] = _build(name, source, functions, openmp)
    return _libs[name]


def _build(name: str, source: str, functions: dict[str, Sequence[object]], openmp: bool) -> ctypes.CDLL | None:
    """Compile and load in a private temp folder, removed right after loading (the loaded library stays
    mapped); None on any failure, e.g. no compiler, a failing build, or a ``noexec`` temp folder."""
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        return None
    tmp = tempfile.mkdtemp(prefix=f"visionrepro_{name}_")
    try:
        src, lib = os.path.join(tmp, f"{name}.c"), os.path.join(tmp, f"{name}.so")
        with open(src, "w") as f:
            f.write(source)
        tries = [["-O3", "-march=native"], ["-O3"]]
        if openmp:
            tries = [[*t, "-fopenmp"] for t in tries] + tries
        for flags in tries:
            try:
                build = subprocess.run([cc, *flags, "-shared", "-fPIC", "-o", lib, src, "-lm"], capture_output=True,
                                       timeout=120)
            except (OSError, subprocess.SubprocessError):
                continue
            if build.returncode != 0:
                continue
            try:
                dll = ctypes.CDLL(lib)
                for symbol, argtypes in functions.items():
                    fn = getattr(dll, symbol)
                    fn.restype, fn.argtypes = None, list(argtypes)
            except (OSError, AttributeError):  # noexec temp folder, missing symbol: use the torch path
                return None
            return dll
        return None
    except OSError:  # temp folder not writable
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def parallel_rows(call: Callable[[int, int], None], rows: int, threads: int | None = None) -> None:
    """Run ``call(r0, r1)`` on contiguous row ranges covering ``[0, rows)``, one per thread.

    ``threads`` defaults to ``torch.get_num_threads()``; ranges never outnumber rows.
    """
    n = max(1, min(threads or torch.get_num_threads(), rows))
    bounds = [(i * rows // n, (i + 1) * rows // n) for i in range(n)]
    if n == 1:
        call(0, rows)
        return
    if _pool.get("size") != n:
        _pool["pool"], _pool["size"] = ThreadPoolExecutor(n, thread_name_prefix="visionrepro-native"), n
    list(_pool["pool"].map(lambda b: call(*b), bounds))


__all__ = ["load_c", "native_enabled", "parallel_rows"]
