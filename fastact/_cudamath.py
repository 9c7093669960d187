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


@cuda.jit(device=True)
def fma(a, b, c):
    """``a * b + c`` rounded once (:func:`fastact._vmath.fma`)."""
    return cuda.fma(a, b, c)


@cuda.jit(device=True)
def ndtr(x):
    """The standard normal distribution function (:func:`fastact._vmath.ndtr`), with the
    argument ``-x / sqrt(2)`` corrected for its rounding to first order, as on the CPU."""
    z = -x * 0.7071067811865476
    dz = fma(-x, 0.7071067811865476, -z) - x * -4.833646656726457e-17
    dz = 0.0 * dz if abs(x) == math.inf else dz
    return 0.5 * (math.erfc(z) - 1.1283791670955126 * math.exp(-z * z) * dz)
