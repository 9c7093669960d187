"""Every elementwise function, its derivative and its fused backward, against the NumPy
reference (in float64, compared in ULP of the result dtype) and against finite
differences, on every CPU target and floating dtype."""

import warnings

import numpy as np
import pytest
from _helpers import (
    CPU_TARGETS,
    assert_bitwise,
    FLOATS,
    MAX_ULP,
    assert_ulp,
    call,
    case_id,
    edge_values,
    elementwise_cases,
    max_ulp,
    parallel_threshold,
    tolerance,
    param_sets,
    params_id,
    random_dy,
    random_values,
    reference,
    to_dtype,
    y_allowed,
)

import fastact as fa
from fastact.reference import REFERENCE

CASES = elementwise_cases()
# The reference tests run "auto" above its size threshold, pinned here, so that it takes
# the parallel path for every dtype (float16 has the most elements per byte).
THRESHOLD_BYTES = 1 << 16
N_RANDOM = THRESHOLD_BYTES // 2 + 101


def _check_against_reference(name, op, params, x, dy, target):
    with parallel_threshold(THRESHOLD_BYTES):
        got = call(name, op, x, dy, params=params, target=target)
    assert got.dtype == x.dtype and got.shape == x.shape
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    y64 = None
    if op == "backward_y":
        y64 = np.asarray(fa.FUNCTIONS[name](x, target="cpu", **params)).astype(np.float64)
    expected = reference(name, op, x64, dy64, params=params, y64=y64)
    maxulp = max_ulp(x.dtype, op, name)
    atol = tolerance(name, op, x64, dy64, params, x.dtype, maxulp)
    assert_ulp(got, expected, maxulp, inputs={"x": x, "dy": dy}, atol=atol,
               what=f"{name} {op} {params_id(params)} {x.dtype} {target}")


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_random_values_match_reference(case, dtype, target, rng):
    name, op, params = case
    x = random_values(rng, N_RANDOM, dtype)
    dy = random_dy(rng, N_RANDOM, dtype)
    _check_against_reference(name, op, params, x, dy, target)


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_edge_values_match_reference(case, dtype, target):
    name, op, params = case
    e = edge_values(dtype)
    # Every edge value against every edge dy (0, inf and NaN dy included), and enough
    # copies that "auto" and "parallel" run the multi-threaded kernel.
    x, dy = (a.ravel() for a in np.meshgrid(e, e, indexing="ij"))
    reps = -(-(THRESHOLD_BYTES // 2) // x.size)
    x, dy = np.tile(x, reps), np.tile(dy, reps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no FP warnings for NaN/inf input
        _check_against_reference(name, op, params, x, dy, target)


# --- derivatives against finite differences ---------------------------------------------------


@pytest.mark.parametrize("params", [(n, p) for n in fa.ELEMENTWISE for p in param_sets(n)],
                         ids=lambda c: f"{c[0]}-{params_id(c[1])}")
def test_grad_matches_central_differences(params, rng):
    name, params = params
    fn = fa.FUNCTIONS[name]
    x = rng.uniform(-8, 8, 2000)
    x = x[np.abs(x) > 0.05]  # away from the kinks at 0
    h = 1e-6 * np.maximum(1.0, np.abs(x))
    f = lambda v: fn(v, target="cpu", **params)  # noqa: E731
    fd = (f(x + h) - f(x - h)) / (2 * h)
    # A kink elsewhere (a future declaration's) shows as one-sided differences that
    # disagree: leave those points out, but insist that almost all points are checked.
    right, left = (f(x + h) - f(x)) / h, (f(x) - f(x - h)) / h
    smooth = np.abs(right - left) <= 1e-4 * np.maximum(1.0, np.abs(fd))
    assert smooth.mean() > 0.95, f"{name}: too many non-smooth points"
    g = fn.grad(x, **params)
    np.testing.assert_allclose(g[smooth], fd[smooth], rtol=1e-6, atol=1e-8, err_msg=name)
    dy = rng.standard_normal(x.size)
    np.testing.assert_allclose(fn.backward(dy, x=x, **params)[smooth], dy[smooth] * fd[smooth],
                               rtol=1e-6, atol=1e-8, err_msg=name)


@pytest.mark.parametrize("params", [(n, p) for n in fa.ELEMENTWISE for p in param_sets(n)],
                         ids=lambda c: f"{c[0]}-{params_id(c[1])}")
def test_grad2_matches_central_differences_of_grad(params, rng):
    name, params = params
    fn = fa.FUNCTIONS[name]
    if fn.spec.d2fdx2 is None:
        pytest.skip(f"{name} declares no second derivative")
    x = rng.uniform(-8, 8, 2000)
    x = x[np.abs(x) > 0.05]
    h = 1e-5 * np.maximum(1.0, np.abs(x))
    g = lambda v: fn.grad(v, target="cpu", **params)  # noqa: E731
    fd = (g(x + h) - g(x - h)) / (2 * h)
    right, left = (g(x + h) - g(x)) / h, (g(x) - g(x - h)) / h
    smooth = np.abs(right - left) <= 1e-3 * np.maximum(1.0, np.abs(fd))
    assert smooth.mean() > 0.95, f"{name}: too many points where f' is not smooth"
    np.testing.assert_allclose(fn.grad2(x, **params)[smooth], fd[smooth], rtol=1e-5, atol=1e-7, err_msg=name)


def test_every_elementwise_function_has_a_second_derivative():
    missing = [n for n in fa.ELEMENTWISE if fa.REGISTRY[n].d2fdx2 is None]
    assert not missing, f"declare d2fdx2 for {missing}"


# --- accumulate=True ----------------------------------------------------------------------------

ACC_CASES = [c for c in CASES if c[1] in ("backward_x", "backward_y")]


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", ACC_CASES, ids=case_id)
def test_backward_accumulates_into_out(case, dtype, target, rng):
    """``backward(dy, x=, out=dx, accumulate=True)`` is ``dx + backward(dy, x=)`` rounded
    once, and the same bits on every target."""
    name, op, params = case
    fn = fa.FUNCTIONS[name]
    for n in (37, 300_000):  # the small-call path and the threads
        x = (rng.standard_normal(n) * 3).astype(dtype)
        dy = rng.standard_normal(n).astype(dtype)
        acc = rng.standard_normal(n).astype(dtype)
        kw = dict(params, target=target)
        other = {"x": x} if op == "backward_x" else {"y": fn(x, target="cpu", **params)}
        dx = acc.copy()
        assert fn.backward(dy, **other, out=dx, accumulate=True, **kw) is dx
        _assert_sum_close(dx, acc, fn.backward(dy, **other, **kw), f"{name} {op} accumulate {target}")
        # dy as the accumulator itself: dy + dy * f'(x).
        d2 = dy.copy()
        fn.backward(d2, **other, out=d2, accumulate=True, **kw)
        _assert_sum_close(d2, dy, fn.backward(dy, **other, **kw), f"{name} {op} accumulate into dy")
        # The same bits on every target.
        d3 = acc.copy()
        fn.backward(dy, **other, out=d3, accumulate=True, **dict(kw, target="cpu"))
        assert_bitwise(dx, d3, f"{name} {op} accumulate {target} vs cpu")


def _assert_sum_close(got, acc, prod, what):
    """``got`` is ``acc + prod`` rounded once, give or take the rounding of ``prod`` (the
    kernel may keep ``dy * f'(x)`` in double precision before it adds): within an ULP of
    the larger of the two terms."""
    exact = acc.astype(np.float64) + prod.astype(np.float64)
    eps = float(np.finfo(got.dtype).eps)
    scale = np.maximum(np.abs(acc.astype(np.float64)), np.abs(prod.astype(np.float64)))
    with np.errstate(invalid="ignore"):  # inf - inf where both are infinite
        ok = np.abs(got.astype(np.float64) - exact) <= 2 * eps * scale + float(np.finfo(got.dtype).smallest_subnormal)
    ok |= np.isnan(exact) & np.isnan(got) | (exact == got)
    assert ok.all(), f"{what}: {np.flatnonzero(~ok)[:5]} got {got[~ok][:5]}, expected {exact[~ok][:5]}"


@pytest.mark.parametrize("name", fa.ELEMENTWISE)
def test_accumulate_needs_out(name):
    fn = fa.FUNCTIONS[name]
    x = np.ones(3)
    with pytest.raises(TypeError, match=rf"{name}\.backward\(\): accumulate=True adds into out="):
        fn.backward(x, x=x, accumulate=True)
    with pytest.raises(TypeError, match=rf"{name}\.backward\(\): accumulate must be True or False"):
        fn.backward(x, x=x, out=x.copy(), accumulate=1)
    out = np.full(3, 5.0)
    with pytest.raises(TypeError, match="out must have dtype float64"):
        fn.backward(x, x=x, out=out.astype(np.float32), accumulate=True)


# --- NaN, infinities and kinks ----------------------------------------------------------------

@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_nan_propagates(case, dtype, target):
    name, op, params = case
    x = np.array([np.nan, 1.0, np.nan, -1.0, 0.0], dtype)
    dy = np.ones_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = call(name, op, x, dy, params=params, target=target)
    assert np.isnan(got[[0, 2]]).all(), (name, op, got)
    assert not np.isnan(got[[1, 3, 4]]).any(), (name, op, got)
    if op.startswith("backward"):
        got = call(name, op, np.ones_like(x), np.full_like(x, np.nan), params=params, target=target)
        assert np.isnan(got).all(), (name, op, "NaN dy", got)


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_kink_conventions(target):
    z = np.array([0.0, -0.0])
    one = np.ones(2)

    def both(fn, **params):
        return fn.grad(z, target=target, **params), fn.backward(one, x=z, target=target, **params)

    for got in both(fa.relu):
        np.testing.assert_array_equal(got, [0.0, 0.0])  # PyTorch/JAX: relu'(0) = 0
    for got in both(fa.relu, at_zero=1.0):
        np.testing.assert_array_equal(got, [1.0, 1.0])
    for got in both(fa.leaky_relu):
        np.testing.assert_array_equal(got, [0.01, 0.01])
    for got in both(fa.leaky_relu, negative_slope=0.2):
        np.testing.assert_array_equal(got, [0.2, 0.2])
    for got in both(fa.elu):
        np.testing.assert_array_equal(got, [1.0, 1.0])
    for got in both(fa.elu, alpha=0.5):
        np.testing.assert_array_equal(got, [0.5, 0.5])
    np.testing.assert_array_equal(fa.step(z, target=target), [0.0, 0.0])
    np.testing.assert_array_equal(fa.step(z, at_zero=1.0, target=target), [1.0, 1.0])
    np.testing.assert_array_equal(fa.step(z, at_zero=0.5, target=target), [0.5, 0.5])
    np.testing.assert_array_equal(fa.step.grad(z, at_zero=0.5, target=target), [0.0, 0.0])
    # relu(-0) is +0, like max(x, 0) in PyTorch.
    assert not np.signbit(fa.relu(z, target=target)).any()


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
def test_limits_at_infinity(target, dtype):
    inf = np.array([-np.inf, np.inf], dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(fa.sigmoid(inf, target=target), [0.0, 1.0])
        np.testing.assert_array_equal(fa.sigmoid.grad(inf, target=target), [0.0, 0.0])
        np.testing.assert_array_equal(fa.elu(inf, target=target), [-1.0, np.inf])
        np.testing.assert_array_equal(fa.elu(inf, alpha=0.5, target=target), [-0.5, np.inf])
        np.testing.assert_array_equal(fa.elu.grad(inf, target=target), [0.0, 1.0])
        np.testing.assert_array_equal(fa.relu(inf, target=target), [0.0, np.inf])
        np.testing.assert_array_equal(fa.leaky_relu(inf, target=target), [-np.inf, np.inf])
        np.testing.assert_array_equal(fa.step(inf, target=target), [0.0, 1.0])
    # Far tails: no overflow, and the derivative keeps relative precision.
    big = np.array([-1e4, -100.0, 100.0, 1e4], dtype)
    s = fa.sigmoid(big, target=target)
    assert s[0] == 0.0 and s[3] == 1.0
    if dtype is np.float64:
        assert s[1] == pytest.approx(np.exp(-100.0), rel=1e-14)
        assert fa.sigmoid.grad(big, target=target)[2] == pytest.approx(np.exp(-100.0), rel=1e-14)


@pytest.mark.parametrize("name", fa.ELEMENTWISE)
def test_no_warnings_for_special_input(name):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, -1e308, 5e-324])
    fn = fa.FUNCTIONS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for target in CPU_TARGETS:
            fn(x, target=target)
            fn.grad(x, target=target)
            fn.backward(x, x=x, target=target)  # inf * 0 and NaN dy too


# --- backward from y equals backward from x ---------------------------------------------------

Y_CASES = [(n, p) for n in fa.ELEMENTWISE for p in param_sets(n) if y_allowed(n, p)]


@pytest.mark.parametrize("target", CPU_TARGETS)
@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("case", Y_CASES, ids=lambda c: f"{c[0]}-{params_id(c[1])}")
def test_backward_from_y_equals_backward_from_x(case, dtype, target, rng):
    """``backward(dy, y=f(x)) == backward(dy, x)`` up to rounding.  Where the
    derivative is computed from y, the rounding of y itself is amplified by
    |d f'(y) / dy| (sigmoid's y(1-y) near y = 1, elu's y + alpha near y = -alpha); the
    tolerance adds that amplification, measured with the reference by moving y one ULP
    either way.  At a kink of f'(y) one side jumps: the smaller side is used, so the
    kinks are checked exactly."""
    name, params = case
    fn, ref = fa.FUNCTIONS[name], REFERENCE[name]
    x = np.concatenate([random_values(rng, 3000, dtype), edge_values(dtype)])
    dy = to_dtype(rng.standard_normal(x.size), dtype)
    y = fn(x, target=target, **params)
    from_y = fn.backward(dy, y=y, target=target, **params)
    from_x = fn.backward(dy, x=x, target=target, **params)

    y64 = y.astype(np.float64)
    with np.errstate(all="ignore"):
        up = np.nextafter(y, np.array(np.inf, dtype)).astype(np.float64)
        down = np.nextafter(y, np.array(-np.inf, dtype)).astype(np.float64)
        g = ref.grad_y(y64, **params)
        jump = np.minimum(np.abs(ref.grad_y(up, **params) - g), np.abs(ref.grad_y(down, **params) - g))
        amplified = 4 * np.abs(dy.astype(np.float64)) * np.nan_to_num(jump, nan=0.0, posinf=0.0)
        eps_ulp = np.spacing(np.abs(from_x.astype(np.float64)).astype(dtype)).astype(np.float64)
    tol = 4 * eps_ulp + amplified
    # Where the forward pass overflowed (y infinite, x not: exponential's e**89 in
    # float32), y has lost what the derivative needs; the contract is about the others.
    overflowed = np.isinf(y) & np.isfinite(x)
    from_x, from_y = from_x[~overflowed], from_y[~overflowed]
    x, dy, tol = x[~overflowed], dy[~overflowed], tol[~overflowed]
    nan_x, nan_y = np.isnan(from_x), np.isnan(from_y)
    np.testing.assert_array_equal(nan_x, nan_y, err_msg=f"{name}: NaN positions differ")
    ok = ~nan_x
    with np.errstate(all="ignore"):
        err = np.abs(from_y[ok].astype(np.float64) - from_x[ok].astype(np.float64))
    err = np.where(from_y[ok] == from_x[ok], 0.0, err)  # inf == inf
    bad = np.flatnonzero(~((err <= tol[ok]) | (from_y[ok] == from_x[ok])))  # tol is NaN at inf
    assert bad.size == 0, (f"{name} {params_id(params)}: from y {from_y[ok][bad[:5]]} vs from x "
                           f"{from_x[ok][bad[:5]]} at x={x[ok][bad[:5]]}")
