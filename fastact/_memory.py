"""Reuse of large result memory: what a dropped result leaves behind serves the next one.

A new NumPy array of many megabytes is memory fresh from the operating system (``malloc``
maps it and ``free`` unmaps it), and the first write to each of its pages is a page fault
in which the kernel zeroes the page.  For a fast kernel that costs as much as the kernel:
on the development machine ``fa.relu(x)`` on 16M float32 takes 5.8 ms with a new array
and 3.5 ms into a preallocated ``out``.  A program that calls a function in a loop drops
last step's result before or just after it asks for the next one, so fastact keeps the
blocks of dropped results (up to a limit) and hands them out again, as ONNX Runtime's
arena and PyTorch's CUDA caching allocator do.

How: a result of at least :data:`MIN_BYTES` is a view of a block held by a
:class:`_Lease` (the array's ``base``).  When the last array or view of the block is
gone, the lease's finaliser puts the block on a queue (no lock: it may run in any thread,
inside any code, even inside this module); the next allocation moves the queue into the
idle list, evicting the oldest blocks beyond the limit, and takes the most recently
dropped block of a fitting size.  The result is an ordinary, writeable, aligned ndarray;
only ``base`` (a lease) and ``flags.owndata`` (False) tell it apart.

The limit is the ``memory_pool`` setting (:func:`fastact.set_config`): the most bytes of
idle blocks kept, 1 GiB unless set; ``0`` turns reuse off (results are plain NumPy
allocations).  :func:`release_memory` gives the idle blocks back to the operating system;
:func:`memory_stats` says what the pool holds and how often it was used.

Beside the pool, the two facts about an array's memory that allocation and the kernels'
choices share: :func:`axis_order` (its memory order) and :func:`same_view` (whether two
arrays are one view: an operation in place).
"""

from __future__ import annotations

import collections
import contextlib
import weakref

import numpy as np

from fastact import _config
from fastact._locks import ForkSafeLock

__all__ = ["MIN_BYTES", "axis_order", "empty", "empty_like", "memory_stats", "release_memory", "same_view"]

#: Results smaller than this come from NumPy directly: ``malloc`` itself reuses the memory
#: of freed blocks up to its largest mapping threshold (glibc: 32 MiB), and below it a
#: pooled result cost 3-5 us more per call (lease, lock), up to 5% more at 16-24 MiB;
#: from 32 MiB on it costs 40-60% less (relu into a new float32 array, one thread:
#: 1.30 ms against 3.42 at 32 MiB, 3.36 against 6.13 at 64 MiB).
MIN_BYTES = 32 << 20
#: Block sizes are multiples of this (a page); a block serves requests down to 7/8 of its
#: size.
_GRAIN = 1 << 12
#: Alignment of the arrays handed out (a cache line, and every SIMD register width).
_ALIGN = 64

_lock = ForkSafeLock()
_idle: list = []  # blocks (uint8 arrays), oldest first
_returned: collections.deque = collections.deque()  # blocks of dropped results, not yet idle
_stats = {"idle_bytes": 0, "reused": 0, "allocated": 0, "released": 0}
_addresses: dict = {}  # id(block) -> its data address (``ndarray.ctypes`` costs a microsecond)


class _Lease:
    """The ``base`` of a result made from a pooled block: while any array of the block
    lives it lives, and when it goes the block goes back to the pool."""

    __slots__ = ("__array_interface__", "block")

    def __init__(self, block: np.ndarray, shape: tuple, dtype: np.dtype):
        self.block = block
        address = _addresses[id(block)]
        self.__array_interface__ = {"shape": shape, "typestr": dtype.str, "data": (address + -address % _ALIGN, False),
                                    "version": 3}

    def __del__(self):
        with contextlib.suppress(AttributeError, TypeError):  # at interpreter shutdown, globals are None
            _returned.append(self.block)  # deque.append is atomic; no lock in a finaliser


def _take(need: int):
    """An idle block of at least ``need`` bytes (and not much more), or None."""
    with _lock:
        _collect()
        for k in range(len(_idle) - 1, -1, -1):  # the most recently dropped first
            size = _idle[k].nbytes
            if need <= size and size - size // 8 <= need:
                block = _idle.pop(k)
                _stats["idle_bytes"] -= size
                _stats["reused"] += 1
                return block
        _stats["allocated"] += 1
    return None


def _collect() -> None:
    """Move the dropped blocks into the idle list (under the lock), then give back the
    oldest beyond the process-wide limit."""
    limit = _config.process_setting("memory_pool")
    while _returned:
        block = _returned.popleft()
        _idle.append(block)
        _stats["idle_bytes"] += block.nbytes
    while _idle and _stats["idle_bytes"] > limit:
        _stats["idle_bytes"] -= _idle.pop(0).nbytes
        _stats["released"] += 1


def _block(nbytes: int) -> np.ndarray:
    need = nbytes + _ALIGN  # room to align the start
    block = _take(need)
    if block is not None:
        return block
    size = -(-need // _GRAIN) * _GRAIN
    try:
        block = np.empty(size, np.uint8)
    except MemoryError:  # the kept blocks may be what is missing
        if not release_memory():
            raise
        block = np.empty(size, np.uint8)
    _addresses[id(block)] = block.__array_interface__["data"][0]
    weakref.finalize(block, _addresses.pop, id(block), None)
    return block


def empty(shape, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` (C order), from the pool where it is large enough."""
    dtype = np.dtype(dtype)
    shape = (int(shape),) if isinstance(shape, (int, np.integer)) else tuple(int(n) for n in shape)
    nbytes = dtype.itemsize
    for n in shape:
        nbytes *= n
    if nbytes < MIN_BYTES or dtype.hasobject or not _config.get("memory_pool"):
        return np.empty(shape, dtype)
    return np.asarray(_Lease(_block(nbytes), shape, dtype))


def axis_order(a: np.ndarray):
    """Axes of ``a`` from the largest stride to the smallest: its memory order (None for
    fewer than 2 dimensions)."""
    if a.ndim <= 1:
        return None
    return sorted(range(a.ndim), key=lambda k: -abs(a.strides[k]))


def same_view(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether ``a`` and ``b`` are the same view of memory: first element, strides and
    shape (``out=x``: in place, where any other sharing is a partial overlap)."""
    return (
        a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
        and a.strides == b.strides
        and a.shape == b.shape
    )


def empty_like(a: np.ndarray, dtype=None) -> np.ndarray:
    """``np.empty_like(a, dtype)``: laid out as ``a`` is (its axes in the order of their
    strides, as NumPy's ``order="K"``: C, Fortran or any other), from the pool where it is
    large enough."""
    if dtype is None:
        if a.nbytes < MIN_BYTES:
            return np.empty_like(a)
        dtype = a.dtype
    else:
        dtype = np.dtype(dtype)
    if a.size * dtype.itemsize < MIN_BYTES or type(a) is not np.ndarray:
        return np.empty_like(a, dtype)
    if a.flags.c_contiguous or a.ndim < 2:
        order = None
    elif a.flags.f_contiguous:  # reversed exactly (length-1 axes have NumPy's strides too)
        order = list(range(a.ndim - 1, -1, -1))
    else:
        order = axis_order(a)
    if order is None or order == sorted(order):
        return empty(a.shape, dtype)
    return empty(tuple(a.shape[k] for k in order), dtype).transpose(np.argsort(order))


def release_memory() -> int:
    """Give the memory that fastact keeps for reuse back to the operating system.

    Results of at least 32 MiB are made from blocks that fastact takes back when the last
    array using one is dropped, and hands out again for the next result of about the same
    size (so that a loop over same-sized arrays does not pay the operating system's cost
    of fresh memory each step).  At most ``memory_pool`` bytes (a setting of
    :func:`fastact.set_config`, 1 GiB by default) are kept idle; this gives them all back.

    Returns:
        The number of bytes given back.

    Example:
        >>> import numpy as np, fastact as fa
        >>> y = fa.relu(np.ones(1 << 22))               # 32 MiB
        >>> del y
        >>> fa.release_memory() >= 32 << 20
        True
        >>> fa.memory_stats()["idle_bytes"]
        0
    """
    with _lock:
        _collect()
        freed = _stats["idle_bytes"]
        _stats["released"] += len(_idle)
        _idle.clear()
        _stats["idle_bytes"] = 0
    return freed


def memory_stats() -> dict:
    """What the pool of result memory holds and has done, in this process.

    Returns:
        A dict: ``idle_bytes`` (kept for reuse now), ``idle_blocks``, ``reused`` (results
        made from a kept block), ``allocated`` (blocks taken from the operating system),
        ``released`` (blocks given back: beyond the limit or by :func:`release_memory`).

    Example:
        >>> import numpy as np, fastact as fa
        >>> x = np.ones((4096, 1024))                   # 32 MiB
        >>> before = fa.memory_stats()["reused"]
        >>> for _ in range(3):
        ...     y = fa.softmax(x)                       # drops the previous y
        >>> fa.memory_stats()["reused"] - before >= 1
        True
    """
    with _lock:
        _collect()
        return dict(_stats, idle_blocks=len(_idle))
