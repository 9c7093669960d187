"""``exp`` and ``expm1`` that LLVM can vectorise, for the CPU kernels.

Numba compiles ``math.exp`` to a call into the C library, one element at a time: no
vector instructions, and a call LLVM cannot if-convert, so a branch around it stays a
branch.  Without Intel's SVML (which current llvmlite builds do not use) that call is
what bounds ``sigmoid``, ``elu`` and ``softmax``.  The functions here are written in
straight-line arithmetic and bit operations instead; inlined into a kernel's loop they
are vectorised with it, several times faster than the C library.

Accuracy, checked by ``tests/test_vmath.py`` against an oracle in extended precision:

* float32: computed in double precision and rounded once, so within 1 ULP of the exact
  result, subnormal results included (all but about one in ten thousand are correctly
  rounded).
* float64: ``exp`` within 1 ULP of the exact result, ``expm1`` within 2.
* Exact special values: ``exp(0) == 1``; ``exp(-inf) == 0``; ``exp(inf) == inf``;
  ``expm1(±0) == ±0``; ``expm1(-inf) == -1``; NaN in gives NaN out; overflow gives
  ``inf``, underflow a subnormal or ``0`` as in IEEE arithmetic.

The method is the textbook one: ``x = k ln2 + r`` with ``|r| <= ln2/2`` (Cody-Waite, the
integer ``k`` read from the bits of a rounded sum), a Taylor polynomial for ``expm1(r)``
(degree 8 in double for float32 results, degree 13 for float64), and ``2**k`` built in the
exponent bits.  No branch depends on the data: out-of-range arguments are clamped by
selects, so a whole vector of lanes goes down the same path.

:mod:`fastact._codegen` substitutes this module for :mod:`math` in the declarations
when it compiles them for the CPU (:func:`cpu_function`), so the declarations keep
writing ``math.exp(x)``; the CUDA kernels keep the device's own ``exp`` (libdevice).
Called from Python, ``exp`` and ``expm1`` are :func:`math.exp` and :func:`math.expm1`.
"""

from __future__ import annotations

import math
import types as _pytypes
from math import *  # noqa: F403  (every other math function, for the declarations)

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp", "expm1", "cpu_function"]


def exp(x):
    """``e**x``; compiled, the branch-free implementation for float32 and float64."""
    return math.exp(x)


def expm1(x):
    """``e**x - 1`` without cancellation near 0; compiled, branch-free like :func:`exp`."""
    return math.expm1(x)


def cpu_function(fn):
    """A copy of the declared scalar function ``fn`` that sees this module as ``math``."""
    scope = dict(fn.__globals__)
    scope["math"] = _THIS
    return _pytypes.FunctionType(fn.__code__, scope, fn.__name__, fn.__defaults__, fn.__closure__)


# --- bit casts ------------------------------------------------------------------------------
@intrinsic
def _bits(typingctx, x):
    """The IEEE bits of a float64, as an int64."""
    if x != types.float64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return types.int64(types.float64), codegen


@intrinsic
def _from_bits(typingctx, i):
    """The float64 whose IEEE bits are the int64 ``i``."""
    if i != types.int64:
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


# --- the shared steps ------------------------------------------------------------------------
_LOG2E = 1.4426950408889634
# ln 2 split in two (fdlibm's): _LN2_HI has 21 trailing zero bits, so k * _LN2_HI is exact
# for |k| < 2**21 and the reduced argument keeps full precision.
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 1.5 * 2**52: adding it rounds x / ln2 to an integer held in the low bits of the sum.
_SHIFT = 6755399441055744.0
_SHIFT_BITS = 0x4338000000000000
_BIAS = 1023

# Taylor coefficients 1/n!, n = 2..13.
_C2, _C3, _C4, _C5, _C6, _C7 = 0.5, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040
_C8, _C9, _C10, _C11, _C12, _C13 = 1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800, 1 / 479001600, 1 / 6227020800

# "contract" lets LLVM fuse a multiply and an add into one FMA where the CPU has it: one
# rounding instead of two, and a third fewer instructions in the polynomials.
_JIT = {"error_model": "numpy", "nogil": True, "fastmath": {"contract"}}


@njit(**_JIT)
def _reduce(x):
    """``(k, r)`` with ``x = k ln2 + r``, ``k`` an integer, ``|r| <= ln2 / 2``."""
    t = x * _LOG2E + _SHIFT
    k = _bits(t) - _SHIFT_BITS
    kd = t - _SHIFT
    r = (x - kd * _LN2_HI) - kd * _LN2_LO
    return k, r


@njit(**_JIT)
def _pow2(k):
    """``2.0 ** k`` for an integer ``-1022 <= k <= 1023``."""
    return _from_bits((k + _BIAS) << 52)


@njit(**_JIT)
def _expm1_horner(p, r):
    """Horner's scheme from the coefficient of ``r**8`` (``p``, already folded) down:
    ``r + r**2 (1/2! + r/3! + ... + r**6 p)``."""
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    return r + (r * r) * p


@njit(**_JIT)
def _expm1_poly8(r):
    """``expm1(r)`` for ``|r| <= ln2 / 2`` within 6e-10 relative: enough for float32."""
    return _expm1_horner(_C8, r)


@njit(**_JIT)
def _expm1_poly13(r):
    """``expm1(r)`` for ``|r| <= ln2 / 2`` within 5e-18 relative: enough for float64."""
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    return _expm1_horner(p, r)


# --- the four implementations ----------------------------------------------------------------
@njit(**_JIT)
def _f32(d):
    """``d`` rounded to float32."""
    return np.float32(d)


@njit(**_JIT)
def _exp_f32(x):
    # In double: exp(89) is above float32's range and exp(-104) rounds to 0 in float32, so
    # the clamps change no result; 2**k stays a normal double.  NaN passes the clamps.
    d = 1.0 * x
    d = -104.0 if d < -104.0 else d
    d = 89.0 if d > 89.0 else d
    k, r = _reduce(d)
    return _f32((1.0 + _expm1_poly8(r)) * _pow2(k))


@njit(**_JIT)
def _exp_f64(x):
    # exp(710) overflows and exp(-746) underflows to 0; 2**k is applied in two halves so
    # that results near both ends (subnormal ones included) are rounded once.
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    k, r = _reduce(x)
    half = k >> 1
    return ((1.0 + _expm1_poly13(r)) * _pow2(half)) * _pow2(k - half)


@njit(**_JIT)
def _expm1_f32(x):
    # expm1(-20) rounds to -1 in float32, expm1(89) overflows it.
    d = 1.0 * x
    d = -20.0 if d < -20.0 else d
    d = 89.0 if d > 89.0 else d
    k, r = _reduce(d)
    s = _pow2(k)
    # 2**k expm1(r) + (2**k - 1): s - 1 is exact, and for k = 0 this is expm1(r) itself.
    y = s * _expm1_poly8(r) + (s - 1.0)
    return x if x == 0.0 else _f32(y)


@njit(**_JIT)
def _expm1_f64(x):
    # expm1(-45) rounds to -1 in float64.  Up to k = 56, 2**k - 1 is exact and the sum
    # below rounds once; beyond, the -1 is below half an ULP and exp's path is taken.
    x = -45.0 if x < -45.0 else x
    x = 710.0 if x > 710.0 else x
    k, r = _reduce(x)
    p = _expm1_poly13(r)
    ks = 56 if k > 56 else k
    s = _pow2(ks)
    small = s * p + (s - 1.0)
    half = k >> 1
    big = ((1.0 + p) * _pow2(half)) * _pow2(k - half)
    y = big if k > 56 else small
    return x if x == 0.0 else y  # keeps the sign of -0.0


@overload(exp, jit_options=_JIT)
def _exp_overload(x):
    if x == types.float32:
        return lambda x: _exp_f32(x)
    if isinstance(x, (types.Float, types.Integer, types.Boolean)):
        return lambda x: _exp_f64(float(x))
    return None


@overload(expm1, jit_options=_JIT)
def _expm1_overload(x):
    if x == types.float32:
        return lambda x: _expm1_f32(x)
    if isinstance(x, (types.Float, types.Integer, types.Boolean)):
        return lambda x: _expm1_f64(float(x))
    return None


import sys as _sys  # noqa: E402

_THIS = _sys.modules[__name__]
