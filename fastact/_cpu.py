"""Kernels of the ``cpu`` and ``parallel`` targets, built on first use and cached on disk.

Nothing here runs at ``import fastact``: the generated module (and Numba with it) is
imported by the first call that needs a kernel, and each ufunc is built the first time
its activation and operation are used.  ``numba.vectorize`` with explicit signatures
compiles (or loads from the disk cache) every signature at once; we then keep the plain
:class:`numpy.ufunc` it wraps, whose call costs a third of the ``DUFunc`` wrapper's.
"""

from __future__ import annotations

import importlib
import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
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
                mod = _import_kernels()
                check_current(mod)
                _module = mod
    return _module


@lru_cache(maxsize=None)
def ufunc(kernel: str, nargs: int, dtypes: tuple[str, ...] = DTYPES) -> np.ufunc:
    """The single-threaded ufunc of a generated scalar kernel with ``nargs`` inputs
    (parameters included), for operands of ``dtypes``: made of the generated inner loops
    ``<kernel>__loop_<dtype>`` (see :mod:`fastact._loops`)."""
    mod = kernels()
    if _jit_disabled():
        return _PythonLoop(getattr(mod, kernel))
    from fastact import _loops

    fns = [getattr(mod, f"{kernel}__loop_{t}") for t in dtypes]
    with _lock:  # compiling the same loop twice from two threads is wasted work
        loops = [_build(lambda cache, fn=fn: _loops.loop(fn, cache, _tolerate_bad_entries), fn) for fn in fns]
        return _loops.ufunc(kernel, None, loops, dtypes, nargs)


@lru_cache(maxsize=None)
def gufunc(name: str, op: str, nrows: int) -> np.ufunc:
    """The single-threaded gufunc of a row-wise operation with ``nrows`` input rows."""
    from numba import guvectorize

    layout = ",".join(["(n)"] * nrows) + "->(n)"
    sigs = [f"void({', '.join([t + '[:]'] * (nrows + 1))})" for t in DTYPES]
    fn = getattr(kernels(), f"{name}__{op}")
    if _jit_disabled():
        return _PythonLoop(fn, rowwise=True)
    with _lock:
        return _build(lambda cache: guvectorize(sigs, layout, cache=cache, nopython=True)(fn).ufunc, fn)


def check_current(mod) -> None:
    """Raise :class:`StaleKernelsError` if the generated module ``mod`` was generated from
    other sources than those installed beside it."""
    from fastact import _codegen

    try:
        current = _codegen.declarations_digest()
    except OSError:  # installed without sources: nothing to compare against
        return
    if current != mod.DECLARATIONS_SHA256:
        path = "/".join(mod.__name__.split("."))
        sources = ", ".join(f"fastact/{p.name}" for p in _codegen.MATH_SOURCES)
        raise StaleKernelsError(
            f"{path}.py was generated from other versions of its sources ({sources}); "
            "run `python -m fastact._codegen`"
        )


def rows(name: str, op: str):
    """The single-threaded loop over the rows of a 2-d array: ``kernel(out, *inputs)``."""
    return getattr(kernels(), f"{name}__{op}__rows")


def parallel(name: str, op: str):
    """The multi-threaded loop of an operation: ``kernel(out, *inputs, *params)``."""
    return getattr(kernels(), f"{name}__{op}__parallel")


def blocks(name: str, op: str):
    """The multi-threaded loop of a row-wise operation over the blocks of each row, for a
    few long rows: ``kernel(out, *inputs)``."""
    return getattr(kernels(), f"{name}__{op}__blocks")


# --- robustness of the compile cache -------------------------------------------------------
#
# Numba caches compiled kernels next to the source (``__pycache__``), else in
# NUMBA_CACHE_DIR or the user's cache directory.  Three things go wrong in practice, and
# none of them may cost more than compile time:
#
# * no location is writable (a read-only install in a container without a home
#   directory): Numba refuses to create a cached function at all, so the kernels are
#   cached in a private per-user temporary directory instead, or not at all;
# * an index or data file is truncated or corrupt (a full disk, a killed process): Numba
#   raises while unpickling it, so the entry is discarded and the kernel recompiled;
# * processes populating the cache together: Numba writes each file to a temporary name
#   and renames it, so readers see a whole old or a whole new file (tested, not patched).

_fallback_cache_dir = None  # None: Numba's own locations work; "": no caching at all
_warned = False


def _import_kernels():
    try:
        mod = importlib.import_module("fastact._kernels_cpu")
    except RuntimeError as e:
        if "no locator available" not in str(e):
            raise
        _choose_fallback_cache_dir()
        with _cache_scope():
            mod = importlib.import_module("fastact._kernels_cpu")
    for obj in vars(mod).values():
        cache = getattr(obj, "_cache", None)
        if cache is not None and hasattr(cache, "load_overload"):
            _tolerate_bad_entries(cache)
    return mod


def _choose_fallback_cache_dir():
    global _fallback_cache_dir, _warned
    if _fallback_cache_dir is not None:
        return
    path = ""
    try:
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
        path = os.path.join(tempfile.gettempdir(), f"fastact-numba-cache-{user}")
        os.makedirs(path, mode=0o700, exist_ok=True)
        if hasattr(os, "getuid"):
            st = os.stat(path)
            # Cache files are pickles: never load them from a directory someone else owns.
            if st.st_uid != os.getuid() or st.st_mode & 0o022:
                path = tempfile.mkdtemp(prefix="fastact-numba-cache-")
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        path = ""
    _fallback_cache_dir = path
    if not _warned:
        _warned = True
        where = f"caches them in {path}" if path else "compiles them in every process"
        warnings.warn(
            "fastact: Numba can cache compiled kernels neither next to fastact, nor in "
            f"NUMBA_CACHE_DIR, nor in the user's cache directory; fastact {where} "
            "(set NUMBA_CACHE_DIR to a writable directory to choose the place)",
            RuntimeWarning,
            stacklevel=5,
        )


@contextmanager
def _cache_scope():
    """While building fastact's kernels: Numba's cache redirected to the fallback
    directory, or disabled, when its own locations are unwritable."""
    if _fallback_cache_dir is None:
        yield
        return
    from numba.core import config, dispatcher

    saved_dir, saved_enable = config.CACHE_DIR, dispatcher.Dispatcher.enable_caching
    if _fallback_cache_dir:
        config.CACHE_DIR = _fallback_cache_dir
    else:
        dispatcher.Dispatcher.enable_caching = lambda self: None
    try:
        yield
    finally:
        config.CACHE_DIR, dispatcher.Dispatcher.enable_caching = saved_dir, saved_enable


def _tolerate_bad_entries(cache):
    """Make a Numba cache treat an unreadable entry as missing (and drop its index, so the
    recompiled kernel is saved afresh) and a failed save as no save."""
    load, save = cache.load_overload, cache.save_overload

    def load_overload(sig, target_context):
        try:
            return load(sig, target_context)
        except Exception:  # noqa: BLE001 - any unreadable entry: recompile
            _discard_index(cache)
            return None

    def save_overload(sig, data):
        try:
            save(sig, data)
        except Exception:  # noqa: BLE001 - the kernel works; it is just not cached
            pass

    cache.load_overload, cache.save_overload = load_overload, save_overload


def _discard_index(cache) -> bool:
    try:
        os.remove(cache._cache_file._index_path)
        return True
    except (AttributeError, OSError):
        return False


def _build(make, fn):
    """``make(cache=True)``, recovering from a broken cache: an unwritable one (see
    :func:`_cache_scope`) or an unreadable entry (discarded, then rebuilt)."""
    try:
        with _cache_scope():
            return make(True)
    except Exception as first:  # noqa: BLE001
        error = first
    if "no locator available" in str(error):
        _choose_fallback_cache_dir()
    else:
        _discard_entries(fn)
    for cache in (True, False):
        try:
            with _cache_scope():
                return make(cache)
        except Exception:  # noqa: BLE001
            continue
    raise error


def _discard_entries(fn):
    """Remove the cache indexes of ``fn``'s ufunc and of its gufunc wrapper."""
    try:
        from numba.core.caching import FunctionCache
        from numba.np.ufunc.wrappers import GufWrapperCache

        with _cache_scope():
            for cls in (FunctionCache, GufWrapperCache):
                _discard_index(cls(fn))
    except Exception:  # noqa: BLE001 - nothing more to try; the rebuild decides
        pass


# --- NUMBA_DISABLE_JIT=1 -------------------------------------------------------------------


def _jit_disabled() -> bool:
    from numba.core import config

    return bool(config.DISABLE_JIT)


class _PythonLoop:
    """What :func:`ufunc` and :func:`gufunc` return under ``NUMBA_DISABLE_JIT=1`` (where
    ``numba.vectorize`` cannot compile kernels that call uncompiled functions): the scalar
    kernel called from Python, element by element or row by row.  Slow, and computed in
    Python floats, but the same math, so that the kernels can be debugged."""

    def __init__(self, fn, rowwise=False):
        self.fn, self.rowwise = fn, rowwise

    def __call__(self, *args, out=None, axis=-1):
        arrays = [np.asarray(a) for a in args]
        dtype = np.result_type(*arrays)
        if self.rowwise:
            rows = [np.moveaxis(a, axis, -1) for a in np.broadcast_arrays(*arrays)]
            res = np.empty(rows[0].shape, dtype)
            for idx in np.ndindex(*res.shape[:-1]):
                self.fn(*(r[idx] for r in rows), res[idx])
            res = np.moveaxis(res, -1, axis)
        else:
            res = np.vectorize(self.fn, otypes=[dtype])(*arrays)
        if out is None:
            return res
        np.copyto(out, res, casting="unsafe")
        return out
