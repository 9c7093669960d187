"""Kernels of the ``cpu`` and ``parallel`` targets, built on first use and cached on disk.

Nothing here runs at ``import fastact``: the generated module (and Numba with it) is
imported by the first call that needs a kernel, and each ufunc is built the first time
its activation and operation are used.  ``numba.vectorize`` with explicit signatures
compiles (or loads from the disk cache) every signature at once; we then keep the plain
:class:`numpy.ufunc` it wraps, whose call costs a third of the ``DUFunc`` wrapper's.
"""

from __future__ import annotations

import importlib
import threading
from functools import lru_cache

import numpy as np

from fastact._spec import DTYPES

_lock = threading.RLock()
_module = None


class StaleKernelsError(RuntimeError):
    pass


def kernels():
    """The generated kernel module, checked against the declarations it was made from."""
    global _module
    if _module is None:
        with _lock:
            if _module is None:
                mod = importlib.import_module("fastact._kernels_cpu")
                from fastact import _codegen

                try:
                    current = _codegen.declarations_digest()
                except OSError:  # installed without sources: nothing to compare against
                    current = mod.DECLARATIONS_SHA256
                if current != mod.DECLARATIONS_SHA256:
                    raise StaleKernelsError(
                        "fastact/_kernels_cpu.py was generated from another version of "
                        "fastact/declarations.py; run `python -m fastact._codegen`"
                    )
                _module = mod
    return _module


@lru_cache(maxsize=None)
def ufunc(kernel: str, nargs: int, dtypes: tuple[str, ...] = DTYPES) -> np.ufunc:
    """The single-threaded ufunc of a generated scalar kernel with ``nargs`` inputs
    (parameters included), compiled for ``dtypes``."""
    from numba import vectorize

    sigs = [f"{t}({', '.join([t] * nargs)})" for t in dtypes]
    with _lock:  # building the same DUFunc twice from two threads is wasted work
        return vectorize(sigs, cache=True, nopython=True)(getattr(kernels(), kernel)).ufunc


@lru_cache(maxsize=None)
def gufunc(name: str, op: str, nrows: int) -> np.ufunc:
    """The single-threaded gufunc of a row-wise operation with ``nrows`` input rows."""
    from numba import guvectorize

    layout = ",".join(["(n)"] * nrows) + "->(n)"
    sigs = [f"void({', '.join([t + '[:]'] * (nrows + 1))})" for t in DTYPES]
    with _lock:
        return guvectorize(sigs, layout, cache=True, nopython=True)(getattr(kernels(), f"{name}__{op}")).ufunc


def parallel(name: str, op: str):
    """The multi-threaded loop of an operation: ``kernel(out, *inputs, *params)``."""
    return getattr(kernels(), f"{name}__{op}__parallel")
