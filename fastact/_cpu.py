"""Kernels of the ``cpu`` and ``parallel`` targets, built on first use and cached on disk.

Nothing here runs at ``import fastact``: the generated module (and Numba with it) is
imported by the first call that needs a kernel, and each ufunc is built the first time
its activation and operation are used, from inner loops that are loaded from Numba's
disk cache (:mod:`fastact._loops`, :mod:`fastact._cache`).

A ``KeyboardInterrupt`` (Ctrl-C) that arrives while Numba is imported or a kernel is
compiled or loaded waits until that step is done (:mod:`fastact._interrupts`): Numba's
global state would not survive it.  A first import that fails anyway (another exception,
an interrupt in a thread other than the main one) forgets every module it had imported, so
that the next call starts the import afresh instead of finding a half-initialised Numba.
"""

from __future__ import annotations

import importlib
import os
import sys
from functools import lru_cache

import numpy as np

from fastact import _cache, _memory
from fastact._interrupts import defer_compiles, deferred
from fastact._locks import ForkSafeLock, wait_for_compiles_at_fork
from fastact._spec import DTYPES

_lock = ForkSafeLock(reentrant=True, hold_across_fork=True)
_module = None


class StaleKernelsError(RuntimeError):
    pass


def kernels():
    """The generated kernel module, checked against the declarations it was made from."""
    global _module
    if _module is None:
        with _lock, deferred():
            if _module is None:
                mod = _import_kernels()
                wait_for_compiles_at_fork()
                check_current(mod)
                _module = mod
    return _module


_importing = None  # while a thread imports the kernels: the modules imported before


def _import_kernels():
    global _importing
    before = _importing = set(sys.modules)
    try:
        try:
            mod = importlib.import_module("fastact._kernels_cpu")
        except RuntimeError as e:
            if "no locator available" not in str(e):
                raise
            _cache.choose_fallback_dir()
            with _cache.scope():
                mod = importlib.import_module("fastact._kernels_cpu")
    except BaseException:
        # An interrupted or failed first import: forget the half-imported modules (Numba's
        # among them), so that the next call imports them afresh.
        _forget_modules_since(before)
        raise
    finally:
        _importing = None
    protect_module(mod)
    return mod


def _forget_modules_since(before) -> None:
    """Remove the modules imported since ``before`` (a set of names) from ``sys.modules``
    and from their parent packages' attributes, so that the next import runs afresh."""
    for name in set(sys.modules) - before:
        module = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if parent and getattr(sys.modules.get(parent), child, None) is module:
            delattr(sys.modules[parent], child)


def _after_fork_in_child() -> None:
    """A thread of the parent was importing the kernels when another forked: in the child
    that import will never finish (the thread is gone, its import locks stay held), so
    the child forgets the half-imported modules and their locks and imports afresh."""
    global _importing
    before = _importing
    if before is None:
        return
    _importing = None
    new = set(sys.modules) - before
    _forget_modules_since(before)
    import importlib._bootstrap as bootstrap

    locks = getattr(bootstrap, "_module_locks", {})
    for name in list(locks):
        if name in new or name == "fastact._kernels_cpu":
            locks.pop(name, None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def protect_module(mod) -> None:
    """Protect the disk cache of every cached dispatcher of a kernel module (this one's, the
    loss layer's) and build its specialisations with Ctrl-C held off."""
    for obj in vars(mod).values():
        cache = getattr(obj, "_cache", None)
        if cache is not None and hasattr(cache, "load_overload"):
            _cache.protect(cache)
        if hasattr(obj, "_compile_for_args"):
            defer_compiles(obj)


@lru_cache(maxsize=None)
def ufunc(kernel: str, nargs: int, dtypes: tuple[str, ...] = DTYPES) -> np.ufunc:
    """The single-threaded ufunc of a generated scalar kernel with ``nargs`` inputs
    (parameters included), for operands of ``dtypes``: made of the generated inner loops
    ``<kernel>__loop_<dtype>`` (see :mod:`fastact._loops`)."""
    mod = kernels()
    from fastact import _loops

    if _loops.jit_disabled():
        return _PythonLoop(getattr(mod, kernel))

    fns = [getattr(mod, f"{kernel}__loop_{t}") for t in dtypes]
    with _lock, deferred():  # compiling the same loop twice from two threads is wasted work
        loops = [_build(lambda cache, fn=fn: _loops.loop(fn, cache, _cache.protect), fn) for fn in fns]
        return _loops.ufunc(kernel, None, loops, dtypes, nargs)


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
        sources = ", ".join(str(p.relative_to(_codegen.PACKAGE.parent)) for p in _codegen.MATH_SOURCES)
        raise StaleKernelsError(
            f"{path}.py was generated from other versions of its sources ({sources}); "
            "run `python -m fastact._codegen`"
        )


def rows(name: str, op: str):
    """The single-threaded loop over the rows of 2-d arrays: ``kernel(out, *inputs)``
    (``backward_x``: and a scratch row)."""
    return getattr(kernels(), f"{name}__{op}__rows")


def parallel(name: str, op: str):
    """The multi-threaded loop of an operation: ``kernel(out, *inputs, *params)``.  For an
    elementwise operation, a callable that runs ``<name>__<op>__parallel_inplace`` where
    ``out`` is the input the operation is usually in place on (see :class:`_InPlace`)."""
    mod = kernels()
    made = _PARALLEL.get((name, op))
    if made is None or made[0] is not mod:
        kernel = getattr(mod, f"{name}__{op}__parallel")
        if hasattr(mod, f"{name}__{op}__parallel_inplace"):
            from fastact._codegen import in_place_input

            kernel = _InPlace(kernel, getattr(mod, f"{name}__{op}__parallel_inplace"), in_place_input(op))
        made = _PARALLEL[name, op] = (mod, kernel)
    return made[1]


#: (name, op) -> (the kernel module, its multi-threaded kernel or _InPlace pair).
_PARALLEL: dict = {}


class _InPlace:
    """An elementwise multi-threaded kernel and its in-place twin, which reads input
    ``k`` through ``out``'s name: called with ``out`` that very array, the plain kernel
    would read and write one array under two names, and LLVM's run-time overlap check then
    runs its loop one element at a time (5 to 12 times slower)."""

    __slots__ = ("kernel", "in_place", "k")

    def __init__(self, kernel, in_place, k):
        self.kernel, self.in_place, self.k = kernel, in_place, k

    def __call__(self, out, *args):
        return (self.in_place if _memory.same_view(out, args[self.k]) else self.kernel)(out, *args)


def blocks(name: str, op: str):
    """The multi-threaded loop of a row-wise operation over the blocks of each row, for a
    few long rows: ``kernel(out, *inputs)``."""
    return getattr(kernels(), f"{name}__{op}__blocks")


def weighted(name: str, op: str, layout: str, parallel: bool):
    """A kernel of an activation with a weight array (see :func:`fastact._codegen._weighted`):
    ``layout`` is ``"chan"`` or ``"pos"``."""
    return getattr(kernels(), f"{name}__{op}__{layout}{'_parallel' if parallel else ''}")


def sum_parts(part, out):
    """The weight's gradient from a ``__chan`` kernel's block sums, into ``out``."""
    kernels()._sum_parts(part, out)


def sum_columns(cols, comp, inner, period, out):
    """The weight's gradient from a ``__pos`` kernel's column sums, into ``out``."""
    kernels()._sum_columns(cols, comp, inner, period, out)


def _build(make, fn):
    """``make(cache=True)``, recovering from a broken cache: an unwritable one (see
    :func:`fastact._cache.scope`) or an unreadable entry (discarded, then rebuilt)."""
    try:
        with _cache.scope():
            return make(True)
    except Exception as first:  # noqa: BLE001
        error = first
    if "no locator available" in str(error):
        _cache.choose_fallback_dir()
    else:
        _cache.discard_entries(fn)
    for cache in (True, False):
        try:
            with _cache.scope():
                return make(cache)
        except Exception:  # noqa: BLE001
            continue
    raise error


# --- NUMBA_DISABLE_JIT=1 -------------------------------------------------------------------


class _PythonLoop:
    """What :func:`ufunc` returns under ``NUMBA_DISABLE_JIT=1`` (where the inner loops
    cannot be compiled): the scalar kernel called from Python, element by element.  Slow,
    and computed in Python floats, but the same math, so that the kernels can be debugged.
    (The row-wise kernels run as plain Python there by themselves.)"""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, out=None):
        arrays = [np.asarray(a) for a in args]
        dtype = np.result_type(*arrays)
        res = np.vectorize(self.fn, otypes=[dtype])(*arrays)
        if out is None:
            return res
        np.copyto(out, res, casting="unsafe")
        return out
