"""``python -m fastact apply``: an activation over an array file larger than memory.

    python -m fastact apply FUNC IN OUT [--op forward|grad|grad2] [--param k=v ...]
                                        [--axis A] [--chunk-mb N] [--target T] [--quiet]

``IN`` is a ``.npy`` file (memory-mapped) or a Zarr array (a directory); ``OUT`` is written
in the same format.  The array streams through Dask chunk by chunk (about ``--chunk-mb``
megabytes each, rows kept whole for row-wise functions), with Dask's progress bar, so only
a few chunks are in memory at a time.  The result is written under a temporary name next
to ``OUT`` and renamed at the end: an interrupted run leaves no half-written ``OUT``.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import math
import os
import shutil
import sys
from pathlib import Path

import numpy as np


def _param(text: str):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param takes key=value, got {text!r}")
    try:
        value = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        pass  # a string, e.g. approximate=tanh
    return key, value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastact", description="fastact's command-line tools.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("apply", help="apply an activation to an array file, chunk by chunk",
                       description=__doc__.split("\n\n")[2].replace("\n", " "))
    a.add_argument("function", help="e.g. relu, gelu, softmax")
    a.add_argument("src", help="input: a .npy file or a Zarr array")
    a.add_argument("dst", help="output, in the input's format")
    a.add_argument("--op", default="forward", choices=("forward", "grad", "grad2"),
                   help="the function (default), its derivative or its second derivative")
    a.add_argument("--param", action="append", type=_param, default=[], metavar="KEY=VALUE",
                   help="a parameter of the function, e.g. --param negative_slope=0.2")
    a.add_argument("--axis", type=int, default=None, help="the axis of a row-wise function (default -1)")
    a.add_argument("--chunk-mb", type=float, default=64.0, help="megabytes per chunk (default 64)")
    a.add_argument("--target", default="cpu", help="the target each chunk runs on (default cpu)")
    a.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _chunks(shape, itemsize, chunk_mb, keep_whole):
    """Chunks of about ``chunk_mb`` MB: split along the leading axes, keeping the axes in
    ``keep_whole`` (a row-wise function's axis) and the trailing ones as whole as the size
    allows."""
    budget = max(1, int(chunk_mb * 2**20) // itemsize)
    chunks = list(shape)
    inner = math.prod(max(shape[k], 1) for k in keep_whole)
    # from the last axis inwards, whole while the chunk fits; the first that does not is
    # split, and the axes before it are taken one index at a time
    for k in range(len(shape) - 1, -1, -1):
        if k in keep_whole:
            continue
        if inner * max(shape[k], 1) <= budget:
            inner *= max(shape[k], 1)
            continue
        chunks[k] = max(1, budget // inner)
        for j in range(k):
            if j not in keep_whole:
                chunks[j] = 1
        break
    return tuple(chunks)


class _Reader:
    """A memory-mapped array as Dask reads it: each chunk copied out when its task runs
    (``da.from_array`` would copy a NumPy array, memory map included, whole)."""

    def __init__(self, a):
        self.a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim

    def __getitem__(self, index):
        return np.array(self.a[index])


def _temporary(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.fastact-partial-{os.getpid()}")


def apply(function, src, dst, *, op="forward", params=None, axis=None, chunk_mb=64.0, target="cpu",
          progress=True):
    """Compute ``function`` (or its ``op``) over the array in ``src`` into ``dst``."""
    import dask.array as da

    import fastact

    fn = fastact.FUNCTIONS.get(function)
    if fn is None:
        raise SystemExit(f"fastact apply: unknown function {function!r}; one of {', '.join(fastact.FUNCTIONS)}")
    params = dict(params or {})
    if function in fastact.WEIGHTED:
        raise SystemExit(f"fastact apply: {function} takes a weight array, which the command line does not pass; "
                         f"call fastact.{function}(x, weight) on a Dask array (fastact.{function}(da.from_zarr(...), w))")
    rowwise = function in fastact.ROWWISE or function in fastact.REDUCTIONS or function in fastact.GATED
    if rowwise and op != "forward":
        raise SystemExit(f"fastact apply: {function} is {'a gated unit' if function in fastact.GATED else 'row-wise'}: "
                         "only --op forward")
    if function in fastact.REDUCTIONS and axis is None:
        raise SystemExit(f"fastact apply: {function} is a reduction: give the axis to reduce, --axis A")
    if not rowwise and axis is not None:
        raise SystemExit(f"fastact apply: {function} is elementwise: it takes no --axis")
    src, dst = Path(src), Path(dst)
    zarr_format = src.is_dir()
    if zarr_format:
        import zarr

        source = zarr.open_array(str(src), mode="r")
    else:
        if src.suffix != ".npy":
            raise SystemExit(f"fastact apply: {src} is neither a .npy file nor a Zarr array (a directory)")
        source = _Reader(np.load(src, mmap_mode="r"))
    shape, dtype = tuple(source.shape), np.dtype(source.dtype)
    ax = None
    if rowwise:
        ax = (-1 if axis is None else axis) % max(len(shape), 1)
    chunks = _chunks(shape, dtype.itemsize, chunk_mb, {ax} if ax is not None else set())
    x = da.from_array(source, chunks=chunks, lock=False, asarray=True, name=f"fastact-read-{src.name}")
    kw = dict(params)
    if rowwise:
        y = fn(x, axis=ax, target=target, **kw)
    else:
        y = getattr(fn, op)(x, target=target, **kw) if op != "forward" else fn(x, target=target, **kw)

    tmp = _temporary(dst)
    try:
        if zarr_format:
            target_array = zarr.open_array(str(tmp), mode="w", shape=y.shape, chunks=y.chunksize, dtype=y.dtype)
        else:
            target_array = np.lib.format.open_memmap(tmp, mode="w+", dtype=y.dtype, shape=y.shape)
        with _progress_bar() if progress else contextlib.nullcontext():
            da.store(y, target_array, lock=False)
        if not zarr_format:
            target_array.flush()
            del target_array
        if dst.is_dir() and zarr_format:
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise
    return dst


def _progress_bar():
    from dask.diagnostics import ProgressBar

    return ProgressBar(out=sys.stderr)


def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if not math.isfinite(a.chunk_mb) or a.chunk_mb <= 0:
        raise SystemExit("fastact apply: --chunk-mb must be a positive number")
    apply(a.function, a.src, a.dst, op=a.op, params=dict(a.param), axis=a.axis, chunk_mb=a.chunk_mb,
          target=a.target, progress=not a.quiet)
    return 0
