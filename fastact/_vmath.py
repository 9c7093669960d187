"""Vector math for the CPU kernels: ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``,
``erf`` and ``erfc`` that LLVM vectorises, in float32 and in float64.

Numba compiles ``math.exp`` and its kin to calls into the C library, one element at a
time: no vector instructions, and a call LLVM cannot if-convert, so a branch around it
stays a branch.  Without Intel's SVML (which current llvmlite builds do not use) those
calls bound every kernel built on them.  The functions here are straight-line arithmetic
and bit operations instead: no branch depends on the data (the cases of a piecewise
approximation are all computed and one is selected), so inlined into a kernel's loop they
are vectorised with it.  The float32 versions compute in float32 throughout: on a CPU with
AVX-512 that is 16 lanes per instruction, where double precision has 8.

:mod:`fastact._codegen` binds this module to the name ``math`` in the generated CPU
kernels, so the declarations keep writing ``math.exp(x)``; every other name of
:mod:`math` is re-exported.  Called from Python, each function is :mod:`math`'s own.

Methods (the polynomial coefficients come from ``tools/fit_vmath.py``, which fits them
by Chebyshev interpolation in 50-digit arithmetic and reports their error):

* ``exp``: ``x = k ln2 + r``, ``|r| <= ln2/2`` (Cody-Waite, ``ln2`` split in two so that
  ``k ln2_hi`` is exact; ``k`` read from the bits of a rounded sum), ``e**r`` as
  ``1 + r + r**2 P(r)`` (P of degree 4 in float32, a Taylor series of degree 13 in float64),
  and ``2**k`` built in the exponent bits, applied in two halves so that subnormal
  results are rounded once.
* ``exp_f64``: for float32, ``exp``'s method with ``ln2`` in three parts (``k`` has 11
  bits) and ``2**k`` applied in float64, so that the result is neither subnormal nor
  infinite where a float32 product with it is normal; for float64, ``exp``.
* ``exp_diff(a, b)``, ``e**(a - b)`` for ``a <= b`` (softmax's terms): ``d = a - b`` and
  its rounding error (TwoSum), ``d = k ln2 + r`` as for ``exp`` with the error added to
  ``r`` (a first-order correction, exact to well under an ULP), ``e**r = 1 + r q(r)``
  (``q`` of degree 5 in float32) with ``s = 2**(k + 64)`` applied inside the last FMA,
  ``s + (r s) q``, then ``2**-64`` (exact, or the one rounding of a subnormal result):
  about 22 vector instructions where ``exp`` of the rounded difference with a separate
  correction took 35.  float64: ``exp``'s polynomial and ``2**(k + 600)``.
* ``expm1``: the same reduction; ``2**k expm1(r) + (2**k - 1)``, in which ``2**k - 1`` is
  exact, and ``expm1(r)`` itself where ``k = 0``, so that small arguments keep their
  relative precision; for large ``k``, ``exp``'s path.
* ``log``: ``x = 2**k m`` with ``m`` in ``[sqrt(1/2), sqrt(2))``, ``f = m - 1``,
  ``s = f / (2 + f)``, ``log(1 + f) = f - f**2/2 + s (f**2/2 + R(s**2))`` with R a
  polynomial (degree 3 in float32, 7 in float64), plus ``k ln2`` in two parts; subnormal
  arguments are scaled into the normal range first.
* ``log1p``: ``u = 1 + x`` rounded, ``log(u)`` as above, plus the rounding error of ``u``
  to first order, ``(x - (u - 1)) / u``.
* ``tanh``: for ``|x| < 0.55``, ``x + x**3 T(x**2)`` (T of degree 5 and 11); above,
  ``1 - 2 / (exp(2|x|) + 1)``; the sign restored from the bits.
* ``ndtr`` (the normal distribution function): ``erfc(z + dz) / 2`` with ``z + dz =
  -x / sqrt(2)`` exactly (``dz`` from an FMA and a second part of ``1/sqrt(2)``), ``dz``
  carried into erfc's exponent as ``-2 z dz`` (and into ``t``), or to first order where
  ``|z| < 1``.  ``fma``: ``a * b + c`` rounded once, for the declarations' own exact
  products.
* ``erf``, ``erfc``: for ``|x| < 1``, ``erf(x) = x E(x**2)`` (E of degree 6 and 12) and
  ``erfc = 1 - erf``; above, ``erfc(z) = t exp(-z**2 + F(t))`` with ``t = 2 / (2 + z)``
  and F a polynomial in ``t`` (one piece in float32, three in float64); ``z**2`` is split
  into an exact high part and a small low part, and the exponential takes the two parts
  separately, so that its argument is not rounded.  ``erf = 1 - erfc`` there.

Accuracy, measured by ``tests/test_vmath.py`` against an extended-precision oracle (long
double, or mpmath for ``erf``, ``erfc`` and ``ndtr``) over the whole domain, subnormals
and special values included: float32 ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``
within 1 ULP of the exact result (``exp_f64``: within 1 float32 ULP, relative;
``exp_diff``: within 1 ULP of ``e**(a - b)`` with the difference exact, in both), ``erf``
and ``erfc`` within 2; float64 ``exp`` within 1 ULP, the rest within 2; ``ndtr`` within 3
in both.  Special values are exact: ``exp(-inf) == 0``, ``exp(inf) == inf``,
``expm1(±0) == ±0``, ``expm1(-inf) == -1``, ``log(0) == -inf``, ``log(inf) == inf``,
``log(x < 0)`` and ``log1p(x < -1)`` are NaN, ``log1p(-1) == -inf``, ``tanh(±0) == ±0``,
``tanh(±inf) == ±1``, ``erf(±inf) == ±1``, ``erfc(-inf) == 2``, ``erfc(inf) == 0``; NaN in
gives NaN out; overflow gives ``inf`` and underflow a subnormal or 0, as in IEEE
arithmetic.  Results may differ in the last bit between CPUs with and without FMA
(``fastmath={"contract"}`` lets LLVM fuse a multiply and an add); they are the same on
every target of one machine.
"""

from __future__ import annotations

import math
import sys
from math import *  # noqa: F403  (every other math function, for the declarations)

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

__all__ = ["exp", "exp_f64", "exp_diff", "mul_wide", "sub_wide", "expm1", "log", "log1p", "tanh", "erf", "erfc",
           "ndtr", "fma"]


def exp(x):
    """``e**x``; compiled, the branch-free implementation for float32 and float64."""
    return math.exp(x)


def exp_f64(x):
    """``e**x`` as a float64, computed to the precision of ``x``'s type.

    For a float32 ``x``: float32's method and accuracy (within 1 ULP of float32,
    relative), but over float64's range: the result underflows and overflows where
    ``exp(double(x))`` does, not where float32 would.  A declaration multiplies it into a float32 result
    (``dy * alpha * exp_f64(x)``) that is then rounded once: the precision of
    ``exp(double(x))`` at a fraction of its cost.  For a float64 ``x``: :func:`exp`."""
    return math.exp(x)


def exp_diff(a, b):
    """``e**(a - b)`` for ``a <= b`` (softmax's terms, ``b`` the row's maximum), with the
    difference taken exactly: ``a - b`` is rounded, and its rounding error (TwoSum) is
    carried into the exponential.  Without it, the rounding of ``x - max(x)`` is an error
    of ``|x - max(x)|`` ULP in the result (20 ULP at a difference of 20 in float32).
    ``a = -inf`` gives 0; ``a = b = +inf`` gives NaN, as does a NaN."""
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    try:
        t = math.exp(d)
    except OverflowError:
        t = math.inf
    c = t * err
    return t + (c if c == c else 0.0)


def mul_wide(t, r):
    """``t * r`` for a float64 factor ``r`` (within float32's range), rounded to ``t``'s
    type: compiled for a float32 ``t``, in float32 arithmetic as ``t r_hi + t r_lo`` (``r``
    split in two float32 parts, once per loop; one FMA), within 0.5 ULP of the product
    but for an error of 2**-46 relative: the float64 product would widen both factors of
    every element and narrow the result, four times the instructions."""
    return t * r


def sub_wide(a, r, c):
    """``(a - r) + c`` for a float64 ``r`` (within float32's range) and a small correction
    ``c``, in ``a``'s type: compiled for a float32 ``a``, in float32 arithmetic (``r``
    split as in :func:`mul_wide`; ``a - r_hi`` and its rounding error by TwoSum, the small
    parts added to that), rounded once: within 0.5 ULP of the exact value but for an error
    of 2**-46 relative, as the float64 expression rounded to float32."""
    return (a - r) + c


def expm1(x):
    """``e**x - 1`` without cancellation near 0."""
    return math.expm1(x)


def log(x):
    """The natural logarithm (one argument)."""
    return math.log(x)


def log1p(x):
    """``log(1 + x)`` without cancellation near 0."""
    return math.log1p(x)


def tanh(x):
    """The hyperbolic tangent."""
    return math.tanh(x)


def erf(x):
    """The error function."""
    return math.erf(x)


def erfc(x):
    """``1 - erf(x)``, with relative precision where it is tiny."""
    return math.erfc(x)


def ndtr(x):
    """The standard normal distribution function, ``Phi(x) = erfc(-x / sqrt(2)) / 2``,
    with the argument ``-x / sqrt(2)`` taken exactly: rounded, it would cost ``x**2`` ULP
    in the left tail (20 ULP at ``x = -4.5``)."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def fma(a, b, c):
    """``a * b + c`` rounded once (compiled: one instruction where the CPU has FMA)."""
    if hasattr(math, "fma"):  # Python 3.13
        return math.fma(a, b, c)
    if not all(math.isfinite(v) for v in (a, b, c)):
        return a * b + c
    from fractions import Fraction

    return float(Fraction(a) * Fraction(b) + Fraction(c))


# --- bit casts --------------------------------------------------------------------------------
def _bitcast(src, dst, llvm_dst):
    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, sig, args):
            return builder.bitcast(args[0], llvm_dst)

        return dst(src), codegen

    return cast


_bits64 = _bitcast(types.float64, types.int64, ir.IntType(64))
_float64 = _bitcast(types.int64, types.float64, ir.DoubleType())
_bits32 = _bitcast(types.float32, types.int32, ir.IntType(32))
_float32 = _bitcast(types.int32, types.float32, ir.FloatType())

@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``: one instruction on CPUs with FMA)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return builder.fma(*args)

    return a(a, a, a), codegen


# "contract" lets LLVM fuse a multiply and an add into one FMA where the CPU has it: one
# rounding instead of two, and a third fewer instructions in the polynomials.
_JIT = {"error_model": "numpy", "nogil": True, "fastmath": {"contract"}}
# Inlined where they are called (LLVM's alwaysinline): LLVM would leave the larger ones as
# calls, which keeps the caller's loop from being vectorised.
_INLINE = {**_JIT, "forceinline": True}

F32, F64, I32 = np.float32, np.float64, np.int32
_INF_F32, _NAN_F32 = F32(np.inf), F32(np.nan)


# --- exp and expm1 ----------------------------------------------------------------------------
# ln 2 split so that k * LN2_HI is exact for every k the reductions produce: float32's
# with 15 significant bits (exact for |k| < 2**9), float64's (fdlibm's split) with 32.
_LN2_HI_F32, _LN2_LO_F32 = F32(0.69314575), F32(1.4286068e-06)
_LN2_HI, _LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10
_LOG2E_F32, _LOG2E = F32(1.442695), 1.4426950408889634
# ln 2 in three float32 parts for exp_f64, whose k has up to 11 bits: 5678 / 2**13, then
# the rest rounded to float32, then what remains.
_LN2_A_F32, _LN2_B_F32, _LN2_C_F32 = F32(0.693115234375), F32(3.1946183e-05), F32(1.646595e-12)
# 1.5 * 2**23 (2**52): adding it rounds x / ln2 to an integer held in the low bits.
_SHIFT_F32, _SHIFT_F32_BITS = F32(12582912.0), I32(0x4B400000)
_SHIFT, _SHIFT_BITS = 6755399441055744.0, 0x4338000000000000

# (e**r - 1 - r) / r**2 on |r| <= ln2/2: tools/fit_vmath.py exp_f32 (relative error
# 1.4e-7 of this factor, 1.7e-8 of e**r).
_E0, _E1, _E2, _E3, _E4 = F32(0.5), F32(0.16666578), F32(0.041666556), F32(0.008363173), F32(0.0013926176)
# (e**r - 1) / r on |r| <= ln2/2: tools/fit_vmath.py exp_below_f32 (relative error
# 2.5e-8), for exp_diff's s + (r s) q.
_EXPQ_F32 = (F32(1.0), F32(0.5), F32(0.16666505), F32(0.041666467), F32(0.008369149), F32(0.0013933642))
_TWO_M64_F32 = F32(2.0**-64)
# Taylor coefficients 1/n!, n = 2..13, for float64.
_C2, _C3, _C4, _C5, _C6, _C7 = 0.5, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040
_C8, _C9, _C10, _C11, _C12, _C13 = 1 / 40320, 1 / 362880, 1 / 3628800, 1 / 39916800, 1 / 479001600, 1 / 6227020800


@njit(**_JIT)
def _pow2_f32(k):
    """``2.0 ** k`` as a float32, for an integer ``-126 <= k <= 127``."""
    return _float32(I32((k + 127) << 23))


@njit(**_JIT)
def _pow2(k):
    """``2.0 ** k`` as a float64, for an integer ``-1022 <= k <= 1023``."""
    return _float64((k + 1023) << 52)


@njit(**_JIT)
def _reduce_f32(x):
    """``(k, r)`` with ``x = k ln2 + r``, ``|r| <= ln2/2`` (``|x| < 2**22``)."""
    t = x * _LOG2E_F32 + _SHIFT_F32
    k = _bits32(t) - _SHIFT_F32_BITS
    kd = t - _SHIFT_F32
    r = (x - kd * _LN2_HI_F32) - kd * _LN2_LO_F32
    return k, r


@njit(**_JIT)
def _reduce(x):
    t = x * _LOG2E + _SHIFT
    k = _bits64(t) - _SHIFT_BITS
    kd = t - _SHIFT
    r = (x - kd * _LN2_HI) - kd * _LN2_LO
    return k, r


@njit(**_INLINE)
def _expm1_tail_f32(r):
    """``expm1(r) - r`` for ``|r| <= ln2/2``, in float32: ``r**2 P(r)``."""
    p = _E4
    p = p * r + _E3
    p = p * r + _E2
    p = p * r + _E1
    p = p * r + _E0
    return (r * r) * p


@njit(**_JIT)
def _expm1_poly_f32(r):
    """``expm1(r)`` for ``|r| <= ln2/2``, in float32."""
    return r + _expm1_tail_f32(r)


@njit(**_INLINE)
def _expm1_tail(r):
    """``expm1(r) - r`` for ``|r| <= ln2/2`` within 5e-18 relative, in float64."""
    p = _C13
    p = p * r + _C12
    p = p * r + _C11
    p = p * r + _C10
    p = p * r + _C9
    p = p * r + _C8
    p = p * r + _C7
    p = p * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    return (r * r) * p


@njit(**_JIT)
def _expm1_poly(r):
    return r + _expm1_tail(r)


@intrinsic
def _scale_f32(typingctx, p, k):
    """``p * 2**k`` for ``-151 <= k <= 128``, rounded once: ``2**k`` in two halves, each a
    normal float32, built from the exponent bits in 32-bit integer arithmetic (Numba would
    widen ``k`` to 64 bits, which halves the lanes of that part of the loop)."""
    if p != types.float32 or not isinstance(k, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        pv, kv = args
        i32 = ir.IntType(32)
        k32 = builder.trunc(kv, i32) if kv.type.width > 32 else kv
        half = builder.ashr(k32, ir.Constant(i32, 1))
        bias, mant = ir.Constant(i32, 127), ir.Constant(i32, 23)
        e1 = builder.shl(builder.add(half, bias), mant)
        e2 = builder.shl(builder.add(builder.sub(k32, half), bias), mant)
        f32 = ir.FloatType()
        return builder.fmul(builder.fmul(pv, builder.bitcast(e1, f32)), builder.bitcast(e2, f32))

    return types.float32(p, k), codegen


@njit(**_JIT)
def _scale(p, k):
    half = k >> 1
    return (p * _pow2(half)) * _pow2(k - half)


@njit(**_INLINE)
def _exp_f32(x):
    # exp(89) overflows float32, exp(-104) rounds to 0: clamping changes no result and
    # keeps k in range.  NaN passes the clamps (its comparisons are false).
    x = F32(-104.0) if x < F32(-104.0) else x
    x = F32(89.0) if x > F32(89.0) else x
    k, r = _reduce_f32(x)
    return _scale_f32(F32(1.0) + _expm1_poly_f32(r), k)


@njit(**_INLINE)
def _exp_f64(x):
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    k, r = _reduce(x)
    return _scale(1.0 + _expm1_poly(r), k)


@njit(**_INLINE)
def _exp_f64_of_f32(x):
    # float64's whole range: k up to 1075 (11 bits) and ln2 in three float32 parts, the
    # first with 13 significant bits so that k * _LN2_A_F32 is exact; the polynomial in
    # float32, 2**k in float64 (in two halves, for subnormal doubles).
    x = F32(-746.0) if x < F32(-746.0) else x
    x = F32(710.0) if x > F32(710.0) else x
    t = x * _LOG2E_F32 + _SHIFT_F32
    k = _bits32(t) - _SHIFT_F32_BITS
    kd = t - _SHIFT_F32
    r = ((x - kd * _LN2_A_F32) - kd * _LN2_B_F32) - kd * _LN2_C_F32
    return _scale(np.float64(F32(1.0) + _expm1_poly_f32(r)), np.int64(k))


@njit(**_INLINE)
def _exp_diff_f32(a, b):
    # d = a - b and its rounding error (TwoSum); err goes into the reduced argument, where
    # it is small beside r, and is 0 where d is clamped (-inf and below: e**d rounds to 0).
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    low = d < F32(-104.0)
    d = F32(-104.0) if low else d
    err = F32(0.0) if low else err
    d = F32(43.0) if d > F32(43.0) else d  # beyond the contract (a <= b); keeps k < 64
    t = d * _LOG2E_F32 + _SHIFT_F32
    kd = t - _SHIFT_F32
    r = (d - kd * _LN2_HI_F32) + (err - kd * _LN2_LO_F32)
    # e**r = 1 + r q(r), and 2**k applied inside the last FMA: s + (r s) q with s = 2**(k
    # + 64), normal for every k here, then 2**-64 (exact, or one rounding to a subnormal).
    c = _EXPQ_F32
    q = c[5]
    q = q * r + c[4]
    q = q * r + c[3]
    q = q * r + c[2]
    q = q * r + c[1]
    q = q * r + c[0]
    s = _float32(I32((_bits32(t) - (_SHIFT_F32_BITS - I32(127 + 64))) << 23))
    return _fma(r * s, q, s) * _TWO_M64_F32


@njit(**_INLINE)
def _exp_diff_f64(a, b):
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    low = d < -746.0
    d = -746.0 if low else d
    err = 0.0 if low else err
    d = 400.0 if d > 400.0 else d  # keeps k < 600
    t = d * _LOG2E + _SHIFT
    kd = t - _SHIFT
    r = (d - kd * _LN2_HI) + (err - kd * _LN2_LO)
    s = _float64((_bits64(t) - (_SHIFT_BITS - (1023 + 600))) << 52)
    return _fma(_expm1_poly(r), s, s) * 2.0**-600


@njit(**_INLINE)
def _exp_sum_f32(hi, mid, lo):
    """``e**(hi + mid + lo)`` without rounding the sum: ``hi`` a float32 whose reduction by
    ``k ln2`` is exact (at most 24 significant bits, none below 2**-24), ``mid`` of
    magnitude below 1 with none below 2**-24 either, ``lo`` small."""
    s = (hi + mid) + lo
    s = F32(-104.0) if s < F32(-104.0) else s
    s = F32(89.0) if s > F32(89.0) else s
    t = s * _LOG2E_F32 + _SHIFT_F32
    k = _bits32(t) - _SHIFT_F32_BITS
    kd = t - _SHIFT_F32
    r = (((hi - kd * _LN2_HI_F32) + mid) + lo) - kd * _LN2_LO_F32
    return _scale_f32(F32(1.0) + _expm1_poly_f32(r), k)


@njit(**_INLINE)
def _exp_sum(hi, mid, lo):
    s = (hi + mid) + lo
    s = -746.0 if s < -746.0 else s
    s = 710.0 if s > 710.0 else s
    t = s * _LOG2E + _SHIFT
    k = _bits64(t) - _SHIFT_BITS
    kd = t - _SHIFT
    r = (((hi - kd * _LN2_HI) + mid) + lo) - kd * _LN2_LO
    return _scale(1.0 + _expm1_poly(r), k)


@njit(**_INLINE)
def _expm1_f32(x):
    # expm1(-18) rounds to -1 in float32, expm1(89) overflows.  With x = k ln2 + rh - rl
    # (rh = x - k ln2_hi exact), expm1(x) = (2**k rh + (2**k - 1)) + 2**k (tail - rl):
    # the first sum is exact for k = ±1, where the two terms cancel most.  Up to k = 24,
    # 2**k - 1 is exact; beyond, the -1 is below half an ULP and exp's path is taken.
    c = F32(-18.0) if x < F32(-18.0) else x
    c = F32(89.0) if c > F32(89.0) else c
    t = c * _LOG2E_F32 + _SHIFT_F32
    k = _bits32(t) - _SHIFT_F32_BITS
    kd = t - _SHIFT_F32
    rh = c - kd * _LN2_HI_F32
    rl = kd * _LN2_LO_F32
    tail = _expm1_tail_f32(rh - rl)
    ks = 24 if k > 24 else k
    s = _pow2_f32(ks)
    small = (s * rh + (s - F32(1.0))) + s * (tail - rl)
    big = _scale_f32(F32(1.0) + ((rh - rl) + tail), k)
    y = big if k > 24 else small
    return x if x == F32(0.0) else y  # keeps the sign of -0.0


@njit(**_INLINE)
def _expm1_f64(x):
    c = -45.0 if x < -45.0 else x
    c = 710.0 if c > 710.0 else c
    t = c * _LOG2E + _SHIFT
    k = _bits64(t) - _SHIFT_BITS
    kd = t - _SHIFT
    rh = c - kd * _LN2_HI
    rl = kd * _LN2_LO
    tail = _expm1_tail(rh - rl)
    ks = 56 if k > 56 else k
    s = _pow2(ks)
    small = (s * rh + (s - 1.0)) + s * (tail - rl)
    big = _scale(1.0 + ((rh - rl) + tail), k)
    y = big if k > 56 else small
    return x if x == 0.0 else y


# --- log and log1p ----------------------------------------------------------------------------
# R(z) / z with z = s**2 <= 0.0295: tools/fit_vmath.py log_f32 and log_f64.
_L1F, _L2F, _L3F = F32(0.66666687), F32(0.39988732), F32(0.29582158)
_L1, _L2, _L3, _L4, _L5, _L6, _L7 = (0.666666666666667, 0.3999999999989819, 0.28571428626570206,
                                     0.2222221103781659, 0.18182896183483085, 0.15331487235865734,
                                     0.14619343453512615)
_SQRT_HALF_F32_BITS = I32(0x3F3504F3)
_ONE_F32_BITS = I32(0x3F800000)
_SQRT_HALF_BITS = 0x3FE6A09E667F3BCD
_ONE_BITS = 0x3FF0000000000000


@njit(**_INLINE)
def _log1p_reduced_f32(f):
    """``log(1 + f)`` for ``f`` in ``[sqrt(1/2) - 1, sqrt(2) - 1)``, as ``(lead, rest)``
    with ``lead + rest`` the result and ``lead = f`` exact."""
    s = f / (F32(2.0) + f)
    z = s * s
    r = z * (_L1F + z * (_L2F + z * _L3F))
    hfsq = F32(0.5) * f * f
    return s * (hfsq + r) - hfsq


@njit(**_INLINE)
def _log1p_reduced(f):
    s = f / (2.0 + f)
    z = s * s
    r = z * (_L1 + z * (_L2 + z * (_L3 + z * (_L4 + z * (_L5 + z * (_L6 + z * _L7))))))
    hfsq = 0.5 * f * f
    return s * (hfsq + r) - hfsq


@njit(**_JIT)
def _split_f32(x):
    """``(k, f)`` with ``x = 2**k (1 + f)``, ``1 + f`` in ``[sqrt(1/2), sqrt(2))``, for a
    positive normal float32 ``x``."""
    ix = _bits32(x) + (_ONE_F32_BITS - _SQRT_HALF_F32_BITS)
    k = (ix >> 23) - 127
    m = _float32(I32((ix & 0x007FFFFF) + _SQRT_HALF_F32_BITS))
    return k, m - F32(1.0)


@njit(**_JIT)
def _split(x):
    ix = _bits64(x) + (_ONE_BITS - _SQRT_HALF_BITS)
    k = (ix >> 52) - 1023
    m = _float64((ix & 0x000FFFFFFFFFFFFF) + _SQRT_HALF_BITS)
    return k, m - 1.0


@njit(**_JIT)
def _log_special_f32(x, y):
    """``y`` (the logarithm of a positive finite ``x``), or the exact value where ``x`` is
    0, negative, inf or NaN."""
    y = -_INF_F32 if x == F32(0.0) else y
    y = _INF_F32 if x == _INF_F32 else y
    return _NAN_F32 if x < F32(0.0) or x != x else y


@njit(**_INLINE)
def _log_f32(x):
    # Subnormals scaled by 2**23 into the normal range (and the exponent corrected).
    tiny = x < F32(1.1754944e-38)
    xs = x * F32(8388608.0) if tiny else x
    k, f = _split_f32(xs)
    k = k - 23 if tiny else k
    kd = F32(k)
    y = kd * _LN2_HI_F32 + (f + (_log1p_reduced_f32(f) + kd * _LN2_LO_F32))
    return _log_special_f32(x, y)


@njit(**_INLINE)
def _log_f64(x):
    tiny = x < 2.2250738585072014e-308
    xs = x * 18014398509481984.0 if tiny else x  # 2**54
    k, f = _split(xs)
    k = k - 54 if tiny else k
    kd = float(k)
    y = kd * _LN2_HI + (f + (_log1p_reduced(f) + kd * _LN2_LO))
    y = -np.inf if x == 0.0 else y
    y = np.inf if x == np.inf else y
    return np.nan if x < 0.0 or x != x else y


@njit(**_INLINE)
def _log1p_f32(x):
    u = F32(1.0) + x
    # The rounding error of u, to first order: exact (x - (u - 1)) over u.  For u beyond
    # 2**24 it is below an ULP of the result either way.
    c = (x - (u - F32(1.0))) / u
    us = F32(1.0) if u == _INF_F32 or u <= F32(0.0) or u != u else u
    k, f = _split_f32(us)
    kd = F32(k)
    y = kd * _LN2_HI_F32 + (f + (_log1p_reduced_f32(f) + (kd * _LN2_LO_F32 + c)))
    y = x if x == F32(0.0) else y  # log1p(-0) = -0
    y = -_INF_F32 if x == F32(-1.0) else y
    y = _INF_F32 if x == _INF_F32 else y
    return _NAN_F32 if x < F32(-1.0) or x != x else y


@njit(**_INLINE)
def _log1p_f64(x):
    u = 1.0 + x
    c = (x - (u - 1.0)) / u
    us = 1.0 if u == np.inf or u <= 0.0 or u != u else u
    k, f = _split(us)
    kd = float(k)
    y = kd * _LN2_HI + (f + (_log1p_reduced(f) + (kd * _LN2_LO + c)))
    y = x if x == 0.0 else y
    y = -np.inf if x == -1.0 else y
    y = np.inf if x == np.inf else y
    return np.nan if x < -1.0 or x != x else y


# --- tanh ---------------------------------------------------------------------------------------
# (tanh(a) - a) / a**3 as a polynomial in a**2, a < 0.55: tools/fit_vmath.py tanh_f32, tanh_f64.
_T_F32 = (F32(-0.33333334), F32(0.13333324), F32(-0.0539647), F32(0.02181845), F32(-0.008526333),
          F32(0.0025263906))
_T = (-0.3333333333333333, 0.1333333333333331, -0.05396825396822037, 0.021869488534073906,
      -0.0088632354631468, 0.0035921267699626346, -0.001455819097151351, 0.0005899052969492733,
      -0.0002384727248015252, 9.455133052924858e-05, -3.372080112046316e-05, 7.874274345344419e-06)


@njit(**_INLINE)
def _tanh_f32(x):
    a = abs(x)
    z = a * a
    t = _T_F32
    p = t[5]
    p = p * z + t[4]
    p = p * z + t[3]
    p = p * z + t[2]
    p = p * z + t[1]
    p = p * z + t[0]
    small = a + a * z * p
    # exp(2a) overflows to inf for a > 44, and 2 / inf = 0 gives 1.
    big = F32(1.0) - F32(2.0) / (_exp_f32(a + a) + F32(1.0))
    y = small if a < F32(0.55) else big
    return _float32(I32(_bits32(y) | (_bits32(x) & I32(-2147483648))))  # the sign of x, -0 and NaN too


@njit(**_INLINE)
def _tanh_f64(x):
    a = abs(x)
    z = a * a
    t = _T
    p = t[11]
    p = p * z + t[10]
    p = p * z + t[9]
    p = p * z + t[8]
    p = p * z + t[7]
    p = p * z + t[6]
    p = p * z + t[5]
    p = p * z + t[4]
    p = p * z + t[3]
    p = p * z + t[2]
    p = p * z + t[1]
    p = p * z + t[0]
    small = a + a * z * p
    big = 1.0 - 2.0 / (_exp_f64(a + a) + 1.0)
    y = small if a < 0.55 else big
    return _float64(_bits64(y) | (_bits64(x) & (-9223372036854775807 - 1)))


# --- erf and erfc -------------------------------------------------------------------------------
# erf(x) / x as a polynomial in x**2, |x| < 1: tools/fit_vmath.py erf_f32, erf_f64.
_ERF_F32 = (F32(1.1283791), F32(-0.37612626), F32(0.11283594), F32(-0.026854211), F32(0.0051890872),
            F32(-0.00080168643), F32(7.875875e-05))
_ERF = (1.1283791670955126, -0.3761263890318375, 0.11283791670954879, -0.026866170645076792,
        0.0052239776248180145, -0.000854832698083379, 0.0001205533111164271, -1.4925595266831182e-05,
        1.6461000484121368e-06, -1.6350312701054695e-07, 1.4659775274047436e-08, -1.1372848856791674e-09,
        5.957176147748911e-11)
# F(t) = log(erfc(z) / t) + z**2, t = 2 / (2 + z), as a polynomial in u = t - centre:
# tools/fit_vmath.py erfc_f32 (t in [0.165, 0.8], z in [0.5, 10.1]) and erfc_f64_a..d
# (t in [0.0683, 0.3), [0.3, 0.5), [0.5, 0.65), [0.65, 0.8]: z in [0.5, 27.3]).
# The two leading coefficients carry a second, low part (c0 = C0 + C0L): they set the
# exponent, whose absolute error is the result's relative error.
_ERFC_F32_CENTRE = F32(0.4825)
_ERFC_F32 = (F32(-0.6952766), F32(1.3383172), F32(0.20876399), F32(-0.3632524), F32(-0.18208715),
             F32(0.2684001), F32(0.14859468), F32(-0.28371352), F32(-0.09143432), F32(0.2663638))
_ERFC_F32_C0L, _ERFC_F32_C1L = F32(1.2384247e-08), F32(5.74417e-08)
_ERFC_CENTRES = (0.18415, 0.4, 0.575, 0.725)
_ERFC_A = (-1.0682574514265362, 1.1435174666712313, 0.3932950071015802, -0.03709185115180127,
           -0.24538290149732142, -0.16590486287952128, 0.10553086341690743, 0.26008575202784495,
           0.0482466528623258, -0.31766368367397607, -0.24882113244398885, 0.35530354940914927,
           0.5040667157457482, -0.3687227883372319)
_ERFC_B = (-0.8040723101069575, 1.2969211125404303, 0.28985053095515484, -0.2869917782712315,
           -0.27247088608755426, 0.15830028618528585, 0.28314474616369417, -0.14810909679823664,
           -0.32244093165169874, 0.20803462829558736, 0.37059848376862575, -0.3517386470409627,
           -0.37212130621589434, 0.5665515525665632)
_ERFC_C = (-0.5699949606308037, 1.3671408660794016, 0.10085968114749046, -0.4060516223913219,
           -0.04698390386732184, 0.2979938489895861, -0.03971684632581485, -0.2608601262148738,
           0.1513565627138674, 0.19325362476716287, -0.2654415567354246, -0.050596911473766736,
           0.314974878566974, -0.15044761790896183)
_ERFC_C0L = (-8.296253971235362e-17, -4.701658343001272e-17, -1.4791953793012048e-17, -2.6416413599933672e-17)
_ERFC_C1L = (8.747923945509609e-17, 1.239965494902978e-17, -4.0492678533658334e-17, -4.978566620699274e-17)
_ERFC_D = (-0.36402692223210925, 1.3700738169865407, -0.07880957320752013, -0.37372197913735533,
           0.13887744076489697, 0.17494770923021397, -0.19069163561946, -0.023370082962823353,
           0.1754046210826049, -0.10545990522357164, -0.07734700672129372, 0.1576041023967587,
           -0.0551106470559131, -0.09813209337515666)


@njit(**_INLINE)
def _erf_small_f32(x):
    """``erf(x)`` for ``|x| < 1``."""
    z = x * x
    c = _ERF_F32
    p = c[6]
    p = p * z + c[5]
    p = p * z + c[4]
    p = p * z + c[3]
    p = p * z + c[2]
    p = p * z + c[1]
    # x * 2/sqrt(pi) as x + x * (2/sqrt(pi) - 1): the constant's rounding, 0.5 ULP of
    # 1.128, would otherwise be an ULP of every small result.
    p = p * z + (c[0] - F32(1.0))
    return x + x * p


@njit(**_INLINE)
def _erf_small(x):
    z = x * x
    c = _ERF
    p = c[12]
    p = p * z + c[11]
    p = p * z + c[10]
    p = p * z + c[9]
    p = p * z + c[8]
    p = p * z + c[7]
    p = p * z + c[6]
    p = p * z + c[5]
    p = p * z + c[4]
    p = p * z + c[3]
    p = p * z + c[2]
    p = p * z + c[1]
    p = p * z + (c[0] - 1.0)
    return x + x * p


@njit(**_INLINE)
def _erfc_big_f32(z, dz):
    """``erfc(z + dz)`` for ``z >= 0.5`` (any value at or above it; NaN passes) and a small
    correction ``dz`` (``|dz| <= 2**-23 z``: the rounding error of an argument)."""
    dz = F32(0.0) if z > F32(10.1) else dz
    z = F32(10.1) if z > F32(10.1) else z  # erfc(10.1) rounds to 0 in float32
    # t = 2 / (2 + z) is rounded, twice; erfc = t exp(-z**2 + F(t)) holds for the exact t,
    # so the relative error of t, rho / 2 with rho = 2 - t (2 + z), enters the exponent
    # (times 1 + t F'(t), F' ~ C1).
    s = F32(2.0) + z
    bv = s - F32(2.0)
    s_err = (F32(2.0) - (s - bv)) + (z - bv)
    t = F32(2.0) / s
    rho = _fma(-t, s, F32(2.0)) - t * s_err
    u = t - _ERFC_F32_CENTRE
    c = _ERFC_F32
    f = c[9]
    f = f * u + c[8]
    f = f * u + c[7]
    f = f * u + c[6]
    f = f * u + c[5]
    f = f * u + c[4]
    f = f * u + c[3]
    f = f * u + c[2]
    # F = C0 + u (C1 + u f), the leading terms in two parts.
    # dz moves t to t (1 - t dz / 2): the same first-order term as t's rounding error.
    lo = u * (c[1] + u * f) + (u * _ERFC_F32_C1L + _ERFC_F32_C0L) + F32(0.5) * (rho - t * dz) * (F32(1.0) + t * c[1])
    # z**2 = zh**2 + zl (z + zh) with zh**2 exact (zh: z's top 12 bits).
    zh = _float32(I32(_bits32(z) & I32(-4096)))
    zl = z - zh
    # (z + dz)**2 = z**2 + 2 z dz to first order.
    return t * _exp_sum_f32(-(zh * zh), c[0], (lo - zl * (z + zh)) - F32(2.0) * z * dz)


@njit(**_JIT)
def _sel4(t, a, b, c, d):
    return a if t < 0.3 else (b if t < 0.5 else (c if t < 0.65 else d))


@njit(**_INLINE)
def _erfc_big(z, dz):
    dz = 0.0 if z > 27.3 else dz
    z = 27.3 if z > 27.3 else z  # erfc(27.3) rounds to 0 in float64
    s = 2.0 + z
    bv = s - 2.0
    s_err = (2.0 - (s - bv)) + (z - bv)
    t = 2.0 / s
    rho = _fma(-t, s, 2.0) - t * s_err
    A, B, C, D = _ERFC_A, _ERFC_B, _ERFC_C, _ERFC_D
    u = t - _sel4(t, _ERFC_CENTRES[0], _ERFC_CENTRES[1], _ERFC_CENTRES[2], _ERFC_CENTRES[3])
    f = _sel4(t, A[13], B[13], C[13], D[13])
    f = f * u + _sel4(t, A[12], B[12], C[12], D[12])
    f = f * u + _sel4(t, A[11], B[11], C[11], D[11])
    f = f * u + _sel4(t, A[10], B[10], C[10], D[10])
    f = f * u + _sel4(t, A[9], B[9], C[9], D[9])
    f = f * u + _sel4(t, A[8], B[8], C[8], D[8])
    f = f * u + _sel4(t, A[7], B[7], C[7], D[7])
    f = f * u + _sel4(t, A[6], B[6], C[6], D[6])
    f = f * u + _sel4(t, A[5], B[5], C[5], D[5])
    f = f * u + _sel4(t, A[4], B[4], C[4], D[4])
    f = f * u + _sel4(t, A[3], B[3], C[3], D[3])
    f = f * u + _sel4(t, A[2], B[2], C[2], D[2])
    c1 = _sel4(t, A[1], B[1], C[1], D[1])
    c1l = _sel4(t, _ERFC_C1L[0], _ERFC_C1L[1], _ERFC_C1L[2], _ERFC_C1L[3])
    c0l = _sel4(t, _ERFC_C0L[0], _ERFC_C0L[1], _ERFC_C0L[2], _ERFC_C0L[3])
    lo = u * (c1 + u * f) + (u * c1l + c0l) + 0.5 * (rho - t * dz) * (1.0 + t * c1)
    zh = _float64(_bits64(z) & -134217728)  # z's top 26 bits: zh**2 is exact
    zl = z - zh
    return t * _exp_sum(-(zh * zh), _sel4(t, A[0], B[0], C[0], D[0]), (lo - zl * (z + zh)) - 2.0 * z * dz)


@njit(**_INLINE)
def _erf_f32(x):
    a = abs(x)
    big = F32(1.0) - _erfc_big_f32(a, F32(0.0))
    big = _float32(I32(_bits32(big) | (_bits32(x) & I32(-2147483648))))
    return _erf_small_f32(x) if a < F32(1.0) else big


@njit(**_INLINE)
def _erf_f64(x):
    a = abs(x)
    big = 1.0 - _erfc_big(a, 0.0)
    big = _float64(_bits64(big) | (_bits64(x) & (-9223372036854775807 - 1)))
    return _erf_small(x) if a < 1.0 else big


@njit(**_INLINE)
def _erfc_f32(x):
    a = abs(x)
    tail = _erfc_big_f32(a, F32(0.0))
    y = F32(1.0) - _erf_small_f32(x)  # -1 < x < 0.5
    y = tail if x >= F32(0.5) else y
    return F32(2.0) - tail if x <= F32(-1.0) else y


@njit(**_INLINE)
def _erfc_f64(x):
    a = abs(x)
    tail = _erfc_big(a, 0.0)
    y = 1.0 - _erf_small(x)
    y = tail if x >= 0.5 else y
    return 2.0 - tail if x <= -1.0 else y


# 1/sqrt(2) in two parts, and 2/sqrt(pi).
_SQRT1_2_F32, _SQRT1_2_LO_F32 = F32(0.70710677), F32(1.21016175e-08)
_SQRT1_2, _SQRT1_2_LO = 0.7071067811865476, -4.833646656726457e-17
_TWO_SQRTPI_F32, _TWO_SQRTPI = F32(1.1283792), 1.1283791670955126


@njit(**_INLINE)
def _ndtr_f32(x):
    # z + dz = -x / sqrt(2), the product's rounding error dz from an FMA; dz is dropped
    # where x is infinite (the FMA gives NaN there) and passes NaN on otherwise.
    z = -x * _SQRT1_2_F32
    dz = _fma(-x, _SQRT1_2_F32, -z) - x * _SQRT1_2_LO_F32
    dz = F32(0.0) if abs(x) == _INF_F32 else dz
    a = abs(z)
    tail = _erfc_big_f32(a, dz if z >= F32(0.0) else -dz)
    # |z| < 1: erfc(z + dz) = erfc(z) - 2/sqrt(pi) e**-z**2 dz, e**-z**2 to a few percent.
    z2 = z * z
    y = (F32(1.0) - _erf_small_f32(z)) - _TWO_SQRTPI_F32 * (F32(1.0) - z2 * (F32(1.0) - F32(0.5) * z2)) * dz
    y = tail if z >= F32(0.5) else y
    y = F32(2.0) - tail if z <= F32(-1.0) else y
    return F32(0.5) * y


@njit(**_INLINE)
def _ndtr_f64(x):
    z = -x * _SQRT1_2
    dz = _fma(-x, _SQRT1_2, -z) - x * _SQRT1_2_LO
    dz = 0.0 if abs(x) == np.inf else dz
    a = abs(z)
    tail = _erfc_big(a, dz if z >= 0.0 else -dz)
    z2 = z * z
    y = (1.0 - _erf_small(z)) - _TWO_SQRTPI * (1.0 - z2 * (1.0 - z2 * (0.5 - z2 / 6.0))) * dz
    y = tail if z >= 0.5 else y
    y = 2.0 - tail if z <= -1.0 else y
    return 0.5 * y


_THIS = sys.modules[__name__]


# --- overloads -----------------------------------------------------------------------------------
def _overload(py_fn, f32, f64):
    @overload(py_fn, jit_options={**_JIT, "forceinline": True})
    def impl(x):
        if x == types.float32:
            return lambda x: f32(x)
        if isinstance(x, (types.Float, types.Integer, types.Boolean)):
            return lambda x: f64(float(x))
        return None

    return impl


_overload(exp, _exp_f32, _exp_f64)
_overload(ndtr, _ndtr_f32, _ndtr_f64)
_overload(exp_f64, _exp_f64_of_f32, _exp_f64)
_overload(expm1, _expm1_f32, _expm1_f64)
_overload(log, _log_f32, _log_f64)
_overload(log1p, _log1p_f32, _log1p_f64)
_overload(tanh, _tanh_f32, _tanh_f64)
_overload(erf, _erf_f32, _erf_f64)
_overload(erfc, _erfc_f32, _erfc_f64)


@overload(exp_diff, jit_options=_INLINE)
def _exp_diff_impl(a, b):
    if not all(isinstance(v, (types.Float, types.Integer, types.Boolean)) for v in (a, b)):
        return None
    if a == types.float32 and b == types.float32:
        return lambda a, b: _exp_diff_f32(a, b)
    return lambda a, b: _exp_diff_f64(float(a), float(b))


@njit(**_INLINE)
def _split_f64(r):
    """``r`` as ``hi + lo``, two float32 (``lo`` 0 where ``r`` is infinite or NaN: ``hi``
    carries it).  Loop-invariant where ``r`` is: LLVM computes it once."""
    hi = F32(r)
    lo = F32(r - F64(hi))
    return hi, (lo if lo == lo else F32(0.0))


@njit(**_INLINE)
def _mul_wide_f32(t, r):
    hi, lo = _split_f64(r)
    y = _fma(t, hi, t * lo)
    return y if y == y else t * hi  # t infinite: inf * lo may be NaN (lo 0, or of the other sign)


@njit(**_INLINE)
def _sub_wide_f32(a, r, c):
    # a - hi exactly (its rounding error e by TwoSum), then the small parts added to it:
    # one rounding of (a - hi) + (e + c - lo), where the plain sum would round twice.
    hi, lo = _split_f64(r)
    s = a - hi
    v = s - a
    e = (a - (s - v)) - (hi + v)
    y = s + ((e + c) - lo)
    return y if y == y else (a - hi) + c  # an infinite a or r: e is NaN


@overload(sub_wide, jit_options=_INLINE)
def _sub_wide_impl(a, r, c):
    if not all(isinstance(v, (types.Float, types.Integer, types.Boolean)) for v in (a, r, c)):
        return None
    if a == types.float32 and r == types.float64 and c == types.float32:
        return lambda a, r, c: _sub_wide_f32(a, r, c)
    return lambda a, r, c: (a - r) + c


@overload(mul_wide, jit_options=_INLINE)
def _mul_wide_impl(t, r):
    if not all(isinstance(v, (types.Float, types.Integer, types.Boolean)) for v in (t, r)):
        return None
    if t == types.float32 and r == types.float64:
        return lambda t, r: _mul_wide_f32(t, r)
    return lambda t, r: t * r


@overload(fma, jit_options=_INLINE)
def _fma_impl(a, b, c):
    args = (a, b, c)
    if not all(isinstance(v, (types.Float, types.Integer, types.Boolean)) for v in args):
        return None
    if all(v == types.float32 for v in args):
        return lambda a, b, c: _fma(a, b, c)
    return lambda a, b, c: _fma(float(a), float(b), float(c))
