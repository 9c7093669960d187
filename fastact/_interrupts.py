"""Ctrl-C held off while Numba builds a kernel.

A ``KeyboardInterrupt`` is raised wherever the main thread happens to be, and Numba's
compiler keeps global state (typing registries it fills on first use, its configuration,
LLVM modules in the making) that an exception at an arbitrary bytecode can leave half
updated: after such an interrupt every later compile may fail (``Unknown attribute 'shape'
of type array``) for the rest of the process.  So fastact lets a SIGINT that arrives while
it imports Numba or compiles (or loads from the cache) one kernel wait until that kernel
is built, and raises ``KeyboardInterrupt`` then: a compile takes about a second, and a
compiled kernel cannot be interrupted while it runs anyway (Python runs signal handlers
between bytecodes only).

Only the main thread receives Python's signal handlers, and only it can install them, so
elsewhere :func:`deferred` does nothing.  A handler that is not a Python callable
(``SIG_IGN``, ``SIG_DFL``) is left alone.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from functools import wraps

__all__ = ["deferred", "defer_compiles"]

_active = False  # a deferral is in force (in the main thread); nested ones do nothing


@contextmanager
def deferred():
    """Hold SIGINT off for the duration; on exit, deliver it to the handler that was
    installed before (Python's default raises ``KeyboardInterrupt``)."""
    global _active
    if _active or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if not callable(previous):
        yield
        return
    caught = []
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    except (ValueError, OSError):  # e.g. an interpreter that is not the main one
        yield
        return
    _active = True
    try:
        yield
    finally:
        _active = False
        signal.signal(signal.SIGINT, previous)
        if caught:
            previous(*caught[0])


def defer_compiles(dispatcher) -> None:
    """Build ``dispatcher``'s new specialisations (compiled, or loaded from the cache)
    with SIGINT held off.  Numba's dispatcher calls its ``_compile_for_args`` only when no
    compiled version matches the arguments, so calls of compiled code pay nothing."""
    compile_for_args = dispatcher._compile_for_args
    if getattr(compile_for_args, "_fastact_deferred", False):
        return

    @wraps(compile_for_args)
    def guarded(*args, **kws):
        with deferred():
            return compile_for_args(*args, **kws)

    guarded._fastact_deferred = True
    dispatcher._compile_for_args = guarded
