"""When the multi-threaded kernels may run.

The parallel kernels are plain Numba ``prange`` loops, run by whichever threading layer
Numba loads (``tbb``, ``omp`` or ``workqueue``).  The layers differ in what they survive:

========= ============================== ==========================================
layer     many Python threads at once    a forked child, after the parent used it
========= ============================== ==========================================
tbb       safe                           safe
omp       safe                           GNU OpenMP (Linux): the child is killed;
                                         Intel/LLVM OpenMP: safe
workqueue aborts the whole process       safe
========= ============================== ==========================================

fastact therefore does two things:

1. Before the first parallel kernel runs, and unless the user chose a layer that cannot
   be TBB, it makes the TBB library loadable when the ``tbb`` package put it in the
   environment's ``lib/`` directory, where Numba does not look by itself.  Numba's
   default order tries TBB first, so wherever ``tbb`` is installed the safe layer is used.
2. Every parallel call asks :func:`parallel_allowed` first.  Where the layer in use is
   unsafe in the calling context (``workqueue`` outside the main thread, GNU OpenMP in a
   child forked after the parent started it, or no layer at all), the answer is no and
   the single-threaded kernels run instead.  They give the same bits, so the fallback
   changes the speed of a call, never its result.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import warnings

from fastact._locks import ForkSafeLock

# The policy for the current process, settled by the first parallel call (see _settle).
_UNSETTLED = "unsettled"
_ALWAYS = "always"  # tbb, or an OpenMP layer that is safe in this process
_MAIN_THREAD = "main-thread"  # workqueue: one caller at a time, the main thread
_NEVER = "never"  # no layer can run here: the single-threaded kernels only

_policy = _UNSETTLED
_reason = ""  # why the parallel kernels do not run (for `status()`)
_layer: str | None = None
_lock = ForkSafeLock()


def parallel_allowed(target: str) -> bool:
    """True when a multi-threaded kernel may run now (``target`` is ``"parallel"`` or
    ``"auto"``); otherwise the caller runs the single-threaded kernel, which gives the
    same result."""
    policy = _policy
    if policy is _ALWAYS:
        return True
    if policy is _UNSETTLED:
        policy = _settle()
    if policy is _MAIN_THREAD:
        return threading.current_thread() is threading.main_thread()
    return policy is _ALWAYS


def num_threads() -> int:
    """The threads a parallel kernel runs on (Numba's setting for the calling thread)."""
    import numba

    return numba.get_num_threads()


def status() -> dict:
    """The threading layer the parallel kernels use and when they run (for diagnostics
    and tests): ``{"layer": ..., "policy": ..., "reason": ...}``."""
    return {"layer": _layer, "policy": _policy, "reason": _reason}


# --- choosing and inspecting the layer ----------------------------------------------------

#: Layer choices (``NUMBA_THREADING_LAYER`` / ``numba.config.THREADING_LAYER``) that may
#: pick TBB, so that making it loadable serves the user's own choice.
_MAY_PICK_TBB = ("default", "tbb", "safe", "threadsafe", "forksafe")


def _tbb_names() -> tuple[str, list[str]]:
    """(the name Numba loads TBB by, the directories the ``tbb`` package installs it to)."""
    import site

    prefixes = dict.fromkeys(p for p in (sys.prefix, sys.exec_prefix, site.getuserbase()) if p)
    if sys.platform == "win32":
        return "tbb12.dll", [os.path.join(p, "Library", "bin") for p in prefixes]
    name = "libtbb.12.dylib" if sys.platform == "darwin" else "libtbb.so.12"
    return name, [os.path.join(p, "lib") for p in prefixes]


def _make_tbb_loadable() -> None:
    """Load the ``tbb`` package's library by its full path, so that Numba's later load by
    bare name finds it already in the process (the dynamic loader matches loaded libraries
    by name).  Does nothing when TBB is loadable anyway or not installed."""
    name, dirs = _tbb_names()
    try:
        ctypes.CDLL(name)
        return
    except OSError:
        pass
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.exists(path):
            try:
                ctypes.CDLL(path, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
                return
            except OSError:
                continue


def _gnu_openmp() -> bool:
    omppool = sys.modules.get("numba.np.ufunc.omppool")
    return omppool is not None and getattr(omppool, "openmp_vendor", "GNU") == "GNU"


def _policy_for(layer: str | None) -> tuple[str, str]:
    if layer in ("tbb", "omp"):  # OpenMP's fork hazard is handled by the fork handler
        return _ALWAYS, ""
    if layer == "workqueue":
        return _MAIN_THREAD, "the workqueue threading layer cannot run from two threads at once"
    # A layer this module does not know: restrict it as the least safe known one is.
    return _MAIN_THREAD, f"unknown threading layer {layer!r}"


def _settle() -> str:
    """Make TBB loadable where the user's layer choice allows it, start Numba's thread
    pool (as the first parallel kernel would) and fix the policy for this process."""
    global _policy, _reason, _layer
    with _lock:
        if _policy is not _UNSETTLED:
            return _policy
        try:
            from numba.core import config
            from numba.np.ufunc import parallel
        except ImportError as e:  # pragma: no cover - Numba without the parallel backend
            _policy, _reason = _NEVER, f"Numba's parallel backend is unavailable ({e})"
            return _policy

        if not getattr(parallel, "_is_initialized", False):
            if str(config.THREADING_LAYER).lower() in _MAY_PICK_TBB:
                _make_tbb_loadable()
            try:
                with warnings.catch_warnings():
                    # Numba warns (and moves on to the next layer) when the TBB it finds is
                    # too old; that is not the user's problem to see on every import.
                    warnings.simplefilter("ignore")
                    parallel._launch_threads()
            except Exception as e:  # noqa: BLE001 - any failure means: no layer here
                _policy = _NEVER
                _reason = f"no Numba threading layer could be loaded ({str(e).strip().splitlines()[0]})"
                warnings.warn(
                    f"fastact: {_reason}; the parallel target runs single-threaded. "
                    "Install the `tbb` package, or set NUMBA_THREADING_LAYER to a layer "
                    "that loads here.",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return _policy
        try:
            _layer = parallel.threading_layer()
        except Exception:  # noqa: BLE001
            _layer = None
        policy, reason = _policy_for(_layer)
        if _policy is _UNSETTLED:  # a fork handler may have decided already
            _policy, _reason = policy, reason
        return _policy


# --- fork ----------------------------------------------------------------------------------


def _after_fork_in_child() -> None:
    """In a forked child: GNU OpenMP kills a process that enters a parallel region after
    its parent started the OpenMP thread pool, and its pool is unusable in any later
    descendant too; the child keeps to the single-threaded kernels."""
    global _policy, _reason
    parallel = sys.modules.get("numba.np.ufunc.parallel")
    if parallel is None or not getattr(parallel, "_is_initialized", False):
        return
    if getattr(parallel, "_threading_layer", None) == "omp" and _gnu_openmp():
        _policy = _NEVER
        _reason = "forked from a process that started GNU OpenMP, which is not fork-safe"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
