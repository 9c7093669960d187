"""``lit(value, like)``: a literal of a declaration, in the type of the kernel's element.

The generated kernel modules call it where a declaration wrote a number (see
:mod:`fastact._rewrite`).  Compiled, it is a constant of ``like``'s float type (float32
in float32 kernels), folded away by LLVM; on every target, the CPU's and CUDA's alike.
"""

import numpy as np
from numba import types
from numba.extending import overload

__all__ = ["lit"]


def lit(value, like):
    """``value`` as a number of ``like``'s type, where that is a NumPy float."""
    if isinstance(like, np.floating):
        return type(like)(value)
    return value


@overload(lit, inline="always")
def _lit(value, like):
    if like == types.float32:
        return lambda value, like: np.float32(value)
    if like == types.float64:
        return lambda value, like: np.float64(value)
    if isinstance(like, types.Float):  # float16: computed in float32, as everywhere else
        return lambda value, like: np.float32(value)
    return lambda value, like: value
