"""fastact._vmath: the branch-free ``exp``, ``expm1``, ``log``, ``log1p``, ``tanh``, ``erf``
and ``erfc`` of the CPU kernels, in float32 and float64.

Each is checked against an extended-precision oracle over every range that matters: a
sweep of float32 bit patterns (every binade, subnormals, infinities and NaN), random
float64 arguments across the whole domain and densely around every point where the
method changes regime, the boundaries of overflow and underflow, and special values.
The oracle is long double (x86's 80-bit) where NumPy has it, Python's double-precision
``math.erf``/``math.erfc`` for float32 results, and mpmath for float64 ``erf``/``erfc``.
"""

import math
import platform
import re
import warnings

import mpmath
import numpy as np
import pytest
from _helpers import EXACT, ulp_distance
from numba import njit, vectorize

from fastact import _vmath

NAMES = ("exp", "expm1", "log", "log1p", "tanh", "erf", "erfc")

#: The accuracy that fastact._vmath documents, in ULP of the result.
BOUND = {
    **{(n, np.float32): 1 for n in ("exp", "expm1", "log", "log1p", "tanh")},
    ("erf", np.float32): 2,
    ("erfc", np.float32): 2,
    **{(n, np.float64): 1 for n in ("exp", "expm1", "log", "log1p", "tanh")},
    ("erf", np.float64): 2,
    ("erfc", np.float64): 2,
}


def _compiled(name):
    fn = getattr(_vmath, name)

    @vectorize(["float32(float32)", "float64(float64)"])
    def uf(x):
        return fn(x)

    return uf


COMPILED = {name: _compiled(name) for name in NAMES}


def _long_double(name):
    return {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p, "tanh": np.tanh}[name]


def _exact(name, x):
    """The function of ``x`` to well under an ULP of ``x``'s dtype, rounded to it."""
    with np.errstate(all="ignore"):
        if name in ("erf", "erfc"):
            if x.dtype == np.float32:
                f = getattr(math, name)
                return np.array([f(float(v)) for v in x.tolist()], dtype=np.float64).astype(np.float32)
            return _mpmath(name, x)
        wide = EXACT if EXACT is not None else np.float64
        return _long_double(name)(x.astype(wide)).astype(x.dtype)


def _mpmath(name, x):
    f = getattr(mpmath, name)
    out = np.empty_like(x)
    for i, v in enumerate(x.tolist()):
        # Beyond |v| = 30 both are 0, 1 or 2 to every precision (and mpmath overflows).
        out[i] = float(f(mpmath.mpf(v))) if abs(v) < 30 else getattr(math, name)(v)
    return out


def _check(name, x):
    with np.errstate(all="ignore"):
        got = COMPILED[name](x)
    want = _exact(name, x)
    assert got.dtype == x.dtype
    nan_got, nan_want = np.isnan(got), np.isnan(want)
    assert np.array_equal(nan_got, nan_want), f"{name}: NaN positions differ at {x[nan_got != nan_want][:5]}"
    d = ulp_distance(got, want)
    bound = BOUND[name, x.dtype.type] + (1 if EXACT is None and x.dtype == np.float64 else 0)
    worst = int(np.argmax(d)) if d.size else 0
    assert d.max(initial=0) <= bound, (
        f"{name} {x.dtype}: {int(d[worst])} ULP at x={x[worst]!r}: got {got[worst]!r}, want {want[worst]!r}"
    )


# --- float32: a sweep of bit patterns -----------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_float32_bit_patterns_within_bound(name):
    # Every 997th float32 bit pattern, both signs: about 4.3 million arguments spread
    # evenly over every binade, subnormals, infinities and NaN included (every 9973rd
    # for erf/erfc, whose oracle is called from Python).
    step = 9973 if name in ("erf", "erfc") else 997
    bits = np.arange(0, 2**32, step, dtype=np.uint64).astype(np.uint32)
    _check(name, bits.view(np.float32))


#: Where each method changes regime: its arguments are sampled densely around these.
BREAKS = {
    "exp": [k * math.log(2) / 2 for k in range(-3, 4)] + [-87.3, -103.97, 88.72],
    "expm1": [k * math.log(2) / 2 for k in range(-5, 6)] + [-18.0, 16.6, 17.0, 38.8, 39.2],
    "log": [math.sqrt(0.5), math.sqrt(2.0), 1.0, 0.5, 2.0],
    "log1p": [math.sqrt(0.5) - 1, math.sqrt(2.0) - 1, 0.0, -0.5, 1.0],
    "tanh": [0.55, -0.55, 0.0, 9.0, 19.1],
    "erf": [1.0, -1.0, 0.5, 0.0, 3.9],
    "erfc": [0.5, 1.0, -1.0, 0.0, 2.0 / 0.3 - 2, 2.0 / 0.5 - 2, 2.0 / 0.65 - 2, 2.0 / 0.8 - 2, 10.0, 26.5],
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_dense_around_regime_changes(name, dtype, rng):
    n = 3000 if name in ("erf", "erfc") and dtype == np.float64 else 40_000
    centres = np.array(BREAKS[name])
    x = centres[rng.integers(0, len(centres), n)] * (1 + rng.uniform(-1, 1, n) * 10.0 ** rng.uniform(-15, -1, n))
    _check(name, x.astype(dtype))


def _wide_sample(rng, name, dtype, n):
    """float64 arguments over the whole domain, every magnitude and both signs."""
    mags = 10.0 ** rng.uniform(-300 if dtype == np.float64 else -40, 3, n)
    x = mags * rng.choice([-1.0, 1.0], n)
    if name in ("log", "log1p"):
        x = np.concatenate([np.abs(x), x, 10.0 ** rng.uniform(0, 308, n // 4)])
    hi = {"exp": 712.0, "expm1": 712.0, "tanh": 25.0, "erf": 8.0, "erfc": 28.0}.get(name)
    if hi is not None:
        x = np.concatenate([x, rng.uniform(-hi, hi, n)])
        if name in ("exp", "expm1"):
            x = np.concatenate([x, rng.uniform(-750, -700, n // 4)])
    return x.astype(dtype)


@pytest.mark.parametrize("name", NAMES)
def test_float64_random_arguments_within_bound(name, rng):
    n = 4000 if name in ("erf", "erfc") else 400_000
    _check(name, _wide_sample(rng, name, np.float64, n))


# --- special values ----------------------------------------------------------------------------


def _edges(dtype):
    f = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(f.tiny), -float(f.tiny), float(f.smallest_subnormal),
               -float(f.smallest_subnormal), float(f.eps), -float(f.eps), 1.0, -1.0, float(f.max), -float(f.max)]
    if dtype == np.float32:
        bounds = [88.72283, 88.72284, -87.33654, -87.33655, -103.27893, -103.97208, -104.0, 89.0, -18.0, 10.05, 10.1]
    else:
        bounds = [709.782712893384, 709.7827128933841, -708.3964185322641, -708.39641853226412,
                  -744.4400719213812, -745.1332191019411, -745.1332191019412, 710.0, -746.0, -45.0, -37.5, 27.2, 27.3]
    x = np.array(special + bounds, dtype=dtype)
    with np.errstate(all="ignore"):
        return np.concatenate([x, np.nextafter(x, dtype(np.inf)), np.nextafter(x, dtype(-np.inf))])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", NAMES)
def test_range_boundaries_and_special_values(name, dtype):
    _check(name, _edges(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_exact_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    nan = np.nan
    want = {
        "exp": [1.0, 1.0, np.inf, 0.0, nan],
        "expm1": [0.0, -0.0, np.inf, -1.0, nan],
        "log": [-np.inf, -np.inf, np.inf, nan, nan],
        "log1p": [0.0, -0.0, np.inf, nan, nan],
        "tanh": [0.0, -0.0, 1.0, -1.0, nan],
        "erf": [0.0, -0.0, 1.0, -1.0, nan],
        "erfc": [1.0, 1.0, 0.0, 2.0, nan],
    }
    for name, w in want.items():
        with np.errstate(all="ignore"):
            got = COMPILED[name](x)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, np.array(w, dtype), err_msg=name)
        zeros = np.array(w[:2]) == 0
        np.testing.assert_array_equal(np.signbit(got[:2])[zeros], np.signbit(np.array(w[:2]))[zeros], err_msg=name)
    with np.errstate(all="ignore"):
        assert COMPILED["log1p"](np.array([-1.0, -2.0], dtype)).tolist()[0] == -np.inf
        assert np.isnan(COMPILED["log1p"](np.array([-2.0], dtype))).all()
        assert np.isnan(COMPILED["log"](np.array([-1.0], dtype))).all()


def test_python_calls_are_the_math_module():
    for name in NAMES:
        assert getattr(_vmath, name)(0.25) == getattr(math, name)(0.25)


def test_other_argument_types():
    @njit
    def all_of(x):
        return _vmath.exp(x), _vmath.expm1(x), _vmath.log(x), _vmath.log1p(x), _vmath.tanh(x), _vmath.erf(x)

    got = all_of(1)  # an integer, as math.exp takes it
    want = [math.e, math.expm1(1.0), 0.0, math.log1p(1.0), math.tanh(1.0), math.erf(1.0)]
    for g, w in zip(got, want):
        assert abs(g - w) <= 2 * math.ulp(w)


# --- vectorisation ----------------------------------------------------------------------------

LIBM = r"\$(?:exp|expf|expm1|expm1f|log|logf|log1p|log1pf|tanh|tanhf|erf|erff|erfc|erfcf|fma|fmaf)\b"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", NAMES)
def test_a_loop_over_them_is_vectorised(name, dtype):
    # What the module exists for: a loop that calls them compiles to vector instructions
    # (the C library's functions would leave one call per element).
    fn = getattr(_vmath, name)

    @njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    x = np.linspace(0.1, 5, 64).astype(dtype)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop(x, out)
    asm = loop.inspect_asm(loop.signatures[0])
    assert not re.search(LIBM, asm), "the loop calls the C library"
    assert re.search(r"\bv\w+p" + ("s" if dtype == "float32" else "d") + r"\b", asm), "no packed arithmetic"
    np.testing.assert_allclose(out, np.vectorize(getattr(math, name))(x.astype(np.float64)), rtol=1e-6)


# --- exp_f64 ------------------------------------------------------------------------------------


@vectorize(["float64(float32)", "float64(float64)"])
def _exp_f64(x):
    return _vmath.exp_f64(x)


def test_exp_f64_of_float32_keeps_float32_precision_beyond_float32_range(rng):
    """float32 arguments: within 1 float32 ULP (relative 2**-23) of e**x over float64's
    range, where e**x itself would be subnormal or infinite in float32; 0 and inf where
    exp(double(x)) is, give or take the last float32 below those boundaries."""
    x = np.concatenate([np.linspace(-745, 709.7, 3_000_001), rng.uniform(-745, 709.7, 500_000),
                        [-200.0, 200.0, -103.97, -87.34, 88.73, 0.0, -0.0, 1e-45]]).astype(np.float32)
    got = _exp_f64(x)
    assert got.dtype == np.float64
    exact = np.exp(x.astype(EXACT or np.float64))
    normal = exact >= np.finfo(np.float64).tiny
    rel = np.abs((got - exact) / exact).astype(np.float64)[normal]
    assert rel.max() <= 2.0**-23, (rel.max() / 2.0**-24, x[normal][np.argmax(rel)])
    sub = ~normal  # subnormal doubles: within an ULP of them as well
    assert (np.abs(got[sub] - exact[sub].astype(np.float64)) <= 2.0**-23 * exact[sub] + 5e-324).all()
    beyond = np.float32([np.inf, -np.inf, np.nan, -746.0, -1000.0, -3e38, 710.0, 1000.0, 3e38])
    with np.errstate(all="ignore"):
        got = _exp_f64(beyond)
    np.testing.assert_array_equal(got, [np.inf, 0.0, np.nan, 0.0, 0.0, 0.0, np.inf, np.inf, np.inf])


def test_exp_f64_of_float64_is_exp(rng):
    x = _wide_sample(rng, "exp", np.float64, 20_000)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(_exp_f64(x), COMPILED["exp"](x))


def test_exp_f64_is_vectorised_in_float32():
    @njit(error_model="numpy")
    def loop(x, dy, out):
        for i in range(x.shape[0]):
            out[i] = dy[i] * _vmath.exp_f64(x[i])

    x = np.linspace(-150, 0, 64).astype(np.float32)
    out = np.empty_like(x)
    loop(x, np.full_like(x, 1e30), out)
    asm = loop.inspect_asm(loop.signatures[0])
    assert not re.search(LIBM, asm), "the loop calls the C library"
    assert re.search(r"\bv\w+ps\b", asm), "no packed float32 arithmetic"
    np.testing.assert_allclose(out, 1e30 * np.exp(x.astype(np.float64)), rtol=2.0**-23)


# --- ndtr and fma -------------------------------------------------------------------------------


@vectorize(["float32(float32)", "float64(float64)"])
def _ndtr(x):
    return _vmath.ndtr(x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_ndtr_within_bound_over_the_whole_range(dtype, rng):
    """Phi(x) against mpmath, the left tail included, where the argument -x/sqrt(2)
    must be taken exactly: within 3 ULP (erfc's 2, and the argument's correction)."""
    lo = -14.0 if dtype == np.float32 else -38.0
    x = np.concatenate([rng.uniform(lo, 9, 6000), rng.uniform(-3, 3, 3000),
                        rng.standard_normal(1000) * 10.0 ** rng.uniform(-30, 0, 1000),
                        [-1.4142135, -0.70710677, 0.0, -0.0, 1.4142135, 0.70710677]]).astype(dtype)
    got = _ndtr(x)
    exact = np.array([float(mpmath.ncdf(mpmath.mpf(float(v)))) for v in x])
    d = ulp_distance(got, exact.astype(dtype))
    normal = exact >= np.finfo(dtype).tiny
    assert d[normal].max() <= 3, (int(d[normal].max()), x[normal][np.argmax(d[normal])])
    with np.errstate(all="ignore"):
        special = _ndtr(np.array([np.inf, -np.inf, np.nan, -1e30, 1e30], dtype))
    np.testing.assert_array_equal(special, [1.0, 0.0, np.nan, 0.0, 1.0])


def test_fma_rounds_once():
    @vectorize(["float32(float32, float32, float32)", "float64(float64, float64, float64)"])
    def fma(a, b, c):
        return _vmath.fma(a, b, c)

    a32 = np.float32([1 + 2.0**-12])
    assert fma(a32, np.float32([1 - 2.0**-12]), np.float32([-1]))[0] == -(2.0**-24)
    a64 = np.array([1 + 2.0**-30])
    assert fma(a64, np.array([1 - 2.0**-30]), np.array([-1.0]))[0] == -(2.0**-60)
    assert _vmath.fma(1 + 2.0**-30, 1 - 2.0**-30, -1.0) == -(2.0**-60)  # the Python fallback


# --- exp_diff -----------------------------------------------------------------------------------


@vectorize(["float32(float32, float32)", "float64(float64, float64)"])
def _exp_diff(a, b):
    return _vmath.exp_diff(a, b)


def _exp_diff_exact(a, b):
    """e**(a - b) in 320-bit arithmetic (the difference of any two doubles that matter is
    exact there), rounded to the dtype."""
    with mpmath.workprec(320):
        return np.array([float(mpmath.exp(mpmath.mpf(float(u)) - mpmath.mpf(float(v))))
                         for u, v in zip(a.tolist(), b.tolist(), strict=True)]).astype(a.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_exp_diff_within_an_ulp_with_the_difference_exact(dtype, rng):
    """e**(a - b), a <= b, within 1 ULP of the exact value: maxima of every magnitude,
    differences from 1e-13 to beyond underflow, and densely where the result is subnormal
    (rounded once).  Rounding a - b first would be |a - b| ULP off (about 20 at 20)."""
    n = 12_000
    b = rng.standard_normal(n) * np.exp(rng.uniform(-12, 9, n))
    d = -np.abs(rng.standard_normal(n)) * np.exp(rng.uniform(-30, 6.7, n))
    lo, hi = (-104.0, -87.0) if dtype == np.float32 else (-745.2, -707.0)
    under = rng.uniform(lo, hi, 3000)
    a = np.concatenate([b + d, under]).astype(dtype)
    b = np.concatenate([b, np.zeros(3000)]).astype(dtype)
    a = np.minimum(a, b)
    with np.errstate(all="ignore"):
        got = _exp_diff(a, b)
    want = _exp_diff_exact(a, b)
    dist = ulp_distance(got, want)
    worst = int(np.argmax(dist))
    assert dist.max() <= 1, f"{int(dist[worst])} ULP at a={a[worst]!r}, b={b[worst]!r}"
    # Rounding the difference first is what this avoids: checked to be visible here.
    naive = COMPILED["exp"]((a - b).astype(dtype))
    assert ulp_distance(naive, want).max() > 8


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_exp_diff_special_values(dtype):
    inf, nan = np.inf, np.nan
    tiny = np.finfo(dtype).smallest_subnormal
    a = np.array([0.0, -0.0, 3.0, -inf, -inf, 5.0, inf, nan, 1.0, -1e30, -tiny, -inf], dtype)
    b = np.array([0.0, 0.0, 3.0, 0.0, 7.0, inf, inf, 0.0, nan, 1e30, tiny, -inf], dtype)
    with np.errstate(all="ignore"):
        got = _exp_diff(a, b)
    want = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, nan, nan, nan, 0.0, 1.0, nan]
    np.testing.assert_array_equal(got, np.array(want, dtype))
    # The plain-Python version (fastact._vmath.exp_diff called from Python) agrees.
    py = [_vmath.exp_diff(float(u), float(v)) for u, v in zip(a.tolist(), b.tolist(), strict=True)]
    np.testing.assert_array_equal(np.array(py, dtype), np.array(want, dtype))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_exp_diff_is_vectorised(dtype):
    @njit(error_model="numpy")
    def loop(x, m, out):
        for i in range(x.shape[0]):
            out[i] = _vmath.exp_diff(x[i], m)

    x = np.linspace(-30, 0, 64).astype(dtype)
    out = np.empty_like(x)
    loop(x, x.dtype.type(0.0), out)
    asm = loop.inspect_asm(loop.signatures[0])
    assert not re.search(LIBM, asm), "the loop calls the C library"
    assert re.search(r"\bv\w+p" + ("s" if dtype == "float32" else "d") + r"\b", asm), "no packed arithmetic"


# --- mul_wide and sub_wide ----------------------------------------------------------------------


@vectorize(["float32(float32, float64)"])
def _mul_wide(t, r):
    return _vmath.mul_wide(t, r)


@vectorize(["float32(float32, float64, float32)"])
def _sub_wide(a, r, c):
    return _vmath.sub_wide(a, r, c)


def _rounded(values):
    """Exact rationals (fractions) rounded to float32 through float64 where that cannot
    round twice: near a float32 tie the float64 may, so those compare within 1 ULP."""
    return np.array([float(v) for v in values]).astype(np.float32)


def test_mul_wide_and_sub_wide_round_once(rng):
    """float32 arithmetic for a float32 times (or minus) a float64: within an ULP of the
    exactly rounded result (0 ULP but where the float64 reference itself rounds twice),
    and exact for the special values."""
    from fractions import Fraction

    n = 20_000
    t = rng.uniform(0, 1, n).astype(np.float32)
    r = 1.0 / rng.uniform(1, 1000, n)  # softmax's 1 / sum
    want = _rounded(Fraction(float(u)) * Fraction(float(v)) for u, v in zip(t, r, strict=True))
    got = _mul_wide(t, r)
    assert ulp_distance(got, want).max() <= 1
    assert np.mean(got == want) > 0.999
    a = -np.abs(rng.standard_normal(n) * 10).astype(np.float32)  # x - max
    s = np.log(rng.uniform(1, 1000, n))  # log of the sum
    c = (rng.standard_normal(n) * np.spacing(a)).astype(np.float32)  # a rounding error of a
    want = _rounded(Fraction(float(u)) - Fraction(float(v)) + Fraction(float(w)) for u, v, w in zip(a, s, c, strict=True))
    got = _sub_wide(a, s, c)
    assert ulp_distance(got, want).max() <= 1
    assert np.mean(got == want) > 0.999
    inf, nan = np.inf, np.nan
    with np.errstate(all="ignore"):
        got = _mul_wide(np.float32([0, 1, inf, inf, 2, nan, -inf]), np.array([nan, inf, 0.5, 0.1, 0.0, 0.5, 1 / 3]))
        np.testing.assert_array_equal(got, np.float32([nan, inf, inf, inf, 0, nan, -inf]))
        got = _sub_wide(np.float32([0, -inf, 1, nan, -inf]), np.array([0.0, np.log(3.0), inf, 0.5, -inf]),
                        np.float32([0, 0, 0, 0, 0]))
        np.testing.assert_array_equal(got, np.float32([0, -inf, -inf, nan, nan]))
        assert not np.signbit(got[0])  # 0 - 0 is +0
