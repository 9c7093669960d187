"""Dask arrays and xarray DataArrays: results that stay lazy and labelled.

A call with a Dask array among its operands returns a Dask array: one task per chunk, each
calling fastact's own function on that chunk (NumPy in, NumPy out), so the chunks get the
same kernels, checks and bits as an in-memory call.  A DataArray in gives a DataArray out
with the operands' dims, coordinates, name and attrs; Dask-backed ones stay lazy.

Chunks run on the ``cpu`` target unless ``target=`` names another: Dask's scheduler
already runs one chunk per worker thread or process, and a multi-threaded kernel inside
each would oversubscribe the cores.  ``auto`` (the default) therefore means ``cpu`` here.

Row-wise functions need each row whole: along an axis of one chunk every chunk is computed
independently; along an axis split into several chunks, softmax, log_softmax and softmin
take two passes (the rows' maximum and sum of exponentials, per chunk and then across the
chunks, then an elementwise pass), never a silent rechunk of a long axis.  That path is
NumPy arithmetic in float64 (sums in extended precision) on the host, whatever ``target``:
within a few ULP of the kernels' result, not bitwise.

Nothing here imports Dask or xarray: objects are recognised by their type's module, and
the libraries are imported only when such an object is passed.
"""

from __future__ import annotations

import functools
import operator

import numpy as np

#: The values of ``target=`` with which a chunk may run, and what ``auto`` becomes.
_CHUNK_TARGET = {"auto": "cpu", "cpu": "cpu", "parallel": "parallel", "cuda": "cuda"}


def _kind(value) -> str | None:
    """'dask', 'xarray' or None, without importing either library."""
    mod = type(value).__module__
    if mod.startswith("dask.") and hasattr(value, "__dask_graph__"):
        return "dask"
    if mod.startswith("xarray.") and type(value).__name__ == "DataArray":
        return "xarray"
    return None


def kind_of(named, out=None) -> str | None:
    """'xarray' if any operand is a DataArray, else 'dask' if any is a Dask array, else None."""
    kinds = {_kind(v) for _, v in named}
    if out is not None:
        kinds.add(_kind(out))
    if "xarray" in kinds:
        return "xarray"
    if "dask" in kinds:
        return "dask"
    return None


def refuse(func, out, stream, accumulate):
    if out is not None or accumulate:
        raise TypeError(
            f"{func}(): out= is not supported with Dask arrays or DataArrays (they are immutable, "
            "and the result is computed later): use the returned array, or dask.array.store to "
            "write it into an existing one"
        )
    if stream is not None:
        raise ValueError(f"{func}(): stream= is for device arrays; Dask chunks run on the host")


# --- the per-chunk call: a module-level function and plain data, so that it pickles by name ---


def call(name, op, target, params, axis, *blocks):
    """fastact's ``op`` of function ``name`` on NumPy blocks (what each chunk task runs)."""
    import fastact

    fn = fastact.FUNCTIONS[name]
    kw = dict(params)
    if axis is not None:
        kw["axis"] = axis
    if op == "forward":
        return fn(blocks[0], target=target, **kw)
    if op in ("grad", "grad2"):
        return getattr(fn, op)(blocks[0], target=target, **kw)
    key = "x" if op == "backward_x" else "y"
    return fn.backward(blocks[0], target=target, **{key: blocks[1]}, **kw)


def _meta_call(name, op, params, axis, dtypes, ndim):
    """The result's dtype, from the call on empty arrays: the checks (parameters, dtypes)
    run now, before any graph is built."""
    empty = [np.empty((0,) * max(ndim, 1), dt) for dt in dtypes]
    r = call(name, op, "cpu", params, axis, *empty)
    return np.asarray(r).dtype


def _operands(named):
    """(values, dtypes): the operands as Dask arrays or NumPy arrays.  A Python scalar is
    weak, as in memory: it takes the dtype of the array operands."""
    weak = (bool, int, float)
    strong = [v.dtype for _, v in named if type(v) not in weak and hasattr(v, "dtype")]
    values, dtypes = [], []
    for _, v in named:
        if type(v) in weak and strong:
            v = np.asarray(v, dtype=np.result_type(*strong) if np.result_type(*strong).kind == "f" else None)
        elif _kind(v) != "dask":
            v = np.asarray(v)
        values.append(v)
        dtypes.append(np.dtype(v.dtype))
    return values, dtypes


def dask_call(spec, op, func, named, target, params, axis=None):
    """The lazy result of ``op`` on operands of which at least one is a Dask array."""
    import dask.array as da

    target = _CHUNK_TARGET[target]
    params = tuple(sorted(params.items()))
    from fastact._dispatch import _check_axis, broadcast_shape

    values, dtypes = _operands(named)
    ndim = len(broadcast_shape(func, named, values))
    if axis is not None:
        axis = _check_axis(func, axis, ndim)
    rdt = _meta_call(spec.name, op, params, -1 if axis is not None else None, dtypes, ndim)
    arrays = da.broadcast_arrays(*[v if _kind(v) == "dask" else da.asarray(v) for v in values])
    if len(arrays) > 1:
        _, arrays = da.core.unify_chunks(*sum(([a, tuple(range(ndim))] for a in arrays), []))
    meta = np.empty((0,) * ndim, rdt)
    if axis is None or ndim == 0 or len(arrays[0].chunks[axis]) == 1:
        fn = functools.partial(call, spec.name, op, target, params, axis)
        return da.map_blocks(fn, *arrays, dtype=rdt, meta=meta, token=f"fastact-{spec.name}-{op}")
    return _chunked_rows(spec.name, op, arrays, axis, rdt)


# --- row-wise functions along a chunked axis -----------------------------------------------------


def _exp_diff(a, b):
    """``exp(a - b)`` with the rounding error of ``a - b`` corrected to first order (the
    kernels' ``exp_diff``): the rounding would cost ``|a - b|`` ULP of the result."""
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    t = np.exp(d)
    c = t * err
    return t + np.where(np.isnan(c), 0.0, c)


# Block functions: module-level (they pickle by name), each under np.errstate, since inf and
# NaN in the rows are data here, not faults (the kernels raise no floating-point warnings).


def _max_block(x, axis, keepdims):
    with np.errstate(all="ignore"):
        return np.max(x, axis=axis, keepdims=keepdims)


def _sum_block(x, axis, keepdims):
    """Partial sums in extended precision (x87's 64-bit significand where NumPy has it), so
    that the float64 row sum rounds about once however the chunks split it."""
    with np.errstate(all="ignore"):
        return np.sum(x, axis=axis, keepdims=keepdims, dtype=np.longdouble)


def _terms_block(k, m):
    with np.errstate(all="ignore"):
        return np.where(k == m, 1.0, _exp_diff(k, m))


def _no_limit(m, s):
    """Rows without a limit: all -inf, several +inf (a NaN is NaN throughout anyway)."""
    return (m == -np.inf) | ((m == np.inf) & (s != 1.0))


def _softmax_block(t, m, s):
    with np.errstate(all="ignore"):
        return np.where(_no_limit(m, s), np.nan, t / s)


def _log_softmax_block(k, m, s):
    with np.errstate(all="ignore"):
        return np.where(_no_limit(m, s), np.nan, np.where(k == m, 0.0, k - m) - np.log(s))


def _product_block(a, b):
    with np.errstate(all="ignore"):
        return a * b


def _softmax_backward_block(dy, y, s, sign):
    with np.errstate(all="ignore"):
        return sign * (y * (dy - s))


def _log_softmax_backward_block(dy, y, s):
    with np.errstate(all="ignore"):
        return dy - np.exp(y) * s


def _reduce(x, block, axis):
    import dask.array as da

    dt = np.longdouble if block is _sum_block else np.float64
    r = da.reduction(x, block, block, axis=axis, keepdims=True, dtype=dt, name="fastact-" + block.__name__.strip("_"))
    return r.astype(np.float64)


def _forward_rows(name, x, axis):
    """softmax, log_softmax or softmin of float64 ``x`` along a chunked ``axis``: the row
    maximum and the sum of exponentials (tree reductions, chunk by chunk and then across
    the chunks), then one elementwise pass.  Special rows as in the kernels: a row with one
    +inf gives 1 there (log: 0) and 0 elsewhere (log: -inf); a row of -inf, with several
    +inf or with a NaN gives NaN."""
    import dask.array as da

    f64 = np.float64
    k = -x if name == "softmin" else x
    m = _reduce(k, _max_block, axis)
    t = da.map_blocks(_terms_block, k, m, dtype=f64)
    s = _reduce(t, _sum_block, axis)
    if name == "log_softmax":
        return da.map_blocks(_log_softmax_block, k, m, s, dtype=f64)
    return da.map_blocks(_softmax_block, t, m, s, dtype=f64)


def _difference_block(x, m):
    with np.errstate(all="ignore"):
        return x - m


def _sparsemax_candidates(d):
    """One chunk's candidates for the support, row by row: the entries of ``d = x - m``
    above -1 (the support lies among them: the threshold is at least -1), and NaN ones
    (``m`` NaN or infinite), as (counts per row, their values in row order)."""
    with np.errstate(all="ignore"):
        keep = ~(d <= -1.0)
    rows = keep.reshape(-1, keep.shape[-1])
    return rows.sum(axis=1), d.reshape(rows.shape)[rows]


def _thresholds(padded):
    """The sort-based thresholds of rows of candidates (extended precision, padded with
    -inf, which never enters a support): the support is the largest k with
    1 + k z_(k) > the sum of the k largest."""
    width = padded.shape[1]
    z = np.sort(padded, axis=1)[:, ::-1]
    with np.errstate(invalid="ignore"):
        sums = np.cumsum(z, axis=1)
        inside = 1 + np.arange(1, width + 1) * z > sums
    size = width - np.argmax(inside[:, ::-1], axis=1)
    return ((sums[np.arange(z.shape[0]), size - 1] - 1) / size).astype(np.float64)


def _sparsemax_tau(parts, m):
    """The rows' thresholds (relative to their maxima) from their chunks' candidates (a
    list, one per chunk along the row): all rows at once, padded to the longest, unless
    that would be much more than the candidates themselves (then row by row).  A row
    whose maximum is +inf gets 0 where it holds one +inf (the limit: 1 there, 0
    elsewhere) and NaN where it holds several; a NaN or -inf maximum gives NaN."""
    mr = m.reshape(-1)
    rows = np.concatenate([np.repeat(np.arange(mr.size), p[0]) for p in parts])
    values = np.concatenate([p[1] for p in parts])
    counts = np.bincount(rows, minlength=mr.size)
    finite = np.isfinite(mr)
    tau = np.where(finite, 0.0, np.where((mr == np.inf) & (counts == 1), 0.0, np.nan))
    keep = finite[rows]
    rows, values = rows[keep], values[keep].astype(np.longdouble)
    if not rows.size:
        return tau.reshape(m.shape)
    order = np.argsort(rows, kind="stable")
    rows, values = rows[order], values[order]
    n = np.where(finite, counts, 0)
    first = np.cumsum(n) - n
    width = int(n.max())
    if mr.size * width <= 16 * rows.size + 4096:
        padded = np.full((mr.size, width), -np.inf, np.longdouble)
        padded[rows, np.arange(rows.size) - first[rows]] = values
        tau = np.where(finite, _thresholds(padded), tau)
    else:  # a few rows with many candidates: row by row
        for i in np.flatnonzero(finite):
            tau[i] = _thresholds(values[first[i]:first[i] + n[i]].reshape(1, -1))[0]
    return tau.reshape(m.shape)


def _sparsemax_block(x, m, tau):
    with np.errstate(all="ignore"):
        t = (x - m) - tau
        y = np.where(t > 0.0, t, np.where(t <= 0.0, 0.0, t))
        return np.where(m == np.inf, np.where(np.isnan(tau), np.nan, np.where(x == np.inf, 1.0, 0.0)), y)


def _support_block(y):
    with np.errstate(all="ignore"):
        return np.where(y > 0.0, 1.0, np.where(y <= 0.0, 0.0, y))


def _sparsemax_backward_block(dy, s, ds, k):
    with np.errstate(all="ignore"):
        return s * (dy - ds / k)


def _sparsemax_rows(x, axis):
    """sparsemax of float64 ``x`` along a chunked ``axis``, without gathering the row:
    its maximum (a tree reduction), each chunk's candidates for the support (the entries
    within 1 of the maximum: usually few), the threshold of each row from its candidates
    (one task per block of rows), then one elementwise pass."""
    import dask.array as da

    m = _reduce(x, _max_block, axis)
    nd = x.ndim
    xl, ml = da.moveaxis(x, axis, -1), da.moveaxis(m, axis, -1)
    cand = da.map_blocks(_sparsemax_candidates, da.map_blocks(_difference_block, xl, ml, dtype=np.float64),
                         dtype=object, meta=np.empty((0,) * nd, object))
    lead = "abcdefghijklmnopqrstuvwxy"[: nd - 1]
    tau = da.blockwise(_sparsemax_tau, lead, cand, lead + "z", ml[..., 0], lead, dtype=np.float64,
                       concatenate=False, meta=np.empty((0,) * (nd - 1)))
    return da.map_blocks(_sparsemax_block, x, m, da.moveaxis(tau[..., None], -1, axis), dtype=np.float64)


def _chunked_rows(name, op, arrays, axis, rdt):
    """The row-wise ``op`` along an axis of several chunks, in float64 (see _forward_rows
    and _sparsemax_rows)."""
    import dask.array as da

    f64 = np.float64
    if name == "sparsemax":
        if op in ("forward", "backward_x"):
            y = _sparsemax_rows(arrays[-1].astype(f64), axis)
            if op == "forward":
                return y.astype(rdt)
        else:
            y = arrays[1].astype(f64)
        dy = arrays[0].astype(f64)
        s = da.map_blocks(_support_block, y, dtype=f64)
        ds = _reduce(da.map_blocks(_product_block, dy, s, dtype=f64), _sum_block, axis)
        k = _reduce(s, _sum_block, axis)
        return da.map_blocks(_sparsemax_backward_block, dy, s, ds, k, dtype=f64).astype(rdt)
    if op in ("forward", "backward_x"):
        y = _forward_rows(name, arrays[-1].astype(f64), axis)
        if op == "forward":
            return y.astype(rdt)
    else:
        y = arrays[1].astype(f64)
    dy = arrays[0].astype(f64)
    if name == "log_softmax":
        s = _reduce(dy, _sum_block, axis)
        dx = da.map_blocks(_log_softmax_backward_block, dy, y, s, dtype=f64)
    else:
        s = _reduce(da.map_blocks(_product_block, dy, y, dtype=f64), _sum_block, axis)
        dx = da.map_blocks(_softmax_backward_block, dy, y, s, -1.0 if name == "softmin" else 1.0, dtype=f64)
    return dx.astype(rdt)


# --- xarray ------------------------------------------------------------------------------------


def xarray_call(call, func, named, dim=None, axis=None):
    """``call(values, axis)`` on the DataArrays' data (aligned and broadcast as in xarray's
    arithmetic), the result wrapped as a DataArray with their dims, coordinates and attrs."""
    import xarray as xr

    das = [v for _, v in named if _kind(v) == "xarray"]
    join = xr.get_options().get("arithmetic_join", "inner")
    aligned = xr.align(*das, join=join)
    if len(aligned) > 1:
        aligned = xr.broadcast(*aligned)
    template = aligned[0]
    it = iter(aligned)
    values = [next(it).transpose(*template.dims).data if _kind(v) == "xarray" else v for _, v in named]
    if dim is not None:
        if axis not in (None, -1):
            raise TypeError(f"{func}(): give dim= or axis=, not both")
        if dim not in template.dims:
            raise ValueError(f"{func}(): dim {dim!r} is not one of the DataArray's dims {template.dims}")
        axis = template.dims.index(dim)
    result = call(values, axis)
    return xr.DataArray(result, coords=template.coords, dims=template.dims, name=template.name,
                        attrs=dict(template.attrs))


# --- reductions (logsumexp) -------------------------------------------------------------------


def reduce_chunk(name, op, target, axes, keepdims, *blocks):
    """fastact's reduction ``op`` on NumPy blocks whose reduced axes are whole."""
    import fastact

    fn = fastact.FUNCTIONS[name]
    if op == "forward":
        return fn(blocks[0], axis=axes, keepdims=keepdims, target=target)
    return fn.backward(blocks[0], x=blocks[1], axis=axes, keepdims=True, target=target)


def reduction_call(spec, op, func, named, target, axis, keepdims, dim, no_axis):
    """The lazy result of a reduction's ``op`` with a Dask array or a DataArray among the
    operands."""
    from fastact._dispatch import _missing_axis

    if kind_of(named) == "xarray":
        return _xarray_reduction(spec, op, func, named, target, axis, keepdims, dim, no_axis)
    if axis is no_axis:
        raise TypeError(_missing_axis(func))
    return _dask_reduction(spec, op, func, named, target, axis, keepdims)


def _dask_reduction(spec, op, func, named, target, axis, keepdims):
    import dask.array as da

    from fastact._dispatch import _broadcasts_to, reduced_shapes, reduction_axes

    target = _CHUNK_TARGET[target]
    values, dtypes = _operands(named)
    x = values[-1] if _kind(values[-1]) == "dask" else da.asarray(values[-1])
    if x.ndim == 0:
        x = x.reshape(1)
    axes = reduction_axes(func, axis, x.ndim)
    shape, kept = reduced_shapes(x.shape, axes, keepdims)
    # The checks and the result's dtype, from the call on one-element arrays.
    small = [np.ones((1,) * x.ndim, dt) for dt in dtypes]
    rdt = np.asarray(reduce_chunk(spec.name, op, "cpu", axes, True, *small)).dtype
    f64 = np.float64
    whole = all(len(x.chunks[k]) == 1 for k in axes)
    if op == "forward":
        if whole:
            chunks = tuple((1,) if k in axes else c for k, c in enumerate(x.chunks))
            r = da.map_blocks(functools.partial(reduce_chunk, spec.name, op, target, axes, True), x, chunks=chunks,
                              dtype=rdt, meta=np.empty((0,) * x.ndim, rdt), token=f"fastact-{spec.name}")
        else:
            m = _reduce(x.astype(f64), _max_block, axes)
            s = _reduce(da.map_blocks(_terms_block, x.astype(f64), m, dtype=f64), _sum_block, axes)
            r = da.map_blocks(_logsumexp_block, m, s, dtype=f64).astype(rdt)
        return r if keepdims else r.squeeze(axis=axes)
    dy = values[0] if _kind(values[0]) == "dask" else da.asarray(values[0])
    if not _broadcasts_to(dy.shape, shape):
        raise ValueError(
            f"{func}(): dy must have the shape of the forward result, {shape} (keepdims={keepdims}), "
            f"or broadcast to it; got {dy.shape}"
        )
    dyk = da.broadcast_to(dy, shape).reshape(kept)
    dyk = dyk.rechunk(tuple((1,) if k in axes else c for k, c in enumerate(x.chunks)))
    if whole:
        return da.map_blocks(functools.partial(reduce_chunk, spec.name, op, target, axes, True), dyk, x,
                             chunks=x.chunks, dtype=rdt, meta=np.empty((0,) * x.ndim, rdt),
                             token=f"fastact-{spec.name}-backward")
    x64 = x.astype(f64)
    m = _reduce(x64, _max_block, axes)
    t = da.map_blocks(_terms_block, x64, m, dtype=f64)
    s = _reduce(t, _sum_block, axes)
    return da.map_blocks(_scaled_softmax_block, t, m, s, dyk.astype(f64), dtype=f64).astype(rdt)


def _logsumexp_block(m, s):
    with np.errstate(all="ignore"):
        return m + np.log(s)


def _scaled_softmax_block(t, m, s, dy):  # t first: the result has its chunks
    return dy * _softmax_block(t, m, s)


def _xarray_reduction(spec, op, func, named, target, axis, keepdims, dim, no_axis):
    """A reduction of DataArrays over the dims ``dim`` (a name or several; or ``axis=``
    by position): the result keeps the other dims, their coordinates and the attrs."""
    import xarray as xr

    import fastact
    from fastact._dispatch import _missing_axis, reduction_axes

    fn = fastact.FUNCTIONS[spec.name]
    x = named[-1][1]
    if _kind(x) != "xarray":
        raise TypeError(f"{func}(): x must be a DataArray when dy is one")
    if dim is not None and axis is not no_axis:
        raise TypeError(f"{func}(): give dim= or axis=, not both")
    if dim is None:
        if axis is no_axis:
            raise TypeError(_missing_axis(func))
        dims = tuple(x.dims[k] for k in reduction_axes(func, axis, x.ndim)) if x.ndim else ()
    else:
        dims = (dim,) if isinstance(dim, str) else tuple(dim)
        missing = [d for d in dims if d not in x.dims]
        if missing:
            raise ValueError(f"{func}(): dim {missing[0]!r} is not one of the DataArray's dims {x.dims}")
    axes = tuple(x.dims.index(d) for d in dims)
    if op == "forward":
        def reduce(data, axis=None, keepdims=False):
            return fn(data, axis=axis, keepdims=keepdims, target=target)

        return x.reduce(reduce, dim=list(dims), keepdims=keepdims, keep_attrs=True)
    dy = named[0][1]
    kept = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    if _kind(dy) == "xarray":
        rest = [d for d in x.dims if d not in dims]
        join = xr.get_options().get("arithmetic_join", "inner")
        dy, x = xr.align(dy, x, join=join, exclude=list(dims))
        kept = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
        dy_data = xr.broadcast(dy, x.isel({d: 0 for d in dims}, drop=True))[0].transpose(*rest).data.reshape(kept)
    elif keepdims:
        dy_data = dy
    else:  # dy over the other dims, in x's order: their axes put back with length 1
        reduced = tuple(n for k, n in enumerate(x.shape) if k not in axes)
        dy_data = (np.broadcast_to(dy, reduced) if _kind(dy) != "dask" else dy.broadcast_to(reduced)).reshape(kept)
    data = fn.backward(dy_data, x=x.data, axis=axes, keepdims=True, target=target)
    return xr.DataArray(data, coords=x.coords, dims=x.dims, name=x.name, attrs=dict(x.attrs))


# --- gated units (glu) -------------------------------------------------------------------------


def gated_chunk(name, op, target, axis, params, *blocks):
    """fastact's gated ``op`` on NumPy blocks holding the whole split axis."""
    import fastact

    fn = fastact.FUNCTIONS[name]
    if op == "forward":
        return fn(blocks[0], axis=axis, target=target, **dict(params))
    return fn.backward(blocks[0], x=blocks[1], axis=axis, target=target, **dict(params))


def gated_halves_chunk(name, op, target, axis, params, *blocks):
    """The same on the two halves given apart (a split axis of several chunks): the
    backward result is stacked on a new first axis, [dx_a, dx_b]."""
    x = np.concatenate(blocks[-2:], axis=axis)
    r = gated_chunk(name, op, target, axis, params, *blocks[:-2], x)
    if op == "forward":
        return r
    h = blocks[-1].shape[axis]
    return np.stack([np.take(r, np.arange(h), axis=axis), np.take(r, np.arange(h, 2 * h), axis=axis)])


def gated_call(spec, op, func, named, target, axis, dim, params):
    """The lazy result of a gated unit's ``op`` with a Dask array or a DataArray among the
    operands."""
    if kind_of(named) == "xarray":
        def call(values, ax):
            inner = tuple((n, v) for (n, _), v in zip(named, values, strict=True))
            return gated_call(spec, op, func, inner, target, ax, None, params)

        x = named[-1][1]
        if dim is not None:
            if axis not in (None, -1):
                raise TypeError(f"{func}(): give dim= or axis=, not both")
            if dim not in x.dims:
                raise ValueError(f"{func}(): dim {dim!r} is not one of the DataArray's dims {x.dims}")
            axis = x.dims.index(dim)
        return _xarray_gated(call, func, named, axis)
    import dask.array as da

    from fastact._dispatch import _broadcasts_to, gated_halves

    target = _CHUNK_TARGET[target]
    params = tuple(sorted(params.items()))
    values, dtypes = _operands(named)
    x = values[-1] if _kind(values[-1]) == "dask" else da.asarray(values[-1])
    axis, half = gated_halves(func, axis, x.shape)
    small = [np.ones(tuple(2 if k == axis else 1 for k in range(x.ndim)), dt) for dt in dtypes]
    if op == "backward_x":
        small[0] = np.ones(tuple(1 for _ in range(x.ndim)), dtypes[0])
    rdt = np.asarray(gated_chunk(spec.name, op, "cpu", axis, params, *small)).dtype
    meta = np.empty((0,) * x.ndim, rdt)
    h = half[axis]
    dy = None
    if op == "backward_x":
        dy = values[0] if _kind(values[0]) == "dask" else da.asarray(values[0])
        if not _broadcasts_to(dy.shape, half):
            raise ValueError(f"{func}(): dy must have the shape of the forward result, {half}, or broadcast to it; "
                             f"got {dy.shape}")
        dy = da.broadcast_to(dy, half)
    idx = tuple(range(x.ndim))
    if len(x.chunks[axis]) == 1:  # the split axis whole in each chunk: chunk by chunk
        fn = functools.partial(gated_chunk, spec.name, op, target, axis, params)
        if op == "forward":
            chunks = tuple((h,) if k == axis else c for k, c in enumerate(x.chunks))
            return da.map_blocks(fn, x, chunks=chunks, dtype=rdt, meta=meta, token=f"fastact-{spec.name}")
        # dy's split axis (h) and x's (2 h) are different axes to blockwise: -1 for dy's.
        dy = dy.rechunk(tuple((h,) if k == axis else c for k, c in enumerate(x.chunks)))
        dy_idx = tuple(-1 if k == axis else k for k in idx)
        return da.blockwise(fn, idx, dy, dy_idx, x, idx, concatenate=True, dtype=rdt, meta=meta,
                            token=f"fastact-{spec.name}-backward")
    a = x[tuple(slice(0, h) if k == axis else slice(None) for k in idx)]
    b = x[tuple(slice(h, None) if k == axis else slice(None) for k in idx)]
    fn = functools.partial(gated_halves_chunk, spec.name, op, target, axis, params)
    if op == "forward":
        _, (a, b) = da.core.unify_chunks(a, idx, b, idx)
        return da.map_blocks(fn, a, b, dtype=rdt, meta=meta, token=f"fastact-{spec.name}-halves")
    _, (dy, a, b) = da.core.unify_chunks(dy, idx, a, idx, b, idx)
    stacked = da.map_blocks(fn, dy, a, b, new_axis=0, chunks=((2,),) + a.chunks, dtype=rdt,
                            meta=np.empty((0,) * (x.ndim + 1), rdt), token=f"fastact-{spec.name}-halves-backward")
    return da.concatenate([stacked[0], stacked[1]], axis=axis)


def _xarray_gated(call, func, named, axis):
    """A gated unit of DataArrays: the split dim keeps its name; its coordinate, which the
    halves do not share, is dropped from a forward result."""
    import xarray as xr

    das = [v for _, v in named if _kind(v) == "xarray"]
    x = named[-1][1]
    axis = axis % max(x.ndim, 1)
    dim = x.dims[axis]
    if len(das) > 1:
        join = xr.get_options().get("arithmetic_join", "inner")
        aligned = xr.align(*das, join=join, exclude=[dim])
        lookup = {id(d): a for d, a in zip(das, aligned)}
        named = tuple((n, lookup.get(id(v), v)) for n, v in named)
        x = named[-1][1]
    values = []
    for n, v in named:
        if _kind(v) == "xarray":
            v = v.transpose(*[d for d in x.dims if d in v.dims]).data if n != "x" else v.data
        values.append(v)
    result = call(values, axis)
    if len(result.shape) and result.shape[axis] == x.shape[axis]:  # backward: x's shape
        return xr.DataArray(result, coords=x.coords, dims=x.dims, name=x.name, attrs=dict(x.attrs))
    coords = {k: c for k, c in x.coords.items() if dim not in c.dims}
    return xr.DataArray(result, coords=coords, dims=x.dims, name=x.name, attrs=dict(x.attrs))


# --- activations with a weight array (prelu; rrelu's slopes) ----------------------------------


def weighted_chunk(name, op, target, axis, params, per_element, *blocks):
    """fastact's ``op`` of function ``name`` on one chunk: ``x`` and its weight block
    (``dy`` first for the backward passes); ``backward_pair`` gives the chunk's ``dx`` and
    its partial weight gradient in float64, in the weight's broadcast shape."""
    import fastact

    fn = fastact.FUNCTIONS[name]
    kw = dict(params)
    *rest, w = blocks
    if per_element:
        kw["slopes"] = w
    else:
        kw["weight"] = w.reshape(-1)
        kw["axis"] = axis
    if op in ("forward", "grad", "grad2"):
        return (fn if op == "forward" else getattr(fn, op))(rest[0], target=target, **kw)
    dy, x = rest
    if op == "backward_x":
        return fn.backward(dy, x=x, target=target, **kw)
    dx, dw = fn.backward(dy, x=x, target=target, **kw)
    return dx, np.asarray(dw, np.float64).reshape(w.shape)


def weighted_call(spec, op, func, named, target, axis, dim, params, per_element):
    """The lazy result of an activation with a weight array, with a Dask array or a
    DataArray among the operands: chunk by chunk, each chunk with its channels' weights;
    ``backward_xw`` gives ``(dx, dweight)``, the weight's gradient the sum of the chunks'
    (added in float64)."""
    if kind_of(named) == "xarray":
        return _xarray_weighted(spec, op, func, named, target, axis, dim, params, per_element)
    if dim is not None:
        raise TypeError(f"{func}(): dim= names a dimension of an xarray DataArray; for arrays, use axis=")
    import dask.array as da

    from fastact._dispatch import _broadcasts_to, weight_layout

    target = _CHUNK_TARGET[target]
    params = tuple(sorted(params.items()))
    values, dtypes = _operands(named)
    x = values[-2] if _kind(values[-2]) == "dask" else da.asarray(values[-2])
    w = values[-1]
    nd = x.ndim
    name = named_callable(spec, per_element)
    if per_element:
        if not _broadcasts_to(tuple(w.shape), x.shape):
            raise ValueError(f"{func}(): slopes must have x's shape {x.shape} (one per element), got {tuple(w.shape)}")
        wb = da.broadcast_to(w if _kind(w) == "dask" else da.asarray(w), x.shape)
        channel = None
    else:
        _, channels, _ = weight_layout(func, tuple(w.shape), x.shape, axis)
        channel = None if channels == 1 else (axis % nd)
        bshape = tuple(channels if k == channel else 1 for k in range(nd))
        wb = (w if _kind(w) == "dask" else da.asarray(w)).reshape(bshape)
    rdt = np.result_type(*dtypes)
    rdt = np.dtype(np.float64) if rdt.kind != "f" else rdt
    # The checks of an in-memory call, on one element of each operand, before any graph.
    small = [np.ones((1,) * nd, dt) for dt in dtypes]
    weighted_chunk(name, op, "cpu", axis, params, per_element, *small)
    backward = op in ("backward_x", "backward_xw")
    if backward:  # dy broadcast to x's shape, in common chunks with x
        if not _broadcasts_to(tuple(values[0].shape), x.shape):
            raise ValueError(
                f"{func}(): dy must have x's shape {x.shape}, or broadcast to it; got {tuple(values[0].shape)}"
            )
        dy = da.broadcast_to(values[0] if _kind(values[0]) == "dask" else da.asarray(values[0]), x.shape)
        idx = tuple(range(nd))
        _, (dy, x) = da.core.unify_chunks(dy, idx, x, idx)
    # The weight in x's chunks along the channel axis (or all axes, one per element).
    wb = wb.rechunk(x.chunks if per_element else tuple(x.chunks[k] if k == channel else (1,) for k in range(nd)))
    operands = [dy, x, wb] if backward else [x, wb]
    if nd == 0:
        operands = [o.reshape(1) for o in operands]
    if op != "backward_xw":
        fn = functools.partial(weighted_chunk, name, op, target, axis, params, per_element)
        dx = da.map_blocks(fn, *operands, dtype=rdt, meta=np.empty((0,) * max(nd, 1), rdt),
                           token=f"fastact-{name}-{op}")
        return dx.reshape(()) if nd == 0 else dx
    # One pass per chunk gives its dx and its partial weight gradient (in the weight's
    # broadcast shape) as a pair; dx and the partial gradients are the pairs' halves, so
    # that computing both computes each chunk once.  The partial gradients are summed.
    fn = functools.partial(weighted_chunk, name, "backward_pair", target, axis, params, per_element)
    pairs = da.map_blocks(fn, *operands, dtype=object, meta=np.empty((0,) * max(nd, 1), object),
                          token=f"fastact-{name}-backward-pair")
    dx = pairs.map_blocks(operator.itemgetter(0), dtype=rdt, meta=np.empty((0,) * max(nd, 1), rdt),
                          token=f"fastact-{name}-backward-dx")
    if nd == 0:
        dx = dx.reshape(())
    grid = operands[1].chunks
    chunks = tuple(c if k == channel else (1,) * len(c) for k, c in enumerate(grid))
    parts = pairs.map_blocks(operator.itemgetter(1), chunks=chunks, dtype=np.float64,
                             meta=np.empty((0,) * max(nd, 1)), token=f"fastact-{name}-backward-w")
    others = tuple(k for k in range(max(nd, 1)) if k != channel)
    dw = parts.sum(axis=others).astype(rdt).reshape(tuple(w.shape))
    return dx, dw


def named_callable(spec, per_element):
    """The public function whose chunks run: ``rrelu`` for its slopes, else the weighted one."""
    if per_element:
        from fastact._spec import REGISTRY

        return next(n for n, s in REGISTRY.items() if getattr(s, "sampled", "") == spec.name)
    return spec.name


def _xarray_weighted(spec, op, func, named, target, axis, dim, params, per_element):
    """An activation with a weight array on DataArrays: ``dim=`` names the channel dim; a
    weight DataArray must lie along it, with the same coordinate where both have one;
    results keep ``x``'s dims, coordinates and attrs (the weight's gradient: the weight's,
    where it is a DataArray)."""
    import xarray as xr

    x = named[-2][1]
    w = named[-1][1]
    if not isinstance(x, xr.DataArray):
        raise TypeError(f"{func}(): with a DataArray weight, x must be a DataArray too, got {type(x).__name__}")
    if dim is not None:
        if axis not in (None, 1):
            raise TypeError(f"{func}(): give dim= or axis=, not both")
        if dim not in x.dims:
            raise ValueError(f"{func}(): dim {dim!r} is not one of the DataArray's dims {x.dims}")
        axis = x.dims.index(dim)
    if isinstance(w, xr.DataArray) and not per_element:
        if w.ndim == 1 and w.size > 1:
            cdim = x.dims[axis % x.ndim]
            if w.dims != (cdim,):
                raise ValueError(f"{func}(): the weight's dim {w.dims} must be x's channel dim {cdim!r}")
            if cdim in w.coords and cdim in x.coords and not w.indexes[cdim].equals(x.indexes[cdim]):
                raise ValueError(f"{func}(): the weight's {cdim!r} coordinate differs from x's")
        wvalue = w.data
    elif isinstance(w, xr.DataArray):
        wvalue = w.transpose(*x.dims).data
    else:
        wvalue = w
    values = [(n, v.transpose(*x.dims).data if isinstance(v, xr.DataArray) else v) for n, v in named[:-2]]
    inner = (*values, ("x", x.data), ("weight" if not per_element else "slopes", wvalue))
    if any(_kind(v) == "dask" for _, v in inner):
        r = weighted_call(spec, op, func, inner, target, axis, None, dict(params), per_element)
    else:
        from fastact._dispatch import run_weighted

        r = run_weighted(spec, op, func, inner, axis, (None, None) if op == "backward_xw" else None,
                         target, None, None, dict(params), tuple(spec.kernel_defaults.values()) if not params
                         else tuple(_checked(spec, func, params)), per_element=per_element)

    def wrap(a):
        return xr.DataArray(a, coords=x.coords, dims=x.dims, name=x.name, attrs=dict(x.attrs))

    if op != "backward_xw":
        return wrap(r)
    dx, dw = r
    if isinstance(w, xr.DataArray):
        dw = xr.DataArray(dw, coords=w.coords, dims=w.dims, name=w.name, attrs=dict(w.attrs))
    return wrap(dx), dw


def _checked(spec, func, params):
    from fastact._spec import check_params

    return check_params(spec, func, params).values()
