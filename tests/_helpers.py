"""Shared test machinery: the registry-driven case tables, the ULP oracle, edge values and
array layouts.  Everything here is derived from ``fastact.REGISTRY`` so that a new
declaration is tested with no edit to the tests."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import strategies as st

import fastact as fa
from fastact import _dispatch
from fastact._spec import check_params, dfdy_allowed
from fastact.reference import REFERENCE

FLOATS = (np.float16, np.float32, np.float64)
#: The functions whose result has their input's shape (elementwise and row-wise): every
#: one but the reductions and the gated units, which tests/test_reductions.py and
#: tests/test_gated.py cover.
SHAPED = tuple(n for n, s in fa.REGISTRY.items() if s.kind in ("elementwise", "rowwise"))
CPU_TARGETS = ("cpu", "parallel", "auto")
ELEMENTWISE_OPS = ("forward", "grad", "grad2", "backward_x", "backward_y")
ROWWISE_OPS = ("forward", "backward_x", "backward_y")

#: ULP bound against the reference (see ``reference``) rounded to the result dtype.
#: float16 and float32 are computed in double precision (float16 via float32) and
#: rounded once or twice, so 1 ULP would do; float64 results go through fastact's
#: ``exp`` (within 1 ULP) or ``expm1`` (within 2), then up to three more roundings.
MAX_ULP = {np.dtype(np.float16): 1, np.dtype(np.float32): 2, np.dtype(np.float64): 4}
#: float64 second derivatives combine two transcendental functions and a cube
#: (sigmoid'' = -sign(x) t expm1(-|x|) / (1 + t)^3): up to 6 ULP.
GRAD2_MAX_ULP_F64 = 6


def tolerance(name, op, x64, dy64, params, dtype, maxulp):
    """The absolute tolerance beside the ULP bound (see :func:`assert_ulp`), for what no
    evaluation in the element's precision avoids:

    * a factor that is subnormal in the dtype it is computed in (float16: float32) loses
      precision that the other factors scale up again: ``x * Phi(x)``, ``dy * f'(x)``,
      ``s + x s (1 - s)`` with ``s`` subnormal: ``maxulp`` subnormal spacings times
      ``max(1, |x|)`` (times ``|dy|`` in backward);
    * terms that cancel (``silu'(x) = s + x s (1 - s)`` near its root), where the
      reference declares their magnitudes (``REFERENCE[name].scale``): ``maxulp`` ULP of
      that sum."""
    compute = np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)
    sub = float(np.finfo(compute).smallest_subnormal)
    eps = float(np.finfo(dtype).eps)
    x64 = np.asarray(x64, dtype=np.float64)
    scales = getattr(REFERENCE[name], "scale", {})
    kw = dict(params or {})
    with np.errstate(all="ignore"):
        mult = scales["sub"](x64, **kw) if "sub" in scales else np.abs(x64)
        atol = maxulp * sub * np.maximum(1.0, np.nan_to_num(mult))
        if op.startswith("backward"):
            atol = atol * np.abs(dy64)
            if op == "backward_x" and "grad" in scales:
                atol = atol + maxulp * eps * np.abs(dy64) * np.nan_to_num(scales["grad"](x64, **kw))
        elif op in scales:
            atol = atol + maxulp * eps * np.nan_to_num(scales[op](x64, **kw))
    return atol


def max_ulp(dtype, op: str, name: str | None = None) -> int:
    """The ULP bound of ``op`` in ``dtype`` against the reference (a function's own,
    where its docstring states one)."""
    dtype = np.dtype(dtype)
    bound = GRAD2_MAX_ULP_F64 if op == "grad2" and dtype == np.float64 else MAX_ULP[dtype]
    own = getattr(REFERENCE[name], "ulp", {}).get(dtype.name) if name else None
    return max(bound, own or 0)

# Non-default values worth testing, by parameter name; parameters not listed here get
# generic candidates (see ``param_sets``).
_KNOWN_VALUES = {
    "negative_slope": (0.2, 1.5),
    "alpha": (0.5, 2.0),
    "at_zero": (1.0, 0.5),
    "beta": (0.5, 2.0, -1.0),
    # rrelu's bounds: one other value each (its evaluation mode is leaky_relu's kernel shape)
    "lower": (0.0,),
    "upper": (0.5,),
}


def spec(name):
    return fa.REGISTRY[name]


def _accepted(sp, values) -> bool:
    try:
        check_params(sp, sp.name, values)
    except (TypeError, ValueError):
        return False
    return True


def param_sets(name) -> list[dict]:
    """The defaults (as ``{}``) and, per parameter, non-default values that the
    declaration accepts."""
    sp = spec(name)
    sets = [{}]
    for p in sp.params:
        if p.choices:
            candidates = tuple(c for c in p.choices if c != p.default)
        else:
            candidates = _KNOWN_VALUES.get(p.name) or (
                p.default * 2 or 0.5,
                p.default / 2 or -0.5,
                p.default + 0.5,
            )
        for v in candidates:
            if v != p.default and _accepted(sp, {p.name: v}):
                sets.append({p.name: v})
    return sets


def params_id(params: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def elementwise_cases(ops=ELEMENTWISE_OPS):
    """(name, op, params) for every elementwise function, every operation it has, every
    parameter set; ``backward_y`` only where ``y=`` is allowed for those parameters."""
    out = []
    for name in fa.ELEMENTWISE:
        for params in param_sets(name):
            for op in ops:
                if op == "backward_y" and not y_allowed(name, params):
                    continue
                if op == "grad2" and spec(name).d2fdx2 is None:
                    continue
                out.append((name, op, params))
    return out


def case_id(case) -> str:
    return "-".join(c if isinstance(c, str) else params_id(c) for c in case)


def y_allowed(name, params) -> bool:
    sp = spec(name)
    return sp.dfdy is not None and dfdy_allowed(sp, check_params(sp, name, params))


def y_refused_cases():
    """(name, params) where ``backward(dy, y=...)`` must raise ValueError: no ``dfdy``, or
    parameters outside ``dfdy_requires`` (found by trying values of the right sign)."""
    out = []
    for name in fa.ELEMENTWISE:
        sp = spec(name)
        if sp.dfdy is None:
            out.append((name, {}))
            continue
        for p in sp.params:
            for v in (-1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
                params = {p.name: v}
                if _accepted(sp, params) and not y_allowed(name, params):
                    out.append((name, params))
    return out


# --- calling fastact and the reference the same way -----------------------------------------


def call(name, op, x, dy=None, *, params=None, target="auto", out=None, axis=None):
    """Run operation ``op`` of fastact function ``name``.  ``backward_y`` computes
    ``y = f(x)`` with fastact first (in the dtype of ``x``) and passes ``y=``."""
    fn = fa.FUNCTIONS[name]
    kw = dict(params or {})
    if axis is not None:
        kw["axis"] = axis
    if op == "forward":
        return fn(x, out=out, target=target, **kw)
    if op == "grad":
        return fn.grad(x, out=out, target=target, **kw)
    if op == "grad2":
        return fn.grad2(x, out=out, target=target, **kw)
    if op == "backward_x":
        return fn.backward(dy, x=x, out=out, target=target, **kw)
    if op == "backward_y":
        y = fn(x, target="cpu", **kw)
        return fn.backward(dy, y=y, out=out, target=target, **kw)
    raise AssertionError(op)


#: The oracle's extra precision: x86's 80-bit long double where NumPy has it.  A float64
#: oracle is itself off by an ULP or more (its own ``exp``, roundings that the kernels
#: make in another order); evaluated in long double and rounded once, it is accurate to
#: well under an ULP, so the ULP bounds measure the kernels' own error.
EXACT = np.longdouble if np.finfo(np.longdouble).nmant >= 63 else None


def reference(name, op, x64, dy64=None, *, params=None, y64=None, axis=None):
    """The NumPy reference of the same operation, as float64.

    Where the float64 evaluation gives a normal number, the value is the long double
    evaluation rounded to float64; elsewhere (0, subnormal, inf, NaN) the float64 one,
    whose range is the kernels' (``inf * exp(-1e4)`` is NaN in float64, not inf)."""
    ref = REFERENCE[name]
    kw = dict(params or {})
    if axis is not None:
        kw["axis"] = axis

    def run(dtype):
        x, dy, y = (None if a is None else np.asarray(a, dtype=np.float64).astype(dtype) for a in (x64, dy64, y64))
        if op == "forward":
            out = ref.forward(x, **kw)
        elif op == "grad":
            out = ref.grad(x, **kw)
        elif op == "grad2":
            out = ref.grad2(x, **kw)
        elif op == "backward_x":
            out = ref.backward(dy, x=x, **kw)
        elif op == "backward_y":
            out = ref.backward(dy, y=y, **kw)
        else:
            raise AssertionError(op)
        with np.errstate(over="ignore"):
            return np.asarray(out).astype(np.float64)

    plain = run(np.float64)
    if EXACT is None:
        return plain
    normal = np.isfinite(plain) & (np.abs(plain) >= np.finfo(np.float64).tiny)
    return np.where(normal, run(EXACT), plain)


# --- comparisons ---------------------------------------------------------------------------

_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def ulp_distance(a, b) -> np.ndarray:
    """Elementwise distance in units in the last place between two arrays of one float
    dtype (as uint64).  +0 and -0 are 0 apart, an infinity is 1 ULP beyond the largest
    finite value; NaN positions give 0 (check them with ``nan_mismatch``)."""
    shape = np.shape(a)
    # 1-d at least: unsigned scalar arithmetic warns on the wrap-around that the arrays'
    # np.where discards.
    a, b = np.atleast_1d(a), np.atleast_1d(b)
    assert a.dtype == b.dtype and a.dtype.kind == "f", (a.dtype, b.dtype)
    u = _UINT[a.dtype.itemsize]
    bits = 8 * a.dtype.itemsize
    sign_mask = np.uint64(1) << np.uint64(bits - 1)
    ua = a.view(u).astype(np.uint64)
    ub = b.view(u).astype(np.uint64)
    sa, sb = (ua & sign_mask) != 0, (ub & sign_mask) != 0
    ma, mb = ua & ~sign_mask, ub & ~sign_mask
    same = np.where(ma >= mb, ma - mb, mb - ma)
    dist = np.where(sa == sb, same, ma + mb)  # opposite signs: distance through zero
    return np.where(np.isnan(a) | np.isnan(b), np.uint64(0), dist).reshape(shape)


def to_dtype(a64, dtype):
    """Round a float64 array to ``dtype`` (overflow to inf, as the kernels do)."""
    with np.errstate(all="ignore"):
        return np.asarray(a64, dtype=np.float64).astype(dtype)


def assert_ulp(actual, expected64, maxulp, *, inputs=None, what="", atol=None):
    """``actual`` within ``maxulp`` ULP of the float64 ``expected64`` rounded to
    ``actual``'s dtype, or within ``atol`` (an array, where given) of it; NaN exactly
    where the expectation has NaN."""
    actual = np.asarray(actual)
    expected = to_dtype(expected64, actual.dtype)
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    if not np.array_equal(nan_a, nan_e):
        bad = np.flatnonzero((nan_a != nan_e).ravel())[:5]
        raise AssertionError(f"{what}: NaN positions differ at flat {bad.tolist()}: "
                             f"got {actual.ravel()[bad]}, expected {expected.ravel()[bad]}"
                             + _inputs(inputs, bad))
    d = ulp_distance(actual, expected)
    if atol is not None:
        with np.errstate(invalid="ignore", over="ignore"):
            close = np.abs(actual.astype(np.float64) - expected.astype(np.float64)) <= atol
        d = np.where(close, 0, d)
    if d.size and d.max() > maxulp:
        bad = np.flatnonzero((d > maxulp).ravel())[:5]
        raise AssertionError(f"{what}: {int(d.max())} ULP apart (bound {maxulp}) at flat {bad.tolist()}: "
                             f"got {actual.ravel()[bad].tolist()}, expected {expected.ravel()[bad].tolist()}"
                             + _inputs(inputs, bad))


def _inputs(inputs, bad):
    if not inputs:
        return ""
    return "; inputs " + ", ".join(f"{k}={np.broadcast_to(v, np.shape(v)).ravel()[bad % max(np.size(v), 1)].tolist()}"
                                    for k, v in inputs.items())


def raises_unchanged(exc, match, run, *arrays):
    """``run()`` raises ``exc`` matching ``match``, and none of ``arrays`` changed."""
    copies = [a.copy() for a in arrays]
    with pytest.raises(exc, match=match):
        run()
    for a, c in zip(arrays, copies):
        assert np.array_equal(a, c, equal_nan=True), "written by a call that raised"


def assert_bitwise(a, b, what=""):
    """Same dtype, shape and bits (any NaN equals any NaN; the sign of zero counts)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, (what, a.dtype, b.dtype)
    assert a.shape == b.shape, (what, a.shape, b.shape)
    same = np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a) & ~np.isnan(a),
                                                                    np.signbit(b) & ~np.isnan(b))
    if not same:
        diff = ~((a == b) | (np.isnan(a) & np.isnan(b))) | ((np.signbit(a) != np.signbit(b)) & ~np.isnan(a))
        idx = np.argwhere(diff)[:5]
        raise AssertionError(f"{what}: not bitwise equal at {idx.tolist()}: "
                             f"{[a[tuple(i)] for i in idx]} vs {[b[tuple(i)] for i in idx]}")


# --- inputs --------------------------------------------------------------------------------


def edge_values(dtype) -> np.ndarray:
    """Zeros of both signs, infinities, NaN, tiny, huge, denormal and ordinary values,
    all representable in ``dtype``."""
    fi = np.finfo(dtype)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-30, -1e-30, 1e4, -1e4, 1.0, -1.0, 0.5, -0.5,
            3e38, -3e38, 1e300, -1e300, 20.0, -20.0, 40.0, -40.0, 710.0, -710.0, 89.0, -89.0,
            float(fi.smallest_subnormal), -float(fi.smallest_subnormal),
            float(fi.smallest_normal), -float(fi.smallest_normal),
            float(fi.smallest_normal) / 4, -float(fi.smallest_normal) / 4,
            float(fi.max), -float(fi.max), float(fi.eps), -float(fi.eps)]
    # Keep only what the dtype can hold (1e-30 is 0 in float16, 1e300 is inf in float32).
    out = []
    for v in vals:
        c = to_dtype(np.array([v]), dtype)[0]
        if np.isnan(v) or float(c) == v:
            out.append(c)
    return np.array(out, dtype=dtype)


def random_values(rng, n, dtype) -> np.ndarray:
    """A mix of O(1) values, wide magnitudes (1e-8 .. 1e3) and exact small integers."""
    k = n // 3
    a = rng.standard_normal(k) * 3
    b = np.exp(rng.uniform(np.log(1e-8), np.log(1e3), k)) * rng.choice([-1.0, 1.0], k)
    c = rng.integers(-5, 6, n - 2 * k).astype(np.float64)
    v = np.concatenate([a, b, c])
    rng.shuffle(v)
    return to_dtype(v, dtype)


def random_dy(rng, n, dtype) -> np.ndarray:
    """Upstream gradients: half O(1), half of any magnitude the dtype holds, so that
    ``dy * f'(x)`` is a normal number where ``f'(x)`` alone would be subnormal."""
    k = n // 2
    top = np.log10(float(np.finfo(dtype).max)) * 0.9
    wide = 10.0 ** rng.uniform(-3, top, n - k) * rng.choice([-1.0, 1.0], n - k)
    v = np.concatenate([rng.standard_normal(k) * 2, wide])
    rng.shuffle(v)
    return to_dtype(v, dtype)


@contextlib.contextmanager
def parallel_threshold(value):
    """Temporarily move the size (in bytes) from which ``auto`` runs the multi-threaded
    kernels."""
    old = _dispatch.PARALLEL_BYTES
    _dispatch.PARALLEL_BYTES = value
    try:
        yield
    finally:
        _dispatch.PARALLEL_BYTES = old


# --- hypothesis: arrays of every layout ------------------------------------------------------

LAYOUTS = ("C", "F", "transposed", "step", "negative_step", "both_steps")


def make_layout(base: np.ndarray, layout: str) -> np.ndarray:
    """A new array holding ``base``'s values in the given memory layout (never sharing
    memory with ``base``)."""
    base = np.array(base, copy=True)  # never a view of the caller's array
    if base.ndim == 0:  # one layout only (and np.asfortranarray would make it 1-d)
        return base
    if layout == "C":
        return base
    if layout == "F":
        return np.asfortranarray(base)
    if layout == "transposed":
        return np.ascontiguousarray(base.T).T
    # Embed into a larger array and slice back out with steps.
    if layout == "step":
        big = np.zeros(tuple(2 * s for s in base.shape), base.dtype)
        sl = tuple(slice(None, None, 2) for _ in base.shape)
    elif layout == "negative_step":
        big = np.zeros(tuple(s + 1 for s in base.shape), base.dtype)
        sl = tuple(slice(None, None, -1) for _ in base.shape)
    else:  # both_steps: alternate positive and negative steps of 2 and 3
        big = np.zeros(tuple(3 * s for s in base.shape), base.dtype)
        sl = tuple(slice(None, None, 3) if k % 2 else slice(None, None, -2) for k in range(base.ndim))
    view = big[sl]
    view = view[tuple(slice(0, s) for s in base.shape)]
    view[...] = base
    return view


def values(dtype, *, allow_special=True):
    """Element strategy: any float of ``dtype`` (NaN, inf, subnormals included)."""
    width = np.dtype(dtype).itemsize * 8
    return st.floats(width=width, allow_nan=allow_special, allow_infinity=allow_special,
                     allow_subnormal=True)
