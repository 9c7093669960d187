"""fastact._vmath: the branch-free ``exp`` and ``expm1`` of the CPU kernels.

Checked against an oracle in long double (or float64 where the platform has no wider
type) over every range that matters: random arguments across the whole domain, a sweep
of float32 bit patterns, the boundaries of overflow and underflow, and special values.
"""

import math
import platform
import re
import warnings

import numpy as np
import pytest
from _helpers import EXACT, ulp_distance
from numba import njit, vectorize

from fastact import _vmath

# The accuracy that fastact._vmath documents, in ULP of the result.
BOUND = {
    ("exp", np.float32): 1,
    ("expm1", np.float32): 1,
    ("exp", np.float64): 1,
    ("expm1", np.float64): 2,
}
ORACLE = {"exp": np.exp, "expm1": np.expm1}


@vectorize(["float32(float32)", "float64(float64)"])
def _exp(x):
    return _vmath.exp(x)


@vectorize(["float32(float32)", "float64(float64)"])
def _expm1(x):
    return _vmath.expm1(x)


COMPILED = {"exp": _exp, "expm1": _expm1}


def _exact(name, x):
    """The function of ``x`` to well under an ULP of ``x``'s dtype, rounded to it."""
    wide = EXACT if EXACT is not None else np.float64
    with np.errstate(all="ignore"):
        return ORACLE[name](x.astype(wide)).astype(x.dtype)


def _check(name, x):
    with np.errstate(all="ignore"):
        got = COMPILED[name](x)
    want = _exact(name, x)
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{name}: NaN positions differ"
    d = ulp_distance(got, want)
    bound = BOUND[name, x.dtype.type] + (0 if EXACT is not None or x.dtype == np.float32 else 1)
    worst = int(np.argmax(d)) if d.size else 0
    assert d.max(initial=0) <= bound, (
        f"{name} {x.dtype}: {int(d[worst])} ULP at x={x[worst]!r}: got {got[worst]!r}, want {want[worst]!r}"
    )


def _wide_sample(rng, dtype, n):
    """Arguments over the whole domain and, densely, where the reductions change regime."""
    hi = 90.0 if dtype == np.float32 else 712.0
    lo = -110.0 if dtype == np.float32 else -750.0
    parts = [
        rng.uniform(lo, hi, n),
        rng.uniform(-1.0, 1.0, n),
        rng.uniform(-0.5, 0.5, n) * 10.0 ** rng.uniform(-40, 0, n),  # tiny, both signs
        np.round(rng.uniform(-60, 60, n)) * math.log(2.0) + rng.uniform(-1e-6, 1e-6, n),  # near k ln 2 / 2 edges
        (np.round(rng.uniform(-60, 60, n)) + 0.5) * math.log(2.0) + rng.uniform(-1e-9, 1e-9, n),
    ]
    return np.concatenate(parts).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["exp", "expm1"])
def test_random_arguments_within_bound(name, dtype, rng):
    _check(name, _wide_sample(rng, dtype, 200_000))


@pytest.mark.parametrize("name", ["exp", "expm1"])
def test_float32_bit_patterns_within_bound(name):
    # Every 997th float32 bit pattern, both signs: about 4.3 million arguments spread
    # evenly over every binade, subnormals, infinities and NaNs included.
    bits = np.arange(0, 2**32, 997, dtype=np.uint64).astype(np.uint32)
    _check(name, bits.view(np.float32))


def _edges(dtype):
    f = np.finfo(dtype)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, float(f.tiny), -float(f.tiny), float(f.smallest_subnormal),
               -float(f.smallest_subnormal), float(f.eps), -float(f.eps), 1.0, -1.0]
    if dtype == np.float32:
        bounds = [88.72283, 88.72284, -87.33654, -87.33655, -103.27893, -103.97208, -104.0, 89.0, -20.0]
    else:
        bounds = [709.782712893384, 709.7827128933841, -708.3964185322641, -708.39641853226412,
                  -744.4400719213812, -745.1332191019411, -745.1332191019412, 710.0, -746.0, -45.0, -37.5]
    x = np.array(special + bounds, dtype=dtype)
    # Each value and its neighbours.
    return np.concatenate([x, np.nextafter(x, dtype(np.inf)), np.nextafter(x, dtype(-np.inf))])


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("name", ["exp", "expm1"])
def test_range_boundaries_and_special_values(name, dtype):
    _check(name, _edges(dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_exact_special_values(dtype):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan], dtype)
    with np.errstate(all="ignore"):
        e, m = _exp(x), _expm1(x)
    assert e.dtype == m.dtype == dtype
    np.testing.assert_array_equal(e, np.array([1.0, 1.0, np.inf, 0.0, np.nan], dtype))
    np.testing.assert_array_equal(m, np.array([0.0, -0.0, np.inf, -1.0, np.nan], dtype))
    assert not np.signbit(m[0]) and np.signbit(m[1])


def test_python_calls_are_the_math_module():
    assert _vmath.exp(0.5) == math.exp(0.5)
    assert _vmath.expm1(-1e-20) == math.expm1(-1e-20)


def test_other_argument_types():
    @njit
    def both(x):
        return _vmath.exp(x), _vmath.expm1(x)

    e, m = both(1)  # an integer, as math.exp takes it
    assert abs(e - math.e) <= 2 * math.ulp(math.e)
    assert abs(m - math.expm1(1.0)) <= 2 * math.ulp(m)


def test_cpu_function_sees_this_module_as_math():
    def f(x):
        return math.exp(x) + math.log1p(x)

    g = _vmath.cpu_function(f)
    assert g.__globals__["math"] is _vmath
    assert g(0.25) == math.exp(0.25) + math.log1p(0.25)
    assert f.__globals__["math"] is math  # the original is untouched


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("fn", [_vmath.exp, _vmath.expm1], ids=lambda f: f.__name__)
def test_a_loop_over_them_is_vectorised(fn, dtype):
    # What the module exists for: a loop that calls them compiles to vector instructions
    # (libm's exp would leave one call per element).
    @njit(error_model="numpy")
    def loop(x, out):
        for i in range(x.shape[0]):
            out[i] = fn(x[i])

    x = np.linspace(-5, 5, 64).astype(dtype)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loop(x, out)
    asm = loop.inspect_asm(loop.signatures[0])
    assert not re.search(r"\$(exp|expf|expm1|expm1f)\b", asm), "the loop calls the C library"
    assert re.search(r"\bv?mulp[sd]\b", asm), "no packed multiplication in the loop"
    np.testing.assert_allclose(out, getattr(np, fn.__name__)(x), rtol=1e-6)
