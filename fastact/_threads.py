"""When the multi-threaded kernels may run.

The parallel kernels are plain Numba ``prange`` loops; whether running them is safe
depends on Numba's threading layer and on the calling context.  Every parallel call asks
:func:`parallel_allowed` first; where it says no, the single-threaded kernels run
instead, which give the same bits.
"""

from __future__ import annotations


def parallel_allowed(target: str) -> bool:
    """True when a multi-threaded kernel may run now (``target`` is ``"parallel"`` or
    ``"auto"``)."""
    return True
