"""Defaults that apply to every call that does not say otherwise: ``fastact.config``.

A call's own ``target=`` always wins.  Without one, the target comes from the innermost
``with fastact.config(target=...)`` block active in the calling thread (or asyncio task:
the setting lives in a :class:`contextvars.ContextVar`, so concurrent threads and tasks
never see each other's blocks), else from :func:`set_config`, else ``"auto"``.
"""

from __future__ import annotations

import contextvars
from contextlib import contextmanager

from fastact._locks import ForkSafeLock

__all__ = ["config", "set_config", "get_config"]

#: The settings and their values before any :func:`set_config`.
DEFAULTS = {"target": "auto"}

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
    return settings


def target() -> str:
    """The target a call without ``target=`` runs on."""
    scoped = _scoped.get()
    if scoped is not None:
        return scoped["target"]
    return _process["target"]


def get_config() -> dict:
    """The settings in effect here: ``{"target": ...}``."""
    scoped = _scoped.get()
    return dict(scoped if scoped is not None else _process)


def set_config(**settings) -> None:
    """Change the defaults for the whole process (every thread), outside any
    :func:`config` block, which still takes precedence where one is active.

    Args:
        target: ``"auto"``, ``"cpu"``, ``"parallel"`` or ``"cuda"``: where calls without
            ``target=`` run.

    Example:
        >>> import fastact as fa
        >>> fa.set_config(target="cpu")
        >>> fa.get_config()
        {'target': 'cpu'}
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
