"""Locks that survive ``fork``: a child starts with every fastact lock free.

A thread of the parent may be compiling (holding fastact's kernel lock, Numba's compiler
lock and llvmlite's lock) at the moment another thread forks.  The child has only the
forking thread, so those locks would stay held in the child for ever, and its first call
would wait on them.  Two measures, as CPython takes for its import lock:

* before a fork, the forking thread waits (up to :data:`FORK_WAIT` seconds) for a compile
  in progress to finish, by taking the locks marked ``hold_across_fork`` and Numba's
  compiler lock; so the child never sees a half-built kernel.  This hook is registered
  once Numba is imported (:func:`wait_for_compiles_at_fork`): hooks run in the reverse
  order of registration, so it runs before those of the modules Numba imports (logging's
  takes a lock that a compile may need);
* in the child, every fastact lock, Numba's compiler lock and llvmlite's lock are
  replaced by fresh ones (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import sys
import threading
import weakref

__all__ = ["ForkSafeLock", "FORK_WAIT", "wait_for_compiles_at_fork"]

#: How long a fork waits for a compile in another thread to finish, in seconds.
FORK_WAIT = 120.0

_all: weakref.WeakSet = weakref.WeakSet()
_held: list = []  # taken before a fork, released after it in the parent


class ForkSafeLock:
    """A ``threading.Lock`` (or ``RLock`` with ``reentrant=True``) that a forked child
    gets back unlocked.  With ``hold_across_fork=True`` a fork waits until it is free."""

    def __init__(self, reentrant: bool = False, hold_across_fork: bool = False):
        self._make = threading.RLock if reentrant else threading.Lock
        self._lock = self._make()
        self.hold_across_fork = hold_across_fork
        _all.add(self)

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def __enter__(self):
        self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()

    def _renew(self) -> None:
        self._lock = self._make()


def _compiler_lock():
    """Numba's global compiler lock (an object with an ``RLock`` in ``_lock``), if Numba
    has been imported."""
    module = sys.modules.get("numba.core.compiler_lock")
    lock = getattr(module, "global_compiler_lock", None)
    return lock if lock is not None and hasattr(lock, "_lock") else None


def _llvm_lock():
    """llvmlite's lock around its library calls, if llvmlite has been imported."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    lock = getattr(getattr(ffi, "lib", None), "_lock", None)
    return lock if lock is not None and hasattr(lock, "_lock") else None


def _before_fork() -> None:
    locks = [lock._lock for lock in list(_all) if lock.hold_across_fork]
    compiler = _compiler_lock()
    if compiler is not None:
        locks.append(compiler._lock)  # after fastact's: the order in which a compile takes them
    for lock in locks:
        if lock.acquire(timeout=FORK_WAIT):
            _held.append(lock)


def _after_fork_in_parent() -> None:
    while _held:
        _held.pop().release()


def _after_fork_in_child() -> None:
    _held.clear()
    for lock in list(_all):
        lock._renew()
    for lock in (_compiler_lock(), _llvm_lock()):
        if lock is not None:
            lock._lock = type(lock._lock)()


_waiting = False


def wait_for_compiles_at_fork() -> None:
    """Make every later fork wait for a compile in progress (see the module's docstring).
    Called once Numba and the modules it uses are imported; idempotent."""
    global _waiting
    if not _waiting and hasattr(os, "register_at_fork"):
        os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent)
        _waiting = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
