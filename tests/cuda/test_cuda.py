"""The CUDA target against the CPU target, for every declared function.

Runs on a GPU, or under Numba's CUDA simulator in its own process (the variable must be set
before ``numba.cuda`` is first imported)::

    NUMBA_ENABLE_CUDASIM=1 pytest tests/cuda -q

and is skipped where neither is there.  Results are compared with the CPU target within
``MAX_ULP``: the math is the same source, but ``exp``/``expm1`` differ by an ULP or two
between libdevice and the host libm, the simulator evaluates float32 math as Python
floats, and the block reductions of the row-wise kernels add in another order.  NaN
positions must match exactly.  Arrays are small: the simulator runs every CUDA thread as a
Python thread.
"""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest
from _helpers import (
    SHAPED,
    case_id,
    edge_values,
    elementwise_cases,
    max_ulp,
    random_dy,
    random_values,
    tolerance,
    ulp_distance,
)

import fastact as fa
from fastact.reference import REFERENCE

if not fa.cuda_available():
    pytest.skip(
        "the CUDA target is unavailable: no GPU here (set NUMBA_ENABLE_CUDASIM=1 to run these tests "
        "under Numba's CUDA simulator, in a process of their own)",
        allow_module_level=True,
    )

from numba import cuda  # noqa: E402

SIMULATOR = bool(os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"))

# The simulator evaluates the scalar math with NumPy scalars in Python threads, where
# inf - inf and the like warn; a GPU raises no floating-point warnings.
pytestmark = [pytest.mark.filterwarnings("ignore::RuntimeWarning")] if SIMULATOR else []

MAX_ULP = 4
#: Row-wise results: each target is within 3 ULP of the exact result (an exp of the exact
#: difference within 1.5, a reciprocal of the row sum and a product), summed in another
#: order, so two targets may differ by twice that.
ROW_MAX_ULP = 6
DTYPES = (np.float32, np.float64)
MODES = ("host", "host_out", "device", "device_inplace")


def on_device(a):
    return cuda.to_device(np.ascontiguousarray(a) if a.flags.c_contiguous or not a.flags.f_contiguous else a)


def to_host(r):
    if isinstance(r, np.ndarray | np.generic):
        return np.asarray(r)
    assert getattr(r, "__cuda_ndarray__", False) or hasattr(r, "__cuda_array_interface__"), type(r)
    return r.copy_to_host()


def assert_close(actual, expected, what, maxulp=None, atol=None):
    """Within ``maxulp`` ULP of the CPU target (or within ``atol`` where given), NaN alike.

    By default ``maxulp`` is twice the function's own bound against the exact result (each
    target is within it, libdevice's math and the host's differ by an ULP or so), and at
    least :data:`MAX_ULP`; ``what`` starts with the function's name."""
    name = what.split()[0].split(".")[0].split("-")[0]
    if maxulp is None:
        own = max_ulp(np.asarray(expected).dtype, "forward", name) if name in REFERENCE else 0
        maxulp = max(MAX_ULP, 2 * own)
    if SIMULATOR and name == "gelu":
        # CPython's math.erfc rounds x*x in its exp(-x*x): up to 2 x^2 ULP in the left tail
        # (x up to 38), where libdevice's erfc, on a GPU, keeps a few.
        maxulp = max(maxulp, 4096)
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (what, actual.dtype, actual.shape)
    nan_a, nan_e = np.isnan(actual), np.isnan(expected)
    assert np.array_equal(nan_a, nan_e), f"{what}: NaN at {np.argwhere(nan_a != nan_e)[:5].tolist()}"
    d = ulp_distance(actual, expected)
    if atol is not None:
        with np.errstate(invalid="ignore"):
            d = np.where(np.abs(actual.astype(np.float64) - expected.astype(np.float64)) <= atol, 0, d)
    assert not d.size or d.max() <= maxulp, (
        f"{what}: {int(d.max())} ULP from the CPU target at {np.argwhere(d > maxulp)[:5].tolist()}: "
        f"{actual[d > maxulp][:5].tolist()} vs {expected[d > maxulp][:5].tolist()}"
    )


def seed(text):
    return zlib.crc32(text.encode())


def assert_close_backward(got, expected, y, dy, axis, what, maxulp):
    """Row-wise vector-Jacobian products: ``y * (dy - sum(dy * y))`` cancels where ``dy`` is
    close to the sum, and a sum taken in another order (a block reduction) then differs by
    many ULP of the small result.  Bound the difference by the scale of the terms instead:
    ``maxulp * eps * |y| * (|dy| + sum(|dy * y|))``."""
    got, expected = np.asarray(got), np.asarray(expected)
    assert got.dtype == expected.dtype and got.shape == expected.shape, (what, got.dtype, got.shape)
    assert np.array_equal(np.isnan(got), np.isnan(expected)), what
    y64, dy64 = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    own = REFERENCE[what.split()[0]].scale.get("backward")
    if own is not None:
        scale = own(dy64, y64, axis)
    else:
        scale = np.abs(y64) * (np.abs(dy64) + np.sum(np.abs(dy64 * y64), axis=axis, keepdims=True))
    tol = maxulp * float(np.finfo(got.dtype).eps) * scale + float(np.finfo(got.dtype).smallest_subnormal)
    err = np.abs(got.astype(np.float64) - expected.astype(np.float64))
    ok = np.isnan(expected) | (err <= tol)
    assert ok.all(), f"{what}: off by {err[~ok][:5].tolist()} (bound {tol[~ok][:5].tolist()})"


def operands(name, op, x, dy, params):
    """The positional operands and the keywords of ``op`` (``y`` from the CPU target)."""
    fn = fa.FUNCTIONS[name]
    if op in ("forward", "grad", "grad2"):
        return (x,), {}
    if op == "backward_x":
        return (dy,), {"x": x}
    return (dy,), {"y": fn(x, target="cpu", **params)}


def method(name, op):
    fn = fa.FUNCTIONS[name]
    return {"forward": fn, "grad": getattr(fn, "grad", None), "grad2": getattr(fn, "grad2", None)}.get(op) or fn.backward


def run_mode(name, op, mode, args, kw, params, **extra):
    """Call ``op`` on the CUDA target in ``mode``; return the result on the host."""
    f = method(name, op)
    if mode == "host":
        r = f(*args, target="cuda", **kw, **params, **extra)
        assert isinstance(r, np.ndarray | np.generic)
        return r
    if mode == "host_out":
        out = np.full(np.broadcast_shapes(*(np.shape(a) for a in (*args, *kw.values()))), np.nan, args[0].dtype)
        assert f(*args, out=out, target="cuda", **kw, **params, **extra) is out
        return out
    dargs = [on_device(a) for a in args]
    dkw = {k: on_device(v) for k, v in kw.items()}
    if mode == "device":
        r = f(*dargs, **dkw, **params, **extra)  # target="auto" picks CUDA for device input
        assert not isinstance(r, np.ndarray)
        return to_host(r)
    assert mode == "device_inplace"
    out = dargs[0]
    assert f(*dargs, **dkw, out=out, **params, **extra) is out
    return out.copy_to_host()


# --- elementwise ------------------------------------------------------------------------------


def elementwise_data(dtype, seed, shape=(4, 17)):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    edge = edge_values(dtype)
    x = np.concatenate([edge, random_values(rng, max(n - edge.size, 3), dtype)])[:n].reshape(shape)
    dy = random_dy(rng, n, dtype).reshape(shape)
    return x, dy


def _elementwise_matrix():
    """Every case in every mode; non-default parameters on the device for the forward pass
    only (the kernels take them as arguments, whatever the operation)."""
    out = []
    for case in elementwise_cases():
        for mode in MODES:
            if not (mode.startswith("device") and case[2] and case[1] != "forward"):
                out.append(pytest.param(case, mode, id=f"{case_id(case)}-{mode}"))
    return out


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize(("case", "mode"), _elementwise_matrix())
def test_elementwise_matches_cpu(case, mode, dtype):
    name, op, params = case
    x, dy = elementwise_data(dtype, seed(case_id(case)))
    args, kw = operands(name, op, x, dy, params)
    expected = method(name, op)(*args, target="cpu", **kw, **params)
    got = run_mode(name, op, mode, args, kw, params)
    # Where terms cancel or a factor is subnormal, the CPU tests' tolerance (each target is
    # within it of the exact result, so twice it between them).
    atol = 2 * tolerance(name, op, x.astype(np.float64), dy.astype(np.float64), params, dtype, MAX_ULP)
    if SIMULATOR and dtype == np.float32 and op.startswith("backward"):
        # NumPy scalars round f'(x) to float32 before ``dy *`` (Numba multiplies in
        # float64): a subnormal f'(x) then loses its digits, an error of |dy| * 2**-149.
        atol = atol + 2 * np.abs(dy.astype(np.float64)) * float(np.finfo(np.float32).smallest_subnormal)
    assert_close(got, expected, f"{case_id(case)} {mode}", atol=atol)


@pytest.mark.parametrize("name", list(fa.ELEMENTWISE))
def test_backward_accumulates_on_device_and_into_host_out(name):
    f = fa.FUNCTIONS[name]
    x, dy = elementwise_data(np.float32, seed(name))
    acc = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
    expected = acc.copy()
    f.backward(dy, x=x, out=expected, accumulate=True, target="cpu")
    # acc + dy * f'(x) may cancel: each target is within an ULP or two of the larger term.
    prod = f.backward(dy, x=x, target="cpu")
    atol = 4 * np.finfo(np.float32).eps * np.maximum(np.abs(acc), np.abs(prod))
    d = on_device(acc)
    assert f.backward(on_device(dy), x=on_device(x), out=d, accumulate=True) is d
    assert_close(d.copy_to_host(), expected, f"{name} accumulate on device", atol=atol)
    host = acc.copy()
    assert f.backward(dy, x=x, out=host, accumulate=True, target="cuda") is host
    assert_close(host, expected, f"{name} accumulate into a host out", atol=atol)


@pytest.mark.parametrize("order", ["C", "F"])
def test_elementwise_layouts_and_broadcasting(order):
    x, dy = elementwise_data(np.float64, 1, shape=(5, 6))
    x = np.asarray(x, order=order)
    for name in fa.ELEMENTWISE:
        f = fa.FUNCTIONS[name]
        # device arrays keep their memory order, and so does the result
        r = f.backward(on_device(np.asarray(dy, order=order)), x=on_device(x))
        assert (r.is_f_contiguous() if order == "F" else r.is_c_contiguous())
        assert_close(r.copy_to_host(), f.backward(dy, x=x, target="cpu"), f"{name} {order}")
        # host operands broadcast against each other (and against device operands)
        assert_close(f.backward(dy[0], x=x, target="cuda"), f.backward(dy[0], x=x, target="cpu"), name)
        assert_close(to_host(f.backward(dy[:1], x=on_device(x))), f.backward(dy[:1], x=x, target="cpu"), name)


def test_host_strided_and_inplace():
    x, dy = elementwise_data(np.float32, 2, shape=(6, 8))
    for name in fa.ELEMENTWISE:
        f = fa.FUNCTIONS[name]
        v = x[::-2, 1::3]
        assert_close(f(v, target="cuda"), f(v, target="cpu"), name)
        inplace = x.copy()
        assert f(inplace, out=inplace, target="cuda") is inplace
        assert_close(inplace, f(x, target="cpu"), name)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, np.bool_], ids=lambda t: np.dtype(t).name)
def test_dtype_rules_on_device(dtype):
    x = np.array([-3, -1, 0, 1, 2, 5], dtype=dtype)
    for name in fa.ELEMENTWISE:
        f = fa.FUNCTIONS[name]
        expected = f(x, target="cpu")
        r = f(on_device(x))
        assert r.dtype == expected.dtype
        assert_close(r.copy_to_host(), expected, name)
        assert_close(f(x, target="cuda"), expected, name)
        if expected.dtype == np.float16:  # an out of another dtype than the compute dtype
            out = on_device(np.zeros(x.shape, np.float16))
            assert f(on_device(x), out=out) is out
            assert_close(out.copy_to_host(), expected, name)


def test_scalars_and_empty():
    for name in fa.ELEMENTWISE:
        f = fa.FUNCTIONS[name]
        r = f(0.5, target="cuda")
        assert isinstance(r, np.float64)
        assert_close(r, f(0.5, target="cpu"), name)
        assert f(np.empty((0, 3), np.float32), target="cuda").shape == (0, 3)
        e = f(cuda.device_array((0, 3), np.float32))
        assert e.shape == (0, 3) and not isinstance(e, np.ndarray)
    assert fa.softmax(np.empty((2, 0)), target="cuda").shape == (2, 0)
    assert fa.softmax(2.0, target="cuda") == 1.0


def test_partial_overlap_on_device():
    x, _ = elementwise_data(np.float64, 3, shape=(40,))
    for name in fa.ELEMENTWISE:
        f = fa.FUNCTIONS[name]
        d = on_device(x)
        assert f(d[:30], out=d[10:]) is not None
        expected = x.copy()
        expected[10:] = f(x[:30], target="cpu")
        assert_close(d.copy_to_host(), expected, name)


# --- row-wise ---------------------------------------------------------------------------------

#: (shape, axis): rows along the contiguous axis (one block per row, rows longer than a
#: block), across it (one thread per row), and 3-d; row counts stay small for the simulator.
ROW_LAYOUTS = [((3, 40), -1), ((3, 40), 0), ((40, 3), 0), ((2, 3, 40), 1), ((2, 2, 9), -1), ((7,), 0)]


def rowwise_data(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("layout", ROW_LAYOUTS, ids=lambda la: f"{la[0]}-axis{la[1]}")
@pytest.mark.parametrize("op", ["forward", "backward_x", "backward_y"])
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rowwise_matches_cpu(name, op, layout, dtype, mode):
    shape, axis = layout
    x, dy = rowwise_data(dtype, shape, seed(f"{name}-{op}-{shape}-{axis}"))
    args, kw = operands(name, op, x, dy, {"axis": axis})
    expected = method(name, op)(*args, target="cpu", **kw, axis=axis)
    got = run_mode(name, op, mode, args, kw, {}, axis=axis)
    bound = ROW_MAX_ULP
    what = f"{name} {op} {shape} axis={axis} {mode}"
    if op == "forward":
        own = REFERENCE[name].scale.get("forward")
        atol = None
        if own is not None:  # log_softmax: n ULP of |x - m| + 1 (its log(s)), each target
            y = np.asarray(expected, np.float64)
            atol = 2 * bound * float(np.finfo(dtype).eps) * own(np.asarray(x, np.float64), y, axis)
        assert_close(got, expected, what, maxulp=bound, atol=atol)
    else:
        y = kw["y"] if op == "backward_y" else method(name, "forward")(x, axis=axis, target="cpu")
        assert_close_backward(got, expected, y, dy, axis, what, 4 * bound)


@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rowwise_special_rows_and_fortran_order(name):
    f = fa.FUNCTIONS[name]
    x = np.array(
        [
            [1e4, 0.0, -1e4, 3.0, 2.0],
            [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
            [np.nan, 1.0, 2.0, 3.0, 4.0],
            [np.inf, 1.0, 2.0, 3.0, 4.0],
        ]
    )
    dy = np.linspace(-1, 1, x.size).reshape(x.shape)
    for axis in (-1, 0):
        assert_close(f(x, axis=axis, target="cuda"), f(x, axis=axis, target="cpu"), f"{name} axis={axis}",
                     maxulp=ROW_MAX_ULP)
        xf, dyf = np.asfortranarray(x), np.asfortranarray(dy)
        r = f.backward(on_device(dyf), x=on_device(xf), axis=axis)
        assert r.is_f_contiguous()
        y = f(x, axis=axis, target="cpu")
        expected = f.backward(dy, x=x, axis=axis, target="cpu")
        assert_close_backward(r.copy_to_host(), expected, y, dy, axis, f"{name} F axis={axis}", 4 * ROW_MAX_ULP)


# --- reductions -------------------------------------------------------------------------------

#: (shape, axis) for reductions: rows along the contiguous axis (a block per row), across it
#: (a thread per row), several adjacent axes, every axis.
REDUCE_LAYOUTS = [((3, 40), -1), ((3, 40), 0), ((2, 3, 20), (1, 2)), ((4, 3, 5), (0, 1)), ((2, 3, 4), None),
                  ((7,), 0)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("layout", REDUCE_LAYOUTS, ids=lambda la: f"{la[0]}-axis{la[1]}")
@pytest.mark.parametrize("name", fa.REDUCTIONS)
def test_reduction_matches_cpu(name, layout, dtype, keepdims):
    f = fa.FUNCTIONS[name]
    shape, axis = layout
    x, _ = rowwise_data(dtype, shape, seed(f"{name}-{shape}-{axis}"))
    want = f(x, axis=axis, keepdims=keepdims, target="cpu")
    dy = np.random.default_rng(1).standard_normal(np.shape(want)).astype(dtype)
    dwant = f.backward(dy, x=x, axis=axis, keepdims=keepdims, target="cpu")
    kw = dict(axis=axis, keepdims=keepdims)
    assert_close(f(x, target="cuda", **kw), want, name, maxulp=ROW_MAX_ULP)
    out = np.full(np.shape(want), np.nan, dtype)
    assert f(x, out=out, target="cuda", **kw) is out
    assert_close(out, want, name, maxulp=ROW_MAX_ULP)
    r = f(on_device(x), **kw)  # auto picks CUDA for device input
    assert not isinstance(r, np.ndarray)
    assert_close(to_host(r), want, f"{name} device", maxulp=ROW_MAX_ULP)
    bound = 4 * ROW_MAX_ULP
    assert_close(f.backward(dy, x=x, target="cuda", **kw), dwant, f"{name}.backward", maxulp=bound)
    d = on_device(x)
    assert f.backward(cuda.to_device(dy), x=d, out=d, **kw) is d  # in place on the device (dy may be 0-d)
    assert_close(d.copy_to_host(), dwant, f"{name}.backward device in place", maxulp=bound)


@pytest.mark.parametrize("name", fa.REDUCTIONS)
def test_reduction_special_rows_fortran_float16_and_empty(name):
    f = fa.FUNCTIONS[name]
    x = np.array([[1e4, 0.0, -1e4, 3.0], [-np.inf] * 4, [np.nan, 1.0, 2.0, 3.0], [np.inf, 1.0, np.inf, 3.0]])
    for axis in (-1, 0):
        assert_close(f(x, axis=axis, target="cuda"), f(x, axis=axis, target="cpu"), f"{name} axis={axis}",
                     maxulp=ROW_MAX_ULP)
        dy = np.linspace(1, 2, 4)
        r = f.backward(on_device(dy), x=on_device(np.asfortranarray(x)), axis=axis)
        assert r.is_f_contiguous()
        assert_close(r.copy_to_host(), f.backward(dy, x=x, axis=axis, target="cpu"), f"{name}.backward F",
                     maxulp=4 * ROW_MAX_ULP)
    h = x[:1].astype(np.float16)
    assert f(h, axis=-1, target="cuda").dtype == np.float16
    assert f(np.empty((3, 0)), axis=-1, target="cuda").tolist() == [-np.inf] * 3
    e = f(on_device(np.empty((3, 0))), axis=-1)
    assert e.copy_to_host().tolist() == [-np.inf] * 3
    assert f(2.0, axis=None, target="cuda") == 2.0
    with pytest.raises(ValueError, match=r"axes adjacent in memory"):
        f(on_device(np.ones((2, 3, 4))), axis=(0, 2))
    with pytest.raises(ValueError, match=r"dy must have the shape of the forward result, \(2,\)"):
        f.backward(on_device(np.ones(3)), x=on_device(np.ones((2, 3))), axis=-1)


# --- gated units -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("layout", [((3, 40), -1), ((4, 40), 0), ((2, 6, 5), 1), ((8,), 0)],
                         ids=lambda la: f"{la[0]}-axis{la[1]}")
@pytest.mark.parametrize("name", fa.GATED)
def test_gated_matches_cpu(name, layout, dtype):
    f = fa.FUNCTIONS[name]
    shape, axis = layout
    x, _ = elementwise_data(dtype, 11, shape=shape)
    want = f(x, axis=axis, target="cpu")
    dy = np.random.default_rng(2).standard_normal(want.shape).astype(dtype)
    dwant = f.backward(dy, x=x, axis=axis, target="cpu")
    assert_close(f(x, axis=axis, target="cuda"), want, name, maxulp=MAX_ULP)
    out = np.full(want.shape, np.nan, dtype)
    assert f(x, axis=axis, out=out, target="cuda") is out
    assert_close(out, want, name, maxulp=MAX_ULP)
    for order in ("C", "F"):
        d = cuda.to_device(np.asarray(x, order=order))
        r = f(d, axis=axis)
        assert not isinstance(r, np.ndarray)
        assert_close(r.copy_to_host(), want, f"{name} device {order}", maxulp=MAX_ULP)
        assert f.backward(cuda.to_device(np.asarray(dy, order=order)), x=d, axis=axis, out=d) is d  # in place
        assert_close(d.copy_to_host(), dwant, f"{name}.backward device {order}", maxulp=MAX_ULP)
    assert_close(f.backward(dy, x=x, axis=axis, target="cuda"), dwant, f"{name}.backward", maxulp=MAX_ULP)


# --- activations with a weight array ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("layout", [((3, 4, 10), 1), ((6, 5), -1), ((4, 3), 0), ((7,), 0)],
                         ids=lambda la: f"{la[0]}-axis{la[1]}")
@pytest.mark.parametrize("name", fa.WEIGHTED)
def test_weighted_matches_cpu(name, layout, dtype):
    """Values and dx bitwise (one product each), the weight's gradient within a few ULP of
    its terms' magnitudes (the blocks add in another order); host and device operands, C
    and Fortran order, in place, the pair of outs."""
    f = fa.FUNCTIONS[name]
    shape, axis = layout
    x, dy = elementwise_data(dtype, 13, shape=shape)
    x, dy = x.reshape(shape), dy.reshape(shape)
    w = np.linspace(0.1, 0.6, shape[axis] if len(shape) > 1 else 1).astype(dtype)
    want = f(x, w, axis=axis, target="cpu")
    dxw, dww = f.backward(dy, x=x, weight=w, axis=axis, target="cpu")
    finite = np.isfinite(dww)
    mag = f.backward(np.abs(dy), x=-np.abs(np.nan_to_num(x)), weight=w, axis=axis, target="cpu")[1]

    def close_w(got, what):
        assert np.array_equal(np.isnan(got), np.isnan(dww)), what
        assert np.all(np.abs(got[finite] - dww[finite]) <= 8 * np.finfo(dtype).eps * np.abs(mag[finite])), what

    np.testing.assert_array_equal(f(x, w, axis=axis, target="cuda"), want)
    np.testing.assert_array_equal(f.grad(x, w, axis=axis, target="cuda"), f.grad(x, w, axis=axis, target="cpu"))
    dx, dw = f.backward(dy, x=x, weight=w, axis=axis, target="cuda")
    np.testing.assert_array_equal(dx, dxw)
    close_w(dw, "host")
    outs = (np.empty_like(x), np.empty_like(w))
    got = f.backward(dy, x=x, weight=w, axis=axis, target="cuda", out=outs)
    assert got[0] is outs[0] and got[1] is outs[1]
    np.testing.assert_array_equal(outs[0], dxw)
    for order in ("C", "F"):
        d = cuda.to_device(np.asarray(x, order=order))
        r = f(d, cuda.to_device(w), axis=axis)
        assert not isinstance(r, np.ndarray)
        np.testing.assert_array_equal(r.copy_to_host(), want)
        dd = cuda.to_device(np.asarray(dy, order=order))
        dx, dw = f.backward(dd, x=d, weight=w, axis=axis, out=(dd, None))  # in place into dy
        assert dx is dd and not isinstance(dw, np.ndarray)
        np.testing.assert_array_equal(dd.copy_to_host(), dxw)
        close_w(dw.copy_to_host(), f"device {order}")
    with pytest.raises(TypeError, match="dweight must be a host array"):
        f.backward(dy, x=x, weight=w, axis=axis, target="cuda", out=(None, cuda.to_device(w)))


@pytest.mark.parametrize("repeat", [1, 20], ids=["short", "long"])
def test_sparsemax_tie_at_the_support_edge_ends(repeat):
    """The row whose rounded thresholds flip two entries in and out of the support for ever
    (tests/test_rowwise.py): the device's passes are bounded, the result within an ULP of
    1 of the host's, along the contiguous axis (a block per row) and across it (a thread)."""
    row = np.array([-0.5, -1.0, -2.220446049250313e-16, -0.0, -0.5, -1e300])
    x = np.tile(row, (3, repeat))
    for axis, xx in ((-1, x), (0, np.ascontiguousarray(x.T))):
        got = fa.sparsemax(on_device(xx), axis=axis).copy_to_host()
        np.testing.assert_allclose(got, fa.sparsemax(xx, axis=axis, target="cpu"), rtol=0, atol=4e-16)


def test_weighted_one_weight_gives_a_scalar_gradient():
    x = np.array([[-1.0, 2.0], [3.0, -4.0]])
    for w in (0.5, np.array(0.5)):
        dx, dw = fa.prelu.backward(np.ones_like(x), x=x, weight=w, target="cuda")
        assert isinstance(dw, np.float64) and dw == -5.0  # as on the host: a 0-d weight's gradient is a scalar
        np.testing.assert_array_equal(dx, [[0.5, 1.0], [1.0, 0.5]])


def test_rrelu_slopes_on_the_device():
    x, dy = elementwise_data(np.float32, 17, shape=(5, 8))
    x, dy = x.reshape(5, 8), dy.reshape(5, 8)
    y, s = fa.rrelu(x, training=True, rng=0)
    np.testing.assert_array_equal(fa.rrelu(cuda.to_device(x), slopes=cuda.to_device(s)).copy_to_host(), y)
    np.testing.assert_array_equal(fa.rrelu.backward(dy, x=x, slopes=s, target="cuda"),
                                  fa.rrelu.backward(dy, x=x, slopes=s, target="cpu"))


# --- streams, errors --------------------------------------------------------------------------


def test_stream_keyword_everywhere():
    s = cuda.stream()
    x, dy = elementwise_data(np.float32, 4, shape=(3, 5))
    x4 = np.concatenate([x, x[:, :1]], axis=1)  # (3, 6): an even axis for the gated units
    for name in fa.FUNCTIONS:
        fn = fa.FUNCTIONS[name]
        calls = [lambda a, **k: fn(a, **k), lambda a, **k: fn.backward(dy, x=a, **k)]
        if name in fa.REDUCTIONS:
            calls = [lambda a, **k: fn(a, axis=-1, **k), lambda a, **k: fn.backward(dy[:, 0], x=a, axis=-1, **k)]
        if name in fa.GATED:
            def even(a):  # x4 where the call passes x, on the host or on the device
                return x4 if isinstance(a, np.ndarray) else cuda.to_device(x4)

            calls = [lambda a, **k: fn(even(a), **k), lambda a, **k: fn.backward(dy[:, :3], x=even(a), **k)]
        if name in fa.WEIGHTED:  # one weight per channel (axis 1); the gradient's dx
            w = np.linspace(0.1, 0.5, 5).astype(np.float32)
            calls = [lambda a, **k: fn(a, w, **k), lambda a, **k: fn.backward(dy, x=a, weight=w, **k)[0]]
        if name in fa.ELEMENTWISE:
            calls.append(lambda a, **k: fn.grad(a, **k))
        for i, c in enumerate(calls):
            expected = c(x, target="cpu")
            r = c(on_device(x), stream=s)  # asynchronous: valid once the stream is synchronised
            host = c(x, target="cuda", stream=s)  # a host result is complete on return
            s.synchronize()
            for got in (host, r.copy_to_host()):
                if name in fa.ROWWISE and i == 1:
                    assert_close_backward(got, expected, fn(x, target="cpu"), dy, -1, name, 4 * MAX_ULP)
                else:
                    assert_close(got, expected, name, maxulp=ROW_MAX_ULP if name in fa.REDUCTIONS else None)
    with pytest.raises(TypeError, match="stream must be"):
        fa.relu(x, target="cuda", stream="fast")


def test_stream_on_host_targets_is_refused():
    x = np.ones(3)
    for target in ("cpu", "parallel", "auto"):
        with pytest.raises(ValueError, match="stream= is for the CUDA target only"):
            fa.relu(x, target=target, stream=cuda.stream())


def test_device_errors_leave_everything_unchanged():
    x = np.linspace(-1, 1, 12).reshape(3, 4)
    d = on_device(x)
    cases = [
        (lambda: fa.relu(d, out=cuda.device_array((3, 4), np.float32)), TypeError, "dtype float64"),
        (lambda: fa.relu(d, out=cuda.device_array((4, 3))), ValueError, r"shape \(3, 4\)"),
        (lambda: fa.relu(on_device(np.ones((6, 8)))[::2, ::2]), ValueError, "not contiguous"),
        (lambda: fa.relu.backward(on_device(np.ones(4)), x=d), ValueError, "does not broadcast device arrays"),
        (lambda: fa.relu.backward(on_device(np.ones((3, 4))), x=cuda.to_device(np.asfortranarray(x))), ValueError, "mix C and Fortran"),
        (lambda: fa.relu(cuda.to_device(np.array(["a"]))), TypeError, "dtype <U1"),
        (lambda: fa.relu(d, target="cpu"), TypeError, "device arrays need target='cuda'"),
        (lambda: fa.softmax(d, axis=2), np.exceptions.AxisError, "out of bounds"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()
        np.testing.assert_array_equal(d.copy_to_host(), x)


def test_non_contiguous_device_arrays_raise():
    d = on_device(np.ones((6, 8)))
    for name, fn in fa.FUNCTIONS.items():
        with pytest.raises(ValueError, match="not contiguous"):
            fn(d[:, ::2], *((0.5,) if name in fa.WEIGHTED else ()), **({"axis": -1} if name in fa.REDUCTIONS else {}))


@pytest.mark.skipif(SIMULATOR, reason="the simulator's device arrays have no __cuda_array_interface__")
def test_any_cuda_array_interface_object():
    class Foreign:  # stands for a CuPy array or a PyTorch CUDA tensor
        def __init__(self, d):
            self.d = d
            self.__cuda_array_interface__ = d.__cuda_array_interface__

    x, dy = elementwise_data(np.float32, 5)
    fx = Foreign(on_device(x))
    r = fa.sigmoid(fx)
    assert_close(r.copy_to_host(), fa.sigmoid(x, target="cpu"), "sigmoid")
    out = Foreign(cuda.device_array_like(x))
    assert fa.sigmoid.backward(Foreign(on_device(dy)), x=fx, out=out) is out
    assert_close(out.d.copy_to_host(), fa.sigmoid.backward(dy, x=x, target="cpu"), "sigmoid.backward")


# --- faults -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPED)
def test_host_out_with_device_inputs_gets_the_result(name):
    """Device inputs and a NumPy ``out``: the result is copied into ``out`` (never a device
    array returned beside an untouched ``out``)."""
    f = fa.FUNCTIONS[name]
    for dtype in (np.float32, np.float16):
        with np.errstate(over="ignore"):  # the edge values beyond float16's range become inf
            x, dy = (a.astype(dtype) for a in elementwise_data(np.float32, 5, shape=(4, 16)))
        out = np.full(x.shape, 7, dtype)
        r = f(on_device(x), out=out)
        assert r is out
        assert_close(out, f(x, target="cpu"), name)
        out = np.full(x.shape, 7, dtype)
        assert f.backward(on_device(dy), x=on_device(x), out=out) is out
        assert_close(out, f.backward(dy, x=x, target="cpu"), f"{name}.backward")


def test_float16_overflow_is_inf_without_floating_point_errors():
    """float16 results beyond its range are inf, as on the CPU targets, even where the
    caller asks NumPy to raise on floating-point errors."""
    x = np.array([-60000, -3, 0, 2, 60000], np.float16)
    with np.errstate(all="raise"):
        for f, kw in [(fa.elu, {"alpha": 1e5}), (fa.sigmoid, {}), (fa.identity, {}), (fa.softmax, {})]:
            expected = f(x, target="cpu", **kw)
            got = [f(x, target="cuda", **kw), f(on_device(x), **kw).copy_to_host()]
            out = np.zeros_like(x)
            f(on_device(x), out=out, **kw)
            got.append(out)
            for g in got:
                np.testing.assert_array_equal(g, expected)
    assert np.isinf(fa.elu(x, alpha=1e5, target="cuda")[0])


def test_a_numba_cuda_broken_under_this_numpy_is_reported(monkeypatch):
    """numba-cuda 0.30.4 cannot compile under NumPy 2.5 (it registers ``np.row_stack``): the
    CUDA target then says so, and what to install, instead of failing in every compile."""
    from fastact import _cuda

    real = _cuda.importlib.import_module

    def broken(name, *args):
        if name == "numba.cuda.np.arrayobj":
            raise AttributeError("module 'numpy' has no attribute 'row_stack'")
        return real(name, *args)

    monkeypatch.setattr(_cuda.importlib, "import_module", broken)
    reason = _cuda._probe()
    assert reason is not None and "does not work with NumPy" in reason and "numpy<2.5" in reason
    assert "row_stack" in reason


def test_ndtr_corrects_for_the_constant_rounded_in_its_own_dtype():
    """gelu's ndtr takes -x / sqrt(2) exactly: the low part of 1/sqrt(2) is the one of the
    kernel's dtype (with float64's low part, float32 gelu was 50 ULP off at x = -7)."""
    from fastact import _cudamath

    @cuda.jit
    def low_parts(out32, out64):
        out32[0] = _cudamath._sqrt1_2_lo(np.float32(1.0))
        out64[0] = _cudamath._sqrt1_2_lo(np.float64(1.0))

    o32, o64 = cuda.device_array(1, np.float32), cuda.device_array(1, np.float64)
    low_parts[1, 1](o32, o64)
    exact = 0.70710678118654752440  # 1/sqrt(2)
    assert o32.copy_to_host()[0] == np.float32(exact - float(np.float32(exact)))
    assert o64.copy_to_host()[0] == -4.833646656726457e-17
