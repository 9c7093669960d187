"""Properties over shapes, strides, memory layouts and dtypes (Hypothesis): every target
gives the same bits, in place equals out of place, an ``out`` that partially overlaps an
input gives the out-of-place result, and backward broadcasts ``dy`` like a ufunc."""

import numpy as np
import pytest
from _helpers import (
    CPU_TARGETS,
    SHAPED,
    FLOATS,
    LAYOUTS,
    ROWWISE_OPS,
    assert_bitwise,
    call,
    elementwise_cases,
    make_layout,
    parallel_threshold,
    tolerance,
    values,
)
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact as fa
from fastact import _dispatch
from fastact.reference import REFERENCE

CASES = elementwise_cases()


@st.composite
def operands(draw, shapes=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6)):
    """(dtype, shape, layout, x values, dy values), values of any float incl. NaN/inf."""
    dtype = draw(st.sampled_from(FLOATS))
    shape = draw(shapes)
    x = draw(hnp.arrays(dtype, shape, elements=values(dtype)))
    dy = draw(hnp.arrays(dtype, shape, elements=values(dtype)))
    return dtype, shape, draw(st.sampled_from(LAYOUTS)), x, dy


def _run(name, op, params, x, dy, target, out=None, axis=None):
    return call(name, op, x, dy, params=params, target=target, out=out, axis=axis)


def _all_targets(name, op, params, x, dy, axis=None):
    """Results of every CPU target; ``auto`` twice: below and above its threshold."""
    results = {t: _run(name, op, params, x, dy, t, axis=axis) for t in ("cpu", "parallel")}
    with parallel_threshold(10**12):
        results["auto-small"] = _run(name, op, params, x, dy, "auto", axis=axis)
    with parallel_threshold(1):
        results["auto-large"] = _run(name, op, params, x, dy, "auto", axis=axis)
    return results


@pytest.mark.parametrize("name", fa.ELEMENTWISE)
@given(data=st.data(), ops=operands())
def test_elementwise_layouts_targets_and_in_place(name, data, ops):
    dtype, shape, layout, xv, dyv = ops
    _, op, params = data.draw(st.sampled_from([c for c in CASES if c[0] == name]))
    x, dy = make_layout(xv, layout), make_layout(dyv, layout)
    results = _all_targets(name, op, params, x, dy)
    expected = results["cpu"]
    assert np.shape(expected) == shape and np.asarray(expected).dtype == dtype
    for t, r in results.items():
        assert_bitwise(r, expected, f"{name} {op} {layout} {t} vs cpu")
    # Out of place never touched the inputs.
    assert_bitwise(x, xv, "input x changed")
    assert_bitwise(dy, dyv, "input dy changed")
    if shape == ():
        return
    for target in CPU_TARGETS:
        with parallel_threshold(1 if target == "auto" else _dispatch.PARALLEL_BYTES):
            # In place into the input (for backward_y the input is y; see ``call``).
            if op != "backward_y":
                xi = make_layout(xv, layout)
                assert _run(name, op, params, xi, dy, target, out=xi) is xi
                assert_bitwise(xi, expected, f"{name} {op} {layout} {target} in place into x")
            if op.startswith("backward"):
                dyi = make_layout(dyv, layout)
                assert _run(name, op, params, x, dyi, target, out=dyi) is dyi
                assert_bitwise(dyi, expected, f"{name} {op} {layout} {target} in place into dy")
            # Into an out of another layout.
            o = make_layout(np.zeros(shape, dtype), data.draw(st.sampled_from(LAYOUTS)))
            assert _run(name, op, params, x, dy, target, out=o) is o
            assert_bitwise(o, expected, f"{name} {op} {layout} {target} out=")


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("name", fa.ELEMENTWISE)
@given(data=st.data(), dtype=st.sampled_from(FLOATS), n=st.integers(2, 40), shift=st.integers(1, 3),
       step=st.sampled_from([1, 2, -1, -2]), forward=st.booleans())
def test_elementwise_partial_overlap(name, target, data, dtype, n, shift, step, forward):
    """``out`` is the input shifted by a few elements (either direction, any step)."""
    _, op, params = data.draw(st.sampled_from([c for c in CASES if c[0] == name and c[1] != "backward_y"]))
    buf = data.draw(hnp.arrays(dtype, n + shift, elements=values(dtype)))
    dyv = data.draw(hnp.arrays(dtype, n, elements=values(dtype)))
    a, b = buf[:n], buf[shift:]
    src, dst = (a, b) if forward else (b, a)
    src, dst = src[::step], dst[::step]
    dy = dyv[: src.size]
    expected = _run(name, op, params, src.copy(), dy, "cpu")
    with parallel_threshold(1):
        assert _run(name, op, params, src, dy, target, out=dst) is dst
    assert_bitwise(dst, expected, f"{name} {op} overlap {target}")
    if op.startswith("backward"):  # out overlapping dy instead
        buf2 = np.concatenate([dy, np.zeros(shift, dtype)])
        d_src, d_dst = buf2[: dy.size], buf2[shift : shift + dy.size]
        xs = src.copy()
        expected = _run(name, op, params, xs, d_src.copy(), "cpu")
        with parallel_threshold(1):
            _run(name, op, params, xs, d_src, target, out=d_dst)
        assert_bitwise(d_dst, expected, f"{name} {op} overlap with dy {target}")


BROADCASTS = [((3, 1), (3, 4)), ((), (3, 4)), ((4,), (3, 4)), ((3, 4), (4,)), ((3, 4), ()),
              ((2, 1, 4), (3, 1)), ((1,), (5,)), ((5,), (1,))]


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
@pytest.mark.parametrize("case", [c for c in CASES if c[1].startswith("backward")],
                         ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}")
def test_backward_broadcasts(case, shapes, target, rng):
    name, op, params = case
    dy_shape, x_shape = shapes
    dy = rng.standard_normal(dy_shape) * 3
    x = rng.standard_normal(x_shape) * 3
    with parallel_threshold(1):
        got = _run(name, op, params, x, dy, target)
    full = np.broadcast_shapes(dy_shape, x_shape)
    assert np.shape(got) == full
    ref = REFERENCE[name]
    if op == "backward_x":
        expected = dy * ref.grad(x, **params)
    else:
        expected = dy * ref.grad_y(fa.FUNCTIONS[name](x, **params), **params)
    # Where terms cancel (silu' near its root), a few ULP of their magnitudes.
    atol = tolerance(name, op, np.broadcast_to(x, full), np.broadcast_to(dy, full), params, np.float64, 4)
    close = np.abs(got - expected) <= 1e-15 * np.abs(expected) + atol
    assert close.all(), (name, op, params, got[~close][:3], expected[~close][:3])
    assert_bitwise(got, _run(name, op, params, np.broadcast_to(x, full).copy(),
                             np.broadcast_to(dy, full).copy(), "cpu"), "broadcast vs materialised")
    # A NumPy scalar dy, and a Python float dy with float64 x.
    s = _run(name, op, params, x, np.float64(2.5), target)
    assert_bitwise(s, _run(name, op, params, x, np.full(x_shape, 2.5), "cpu"), "scalar dy")
    assert_bitwise(_run(name, op, params, x, 2.5, target), s, "python float dy")


@pytest.mark.parametrize("name", fa.ROWWISE)
@given(data=st.data(), ops=operands(hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=6)))
def test_rowwise_layouts_targets_and_in_place(name, data, ops):
    dtype, shape, layout, xv, dyv = ops
    op = data.draw(st.sampled_from(ROWWISE_OPS))
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x, dy = make_layout(xv, layout), make_layout(dyv, layout)
    results = _all_targets(name, op, {}, x, dy, axis=axis)
    expected = results["cpu"]
    for t, r in results.items():
        assert_bitwise(r, expected, f"{name} {op} {layout} axis={axis} {t} vs cpu")
    assert_bitwise(x, xv, "input x changed")
    for target in CPU_TARGETS:
        with parallel_threshold(1 if target == "auto" else _dispatch.PARALLEL_BYTES):
            if op != "backward_y":
                xi = make_layout(xv, layout)
                assert _run(name, op, {}, xi, dy, target, out=xi, axis=axis) is xi
                assert_bitwise(xi, expected, f"{name} {op} {layout} {target} in place into x")
            if op != "forward":
                dyi = make_layout(dyv, layout)
                assert _run(name, op, {}, x, dyi, target, out=dyi, axis=axis) is dyi
                assert_bitwise(dyi, expected, f"{name} {op} {layout} {target} in place into dy")


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("name", fa.ROWWISE)
@given(data=st.data(), dtype=st.sampled_from(FLOATS), rows=st.integers(2, 6), n=st.integers(1, 6),
       shift=st.integers(1, 7), forward=st.booleans())
def test_rowwise_partial_overlap(name, target, data, dtype, rows, n, shift, forward):
    op = data.draw(st.sampled_from([o for o in ROWWISE_OPS if o != "backward_y"]))
    buf = data.draw(hnp.arrays(dtype, rows * n + shift, elements=st.floats(-50, 50, width=np.dtype(dtype).itemsize * 8)))
    dy = data.draw(hnp.arrays(dtype, (rows, n), elements=st.floats(-50, 50, width=np.dtype(dtype).itemsize * 8)))
    a, b = buf[: rows * n].reshape(rows, n), buf[shift:].reshape(rows, n)
    src, dst = (a, b) if forward else (b, a)
    expected = _run(name, op, {}, src.copy(), dy, "cpu")
    with parallel_threshold(1):
        _run(name, op, {}, src, dy, target, out=dst)
    assert_bitwise(dst, expected, f"{name} {op} overlap {target}")


# --- auto really switches ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SHAPED)
def test_auto_runs_parallel_kernels_from_the_threshold(name, monkeypatch):
    """Below its threshold (``PARALLEL_BYTES`` divided by the element's size and the
    declared work per element) ``auto`` runs the single-threaded kernel; from it on, the
    multi-threaded one (with the same bits)."""
    used = []
    real = _dispatch._cpu.parallel

    def spy(*args):
        used.append(args)
        return real(*args)

    monkeypatch.setattr(_dispatch._cpu, "parallel", spy)
    n = _dispatch.threshold(fa.REGISTRY[name], 8)
    assert n == _dispatch.PARALLEL_BYTES // 8 // fa.REGISTRY[name].work
    assert _dispatch.threshold(fa.REGISTRY[name], 4) == 2 * n
    fn = fa.FUNCTIONS[name]
    small = np.linspace(-3, 3, 2 * ((n - 1) // 2)).reshape(2, -1)  # two rows, under the threshold
    fn(small)
    assert used == []
    large = np.linspace(-3, 3, 2 * n).reshape(2, n)  # rows for the row-wise functions
    r_auto = fn(large)
    assert len(used) == 1 and used[0][0] == name
    assert_bitwise(r_auto, fn(large, target="cpu"), "auto above threshold vs cpu")
    fn(small, target="parallel")
    assert len(used) == 2
