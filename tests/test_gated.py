"""Gated units (``glu``): values and gradients against a long-double reference, PyTorch
and finite differences, every axis, layout and target, special values, the error rules,
and Dask and xarray operands."""

from __future__ import annotations

import numpy as np
import pytest
from _helpers import (
    CPU_TARGETS,
    EXACT,
    LAYOUTS,
    assert_bitwise,
    assert_ulp,
    edge_values,
    make_layout,
    parallel_threshold,
    raises_unchanged,
)

import fastact as fa

glu = fa.glu
SENTINEL = 12345.0


def _exact(x, axis=-1, dy=None):
    """glu and its gradient in long double (x86's 64-bit significand), as float64."""
    t = EXACT or np.float64
    a, b = np.split(np.asarray(x, t), 2, axis=axis)
    with np.errstate(all="ignore"):
        z = np.exp(-np.abs(b))
        s = np.where(b >= 0, 1 / (1 + z), z / (1 + z))
        if dy is None:
            return (a * s).astype(np.float64)
        dy = np.asarray(dy, t)
        da = np.where(np.isnan(a), np.nan, dy * s)  # NaN in, NaN out
        return np.concatenate([da, dy * a * (z / (1 + z) ** 2)], axis=axis).astype(np.float64)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("target", CPU_TARGETS)
def test_against_extended_precision(dtype, target):
    """Within the contract's ULP bounds of the rounded exact values, edge values included
    (0, -0, inf, NaN, subnormals, the largest finite values) in both halves."""
    rng = np.random.default_rng(0)
    e = edge_values(dtype)
    n = 4096
    a = np.concatenate([e, (rng.standard_normal(n - e.size) * 8)]).astype(dtype)
    b = np.concatenate([np.roll(e, 3), (rng.standard_normal(n - e.size) * 8)]).astype(dtype)
    rng.shuffle(b)
    x = np.concatenate([a.reshape(-1, 1), b.reshape(-1, 1)], axis=1)  # (n, 2): a | b
    dy = rng.standard_normal((n, 1)).astype(dtype)
    bound = {np.float16: 1, np.float32: 3, np.float64: 4}[dtype]  # the docstring's
    sub = 4 * float(np.finfo(np.float32 if dtype == np.float16 else dtype).smallest_subnormal)
    with np.errstate(all="ignore"):
        atol = sub * np.maximum(1, np.abs(x.astype(np.float64)))
    assert_ulp(glu(x, target=target), _exact(x), bound, inputs={"a": a, "b": b}, what=f"glu {target}",
               atol=atol[:, :1])
    assert_ulp(glu.backward(dy, x=x, target=target), _exact(x, dy=dy), bound, what=f"glu.backward {target}",
               atol=atol * np.abs(dy.astype(np.float64)))


def test_special_values():
    inf, nan = np.inf, np.nan
    x = np.array([[3.0, inf], [3.0, -inf], [inf, -inf], [nan, 0.0], [2.0, nan], [-0.0, 1.0], [inf, 0.0]])
    np.testing.assert_array_equal(glu(x)[:, 0], [3.0, 0.0, nan, nan, nan, -0.0, inf])
    assert np.signbit(glu(x)[5, 0])
    g = glu.backward(np.ones((7, 1)), x=x)
    np.testing.assert_array_equal(g[:, 0], [1.0, 0.0, 0.0, nan, nan, 1 / (1 + np.exp(-1.0)), 0.5])  # NaN a: NaN
    np.testing.assert_array_equal(g[:4, 1], [0.0, 0.0, nan, nan])
    assert glu(np.array([1e4, -1e4]))[0] == 0.0 and glu(np.array([-1e4, 1e4]))[0] == -1e4  # no overflow


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_axes_against_the_reference_and_torch(axis):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6, 8)) * 3
    y = glu(x, axis=axis)
    assert y.shape == tuple(n // 2 if k == axis % 3 else n for k, n in enumerate(x.shape))
    assert_ulp(y, _exact(x, axis), 4)
    dy = rng.standard_normal(y.shape)
    assert_ulp(glu.backward(dy, x=x, axis=axis), _exact(x, axis, dy), 4)
    torch = pytest.importorskip("torch")
    t = torch.tensor(x, requires_grad=True)
    r = torch.nn.functional.glu(t, dim=axis)
    r.backward(torch.tensor(dy))
    np.testing.assert_allclose(y, r.detach().numpy(), rtol=1e-15, atol=1e-300)
    # PyTorch's sigmoid'(b) = s (1 - s) loses precision where s is near 1 (1 - s cancels):
    # an absolute error of a few ULP of |dy a|.
    a = np.concatenate([np.split(x, 2, axis=axis)[0]] * 2, axis=axis)
    dyy = np.concatenate([dy, dy], axis=axis)
    got, want = glu.backward(dy, x=x, axis=axis), t.grad.numpy()
    assert np.all(np.abs(got - want) <= 1e-14 * np.abs(want) + 4e-16 * np.abs(dyy * a))


def test_backward_against_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((5, 10)) * 2
    dy = rng.standard_normal((5, 5))
    v = rng.standard_normal(x.shape)
    h = 1e-6
    fd = np.sum(dy * (glu(x + h * v) - glu(x - h * v)) / (2 * h))
    assert abs(np.sum(glu.backward(dy, x=x) * v) - fd) <= 1e-8 * (1 + abs(fd))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("target", CPU_TARGETS)
def test_layouts_give_the_contiguous_bits(layout, axis, target):
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    x = make_layout(base, layout)
    want = glu(base, axis=axis, target="cpu")
    assert_bitwise(glu(x, axis=axis, target=target), want, f"{layout}")
    dy = make_layout(rng.standard_normal(want.shape).astype(np.float32), layout)
    assert_bitwise(glu.backward(dy, x=x, axis=axis, target=target),
                   glu.backward(np.array(dy, order="C"), x=base, axis=axis, target="cpu"), f"{layout} backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,axis", [((2, 400_000), -1), ((400_000, 2), 1), ((64, 4, 1000), 1)], ids=str)
def test_targets_are_bitwise_equal(shape, axis, dtype):
    rng = np.random.default_rng(4)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    dy = rng.standard_normal(glu(x, axis=axis).shape).astype(dtype)
    with parallel_threshold(1):
        f = {t: glu(x, axis=axis, target=t) for t in CPU_TARGETS}
        b = {t: glu.backward(dy, x=x, axis=axis, target=t) for t in CPU_TARGETS}
    for t in CPU_TARGETS[1:]:
        assert_bitwise(f[t], f["cpu"], f"forward {t}")
        assert_bitwise(b[t], b["cpu"], f"backward {t}")


@pytest.mark.parametrize("target", CPU_TARGETS)
def test_out_in_place_overlap_and_dtypes(target):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((30, 40))
    dy = rng.standard_normal((30, 20))
    want_f, want_b = glu(x, target="cpu"), glu.backward(dy, x=x, target="cpu")
    out = np.full((30, 20), SENTINEL)
    assert glu(x, out=out, target=target) is out
    assert_bitwise(out, want_f)
    xs = x.copy()
    assert glu.backward(dy, x=xs, out=xs, target=target) is xs  # in place into x
    assert_bitwise(xs, want_b)
    xf = np.asfortranarray(x)
    glu.backward(dy, x=xf, out=xf, target=target)
    assert_bitwise(xf, want_b)
    buf = np.concatenate([x.ravel(), np.zeros(20)])  # the result overlapping x, shifted
    glu(buf[20:].reshape(30, 40), out=buf[:600].reshape(30, 20), target=target)
    assert_bitwise(buf[:600].reshape(30, 20), glu(np.concatenate([x.ravel(), np.zeros(20)])[20:].reshape(30, 40)))
    x16 = x.astype(np.float16)
    h = glu(x16, target=target)
    assert h.dtype == np.float16
    np.testing.assert_array_equal(h, glu(x16.astype(np.float32)).astype(np.float16))
    assert glu(np.array([[1, 0]], np.int32), target=target).dtype == np.float64
    assert glu.backward(1.0, x=x.astype(np.float32), target=target).dtype == np.float32  # a weak scalar dy
    assert glu(np.empty((0, 4)), target=target).shape == (0, 2)
    assert glu.backward(np.empty((3, 0)), x=np.empty((3, 0)), target=target).shape == (3, 0)


def test_errors_are_clear_and_write_nothing():
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    out = np.full((3, 2), SENTINEL)
    dx = np.full((3, 4), SENTINEL)
    raises_unchanged(ValueError, r"glu\(\): x's length along axis 0 must be even .* got 3", lambda: glu(x, axis=0, out=out), out)
    raises_unchanged(ValueError, r"glu\(\): x must have at least one dimension", lambda: glu(2.0))
    raises_unchanged(np.exceptions.AxisError, r"glu\(\): axis 2 is out of bounds", lambda: glu(x, axis=2, out=out), out)
    raises_unchanged(ValueError, r"out must have shape \(3, 2\) \(the result's\), got \(3, 4\)", lambda: glu(x, out=dx), dx)
    raises_unchanged(ValueError, r"glu\.backward\(\): dy must have the shape of the forward result, \(3, 2\)",
            lambda: glu.backward(np.ones((3, 4)), x=x, out=dx), dx)
    raises_unchanged(TypeError, r"glu\.backward\(\) takes the forward input x=, not y=", lambda: glu.backward(out, y=x))
    raises_unchanged(TypeError, r"glu\.backward\(\) needs x=", lambda: glu.backward(out))
    raises_unchanged(TypeError, r"takes the forward operand by keyword", lambda: glu.backward(out, x, out=dx), dx)
    raises_unchanged(TypeError, r"glu\(\) does not support x of dtype complex128", lambda: glu(x.astype(complex), out=out), out)
    raises_unchanged(TypeError, r"unexpected keyword argument 'beta'", lambda: glu(x, beta=2.0, out=out), out)
    raises_unchanged(ValueError, r"target must be one of", lambda: glu(x, target="tpu", out=out), out)
    with pytest.raises(AttributeError, match=r"use glu\.backward\(dy, x=x\)"):
        glu.grad


def test_cuda_where_it_is_unavailable_says_so_and_writes_nothing():
    if fa.cuda_available():
        pytest.skip("CUDA is available here")
    x = np.linspace(-2, 2, 12).reshape(3, 4)
    out, dx = np.full((3, 2), SENTINEL), np.full((3, 4), SENTINEL)
    match = r"(pip install numba-cuda|needs an NVIDIA GPU)"
    raises_unchanged(fa.CudaUnavailableError, r"glu\(target=.cuda.\): .*" + match,
                     lambda: glu(x, out=out, target="cuda"), out)
    raises_unchanged(fa.CudaUnavailableError, r"glu\.backward\(target=.cuda.\): .*" + match,
                     lambda: glu.backward(np.ones((3, 2)), x=x, out=dx, target="cuda"), dx)


def test_lazy_operands():
    da = pytest.importorskip("dask.array")
    xr = pytest.importorskip("xarray")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((30, 16))
    dy = rng.standard_normal((30, 8))
    for chunks in ((10, 16), (10, 5)):  # the split axis whole in each chunk, or across chunks
        dx = da.from_array(x, chunks=chunks)
        y = glu(dx)
        assert isinstance(y, da.Array) and y.shape == (30, 8)
        np.testing.assert_array_equal(y.compute(), glu(x))
        g = glu.backward(da.from_array(dy, chunks=(10, 4)), x=dx)
        assert isinstance(g, da.Array) and g.shape == x.shape
        np.testing.assert_array_equal(g.compute(), glu.backward(dy, x=x))
        np.testing.assert_array_equal(glu.backward(dy, x=dx).compute(), glu.backward(dy, x=x))
    with pytest.raises(ValueError, match="must be even"):
        glu(da.ones((3, 5)))
    h = xr.DataArray(x, dims=("batch", "feature"), coords={"batch": np.arange(30), "feature": np.arange(16)},
                     attrs={"units": "V"})
    r = glu(h, dim="feature")
    assert r.dims == ("batch", "feature") and r.shape == (30, 8) and r.attrs == {"units": "V"}
    assert "feature" not in r.coords and list(r.batch.values) == list(range(30))
    np.testing.assert_array_equal(r.values, glu(x))
    g = glu.backward(r.copy(data=dy), x=h, dim="feature")
    assert g.dims == ("batch", "feature") and list(g.feature.values) == list(range(16))
    np.testing.assert_array_equal(g.values, glu.backward(dy, x=x))
    np.testing.assert_array_equal(glu(h.chunk({"batch": 7}), dim="batch").values, glu(x, axis=0))
