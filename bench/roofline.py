"""The roofline: a multi-threaded copy of the same array, as fast as memory allows.

An elementwise kernel that reads one array and writes another cannot beat this copy; its
time over the copy's says how far a kernel is from the hardware limit.
"""

import numba
import numpy as np

import fastact


@numba.njit(parallel=True, cache=True)
def parallel_copy(dst, src):
    """``dst[:] = src`` on all cores; call :func:`prepare` once first."""
    for i in numba.prange(src.size):
        dst[i] = src[i]


def prepare() -> None:
    """Let fastact set Numba's threading layer up before the copy runs: a process loads one
    layer, on its first parallel call, and the copy must run on the one fastact uses."""
    fastact.FUNCTIONS[fastact.ELEMENTWISE[0]](np.zeros(4), target="parallel")
