"""The ``math`` of the CUDA kernels: Python's :mod:`math` (which Numba compiles to
libdevice), plus the functions the declarations use beyond it.

The declarations call ``math.exp(x)``; the CPU kernels take those names from
:mod:`fastact._vmath`, the CUDA kernels from here.  Each function added here has its CPU
version, with the same meaning, in :mod:`fastact._vmath`.
"""

import math
from math import *  # noqa: F403  (every math function, for the declarations)

from numba import cuda, float64

from fastact._literal import lit

#: Above this, e**x overflows float64 (log of its largest value is 709.7827...).
_EXP_OVERFLOW = 709.78


@cuda.jit(device=True)
def exp(x):
    """``math.exp``, and ``inf`` where it overflows: what libdevice gives on a GPU, and
    what Python's ``math.exp`` (which raises ``OverflowError`` there) does not give under
    the CUDA simulator.  The bound is in ``x``'s type: no float64 in a float32 kernel."""
    return x * lit(math.inf, x) if x >= lit(_EXP_OVERFLOW, x) else math.exp(x)


@cuda.jit(device=True)
def expm1(x):
    """``math.expm1``, with :func:`exp`'s overflow."""
    return x * lit(math.inf, x) if x >= lit(_EXP_OVERFLOW, x) else math.expm1(x)


@cuda.jit(device=True)
def exp_f64(x):
    """``e**x`` as a float64 (:func:`fastact._vmath.exp_f64`): here simply computed in
    double precision.  ``float64`` around the result keeps it a float64 under the CUDA
    simulator, where ``math.exp`` returns a Python float that NumPy treats as weak."""
    xd = float64(x)
    return float64(math.inf) if xd >= _EXP_OVERFLOW else float64(math.exp(xd))


@cuda.jit(device=True)
def exp_diff(a, b):
    """``e**(a - b)`` for ``a <= b`` with the difference taken exactly
    (:func:`fastact._vmath.exp_diff`): the rounding error of ``a - b`` (TwoSum) added back
    to first order, ``e**d (1 + err)``; where ``d`` is infinite, ``err`` is NaN and
    dropped."""
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    t = exp(d)
    c = t * err
    return t + (c if c == c else lit(0.0, a))


@cuda.jit(device=True)
def mul_wide(t, r):
    """``t * r`` for a float64 factor ``r`` (:func:`fastact._vmath.mul_wide`): here the
    product itself, rounded to ``t``'s type when stored."""
    return t * r


@cuda.jit(device=True)
def sub_wide(a, r, c):
    """``(a - r) + c`` for a float64 ``r`` (:func:`fastact._vmath.sub_wide`): here in
    ``r``'s precision, rounded to ``a``'s type when stored."""
    return (a - r) + c


@cuda.jit(device=True)
def fma(a, b, c):
    """``a * b + c`` rounded once (:func:`fastact._vmath.fma`)."""
    return cuda.fma(a, b, c)


#: 1/sqrt(2) as a float64 and the rest of it.
_SQRT1_2 = 0.7071067811865476
_SQRT1_2_LO = -4.833646656726457e-17


@cuda.jit(device=True)
def _sqrt1_2_lo(x):
    """1/sqrt(2) minus its value in ``x``'s type, in that type: about 1.2e-8 for float32
    and -4.8e-17 for float64.  Evaluated from constants only, so the compiler folds it:
    no float64 instruction is left in a float32 kernel."""
    return lit(_SQRT1_2 - float64(lit(_SQRT1_2, x)) + _SQRT1_2_LO, x)


@cuda.jit(device=True)
def ndtr(x):
    """The standard normal distribution function (:func:`fastact._vmath.ndtr`), with the
    argument ``-x / sqrt(2)`` corrected for its rounding to first order, as on the CPU:
    the rounding of the product and that of the constant in ``x``'s type (without the
    latter, float32 loses 2 z**2 ULP in the left tail: 50 at x = -7)."""
    z = -x * lit(_SQRT1_2, x)
    dz = fma(-x, lit(_SQRT1_2, x), -z) - x * _sqrt1_2_lo(x)
    dz = lit(0.0, x) if abs(x) == lit(math.inf, x) else dz
    return lit(0.5, x) * (math.erfc(z) - lit(1.1283791670955126, x) * math.exp(-z * z) * dz)
