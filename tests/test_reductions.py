"""Reductions (``logsumexp``): accuracy against an extended-precision reference, the
gradient against finite differences and against softmax, every axis form, layout and
target, the limits at infinities, and the error rules."""

from __future__ import annotations

import re

import numpy as np
import pytest
from _helpers import (
    CPU_TARGETS,
    EXACT,
    LAYOUTS,
    assert_bitwise,
    assert_ulp,
    make_layout,
    parallel_threshold,
    raises_unchanged,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact as fa
from fastact import _dispatch
from fastact.reference import REFERENCE

lse = fa.logsumexp
SENTINEL = 12345.0


def _exact(x, axis):
    """logsumexp in long double (x86's 64-bit significand), as float64: the oracle."""
    t = EXACT or np.float64
    x = np.asarray(x, t)
    with np.errstate(all="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        fm = np.where(np.isfinite(m), m, 0)
        r = fm + np.log(np.sum(np.exp(x - fm), axis=axis, keepdims=True))
        r = np.where(np.isinf(m) & ~np.isnan(r), m, r)
    return np.squeeze(r, axis=axis).astype(np.float64), np.squeeze(m, axis=axis).astype(np.float64)


# --- values ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 2048, 2049, 5000, 70_000])
@pytest.mark.parametrize("offset", [0.0, 1e4, -1e4, 80.0])
def test_against_extended_precision(dtype, n, offset):
    """Within 1 ULP (float32: one rounding of a float64 result) or 4 ULP (float64) of the
    rounded exact value, or, where ``m`` and ``log(s)`` cancel (a result near 0), within
    2 (float32) or 4 (float64) ULP of ``1 + |m|``: the sum's relative error is an
    absolute error of ``log(s)``, as in any evaluation of the formula."""
    rng = np.random.default_rng(n)
    rows = max(1, 20_000 // n)
    x = (rng.standard_normal((rows, n)) * 3 + offset).astype(dtype)
    x[0, 0] = offset  # rows holding their maximum more than once
    if n > 1:
        x[0, 1] = offset
    exact, m = _exact(x, -1)
    bound = 1 if dtype == np.float32 else 4
    atol = (2 if dtype == np.float32 else 4) * np.finfo(dtype).eps * (1 + np.abs(m))
    for target in CPU_TARGETS:
        assert_ulp(lse(x, axis=-1, target=target), exact, bound, atol=atol,
                   what=f"{dtype.__name__} n={n} {target}")


def test_cancellation_near_zero_is_bounded_by_the_maximum():
    # m + log(s) with log(s) ~ -m: the result is tiny and only accurate to ULPs of m.
    x = np.array([-np.log(2.0), -np.log(2.0)])
    assert abs(float(lse(x, axis=-1))) <= 2 * np.finfo(np.float64).eps


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_limits_at_infinities_and_nan(target):
    inf, nan = np.inf, np.nan
    rows = np.array([
        [inf, 0.0, 1.0],       # +inf anywhere: +inf
        [inf, inf, 0.0],       # however many
        [-inf, -inf, -inf],    # only -inf: -inf
        [-inf, 0.0, -inf],     # -inf terms vanish
        [nan, 0.0, inf],       # NaN wins
        [nan, nan, nan],
        [1e308, 1e308, 0.0],   # no overflow: 1e308 + log 2
        [-1e308, -1e308, -1e308],
    ])
    got = lse(rows, axis=-1, target=target)
    want = [inf, inf, -inf, 0.0, nan, nan, 1e308 + np.log(2.0), -1e308 + np.log(3.0)]
    np.testing.assert_array_equal(got, want)
    for dtype in (np.float16, np.float32):
        np.testing.assert_array_equal(lse(rows[:6].astype(dtype), axis=-1, target=target),
                                      np.array(want[:6], dtype))


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_gradient_limits_are_softmaxs(target):
    inf, nan = np.inf, np.nan
    x = np.array([[inf, 0.0, 1.0], [inf, inf, 0.0], [-inf, -inf, -inf], [nan, 0.0, 1.0], [1e4, 0.0, 1e4]])
    dy = np.array([2.0, 1.0, 1.0, 1.0, 3.0])
    got = lse.backward(dy, x=x, axis=-1, target=target)
    want = [[2.0, 0, 0], [nan] * 3, [nan] * 3, [nan] * 3, [1.5, 0, 1.5]]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_empty_rows_give_minus_inf_and_no_rows_nothing(target):
    for dtype in (np.float16, np.float32, np.float64):
        r = lse(np.empty((3, 0), dtype), axis=-1, target=target)
        assert r.dtype == dtype and r.shape == (3,) and np.all(r == -np.inf)
        assert lse(np.empty((0, 4), dtype), axis=-1, target=target).shape == (0,)
        assert lse(np.empty((0, 4), dtype), axis=0, target=target).tolist() == [-np.inf] * 4
        g = lse.backward(np.ones(3, dtype), x=np.empty((3, 0), dtype), axis=-1, target=target)
        assert g.shape == (3, 0) and g.dtype == dtype
    assert lse(np.empty(0), axis=None) == -np.inf


def test_scalars_and_0d():
    r = lse(2.5, axis=None)
    assert type(r) is np.float64 and r == 2.5
    assert lse(np.float32(1.0), axis=0).dtype == np.float32
    assert lse(np.array(3.0), axis=-1, keepdims=True) == 3.0
    assert lse.backward(4.0, x=2.5, axis=None) == 4.0


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_dtypes(target):
    x = np.array([[-1.0, 0.0, 2.0]])
    ref = lse(x, axis=-1, target=target)
    for value in (np.array([[-1, 0, 2]], np.int32), [[-1, 0, 2]], np.array([[-1, 0, 2]], np.int8)):
        r = lse(value, axis=-1, target=target)
        assert r.dtype == np.float64
        np.testing.assert_array_equal(r, ref)
    assert lse(np.array([True, False]), axis=0).dtype == np.float64
    h = lse(x.astype(np.float16), axis=-1, target=target)
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, lse(x.astype(np.float32), axis=-1).astype(np.float16))
    be = lse(x.astype(">f8"), axis=-1, target=target)
    assert be.dtype.isnative and np.array_equal(be, ref)
    # A Python scalar dy is weak: the gradient has x's dtype.
    assert lse.backward(1.0, x=x.astype(np.float32), axis=None).dtype == np.float32
    assert lse.backward(np.ones(1), x=x.astype(np.float32), axis=-1).dtype == np.float64


# --- axes, keepdims, layouts ----------------------------------------------------------------

AXES = [0, 1, 2, -1, (0, 2), (2, 0), (0, 1, 2), None, [1]]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
def test_axes_against_the_reference(axis, keepdims):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 5, 6)) * 4
    ref = REFERENCE["logsumexp"]
    ax = tuple(axis) if isinstance(axis, list) else axis
    got = lse(x, axis=axis, keepdims=keepdims)
    want = ref.forward(x, ax, keepdims)
    assert got.shape == np.shape(want)
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=0)
    dy = rng.standard_normal(np.shape(want))
    np.testing.assert_allclose(lse.backward(dy, x=x, axis=axis, keepdims=keepdims), ref.backward(dy, x, ax, keepdims),
                               rtol=1e-15, atol=1e-17)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [0, -1, (0, 2), None], ids=str)
@pytest.mark.parametrize("target", CPU_TARGETS)
def test_layouts_give_the_contiguous_bits(layout, axis, target):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((5, 6, 7)).astype(np.float32)
    x = make_layout(base, layout)
    assert_bitwise(lse(x, axis=axis, target=target), lse(base, axis=axis, target="cpu"), f"{layout} {axis}")
    dy = make_layout(rng.standard_normal(np.shape(lse(base, axis=axis))).astype(np.float32), layout)
    assert_bitwise(lse.backward(dy, x=x, axis=axis, target=target),
                   lse.backward(np.array(dy, order="C"), x=base, axis=axis, target="cpu"), f"{layout} {axis} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(3, 70_000), (1, 300_000), (600, 1000), (64, 3, 33)], ids=str)
def test_targets_are_bitwise_equal(shape, dtype):
    """cpu, parallel (rows to threads, or each row's blocks to threads: 1 and 3 long rows)
    and auto give the same bits; backward along one axis is dy * softmax(x), bit for bit
    in float64 (float32 rounds dy * (t / s) once where dy * softmax(x) rounds twice: both
    within the contract's 2 ULP of the exact product)."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    dy = rng.standard_normal(shape[:-1]).astype(dtype)
    with parallel_threshold(1):
        f = {t: lse(x, axis=-1, target=t) for t in CPU_TARGETS}
        b = {t: lse.backward(dy, x=x, axis=-1, target=t) for t in CPU_TARGETS}
    for t in CPU_TARGETS[1:]:
        assert_bitwise(f[t], f["cpu"], f"forward {t}")
        assert_bitwise(b[t], b["cpu"], f"backward {t}")
    want = dy[..., None] * fa.softmax(x, target="cpu")
    if dtype == np.float64:
        assert_bitwise(b["cpu"], want, "dy * softmax")
    else:
        exact = dy[..., None].astype(np.float64) * fa.softmax(x.astype(np.float64))
        assert_ulp(b["cpu"], exact, 2, what="dy * softmax")


def test_few_long_rows_use_the_block_kernels(monkeypatch):
    used = []
    real = _dispatch._cpu.blocks
    monkeypatch.setattr(_dispatch._cpu, "blocks", lambda *a: used.append(a) or real(*a))
    monkeypatch.setattr(_dispatch._threads, "num_threads", lambda: 4)
    x = np.random.default_rng(0).standard_normal((2, 100_000))
    lse(x, axis=-1, target="parallel")
    lse.backward(np.ones(2), x=x, axis=-1, target="parallel")
    assert used == [("logsumexp", "forward"), ("logsumexp", "backward_x")]


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_out_in_place_and_overlap(target):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 30))
    dy = rng.standard_normal(40)
    want_f, want_b = lse(x, axis=-1, target="cpu"), lse.backward(dy, x=x, axis=-1, target="cpu")
    out = np.full(40, SENTINEL)
    assert lse(x, axis=-1, out=out, target=target) is out
    assert_bitwise(out, want_f)
    strided = np.full(80, SENTINEL)[::2]  # a non-contiguous out
    lse(x, axis=-1, out=strided, target=target)
    assert_bitwise(strided, want_f)
    half = np.full(40, SENTINEL, np.float16)
    with pytest.raises(TypeError, match="out must have dtype float64"):
        lse(x, axis=-1, out=half, target=target)
    xf = x.copy()  # backward in place into x
    assert lse.backward(dy, x=xf, axis=-1, out=xf, target=target) is xf
    assert_bitwise(xf, want_b)
    buf = np.concatenate([x.ravel(), np.zeros(30)])  # out one row past x in the same buffer
    xs, outs = buf[:1200].reshape(40, 30), buf[30:].reshape(40, 30)
    lse.backward(dy, x=xs, axis=-1, out=outs, target=target)
    assert_bitwise(outs, want_b)
    xt = np.asfortranarray(x)  # out=x where x's rows are not contiguous
    lse.backward(dy, x=xt, axis=-1, out=xt, target=target)
    assert_bitwise(xt, want_b)
    o0 = np.zeros(())
    assert lse(np.arange(3.0), axis=0, out=o0, target=target) is o0 and o0 == lse(np.arange(3.0), axis=0)
    buf = x.ravel().copy()  # the forward result written over x's rows 1 and 2, which row 0's
    lse(buf.reshape(40, 30), axis=-1, out=buf[30:70], target=target)  # result would clobber
    assert_bitwise(buf[30:70], want_f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_against_finite_differences(dtype):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 9, 4))
    for axis in (1, (0, 2), None):
        dy = rng.standard_normal(np.shape(lse(x, axis=axis)))
        v = rng.standard_normal(x.shape)
        h = 1e-6
        fd = np.sum(dy * (lse(x + h * v, axis=axis) - lse(x - h * v, axis=axis)) / (2 * h))
        g = lse.backward(dy.astype(dtype), x=x.astype(dtype), axis=axis).astype(np.float64)
        assert abs(np.sum(g * v) - fd) <= (1e-7 if dtype == np.float64 else 1e-4) * (1 + abs(fd)), axis


def test_against_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((7, 300, 5)) * 10
    for axis in (1, (0, 2)):
        t = torch.tensor(x, requires_grad=True)
        r = torch.logsumexp(t, dim=axis)
        dy = torch.tensor(rng.standard_normal(tuple(r.shape)))
        r.backward(dy)
        np.testing.assert_allclose(lse(x, axis=axis), r.detach().numpy(), rtol=1e-14)
        np.testing.assert_allclose(lse.backward(dy.numpy(), x=x, axis=axis), t.grad.numpy(), rtol=1e-12, atol=1e-300)


@settings(max_examples=60, deadline=None)
@given(x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=6),
                    elements=st.floats(-300, 300)), c=st.floats(-50, 50), data=st.data())
def test_properties(x, c, data):
    """max <= logsumexp <= max + log(n); shifting x shifts the result; the gradient sums
    to dy and is shift-invariant."""
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    r = lse(x, axis=axis)
    m = np.max(x, axis=axis)
    n = x.shape[axis]
    assert np.all(r >= m) and np.all(r <= m + np.log(n) + 1e-12 * (1 + np.abs(m)))
    np.testing.assert_allclose(lse(x + c, axis=axis), r + c, rtol=1e-13, atol=1e-12)
    g = lse.backward(np.ones_like(r), x=x, axis=axis)
    np.testing.assert_allclose(np.sum(g, axis=axis), 1.0, rtol=1e-13)
    np.testing.assert_allclose(lse.backward(np.ones_like(r), x=x + c, axis=axis), g, rtol=1e-9, atol=1e-12)


# --- errors ---------------------------------------------------------------------------------


def test_errors_are_clear_and_write_nothing():
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    dy = np.ones(3)
    out = np.full(3, SENTINEL)
    dx = np.full((3, 4), SENTINEL)
    raises_unchanged(TypeError, r"logsumexp\(\) needs axis=: an int, a tuple of ints, or None", lambda: lse(x, out=out), out)
    raises_unchanged(TypeError, r"logsumexp\.backward\(\) needs axis=", lambda: lse.backward(dy, x=x, out=dx), dx)
    raises_unchanged(np.exceptions.AxisError, r"logsumexp\(\): axis 2 is out of bounds", lambda: lse(x, axis=2, out=out), out)
    raises_unchanged(TypeError, r"logsumexp\(\): axis must be an integer, got float", lambda: lse(x, axis=1.0), out)
    raises_unchanged(ValueError, r"logsumexp\(\): axis \(1, -1\) repeats an axis", lambda: lse(x, axis=(1, -1), out=out), out)
    raises_unchanged(ValueError, r"axis=\(\) reduces nothing", lambda: lse(x, axis=(), out=out), out)
    raises_unchanged(TypeError, r"keepdims must be True or False, got str", lambda: lse(x, axis=1, keepdims="yes"), out)
    raises_unchanged(ValueError, r"out must have shape \(3,\) \(the result's\), got \(3, 4\)",
            lambda: lse(x, axis=1, out=dx), dx)
    raises_unchanged(ValueError, r"out must have shape \(3, 1\)", lambda: lse(x, axis=1, keepdims=True, out=out), out)
    raises_unchanged(TypeError, r"out must have dtype float64 \(the result's\), got float32",
            lambda: lse(x, axis=1, out=out.astype(np.float32)))
    ro = out.copy()
    ro.flags.writeable = False
    raises_unchanged(ValueError, r"out is read-only", lambda: lse(x, axis=1, out=ro))
    raises_unchanged(TypeError, r"logsumexp\(\) does not support x of dtype complex128",
            lambda: lse(x.astype(complex), axis=1, out=out), out)
    raises_unchanged(TypeError, r"logsumexp\.backward\(\) does not support dy of dtype <U1",
            lambda: lse.backward(np.array(["a"] * 3), x=x, axis=1, out=dx), dx)
    raises_unchanged(ValueError, r"logsumexp\.backward\(\): dy must have the shape of the forward result, \(3,\) "
            r"\(keepdims=False\), or broadcast to it; got \(4,\)",
            lambda: lse.backward(np.ones(4), x=x, axis=1, out=dx), dx)
    raises_unchanged(ValueError, r"got \(3,\)", lambda: lse.backward(dy, x=x, axis=1, keepdims=True, out=dx), dx)
    raises_unchanged(TypeError, r"takes the forward input x=, not y=", lambda: lse.backward(dy, y=x, axis=1, out=dx), dx)
    raises_unchanged(TypeError, r"logsumexp\.backward\(\) needs x=", lambda: lse.backward(dy, axis=1, out=dx), dx)
    raises_unchanged(TypeError, r"takes the forward operand by keyword", lambda: lse.backward(dy, x, axis=1, out=dx), dx)
    raises_unchanged(TypeError, r"pass the axis by keyword: logsumexp\(x, axis=1\)", lambda: lse(x, 1))
    raises_unchanged(ValueError, r"target must be one of", lambda: lse(x, axis=1, target="gpu", out=out), out)
    raises_unchanged(TypeError, r"got an unexpected keyword argument 'b'", lambda: lse(x, axis=1, b=2.0, out=out), out)
    raises_unchanged(TypeError, r"dim= names dimensions of an xarray DataArray", lambda: lse(x, dim="a"))
    with pytest.raises(AttributeError, match=re.escape("use logsumexp.backward(dy, x=x, axis=...)")):
        lse.grad
    # dy broadcasts to the result's shape: a scalar or a (1,) dy is fine.
    np.testing.assert_array_equal(lse.backward(2.0, x=x, axis=1), lse.backward(np.full(3, 2.0), x=x, axis=1))
    np.testing.assert_array_equal(lse.backward(np.ones((3, 1)), x=x, axis=1, keepdims=True),
                                  lse.backward(np.ones(3), x=x, axis=1))


def test_cuda_where_it_is_unavailable_says_so_and_writes_nothing():
    if fa.cuda_available():
        pytest.skip("CUDA is available here")
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    out, dx = np.full(3, SENTINEL), np.full((3, 4), SENTINEL)
    match = r"(pip install numba-cuda|needs an NVIDIA GPU)"
    raises_unchanged(fa.CudaUnavailableError, r"logsumexp\(target=.cuda.\): .*" + match,
                     lambda: lse(x, axis=1, out=out, target="cuda"), out)
    raises_unchanged(fa.CudaUnavailableError, r"logsumexp\.backward\(target=.cuda.\): .*" + match,
                     lambda: lse.backward(np.ones(3), x=x, axis=1, out=dx, target="cuda"), dx)


def test_no_layer_and_in_the_registry():
    assert "logsumexp" in fa.REDUCTIONS and fa.REGISTRY["logsumexp"].kind == "reduction"
    assert repr(lse) == "<fastact.reduction logsumexp>"
    import pickle

    assert pickle.loads(pickle.dumps(lse)) is lse
