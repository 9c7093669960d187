"""Defaults that apply to every call that does not say otherwise: ``fastact.config``.

A call's own ``target=`` always wins.  Without one, the target comes from the innermost
``with fastact.config(target=...)`` block active in the calling thread (or asyncio task:
the setting lives in a :class:`contextvars.ContextVar`, so concurrent threads and tasks
never see each other's blocks), else from :func:`set_config`, else ``"auto"``.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

import numpy as np

from fastact._locks import ForkSafeLock

__all__ = ["config", "set_config", "get_config"]

#: The settings and their values before any :func:`set_config`: where calls run, and the
#: most bytes of dropped results kept for reuse (:mod:`fastact._memory`; 0: none).
DEFAULTS = {"target": "auto", "memory_pool": 1 << 30}

_process = dict(DEFAULTS)  # set_config: the whole process
_lock = ForkSafeLock()
# config(): this context only.  None, not a dict, while no block is active: one lookup.
_scoped: contextvars.ContextVar[dict | None] = contextvars.ContextVar("fastact_config", default=None)


def _checked(func: str, settings: dict) -> dict:
    from fastact._dispatch import check_target

    unknown = sorted(set(settings) - set(DEFAULTS))
    if unknown:
        raise TypeError(
            f"{func}() got an unexpected keyword argument {unknown[0]!r} (settings: {', '.join(DEFAULTS)})"
        )
    if "target" in settings:
        check_target(func, settings["target"])
    if "memory_pool" in settings:
        n = settings["memory_pool"]
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{func}(): memory_pool must be a number of bytes (an int >= 0), got {n!r}")
        settings["memory_pool"] = int(n)
    return settings


def target() -> str:
    """The target a call without ``target=`` runs on."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped["target"]
    return _process["target"]


def get(name: str):
    """One setting's value in effect here."""
    scoped = _scoped.get()
    return (scoped if scoped is not None else _process)[name]


def process_setting(name: str):
    """One setting's process-wide value (:func:`set_config`'s), whatever block is active."""
    return _process[name]


def get_config() -> dict:
    """The settings in effect here: ``{"target": ..., "memory_pool": ...}``."""
    scoped = _scoped.get()
    return dict(scoped if scoped is not None else _process)


def set_config(**settings) -> None:
    """Change the defaults for the whole process (every thread), outside any
    :func:`config` block, which still takes precedence where one is active.

    Args:
        target: ``"auto"``, ``"cpu"``, ``"parallel"`` or ``"cuda"``: where calls without
            ``target=`` run.
        memory_pool: the most bytes of memory of dropped results that fastact keeps to
            make later results from (1 GiB by default; ``0``: none, every result is a
            plain NumPy allocation).  See :func:`fastact.release_memory`.

    Example:
        >>> import fastact as fa
        >>> fa.set_config(target="cpu")
        >>> fa.get_config()["target"]
        'cpu'
        >>> fa.set_config(target="auto")
    """
    _checked("set_config", settings)
    with _lock:
        _process.update(settings)


@contextmanager
def config(**settings):
    """A block in which calls without ``target=`` use these settings, in this thread
    (or task) only; blocks nest, and the previous settings return when the block ends.

    Args:
        target: ``"auto"``, ``"cpu"``, ``"parallel"`` or ``"cuda"``.
        memory_pool: ``0`` makes the results of calls in the block plain NumPy
            allocations; another value lets them come from the pool (whose limit is the
            process-wide setting).

    Example:
        >>> import numpy as np, fastact as fa
        >>> with fa.config(target="cpu"):
        ...     y = fa.sigmoid(np.zeros(3))          # runs on one core
        ...     fa.get_config()["target"]
        'cpu'
        >>> fa.get_config()["target"]
        'auto'
    """
    _checked("config", settings)
    token = _scoped.set({**get_config(), **settings})
    try:
        yield
    finally:
        _scoped.reset(token)
