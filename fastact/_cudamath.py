"""The ``math`` of the CUDA kernels: Python's :mod:`math` (which Numba compiles to
libdevice), plus the functions the declarations use beyond it.

The declarations call ``math.exp(x)``; the CPU kernels take those names from
:mod:`fastact._vmath`, the CUDA kernels from here.  Each function added here has its CPU
version, with the same meaning, in :mod:`fastact._vmath`.
"""

import math
from math import *  # noqa: F403  (every math function, for the declarations)

from numba import cuda, float64


@cuda.jit(device=True)
def exp_f64(x):
    """``e**x`` as a float64 (:func:`fastact._vmath.exp_f64`): here simply computed in
    double precision.  ``float64`` around the result keeps it a float64 under the CUDA
    simulator, where ``math.exp`` returns a Python float that NumPy treats as weak."""
    return float64(math.exp(float64(x)))
