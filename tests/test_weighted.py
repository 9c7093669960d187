"""Activations with a weight array (``prelu``) and rrelu's training mode: values and both
gradients against a long-double reference, PyTorch and finite differences, every layout of
the channel axis, targets bitwise equal, special values, the error rules, and Dask and
xarray operands."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    CPU_TARGETS,
    EXACT,
    LAYOUTS,
    assert_bitwise,
    edge_values,
    make_layout,
    parallel_threshold,
    raises_unchanged,
    values,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact as fa
from fastact import _dispatch

prelu = fa.prelu
SENTINEL = 12345.0

# (shape, axis): channel runs long (the __chan kernels) and short (the __pos kernels, with
# short rows side by side), channels first, last and in between, one channel, 1-d input.
SHAPES = [
    ((5, 3, 200), 1),
    ((2, 4, 3, 33), 1),
    ((64, 7), 1),
    ((9, 6), -1),
    ((6, 9), 0),
    ((3, 4, 5), 2),
    ((4, 1, 70), 1),
    ((1, 5000), -1),
    ((3, 2, 2048 * 2 + 5), 1),
    # short rows of positions taken many at a time, with rows left over
    ((1000, 7), 1),
    ((300, 3, 5), 1),
]


def _weight_shape(shape, axis):
    return (shape[axis],)


def _exact(x, w, axis, dy=None):
    """prelu and dx as float64 products (exact for float32 operands, correctly rounded for
    float64 ones: a long-double product would round twice), the weight's gradient summed
    in long double."""
    t = EXACT or np.float64
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    wb = w.reshape(()) if w.size == 1 else w.reshape([w.size if k == axis % x.ndim else 1 for k in range(x.ndim)])
    with np.errstate(all="ignore"):
        if dy is None:
            return np.where(x > 0, x, wb * x).astype(np.float64)
        dy = np.asarray(dy, np.float64)
        dx = dy * np.where(x > 0, 1, np.where(x <= 0, wb, x))
        terms = np.where(x > 0, 0, np.asarray(dy, t) * np.asarray(x, t))
        if w.size == 1:
            dw = np.sum(terms).reshape(w.shape)
        else:
            dw = np.sum(terms, axis=tuple(k for k in range(x.ndim) if k != axis % x.ndim))
        return dx.astype(np.float64), dw.astype(np.float64)


def _data(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("shape", "axis"), SHAPES)
@pytest.mark.parametrize("one", [False, True], ids=["per-channel", "one-weight"])
def test_against_extended_precision(shape, axis, dtype, one):
    """y and dx are one rounding of the exact value (bitwise the rounded product); the
    weight's gradient, a sum, within a few ULP of its exact value or of the sum of the
    magnitudes of its terms, whichever is larger."""
    x, dy = _data(shape, dtype)
    w = (np.random.default_rng(1).random(1 if one else shape[axis]) * 0.5).astype(dtype)
    y = prelu(x, w, axis=axis)
    np.testing.assert_array_equal(y, _exact(x, w, axis).astype(dtype))
    assert y.dtype == dtype and y.shape == x.shape
    dx, dw = prelu.backward(dy, x=x, weight=w, axis=axis)
    edx, edw = _exact(x, w, axis, dy)
    np.testing.assert_array_equal(dx, edx.astype(dtype))
    assert dw.dtype == dtype and dw.shape == w.shape
    _, mag = _exact(np.abs(x) * -1, np.ones_like(w), axis, np.abs(dy))  # sum of |dy x|
    eps = np.finfo(dtype).eps
    # float32: the terms' products and sums in double precision, one rounding at the end;
    # float64: a few ULP of the sum of the terms' magnitudes (each product rounds once).
    bound = eps * np.abs(edw) if dtype == np.float32 else 4 * eps * np.abs(mag)
    assert np.all(np.abs(dw - edw) <= bound), (dw, edw)
    np.testing.assert_array_equal(prelu.grad(x, w, axis=axis), _exact(x, w, axis, np.ones_like(x))[0].astype(dtype))
    np.testing.assert_array_equal(prelu.grad2(x, w, axis=axis), np.zeros_like(x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_values(dtype):
    """0, -0, inf, NaN, subnormals and huge values in x and in the weight: NaN in x makes
    y, dx and its channel's dweight NaN; a NaN weight only the non-positive elements."""
    e = edge_values(dtype)
    x = np.stack([e, np.roll(e, 5)], axis=1)  # (n, 2): two channels
    w = np.array([0.25, np.nan], dtype)
    y = prelu(x, w)
    np.testing.assert_array_equal(y, _exact(x, w, 1).astype(dtype))
    assert np.array_equal(np.signbit(y[:, 0]), np.signbit(_exact(x, w, 1)[:, 0].astype(dtype)))
    assert np.isnan(y[:, 1][x[:, 1] <= 0]).all() and np.array_equal(y[:, 1][x[:, 1] > 0], x[:, 1][x[:, 1] > 0])
    dy = np.ones_like(x)
    dx, dw = prelu.backward(dy, x=x, weight=w)
    np.testing.assert_array_equal(dx, _exact(x, w, 1, dy)[0].astype(dtype))
    assert np.isnan(dx[np.isnan(x)]).all()  # NaN in, NaN out (PyTorch gives w * dy)
    assert np.isnan(dw).all()  # each channel has a NaN element
    finite = np.nan_to_num(x[:, :1], nan=1.0, posinf=1.0, neginf=-1.0)
    _, dw1 = prelu.backward(np.ones_like(finite), x=finite, weight=w[:1])
    with np.errstate(over="ignore"):  # the float64 sum of float64's largest values is -inf, as fastact's
        expected = float(np.sum(np.where(finite > 0, 0, finite.astype(np.longdouble))))
    assert dw1[0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("shape", "axis"), SHAPES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_targets_bitwise_equal(shape, axis, dtype):
    """cpu, parallel and auto (below and above its threshold) give the same bits, the
    weight's gradient included: its sums go in an order fixed by the shape."""
    x, dy = _data(shape, dtype, seed=2)
    w = np.linspace(0.05, 0.5, shape[axis]).astype(dtype)
    ref = prelu.backward(dy, x=x, weight=w, axis=axis, target="cpu")
    for target in CPU_TARGETS:
        for limit in (1, 1 << 40):
            with parallel_threshold(limit):
                got = prelu.backward(dy, x=x, weight=w, axis=axis, target=target)
                assert_bitwise(got[0], ref[0], f"dx {target}")
                assert_bitwise(got[1], ref[1], f"dweight {target}")
                assert_bitwise(prelu(x, w, axis=axis, target=target), prelu(x, w, axis=axis, target="cpu"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("shape", "axis"), [((6, 5, 70), 1), ((8, 6), -1), ((3, 4, 5), 0)])
def test_layouts_equal_contiguous(layout, shape, axis):
    x, dy = _data(shape, np.float64, seed=3)
    w = np.linspace(0.1, 0.9, shape[axis])
    xl, dyl = make_layout(x, layout), make_layout(dy, layout)
    wl = make_layout(w, layout)
    assert_bitwise(prelu(xl, wl, axis=axis), prelu(x, w, axis=axis), layout)
    for a, b in zip(prelu.backward(dyl, x=xl, weight=wl, axis=axis), prelu.backward(dy, x=x, weight=w, axis=axis)):
        assert_bitwise(a, b, layout)


def test_fortran_input_gives_fortran_output():
    x = np.asfortranarray(_data((40, 3, 7), np.float32)[0])
    assert prelu(x, np.ones(3, np.float32) * 0.1).flags.f_contiguous


def test_one_weight_any_form_is_leaky_relu():
    """A scalar, a 0-d array or a one-element array: leaky_relu with that slope, bit for bit."""
    x, dy = _data((7, 11), np.float32)
    ref = fa.leaky_relu(x, negative_slope=0.2)
    for w in (0.2, np.float32(0.2), np.array(0.2, np.float32), np.array([0.2], np.float32)):
        assert_bitwise(prelu(x, w), ref)
        assert_bitwise(prelu(x, w, axis=0), ref)  # the axis is unused
    dx, dw = prelu.backward(dy, x=x, weight=np.array(0.2, np.float32))
    assert_bitwise(dx, fa.leaky_relu.backward(dy, x=x, negative_slope=0.2))
    assert isinstance(dw, np.float32)  # a 0-d weight: a scalar gradient, as a ufunc's 0-d result
    _, dw1 = prelu.backward(dy, x=x, weight=np.array([0.2], np.float32))
    assert dw1.shape == (1,) and dw1[0] == dw


def test_zero_d_and_empty():
    assert prelu(np.float64(-2.0), 0.5) == -1.0 and isinstance(prelu(np.float64(-2.0), 0.5), np.float64)
    dx, dw = prelu.backward(1.0, x=np.float64(-2.0), weight=np.array([0.5]))
    assert dx == 0.5 and dw.shape == (1,) and dw[0] == -2.0
    x = np.empty((0, 3, 4))
    assert prelu(x, np.ones(3)).shape == (0, 3, 4)
    dx, dw = prelu.backward(x, x=x, weight=np.ones(3))
    assert dx.shape == x.shape and np.array_equal(dw, np.zeros(3))  # an empty sum is 0


def test_broadcast_dy_and_weak_scalars():
    x, _ = _data((4, 3, 5), np.float32)
    w = np.array([0.1, 0.2, 0.3], np.float32)
    dx, dw = prelu.backward(2.0, x=x, weight=w)
    assert dx.dtype == np.float32 and dw.dtype == np.float32
    dx2, dw2 = prelu.backward(np.full(x.shape, 2.0, np.float32), x=x, weight=w)
    assert_bitwise(dx, dx2)
    assert_bitwise(dw, dw2)
    dx3, _ = prelu.backward(np.full((5,), 2.0, np.float32), x=x, weight=w)
    assert_bitwise(dx3, dx2)
    assert prelu(x, 0.25).dtype == np.float32  # a Python float weight is weak
    assert prelu(x, np.array([0.1, 0.2, 0.3])).dtype == np.float64  # a float64 weight promotes


def test_float16_and_integers():
    x = np.array([[-2, 3], [4, -5]], np.int64)
    assert prelu(x, np.array([0.5, 0.25])).dtype == np.float64
    np.testing.assert_array_equal(prelu(x, np.array([0.5, 0.25])), [[-1.0, 3.0], [4.0, -1.25]])
    h = np.array([[-2, 3], [4, -5]], np.float16)
    y = prelu(h, np.array([0.5, 0.25], np.float16))
    assert y.dtype == np.float16
    np.testing.assert_array_equal(y, np.array([[-1.0, 3.0], [4.0, -1.25]], np.float16))
    dx, dw = prelu.backward(np.ones_like(h), x=h, weight=np.array([0.5, 0.25], np.float16))
    assert dx.dtype == dw.dtype == np.float16
    np.testing.assert_array_equal(dw, np.array([-2.0, -5.0], np.float16))


def test_out_in_place_and_overlap():
    x, dy = _data((5, 4, 80), np.float32)
    w = np.linspace(0.1, 0.4, 4).astype(np.float32)
    ref = prelu(x, w)
    o = np.full_like(x, SENTINEL)
    assert prelu(x, w, out=o) is o and np.array_equal(o, ref)
    xc = x.copy()
    assert prelu(xc, w, out=xc) is xc and np.array_equal(xc, ref)
    edx, edw = prelu.backward(dy, x=x, weight=w)
    dyc = dy.copy()
    dwo = np.full(4, SENTINEL, np.float32)
    got = prelu.backward(dyc, x=x, weight=w, out=(dyc, dwo))
    assert got[0] is dyc and got[1] is dwo and np.array_equal(dyc, edx) and np.array_equal(dwo, edw)
    dxo = np.empty_like(x)
    got = prelu.backward(dy, x=x, weight=w, out=(dxo, None))
    assert got[0] is dxo and np.array_equal(got[1], edw)
    # out overlapping x partially: the result as if out of place.
    big = np.concatenate([x.reshape(-1), np.zeros(7, np.float32)])
    xs = big[:-7].reshape(x.shape)
    shifted = big[7:].reshape(x.shape)
    prelu(xs, w, out=shifted)
    np.testing.assert_array_equal(shifted, ref)
    f64 = np.empty(x.shape)  # out of another dtype than the result's: refused
    raises_unchanged(TypeError, "dtype float32", lambda: prelu(x, w, out=f64), x, f64)


def test_errors_write_nothing():
    x, dy = _data((4, 3, 5), np.float64)
    o = np.full_like(x, SENTINEL)
    w3 = np.ones(3)
    raises_unchanged(ValueError, r"weight has 4 values, but x has 3 channels along axis 1",
                     lambda: prelu(x, np.ones(4), out=o), o)
    raises_unchanged(ValueError, r"weight must be 1-d", lambda: prelu(x, np.ones((3, 1)), out=o), o)
    raises_unchanged(ValueError, r"axis 3 is out of bounds|axis", lambda: prelu(x, w3, axis=3, out=o), o)
    raises_unchanged(TypeError, r"missing its weight", lambda: prelu(x, out=o), o)
    raises_unchanged(ValueError, r"x is 0-d, so it has no channels", lambda: prelu(np.float64(-1.0), w3, axis=0), o)
    raises_unchanged(TypeError, r"takes 2 positional arguments", lambda: prelu(x, w3, 1), o)
    raises_unchanged(TypeError, r"x=, not y=", lambda: prelu.backward(dy, y=x, weight=w3, out=(o, None)), o)
    raises_unchanged(TypeError, r"needs weight=", lambda: prelu.backward(dy, x=x), dy)
    raises_unchanged(TypeError, r"forward operand by keyword", lambda: prelu.backward(dy, x), dy)
    raises_unchanged(TypeError, r"out must be a pair", lambda: prelu.backward(dy, x=x, weight=w3, out=o), o)
    dwo = np.full(3, SENTINEL)
    raises_unchanged(ValueError, r"out must have shape \(3,\)",
                     lambda: prelu.backward(dy, x=x, weight=w3, out=(o, np.empty(4))), o)
    raises_unchanged(ValueError, r"dy must have x's shape",
                     lambda: prelu.backward(np.ones((2, 3, 5)), x=x, weight=w3, out=(o, dwo)), o, dwo)
    raises_unchanged(TypeError, r"does not support x of dtype complex128", lambda: prelu(x + 0j, w3, out=o), o)
    raises_unchanged(TypeError, r"unexpected keyword argument 'alpha'", lambda: prelu(x, w3, alpha=1.0, out=o), o)
    with pytest.raises(ValueError, match="target must be one of"):
        prelu(x, w3, target="gpu")
    with pytest.raises(AttributeError):
        fa.prelu.grad3  # noqa: B018


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_against_torch(dtype):
    torch = pytest.importorskip("torch")
    x, dy = _data((6, 5, 70), dtype)
    w = np.linspace(0.05, 0.5, 5).astype(dtype)
    xt = torch.tensor(x.astype(np.float64), requires_grad=True)
    wt = torch.tensor(w.astype(np.float64), requires_grad=True)
    yt = torch.nn.functional.prelu(xt, wt)
    yt.backward(torch.tensor(dy.astype(np.float64)))
    np.testing.assert_array_equal(prelu(x, w), yt.detach().numpy().astype(dtype))
    dx, dw = prelu.backward(dy, x=x, weight=w)
    np.testing.assert_array_equal(dx, xt.grad.numpy().astype(dtype))
    # PyTorch sums in its own order: within a few ULP of the terms' magnitudes.
    mag = np.sum(np.abs(dy * x) * (x <= 0), axis=(0, 2))
    assert np.all(np.abs(dw - wt.grad.numpy()) <= 4 * np.finfo(dtype).eps * mag)


def test_finite_differences():
    """dx and dweight against central differences of the forward pass in float64, away
    from the kink."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0.1, 2.0, (3, 4, 6)) * rng.choice([-1.0, 1.0], (3, 4, 6))
    w = rng.uniform(0.1, 0.9, 4)
    dy = rng.standard_normal(x.shape)
    dx, dw = prelu.backward(dy, x=x, weight=w)
    h = 1e-6
    np.testing.assert_allclose(dx, dy * (prelu(x + h, w) - prelu(x - h, w)) / (2 * h), rtol=1e-6, atol=1e-9)
    for c in range(4):
        e = np.zeros(4)
        e[c] = h
        num = np.sum(dy * (prelu(x, w + e) - prelu(x, w - e))) / (2 * h)
        assert dw[c] == pytest.approx(num, rel=1e-6, abs=1e-9)


def test_weight_sum_is_accurate_for_long_channels():
    """float32 terms summed in double precision: a channel of 2**20 elements of ±1 with
    one 2**-20 keeps it (a float32 running sum would not)."""
    n = 1 << 20
    x = -np.ones((1, 1, n), np.float32)
    dy = np.where(np.arange(n) % 2 == 0, 1.0, -1.0).astype(np.float32)
    dy[0] = 1.0 + 2.0 ** -20
    for target in CPU_TARGETS:
        _, dw = prelu.backward(dy.reshape(1, 1, n), x=x, weight=np.ones(1, np.float32), target=target)
        assert dw[0] == np.float32(-(2.0 ** -20)), target


def test_kernels_take_both_layouts(monkeypatch):
    """Runs from _CHANNEL_RUN on take the __chan kernels, shorter ones the __pos kernels
    (observed through the kernel lookup); both agree with the reference above."""
    seen = []
    real = fa._cpu.weighted

    def spy(name, op, layout, parallel):
        seen.append(layout)
        return real(name, op, layout, parallel)

    monkeypatch.setattr(fa._cpu, "weighted", spy)
    prelu(np.ones((2, 3, _dispatch._CHANNEL_RUN)), np.ones(3))
    prelu(np.ones((2, 3, _dispatch._CHANNEL_RUN - 1)), np.ones(3))
    prelu(np.ones((2, 3, 2)), 0.5)
    assert seen == ["chan", "pos", "chan"]


# --- rrelu: evaluation and training ---------------------------------------------------------


def test_rrelu_evaluation_is_leaky_relu_with_the_mean_slope():
    x, dy = _data((100,), np.float64)
    assert_bitwise(fa.rrelu(x, lower=0.1, upper=0.3), fa.leaky_relu(x, negative_slope=0.2))
    assert_bitwise(fa.rrelu.backward(dy, x=x, lower=0.1, upper=0.3),
                   fa.leaky_relu.backward(dy, x=x, negative_slope=0.2))
    assert_bitwise(fa.rrelu.backward(dy, y=fa.rrelu(x), ), fa.rrelu.backward(dy, x=x))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_rrelu_training_slopes(dtype):
    x, dy = _data((50, 40), dtype)
    y, s = fa.rrelu(x, training=True, rng=np.random.default_rng(7), lower=0.2, upper=0.3)
    assert s.shape == x.shape and s.dtype == dtype and y.dtype == dtype
    assert np.all((s >= dtype(0.2)) & (s <= dtype(0.3))) and np.unique(s).size > 100
    np.testing.assert_array_equal(y, np.where(x > 0, x, (s.astype(np.float64) * x).astype(dtype)))
    # The same generator state gives the same slopes; a seed is accepted.
    _, s2 = fa.rrelu(x, training=True, rng=np.random.default_rng(7), lower=0.2, upper=0.3)
    assert_bitwise(s2, s)
    assert_bitwise(fa.rrelu(x, training=True, rng=3)[1], fa.rrelu(x, training=True, rng=3)[1])
    # Backward and grad with the same slopes; the forward with given slopes.
    dx = fa.rrelu.backward(dy, x=x, slopes=s)
    np.testing.assert_array_equal(dx, np.where(x > 0, dy, (dy.astype(np.float64) * s).astype(dtype)))
    assert_bitwise(fa.rrelu.grad(x, slopes=s), np.where(x > 0, dtype(1), s).astype(dtype))
    assert_bitwise(fa.rrelu(x, slopes=s), y)
    for target in CPU_TARGETS:
        with parallel_threshold(1):
            assert_bitwise(fa.rrelu.backward(dy, x=x, slopes=s, target=target), dx)


def test_rrelu_training_against_torch():
    torch = pytest.importorskip("torch")
    x, dy = _data((30, 30), np.float64)
    y, s = fa.rrelu(x, training=True, rng=0)
    xt = torch.tensor(x, requires_grad=True)
    noise = torch.tensor(np.where(x > 0, 1.0, s))  # PyTorch's saved noise: 1 where x > 0
    yt = torch.where(xt > 0, xt, xt * noise)
    yt.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(fa.rrelu.backward(dy, x=x, slopes=s), xt.grad.numpy())


def test_rrelu_training_errors():
    x = np.array([-1.0, 2.0])
    s = np.array([0.2, 0.2])
    with pytest.raises(TypeError, match="either training=True"):
        fa.rrelu(x, training=True, slopes=s)
    with pytest.raises(TypeError, match="pass training=True with it"):
        fa.rrelu(x, rng=0)
    with pytest.raises(TypeError, match="training must be True or False"):
        fa.rrelu(x, training=1)
    with pytest.raises(TypeError, match="needs the slopes of the forward call"):
        fa.rrelu.backward(np.ones(2), x=x, training=True)
    with pytest.raises(ValueError, match=r"y=\.\.\.\) is not supported with slopes=.*pass the forward input x"):
        fa.rrelu.backward(np.ones(2), y=x, slopes=s)
    with pytest.raises(TypeError, match="exactly one of x="):
        fa.rrelu.backward(np.ones(2), slopes=s)
    with pytest.raises(ValueError, match="slopes must have x's shape"):
        fa.rrelu(x, slopes=np.ones(3))
    with pytest.raises(TypeError, match="rng must be"):
        fa.rrelu(x, training=True, rng="seed")
    with pytest.raises(ValueError, match="lower <= upper"):
        fa.rrelu(x, training=True, rng=0, lower=0.5, upper=0.1)


# --- Dask and xarray --------------------------------------------------------------------------


def test_dask_chunks_with_their_channels():
    da = pytest.importorskip("dask.array")
    x, dy = _data((6, 5, 40), np.float32)
    w = np.linspace(0.1, 0.5, 5).astype(np.float32)
    xd = da.from_array(x, chunks=(4, 2, 15))
    y = prelu(xd, w)
    assert isinstance(y, da.Array) and y.dtype == np.float32
    np.testing.assert_array_equal(y.compute(), prelu(x, w))
    np.testing.assert_array_equal(prelu.grad(xd, w).compute(), prelu.grad(x, w))
    dx, dw = prelu.backward(da.from_array(dy, chunks=(3, 5, 20)), x=xd, weight=da.from_array(w, chunks=2))
    edx, edw = prelu.backward(dy, x=x, weight=w)
    np.testing.assert_array_equal(dx.compute(), edx)
    assert dw.shape == (5,) and dw.dtype == np.float32
    np.testing.assert_allclose(dw.compute(), edw, rtol=1e-6)
    # One weight for all; rrelu's slopes chunk by chunk.
    np.testing.assert_array_equal(prelu(xd, 0.3).compute(), prelu(x, 0.3))
    yr, s = fa.rrelu(x, training=True, rng=1)
    np.testing.assert_array_equal(fa.rrelu(xd, slopes=s).compute(), yr)
    np.testing.assert_array_equal(fa.rrelu.backward(dy, x=xd, slopes=s).compute(), fa.rrelu.backward(dy, x=x, slopes=s))
    with pytest.raises(TypeError, match="out= is not supported"):
        prelu(xd, w, out=np.empty(x.shape, np.float32))
    with pytest.raises(ValueError, match="weight has 4 values"):
        prelu(xd, np.ones(4))
    with pytest.raises(ValueError, match="dy must have x's shape"):  # fastact's message, not Dask's
        prelu.backward(np.ones((2, 5, 40), np.float32), x=xd, weight=w)


def test_dask_backward_computes_each_chunk_once(monkeypatch):
    da = pytest.importorskip("dask.array")
    import dask

    from fastact import _lazy

    passes = []
    real = _lazy.weighted_chunk

    def counted(name, op, *rest):
        passes.append(op)
        return real(name, op, *rest)

    monkeypatch.setattr(_lazy, "weighted_chunk", counted)
    x, dy = _data((8, 3, 50), np.float64)
    w = np.array([0.1, 0.2, 0.3])
    xd = da.from_array(x, chunks=(2, 3, 25))  # 8 chunks
    dx, dw = prelu.backward(dy, x=xd, weight=w)
    got_dx, got_dw = dask.compute(dx, dw, scheduler="sync")
    assert passes == ["backward_xw"] + ["backward_pair"] * 8  # the checks on one element, then each chunk once
    edx, edw = prelu.backward(dy, x=x, weight=w)
    np.testing.assert_array_equal(got_dx, edx)
    np.testing.assert_allclose(got_dw, edw, rtol=1e-14)


def test_xarray_keeps_dims_and_coordinates():
    xr = pytest.importorskip("xarray")
    x, dy = _data((3, 4, 5), np.float64)
    X = xr.DataArray(x, dims=("n", "c", "t"), coords={"c": list("abcd")}, attrs={"units": "V"})
    W = xr.DataArray(np.linspace(0.1, 0.4, 4), dims=("c",), coords={"c": list("abcd")})
    y = prelu(X.transpose("t", "c", "n"), W, dim="c")
    assert y.dims == ("t", "c", "n") and y.attrs == {"units": "V"}
    np.testing.assert_array_equal(y.transpose("n", "c", "t").values, prelu(x, W.values))
    dX, dW = prelu.backward(xr.DataArray(dy, dims=X.dims), x=X, weight=W, dim="c")
    edx, edw = prelu.backward(dy, x=x, weight=W.values)
    np.testing.assert_array_equal(dX.values, edx)
    assert dW.dims == ("c",) and list(dW.c.values) == list("abcd")
    np.testing.assert_array_equal(dW.values, edw)
    with pytest.raises(ValueError, match="coordinate differs"):
        prelu(X, W.assign_coords(c=list("wxyz")), dim="c")
    lazy = prelu(X.chunk({"n": 1}), W, dim="c")
    assert type(lazy.data).__module__.startswith("dask")
    np.testing.assert_array_equal(lazy.values, prelu(x, W.values))


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]),
       shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7), layout=st.sampled_from(LAYOUTS))
def test_each_channel_is_leaky_relu_with_its_slope(data, dtype, shape, layout):
    """For any values (NaN, inf, subnormals included), layout and channel axis: each
    channel of prelu is leaky_relu with that channel's slope, bit for bit, and so is its
    dx; the weight's gradient is NaN exactly where its channel has a NaN term."""
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = make_layout(data.draw(hnp.arrays(dtype, shape, elements=values(dtype))), layout)
    dy = data.draw(hnp.arrays(dtype, shape, elements=values(dtype, allow_special=False)))
    w = data.draw(hnp.arrays(dtype, (shape[axis],), elements=st.floats(0, 1, width=np.dtype(dtype).itemsize * 8)))
    y = prelu(x, w, axis=axis)
    dx, dw = prelu.backward(dy, x=x, weight=w, axis=axis)
    for c in range(shape[axis]):
        xc, dyc = np.take(x, c, axis=axis), np.take(dy, c, axis=axis)
        slope = float(w[c])
        assert_bitwise(np.take(y, c, axis=axis), fa.leaky_relu(xc, negative_slope=slope))
        assert_bitwise(np.take(dx, c, axis=axis), fa.leaky_relu.backward(dyc, x=xc, negative_slope=slope))
        with np.errstate(all="ignore"):
            terms = np.where(xc > 0, 0, dyc.astype(np.float64) * xc)
        assert np.isnan(dw[c]) == bool(np.isnan(terms).any() or (np.isposinf(terms).any() and np.isneginf(terms).any()))
