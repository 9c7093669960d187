"""Row-wise functions (softmax and kin): every axis of 0-d to 4-d input, every CPU target
and dtype, against the NumPy reference and finite differences; stability and the
NaN / -inf row conventions."""

import itertools
import warnings

import numpy as np
import pytest
from _helpers import CPU_TARGETS, FLOATS, ROWWISE_OPS, edge_values, parallel_threshold, to_dtype
from hypothesis import given, settings
from hypothesis import strategies as st

import fastact as fa
from fastact.reference import REFERENCE

SHAPES = [(), (1,), (7,), (3, 5), (1, 6), (4, 1), (2, 3, 4), (2, 1, 3, 5)]
AXES = [(shape, axis) for shape in SHAPES for axis in range(-max(len(shape), 1), max(len(shape), 1))]


def _call(name, op, x, dy, axis, target, out=None):
    fn = fa.FUNCTIONS[name]
    if op == "forward":
        return fn(x, axis=axis, target=target, out=out)
    if op == "backward_x":
        return fn.backward(dy, x=x, axis=axis, target=target, out=out)
    y = fn(x, axis=axis, target="cpu")
    return fn.backward(dy, y=y, axis=axis, target=target, out=out)


def _reference(name, op, x, dy, axis):
    """(expected, tolerance) in float64.  Summation order differs from NumPy's (pairwise)
    and the backward subtracts a row sum, so the bound is the textbook one for a sum of
    n terms: n * eps * (|each term| summed), per element, plus the final rounding."""
    ref = REFERENCE[name]
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    ax = axis % max(x.ndim, 1)
    xr = x64.reshape(x.shape or (1,))
    n = xr.shape[ax]
    eps = float(np.finfo(x.dtype).eps)
    with np.errstate(all="ignore"):
        y = ref.forward(xr, axis=ax)
        own = ref.scale
        if op == "forward":
            expected = y
            scale = own["forward"](xr, y, ax) if "forward" in own else np.abs(y)
        else:
            dyr = dy64.reshape(xr.shape)
            # backward from x computes y in the kernel's dtype (float32 for float16): a y
            # that underflows there is 0, and 0 * inf is NaN, where the float64 y may not
            # underflow.  The reference takes y rounded the same way.
            cdt = np.float32 if x.dtype == np.float16 else x.dtype
            y_in = y.astype(cdt).astype(np.float64)
            if op == "backward_y":
                y_in = np.asarray(fa.FUNCTIONS[name](x, axis=axis, target="cpu")).astype(np.float64).reshape(xr.shape)
            expected = ref.backward(dyr, y=y_in, axis=ax)
            # In long double, where NumPy has it: near float64's largest dy the bound
            # itself would overflow (and an infinite bound is dropped below).
            wide = np.longdouble
            yw, dyw = y_in.astype(wide), dyr.astype(wide)
            if "backward" in own:
                scale = own["backward"](dyw, yw, ax)
            else:
                scale = np.abs(yw) * (np.abs(dyw) + np.sum(np.abs(dyw * yw), axis=ax, keepdims=True))
    tol = np.minimum(4 * eps * (n + 1) * np.nan_to_num(scale, nan=0.0, posinf=0.0), np.finfo(np.float64).max)
    tol = tol.astype(np.float64)
    return expected.reshape(x.shape), tol.reshape(x.shape)


def _assert_close(got, expected, tol, what):
    got = np.asarray(got)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: NaN positions")
    ok = ~np.isnan(expected)
    g, e = got[ok].astype(np.float64), expected[ok]
    with np.errstate(all="ignore"):
        rounded = e.astype(got.dtype).astype(np.float64)  # overflows to inf as the result does
        err = np.where((g == e) | (g == rounded), 0.0, np.abs(g - e))
        # The result's own rounding (float16/float32 results hold fewer digits than the oracle).
        limit = tol[ok] + np.nan_to_num(np.spacing(np.abs(e).astype(got.dtype)).astype(np.float64), nan=0.0)
    bad = np.flatnonzero(~(err <= limit))
    assert bad.size == 0, f"{what}: got {g[bad[:5]]}, expected {e[bad[:5]]}"


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ROWWISE_OPS)
@pytest.mark.parametrize("shape_axis", AXES, ids=str)
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_matches_reference_every_axis(name, shape_axis, op, dtype, target, rng):
    shape, axis = shape_axis
    x = to_dtype(rng.standard_normal(shape) * 4, dtype)
    dy = to_dtype(rng.standard_normal(shape) * 2, dtype)
    with parallel_threshold(1):  # "auto" runs the multi-threaded kernel here
        got = _call(name, op, x, dy, axis, target)
    assert np.shape(got) == shape and np.asarray(got).dtype == dtype
    if shape == ():
        assert isinstance(got, np.generic)
    expected, tol = _reference(name, op, x, dy, axis)
    _assert_close(got, expected, tol, f"{name} {op} axis={axis} {np.dtype(dtype)} {target}")


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("op", ROWWISE_OPS)
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_edge_values_match_reference(name, op, dtype, target, rng):
    e = edge_values(dtype)
    finite = e[np.isfinite(e) & (np.abs(e) < 100)]
    # Rows mixing specials and ordinary values, and rows of ordinary values only.
    special = rng.choice(e, size=(300, 6))
    plain = rng.choice(finite, size=(300, 6))
    x = np.concatenate([special, plain])
    dy = np.concatenate([rng.choice(e, size=(300, 6)), rng.choice(finite, size=(300, 6))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with parallel_threshold(1):
            got = _call(name, op, x, dy, -1, target)
    expected, tol = _reference(name, op, x, dy, -1)
    if op != "forward":
        # A row whose finite dy add up beyond float64's range overflows in some order of
        # the sum and not in another (inf + -inf is NaN): such rows have no one answer.
        finite = np.where(np.isfinite(dy), np.abs(dy.astype(np.longdouble)), 0)
        over = np.sum(finite, axis=-1) > np.finfo(np.float64).max
        got, expected, tol = got[~over], expected[~over], tol[~over]
    _assert_close(got, expected, tol, f"{name} {op} edge {np.dtype(dtype)} {target}")


@pytest.mark.parametrize("name", fa.ROWWISE)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_backward_matches_finite_difference_jvp(name, axis, rng):
    """<backward(dy, x=x), v> = <dy, J v>, with J v by central differences."""
    fn = fa.FUNCTIONS[name]
    x, dy, v = (rng.standard_normal((4, 5)) for _ in range(3))
    h = 1e-6
    jv = (fn(x + h * v, axis=axis) - fn(x - h * v, axis=axis)) / (2 * h)
    for grad in (fn.backward(dy, x=x, axis=axis), fn.backward(dy, y=fn(x, axis=axis), axis=axis)):
        assert np.sum(grad * v) == pytest.approx(np.sum(dy * jv), rel=1e-6, abs=1e-9)
    # And per element: the full VJP against the finite-difference Jacobian.
    jac = np.zeros(x.shape + x.shape)
    for idx in itertools.product(*map(range, x.shape)):
        e = np.zeros_like(x)
        e[idx] = h
        jac[idx] = (fn(x + e, axis=axis) - fn(x - e, axis=axis)) / (2 * h)
    vjp = np.einsum("ijkl,kl->ij", jac, dy)
    np.testing.assert_allclose(fn.backward(dy, x=x, axis=axis), vjp, rtol=1e-6, atol=1e-9)


# --- softmax's own contract ---------------------------------------------------------------------


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_softmax_sums_to_one(dtype, target, rng):
    x = to_dtype(rng.standard_normal((6, 50)) * 10, dtype)
    for axis in (0, 1):
        y = fa.softmax(x, axis=axis, target=target)
        assert y.dtype == dtype
        assert (y >= 0).all() and (y <= 1).all()
        np.testing.assert_allclose(y.astype(np.float64).sum(axis=axis), 1.0,
                                   rtol=60 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_softmax_is_stable_for_large_input(dtype, target):
    big = float(np.finfo(dtype).max)
    x = np.array([[1e4, 0.0], [1e4, 1e4], [-1e4, -1e4], [big, -big], [1e4, 1e4 - 1.0]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fa.softmax(x, target=target)
    np.testing.assert_array_equal(y[:4], [[1.0, 0.0], [0.5, 0.5], [0.5, 0.5], [1.0, 0.0]])
    if dtype is not np.float16:  # 1e4 - 1 is 1e4 in float16
        np.testing.assert_allclose(y[4], fa.softmax(np.array([1.0, 0.0], dtype)),
                                   rtol=4 * float(np.finfo(dtype).eps))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("target", CPU_TARGETS)
def test_softmax_limits_at_plus_inf(target, dtype):
    inf = np.inf
    x = np.array([[inf, 0.0, -inf, 5.0], [inf, inf, 0.0, 0.0], [inf, np.nan, 0.0, 1.0], [inf, -inf, -inf, -inf]], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fa.softmax(x, target=target)
        g = fa.softmax.backward(np.full_like(x, 2.0), x=x, target=target)
        gy = fa.softmax.backward(np.full_like(x, 2.0), y=y, target=target)
    np.testing.assert_array_equal(y[0], [1.0, 0.0, 0.0, 0.0])  # a single +inf: the limit
    assert np.isnan(y[1]).all(), "several +inf have no limit"
    assert np.isnan(y[2]).all(), "a NaN anywhere makes the row NaN"
    np.testing.assert_array_equal(y[3], [1.0, 0.0, 0.0, 0.0])
    for grad in (g, gy):
        np.testing.assert_array_equal(grad[[0, 3]], 0.0)  # backward at such rows is 0
        assert np.isnan(grad[1:3]).all()
    # Along another axis, with the parallel kernels, and [[inf]] alone.
    np.testing.assert_array_equal(fa.softmax(x[[0, 3]].T, axis=0, target=target), y[[0, 3]].T)
    np.testing.assert_array_equal(fa.softmax(np.array([[inf]], dtype), target=target), [[1.0]])


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_softmax_nan_and_minus_inf_rows(target):
    x = np.array([[-np.inf, -np.inf, -np.inf], [np.nan, 0.0, 1.0], [0.0, -np.inf, 0.0], [1.0, 2.0, 3.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = fa.softmax(x, target=target)
        g = fa.softmax.backward(np.ones_like(x), x=x, target=target)
        gy = fa.softmax.backward(np.ones_like(x), y=y, target=target)
    assert np.isnan(y[0]).all(), "a row of -inf gives NaN, as in PyTorch"
    assert np.isnan(y[1]).all(), "a NaN anywhere makes the row NaN"
    np.testing.assert_array_equal(y[2], [0.5, 0.0, 0.5])
    assert not np.isnan(y[3]).any()
    for grad in (g, gy):
        assert np.isnan(grad[:2]).all() and not np.isnan(grad[2:]).any()
    # NaN in dy poisons its row of the backward only.
    dy = np.ones((2, 3))
    dy[0, 1] = np.nan
    gb = fa.softmax.backward(dy, x=np.zeros((2, 3)), target=target)
    assert np.isnan(gb[0]).all() and not np.isnan(gb[1]).any()


def test_softmax_has_no_grad():
    assert not hasattr(fa.softmax, "grad")
    with pytest.raises(AttributeError, match=r"softmax.*backward"):
        fa.softmax.grad(np.zeros(3))


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_softmax_axis_length_one_and_zero_d(target):
    np.testing.assert_array_equal(fa.softmax(np.array([[3.0], [-1e4]]), target=target), [[1.0], [1.0]])
    r = fa.softmax(2.5, target=target)
    assert isinstance(r, np.float64) and r == 1.0
    r = fa.softmax(np.float32(-7), target=target)
    assert isinstance(r, np.float32) and r == 1.0
    r = fa.softmax.backward(np.float32(2), y=np.float32(1), target=target)
    assert isinstance(r, np.float32) and r == 0.0


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an extended-precision long double")
@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS)
def test_softmax_of_a_long_row_is_accurate(dtype, target):
    """One row of a million elements: every element within a few ULP of the softmax
    computed in long double (a sequential float64 sum was 358 ULP off here)."""
    from _helpers import ulp_distance

    rng = np.random.default_rng(11)
    n = 1_000_000
    for x in (rng.standard_normal(n) * 3, rng.uniform(-1e-3, 1e-3, n), np.linspace(-20, 0, n)):
        x = x.astype(dtype)
        xl = x.astype(np.longdouble)
        e = np.exp(xl - xl.max())
        exact = e / e.sum()  # pairwise in long double: far below float64's rounding
        y = fa.softmax(x, target=target)
        ulps = ulp_distance(y, exact.astype(dtype))
        assert ulps.max() <= 3, f"{np.dtype(dtype)} {target}: {ulps.max()} ULP"
        grad = fa.softmax.backward(np.ones(n, dtype), x=x, target=target)
        assert np.abs(grad).max() <= 8 * np.finfo(dtype).eps * float(y.max()) * 4, "sum of y != 1 in backward"


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60, reason="needs an extended-precision long double")
@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("n", [50, 1000, 3000])
def test_float64_rows_of_one_block_are_accurate(n, target):
    """Rows within one block (up to 2048) and a little past it: float64 elements are summed
    with a compensation term in each lane (uncompensated, rows of 1000 were 11 ULP off)."""
    from _helpers import ulp_distance

    x = np.random.default_rng(n).standard_normal((200, n)) * 4
    xl = x.astype(np.longdouble)
    e = np.exp(xl - xl.max(axis=1, keepdims=True))
    exact = (e / e.sum(axis=1, keepdims=True)).astype(np.float64)
    ulps = ulp_distance(fa.softmax(x, target=target), exact)
    assert ulps.max() <= 4, f"{ulps.max()} ULP"


# --- sparsemax's own contract -------------------------------------------------------------------


def _michelot_passes(x):
    """The passes over a row that the kernels' iteration takes (the first from the
    entries within 1 of the maximum), counting the one that finds the support unchanged."""
    z = x - x.max()
    inside = z > -1.0
    k, tau, passes = inside.sum(), (z[inside].sum() - 1) / inside.sum(), 1
    while True:
        inside = z > tau
        passes += 1
        if inside.sum() == k:
            return passes
        k, tau = inside.sum(), (z[inside].sum() - 1) / inside.sum()


def _slow_row(k=2, d=1.0779074004992737e-15):
    """A row on which Michelot's iteration drops one candidate per pass: each entry just
    below the threshold of the entries above it, spaced so that the next threshold falls
    between two entries (built greedily from k zeros)."""
    z = [0.0] * k
    while True:
        j = len(z) + 1
        tau = (sum(z) - 1) / (j - 1)
        nxt = (tau if j - 1 == k else min(tau, j * z[-1] - (j - 1) * tau)) - d
        if nxt <= -1:
            return np.array(z)
        z.append(nxt)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("n", [3, 100, 2048, 5000, 100_000])
def test_sparsemax_sums_to_one_and_is_sparse(n, dtype, target, rng):
    """Rows of every length (one block, several, many): sum 1 within a few ULP, exact
    zeros off the support, the support's entries equal to x - tau, and the sort-based
    long-double reference."""
    rows = max(1, min(2000, 200_000 // n))  # the reference loops over rows in Python
    x = (rng.standard_normal((rows, n)) * 3).astype(dtype)
    with parallel_threshold(1):
        y = fa.sparsemax(x, target=target)
    eps = np.finfo(dtype).eps
    assert np.all(np.abs(y.astype(np.float64).sum(axis=1) - 1) <= 4 * eps * np.sqrt(n) + 2 * eps)
    ref = REFERENCE["sparsemax"].forward(x.astype(np.float64), -1)
    assert np.abs(y - ref).max() <= 8 * eps
    if n >= 100:
        assert (y > 0).sum(axis=1).max() < n // 4  # sparse: rows of normal values keep a few entries


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_sparsemax_sort_fallback(target):
    """An input on which the iteration has not settled after its 16 passes: the remaining
    candidates are sorted, and the result is the reference's."""
    z = _slow_row()
    assert _michelot_passes(z) > 17, "the row no longer needs the fallback"
    x = np.random.default_rng(3).permutation(np.concatenate([z, np.full(5, -3.0)])) + 7.0
    with parallel_threshold(1):
        y = fa.sparsemax(x, target=target)
    np.testing.assert_allclose(y, REFERENCE["sparsemax"].forward(x, -1), rtol=0, atol=8e-16)
    assert y.sum() == pytest.approx(1.0, abs=1e-15)


@pytest.mark.parametrize("repeat", [1, 20], ids=["short", "long"])
def test_sparsemax_tie_at_the_support_edge_ends(repeat):
    """A row whose two -0.5 entries are in the support by less than an ULP (y = 5.6e-17):
    the rounded thresholds put them out and in again, pass after pass; the passes are
    bounded, the candidates sorted, and the result is the reference's within an ULP of 1
    (this row looped for ever before)."""
    row = np.array([-0.5, -1.0, -2.220446049250313e-16, -0.0, -0.5, -1e300])
    x = np.tile(row, repeat)  # 6 entries (plain loops) and 120 (lane sums)
    for target in CPU_TARGETS:
        with parallel_threshold(1):
            y = fa.sparsemax(x, target=target)
        np.testing.assert_allclose(y, REFERENCE["sparsemax"].forward(x, -1), rtol=0, atol=4e-16)
        assert y.sum() == pytest.approx(1.0, abs=4e-16)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, -0.5, -1.0, -2.0, -2.220446049250313e-16, -1e-300, 1e-300, -1e300,
                                 0.25, -0.75, -1.5, 1.0, 3.0]), min_size=1, max_size=80))
def test_sparsemax_ends_and_sums_to_one(values):
    """Rows of values full of ties (the same value many times, values an ULP apart): the
    result sums to 1 and matches the long-double reference within an ULP of 1."""
    x = np.array(values)
    y = fa.sparsemax(x)
    assert abs(float(y.sum()) - 1.0) <= 1e-15 * len(values)
    np.testing.assert_allclose(y, REFERENCE["sparsemax"].forward(x, -1), rtol=0, atol=2e-16 * len(values))


def test_sparsemax_limits_and_conventions():
    inf, nan = np.inf, np.nan
    x = np.array([[inf, 1.0, -inf], [inf, inf, 0.0], [nan, 1.0, 2.0], [-inf, -inf, -inf], [-inf, 3.0, 3.0],
                  [1e300, 1e300, -1e300], [0.0, -1.0, -2.0]])
    y = fa.sparsemax(x)
    np.testing.assert_array_equal(y, [[1, 0, 0], [nan, nan, nan], [nan, nan, nan], [nan, nan, nan], [0, 0.5, 0.5],
                                      [0.5, 0.5, 0], [1, 0, 0]])
    # Shift-invariant (exactly, where the shift is exact), and a constant row is uniform.
    r = np.round(np.random.default_rng(0).standard_normal(50) * 256) / 256  # exact under the shifts
    np.testing.assert_array_equal(fa.sparsemax(r + 1024.0), fa.sparsemax(r - 2048.0))
    np.testing.assert_array_equal(fa.sparsemax(np.full(8, 3.0)), np.full(8, 0.125))
    # The gradient: zero off the support (+0), the support's dy minus their mean.
    yy = fa.sparsemax(np.array([1.0, 1.2, 0.1]))
    dx = fa.sparsemax.backward(np.array([1.0, 0.0, 5.0]), y=yy)
    np.testing.assert_allclose(dx, [0.5, -0.5, 0.0])
    assert not np.signbit(dx[2])
    assert np.isnan(fa.sparsemax.backward(np.array([1.0, 0.0, nan]), y=yy)).all()  # NaN dy: NaN row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,chunks,axis", [
    ((40, 50), (13, 17), 1), ((40, 50), (13, 17), 0), ((6, 30, 8), (4, 7, 3), 1), ((6, 30, 8), (6, 30, 3), 2),
    ((500,), (64,), 0),
])
def test_sparsemax_dask_along_a_chunked_axis(dtype, shape, chunks, axis):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 2).astype(dtype)
    if len(shape) == 2:
        x[7] = -np.inf  # a row of -inf: NaN
        x[11, 3] = np.inf  # one +inf: 1 there
        x[12, [3, 30]] = np.inf  # two: NaN
        x[13] *= 300
        x[14, 5] = np.nan
        x[15] = 0.5  # every entry in the support
        x[16, :] = 0.25
        x[16, [2, 45]] = 1.0  # a tie across chunks
    dx = da.from_array(x, chunks=chunks)
    y = fa.sparsemax(dx, axis=axis)
    assert y.chunks == dx.chunks and y.dtype == dtype
    expected = fa.sparsemax(x, axis=axis)
    got = y.compute()
    np.testing.assert_allclose(got, expected, rtol=0, atol=4 * np.finfo(dtype).eps, equal_nan=True)
    assert np.array_equal(got == 0, expected == 0)  # the same support
    dy = rng.standard_normal(shape).astype(dtype)
    ddy = da.from_array(dy, chunks=chunks)
    for kw, mem in (({"x": dx}, {"x": x}), ({"y": da.from_array(expected, chunks=chunks)}, {"y": expected})):
        g = fa.sparsemax.backward(ddy, axis=axis, **kw)
        assert g.chunks == dx.chunks and g.dtype == dtype
        np.testing.assert_allclose(g.compute(), fa.sparsemax.backward(dy, axis=axis, **mem), rtol=0,
                                   atol=16 * np.finfo(dtype).eps * (1 + np.abs(dy).max()), equal_nan=True)


@pytest.mark.parametrize("flat_rows", [0, 1, 60], ids=["peaked", "one-flat-row", "many-flat-rows"])
def test_sparsemax_dask_thresholds_padded_or_row_by_row(flat_rows):
    # One row whose every entry is a candidate among peaked rows: the thresholds are found
    # row by row (padding every row to its length would cost far more than the candidates);
    # otherwise all rows at once.
    da = pytest.importorskip("dask.array")
    x = np.random.default_rng(2).standard_normal((100, 1000)) * 4
    x[:flat_rows] = np.random.default_rng(3).uniform(0, 0.5, (flat_rows, 1000))
    got = fa.sparsemax(da.from_array(x, chunks=(30, 300))).compute()
    np.testing.assert_allclose(got, fa.sparsemax(x), rtol=0, atol=4 * np.finfo(np.float64).eps)
    assert np.array_equal(got == 0, fa.sparsemax(x) == 0)


def test_sparsemax_dask_gathers_only_candidates(monkeypatch):
    da = pytest.importorskip("dask.array")
    from fastact import _lazy

    seen = []
    real = _lazy._sparsemax_tau

    def tau(parts, m):
        seen.append(sum(p[1].size for p in parts))
        return real(parts, m)

    monkeypatch.setattr(_lazy, "_sparsemax_tau", tau)
    x = np.random.default_rng(1).standard_normal((4, 100_000)) * 3  # a few entries within 1 of each maximum
    y = fa.sparsemax(da.from_array(x, chunks=(2, 10_000)))
    np.testing.assert_allclose(y.compute(), fa.sparsemax(x), rtol=0, atol=1e-15)
    assert len(seen) == 2 and max(seen) < 1000  # candidates of two rows per task, not 200,000 values
