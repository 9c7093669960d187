"""Dask arrays and xarray DataArrays: lazy results, chunk by chunk, the in-memory bits."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from _helpers import elementwise_cases, ulp_distance

import fastact as fa
from fastact._spec import ProjectionSpec

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
xr = pytest.importorskip("xarray")


def _data(dtype=np.float32, shape=(30, 20), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    x.flat[:6] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40 if dtype == np.float32 else 1e-310]
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


def _call(name, op, params, a, b=None, **kw):
    f = fa.FUNCTIONS[name]
    if op == "forward":
        return f(a, **params, **kw)
    if op in ("grad", "grad2"):
        return getattr(f, op)(a, **params, **kw)
    return f.backward(a, **{("x" if op == "backward_x" else "y"): b}, **params, **kw)


def test_import_fastact_imports_neither_dask_nor_xarray():
    code = "import sys, fastact; print(sorted(m for m in ('dask', 'xarray') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("case", elementwise_cases(), ids=lambda c: f"{c[0]}-{c[1]}-{'-'.join(map(str, c[2].values()))}")
def test_elementwise_stays_lazy_and_matches_numpy_bitwise(case):
    name, op, params = case
    x, dy = _data()
    other = fa.FUNCTIONS[name](x, target="cpu", **params) if op == "backward_y" else x
    expected = _call(name, op, params, x if op in ("forward", "grad", "grad2") else dy, other, target="cpu")
    dx = da.from_array(x, chunks=(7, 9))
    ddy = da.from_array(dy, chunks=(11, 20))
    if op in ("forward", "grad", "grad2"):
        r = _call(name, op, params, dx)
    else:
        r = _call(name, op, params, ddy, da.from_array(other, chunks=(7, 9)))
    assert isinstance(r, da.Array) and r.dtype == expected.dtype and r.shape == expected.shape
    got = r.compute()
    np.testing.assert_array_equal(got, expected)  # NaN positions included
    assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_mixed_operands_broadcast_like_numpy():
    x, dy = _data()
    dx = da.from_array(x, chunks=(10, 5))
    for dy_ in (dy[0], dy[:1], np.float32(0.5), 2.0):
        r = fa.elu.backward(dy_, x=dx)
        assert isinstance(r, da.Array)
        np.testing.assert_array_equal(r.compute(), fa.elu.backward(dy_, x=x))
    r = fa.elu.backward(da.from_array(dy[0], chunks=4), x=x)  # only dy lazy
    np.testing.assert_array_equal(r.compute(), fa.elu.backward(dy[0], x=x))
    with pytest.raises(ValueError, match=r"elu.backward\(\): cannot broadcast dy \(7,\) and x \(30, 20\)"):
        fa.elu.backward(da.ones(7, chunks=3), x=dx)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32, np.bool_])
def test_dtypes_as_in_memory(dtype):
    x = np.array([[-3, -1, 0], [1, 2, 5]]).astype(dtype)
    r = fa.sigmoid(da.from_array(x, chunks=1))
    expected = fa.sigmoid(x)
    assert r.dtype == expected.dtype
    np.testing.assert_array_equal(r.compute(), expected)


def test_nothing_is_computed_until_asked():
    def poisoned(block):
        raise AssertionError("computed while building the graph")

    src = da.ones((8, 8), chunks=4, dtype=np.float32).map_blocks(poisoned, dtype=np.float32)
    for r in (fa.relu(src), fa.gelu.grad(src), fa.relu.backward(src, x=src), fa.softmax(src),
              fa.softmax(src, axis=0), fa.log_softmax.backward(src, y=src, axis=0)):
        assert isinstance(r, da.Array) and r.dtype == np.float32
    with pytest.raises(AssertionError, match="computed while building"):
        fa.relu(src).compute()


def test_bad_calls_raise_before_any_graph():
    dx = da.ones(4, chunks=2, dtype=np.float32)
    with pytest.raises(TypeError, match=r"relu\(\): out= is not supported with Dask arrays"):
        fa.relu(dx, out=np.empty(4, np.float32))
    with pytest.raises(TypeError, match="out= is not supported"):
        fa.relu.backward(dx, x=dx, out=np.zeros(4, np.float32), accumulate=True)
    with pytest.raises(ValueError, match="stream= is for device arrays"):
        fa.relu(dx, stream=1)
    with pytest.raises(ValueError, match="negative_slope"):
        fa.leaky_relu(dx, negative_slope=np.nan)
    with pytest.raises(TypeError, match="does not support x of dtype complex128"):
        fa.relu(da.ones(4, chunks=2, dtype=np.complex128))
    with pytest.raises(ValueError, match="target must be one of"):
        fa.relu(dx, target="gpu")
    with pytest.raises(ValueError, match=r"gelu.backward\(dy, y=...\) is not supported"):
        fa.gelu.backward(dx, y=dx)
    with pytest.raises(TypeError, match=r"softmax\(\): dim= names a dimension of an xarray DataArray"):
        fa.softmax(da.ones((2, 3), chunks=1), dim="class")


def test_targets_per_chunk_give_the_same_bits():
    x, _ = _data(shape=(64, 64))
    dx = da.from_array(x, chunks=32)
    expected = fa.silu(x, target="cpu")
    for target in ("auto", "cpu", "parallel"):
        np.testing.assert_array_equal(fa.silu(dx, target=target).compute(), expected)


# --- row-wise ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", fa.ROWWISE)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_rows_within_one_chunk_match_bitwise(name, axis):
    f = fa.FUNCTIONS[name]
    x, dy = _data(np.float64)
    x = np.nan_to_num(x, nan=1.0, posinf=2.0, neginf=-2.0)
    chunks = (30, 7) if axis == 0 else (6, 20)
    dx, ddy = da.from_array(x, chunks=chunks), da.from_array(dy, chunks=chunks)
    np.testing.assert_array_equal(f(dx, axis=axis).compute(), f(x, axis=axis))
    np.testing.assert_array_equal(f.backward(ddy, x=dx, axis=axis).compute(), f.backward(dy, x=x, axis=axis))
    y = f(x, axis=axis)
    np.testing.assert_array_equal(f.backward(ddy, y=y, axis=axis).compute(), f.backward(dy, y=y, axis=axis))


#: ULP between the two-pass result and the in-memory one: each within about 3 ULP of the
#: exact result (an exp, a row sum and a division or a log).
_ROW_ULP = {np.dtype(np.float32): 4, np.dtype(np.float64): 4}


def _assert_rows_close(got, expected, dtype, what, scale=None):
    assert got.dtype == expected.dtype, what
    assert np.array_equal(np.isnan(got), np.isnan(expected)), what
    d = ulp_distance(got, expected)
    if scale is not None:
        atol = 8 * float(np.finfo(dtype).eps) * scale + float(np.finfo(dtype).smallest_subnormal)
        with np.errstate(invalid="ignore"):
            d = np.where(np.abs(got.astype(np.float64) - expected) <= atol, 0, d)
    bound = _ROW_ULP[np.dtype(dtype)]
    assert not d.size or d.max() <= bound, f"{what}: {int(d.max())} ULP"


#: Row-wise functions whose rows combine from the chunks' sums (sparsemax's threshold comes
#: from its candidates: tests/test_rowwise.py).
SUMMED = [n for n in fa.ROWWISE if not isinstance(fa.REGISTRY[n], ProjectionSpec)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", SUMMED)
@pytest.mark.parametrize("axis", [0, 1])
def test_rows_across_chunks_take_two_passes(name, axis, dtype):
    """An axis split into chunks is not rechunked: the result's chunks are the input's,
    and the values are within the in-memory result's bounds (NaN, inf rows alike)."""
    f = fa.FUNCTIONS[name]
    x, dy = _data(dtype, shape=(40, 50), seed=3)
    x[7] = -np.inf  # a row of -inf: NaN
    x[:, 9] = -np.inf
    x[11, 3] = np.inf  # one +inf: the limit
    x[12, [3, 30]] = np.inf  # two: NaN
    x[13] = x[13] * 300  # differences far beyond float32's exp range
    chunks = (13, 17)
    dx, ddy = da.from_array(x, chunks=chunks), da.from_array(dy, chunks=chunks)
    r = f(dx, axis=axis)
    assert r.chunks == dx.chunks
    expected = f(x, axis=axis)
    got = r.compute()
    if name == "log_softmax":  # log(s) to n ULP of 1, beside |x - m|: the kernels' own bound
        m = np.max(np.where(np.isnan(x), -np.inf, x), axis=axis, keepdims=True)
        with np.errstate(invalid="ignore"):
            scale = np.nan_to_num(np.abs(x.astype(np.float64) - m)) + 1
    else:
        scale = None
    _assert_rows_close(got, expected, dtype, f"{name} axis={axis}", scale)
    y = np.nan_to_num(expected.astype(np.float64), nan=0.0, neginf=0.0)
    dy64 = dy.astype(np.float64)
    terms = np.abs(y) * (np.abs(dy64) + np.sum(np.abs(dy64 * y), axis=axis, keepdims=True))
    if name == "log_softmax":
        terms = np.abs(dy64) + np.exp(y) * np.sum(np.abs(dy64), axis=axis, keepdims=True)
    clean = ~np.isnan(expected).any(axis=axis, keepdims=True) & ~np.isinf(expected).any(axis=axis, keepdims=True)
    clean = np.broadcast_to(clean, x.shape)
    for op, kw in (("backward_x", {"x": dx}), ("backward_y", {"y": da.from_array(expected, chunks=chunks)})):
        got = f.backward(ddy, axis=axis, **kw).compute()
        exp = f.backward(dy, axis=axis, **({"x": x} if op == "backward_x" else {"y": expected}))
        _assert_rows_close(np.where(clean, got, 0), np.where(clean, exp, 0), dtype, f"{name}.{op}", terms)


# --- xarray -----------------------------------------------------------------------------------


def _labelled(x, chunks=None):
    a = xr.DataArray(
        x, dims=("batch", "feature"), coords={"batch": np.arange(x.shape[0]), "feature": [f"f{i}" for i in range(x.shape[1])]},
        name="h", attrs={"units": "V"},
    )
    return a.chunk(chunks) if chunks else a


@pytest.mark.parametrize("chunks", [None, {"batch": 7}], ids=["numpy", "dask"])
def test_dataarrays_keep_their_labels(chunks):
    x, dy = _data()
    xa = _labelled(x, chunks)
    for r, expected in [
        (fa.gelu(xa), fa.gelu(x)),
        (fa.elu.backward(_labelled(dy, chunks), x=xa), fa.elu.backward(dy, x=x)),
        (fa.relu.grad(xa), fa.relu.grad(x)),
    ]:
        assert isinstance(r, xr.DataArray)
        assert r.dims == xa.dims and r.name == "h" and r.attrs == {"units": "V"}
        assert r.coords.identical(xa.coords)
        assert (chunks is not None) == isinstance(r.data, da.Array)
        np.testing.assert_array_equal(r.values, expected)


@pytest.mark.parametrize("chunks", [None, {"batch": 7}, {"feature": 5}], ids=["numpy", "dask", "dask-rows-split"])
def test_rowwise_takes_dim(chunks):
    x, dy = _data(np.float64)
    x = np.nan_to_num(x)
    xa = _labelled(x, chunks)
    r = fa.softmax(xa, dim="batch")
    assert isinstance(r, xr.DataArray) and r.dims == ("batch", "feature")
    np.testing.assert_allclose(r.values, fa.softmax(x, axis=0), rtol=4e-16 * 8, atol=0)
    r = fa.log_softmax.backward(_labelled(dy, chunks), x=xa, dim="feature")
    np.testing.assert_allclose(r.values, fa.log_softmax.backward(dy, x=x, axis=1), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="dim 'time' is not one of the DataArray's dims"):
        fa.softmax(xa, dim="time")
    with pytest.raises(TypeError, match="give dim= or axis=, not both"):
        fa.softmax(xa, dim="batch", axis=0)


@pytest.mark.parametrize("chunks", [(30, 20), (7, 20), (7, 6)], ids=["one", "rows", "both"])
@pytest.mark.parametrize(("axis", "keepdims"), [(-1, False), (0, True), ((0, 1), False), (None, True)], ids=str)
def test_logsumexp_stays_lazy(chunks, axis, keepdims):
    """Reduced axes of one chunk: chunk by chunk, the in-memory bits; of several: two
    passes, within a few ULP; backward likewise, with dy of the result's shape."""
    x, _ = _data(np.float64, seed=3)
    x = np.nan_to_num(x, nan=1.0)
    x[1, :] = -np.inf  # a row of -inf, and one with +inf (x[0, 2])
    dx = da.from_array(x, chunks=chunks)
    r = fa.logsumexp(dx, axis=axis, keepdims=keepdims)
    assert isinstance(r, da.Array)
    want = fa.logsumexp(x, axis=axis, keepdims=keepdims)
    got = r.compute()
    assert got.shape == np.shape(want) and got.dtype == want.dtype
    whole = all(len(dx.chunks[k]) == 1 for k in ((0, 1) if axis is None else np.atleast_1d(axis) % 2))
    if whole:
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        assert np.nanmax(ulp_distance(got, want)) <= 4
    dy = np.random.default_rng(4).standard_normal(np.shape(want))
    g = fa.logsumexp.backward(da.from_array(dy) if np.ndim(dy) else dy, x=dx, axis=axis, keepdims=keepdims)
    assert isinstance(g, da.Array) and g.shape == x.shape and g.chunks == dx.chunks
    gw = fa.logsumexp.backward(dy, x=x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(g.compute(), gw, rtol=1e-14, atol=1e-300)
    with pytest.raises(TypeError, match=r"logsumexp\(\) needs axis="):
        fa.logsumexp(dx)
    with pytest.raises(ValueError, match="dy must have the shape of the forward result"):
        fa.logsumexp.backward(da.ones(7), x=dx, axis=-1)


@pytest.mark.parametrize("chunks", [None, {"batch": 7}, {"feature": 5}], ids=["numpy", "dask", "dask-rows-split"])
def test_logsumexp_of_dataarrays_drops_the_reduced_dims(chunks):
    x, dy = _data(np.float64)
    x = np.nan_to_num(x, nan=0.0)
    xa = _labelled(x, chunks)
    r = fa.logsumexp(xa, dim="feature")
    assert r.dims == ("batch",) and r.attrs == {"units": "V"} and list(r.batch.values) == list(range(30))
    np.testing.assert_allclose(r.values, fa.logsumexp(x, axis=1), rtol=1e-15)
    assert fa.logsumexp(xa, dim=("batch", "feature")).dims == ()
    assert fa.logsumexp(xa, axis=0, keepdims=True).dims == ("batch", "feature")
    g = fa.logsumexp.backward(r, x=xa, dim="feature")  # dy: a DataArray of the result's dims
    assert g.dims == ("batch", "feature") and g.name == "h"
    np.testing.assert_allclose(g.values, fa.logsumexp.backward(r.values, x=x, axis=1), rtol=1e-14)
    g = fa.logsumexp.backward(np.ones(20), x=xa, dim="batch")  # dy: a plain array of the other dims
    np.testing.assert_allclose(g.values, fa.softmax(x, axis=0), rtol=1e-14)
    with pytest.raises(ValueError, match="dim 'time' is not one of the DataArray's dims"):
        fa.logsumexp(xa, dim="time")
    with pytest.raises(TypeError, match="give dim= or axis=, not both"):
        fa.logsumexp(xa, dim="batch", axis=0)
    with pytest.raises(TypeError, match="needs axis="):
        fa.logsumexp(xa)


def test_dataarrays_align_as_in_xarray_arithmetic():
    x, dy = _data()
    xa = _labelled(x)
    dya = _labelled(dy).isel(batch=slice(5, 25))  # a sub-range of the batch labels
    r = fa.relu.backward(dya, x=xa)
    assert list(r.batch.values) == list(range(5, 25))
    np.testing.assert_array_equal(r.values, fa.relu.backward(dy[5:25], x=x[5:25]))
    # a DataArray of fewer dims broadcasts by name
    row = xr.DataArray(dy[0], dims=("feature",), coords={"feature": xa.feature})
    r = fa.relu.backward(row, x=xa)
    np.testing.assert_array_equal(r.transpose("batch", "feature").values, fa.relu.backward(dy[0], x=x))


def test_graphs_pickle_and_compute_after():
    x, _ = _data()
    r = fa.softplus(da.from_array(x, chunks=10), beta=2.0)
    back = pickle.loads(pickle.dumps(r))
    np.testing.assert_array_equal(back.compute(), fa.softplus(x, beta=2.0))


def _first_call_seconds():
    """In a worker: the seconds its first sigmoid takes (the kernel loaded from the disk
    cache, or compiled)."""
    import time

    import fastact

    t = time.perf_counter()
    fastact.sigmoid(np.ones(8, np.float32), target="cpu")
    return time.perf_counter() - t


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_a_distributed_cluster_of_two_worker_processes(method):
    distributed = pytest.importorskip("distributed")
    x, dy = _data(np.float32, shape=(2000, 300), seed=5)
    dx, ddy = da.from_array(x, chunks=(250, 300)), da.from_array(dy, chunks=(250, 300))
    fa.sigmoid(x[:1])  # compiled, and so in the disk cache, before the workers start
    with dask.config.set({"distributed.worker.multiprocessing-method": method}), \
            distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                     dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        # each worker runs the kernel (loaded from the disk cache; what that costs is not
        # asserted here: timings are the benchmarks' business)
        loads = client.run(_first_call_seconds)
        assert len(loads) == 2 and all(t > 0 for t in loads.values())
        w = np.linspace(0.1, 0.3, 300).astype(np.float32)
        pdx, pdw = fa.prelu.backward(ddy, x=dx, weight=w, axis=-1)
        y, g, s, r, sp, px, pw = client.compute(
            [fa.sigmoid(dx), fa.sigmoid.backward(ddy, x=dx), fa.softmax(dx), fa.logsumexp(dx, axis=-1),
             fa.sparsemax(da.from_array(x, chunks=(250, 100))), pdx, pdw],  # the rows' candidates between workers
            sync=True)
    # The same graphs as on one machine, bit for bit (those against memory: the tests above).
    np.testing.assert_array_equal(sp, fa.sparsemax(da.from_array(x, chunks=(250, 100))).compute(scheduler="sync"))
    np.testing.assert_array_equal(px, fa.prelu.backward(dy, x=x, weight=w, axis=-1)[0])
    np.testing.assert_array_equal(pw, pdw.compute(scheduler="sync"))
    np.testing.assert_array_equal(r, fa.logsumexp(x, axis=-1))
    np.testing.assert_array_equal(y, fa.sigmoid(x))
    np.testing.assert_array_equal(g, fa.sigmoid.backward(dy, x=x))
    np.testing.assert_array_equal(s, fa.softmax(x))
