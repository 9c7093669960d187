"""Dask arrays and the out-of-core command against in-memory fastact, NumPy's own Dask path
and a plain copy of the file.

* ``dask``: relu and sigmoid of a float32 Dask array in 64 MB chunks, stored into a
  preallocated array with the threaded scheduler (``da.store``: no concatenation), against
  fastact on the same data as one NumPy array (``target="parallel"``, into ``out`` and into
  a new array) and
  against the NumPy expressions on the Dask array (``da.maximum(x, 0)``,
  ``1 / (1 + da.exp(-x))``);
* ``file``: ``python -m fastact apply``'s function (:func:`fastact._cli.apply`) from one
  ``.npy`` file to another, against reading the memory-mapped input and writing it to an
  output memory map in the same chunks.

Sizes: 2**26 elements (256 MB) by default, 1e9 (4 GB, files included) with ``--full``,
2**16 with ``--smoke``.  Each result's ``extra_info`` has the bytes moved, the bandwidth
from the median round and the ratio to the in-memory (``dask``) or copy (``file``) time of
the same run.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastact as fa

da = pytest.importorskip("dask.array")

CHUNK_BYTES = 64 * 2**20


def _size(config) -> int:
    if config.getoption("--smoke"):
        return 1 << 16
    return 1_000_000_000 if config.getoption("--full") else 1 << 26


@pytest.fixture(scope="module")
def data(pytestconfig):
    n = _size(pytestconfig)
    x = np.linspace(-6, 6, n, dtype=np.float32)
    np.random.default_rng(0).shuffle(x[: min(n, 1 << 20)])
    chunk = max(1, min(n, CHUNK_BYTES // 4)) if n > (1 << 16) else 1 << 12
    dx = da.from_array(x, chunks=chunk)  # copied once here, outside the timings
    return x, dx, np.empty_like(x)


DASK_CASES = {
    ("relu", "fastact.dask"): lambda x, dx, out: da.store(fa.relu(dx), out, lock=False),
    ("relu", "fastact.parallel"): lambda x, dx, out: fa.relu(x, out=out, target="parallel"),
    ("relu", "fastact.parallel.new"): lambda x, dx, out: fa.relu(x, target="parallel"),
    ("relu", "numpy.dask"): lambda x, dx, out: da.store(da.maximum(dx, np.float32(0)), out, lock=False),
    ("sigmoid", "fastact.dask"): lambda x, dx, out: da.store(fa.sigmoid(dx), out, lock=False),
    ("sigmoid", "fastact.parallel"): lambda x, dx, out: fa.sigmoid(x, out=out, target="parallel"),
    ("sigmoid", "fastact.parallel.new"): lambda x, dx, out: fa.sigmoid(x, target="parallel"),
    ("sigmoid", "numpy.dask"): lambda x, dx, out: da.store(1 / (1 + da.exp(-dx)), out, lock=False),
}
_seconds: dict = {}


def _timed(benchmark, bench_measure, fn):
    """Median seconds per call, measured as every benchmark of the suite is (warm-up, then
    rounds within --benchmark-max-time)."""
    bench_measure(benchmark, fn)
    return float(np.median(benchmark.stats.stats.data))


@pytest.mark.parametrize(("function", "impl"), list(DASK_CASES), ids=[f"{f}-{i}" for f, i in DASK_CASES])
def test_dask(benchmark, data, function, impl, bench_measure):
    import dask

    x, dx, out = data
    call = DASK_CASES[(function, impl)]
    benchmark.group = f"dask {function} float32 n={x.size}"
    with dask.config.set(scheduler="threads"):
        seconds = _timed(benchmark, bench_measure, lambda: call(x, dx, out))
    if not impl.endswith(".new"):
        expected = fa.FUNCTIONS[function](x[:1000])
        np.testing.assert_allclose(out[:1000], expected, rtol=1e-6, atol=1e-7)
    _seconds[(function, impl)] = seconds
    base = _seconds.get((function, "fastact.parallel"))
    benchmark.extra_info.update(kind="dask", function=function, impl=impl, dtype="float32", size=x.size,
                                chunk_bytes=int(dx.chunksize[0]) * 4, bytes=2 * x.nbytes,
                                gbps=2 * x.nbytes / seconds / 1e9,
                                ratio_to_in_memory=None if base is None else seconds / base)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory):
    x = data[0]
    d = tmp_path_factory.mktemp("files")
    src = d / "x.npy"
    m = np.lib.format.open_memmap(src, mode="w+", dtype=x.dtype, shape=x.shape)
    m[:] = x
    m.flush()
    del m
    return src, d / "y.npy"


def _copy_file(src, dst, chunk):
    a = np.load(src, mmap_mode="r")
    b = np.lib.format.open_memmap(dst, mode="w+", dtype=a.dtype, shape=a.shape)
    for i in range(0, a.shape[0], chunk):
        b[i : i + chunk] = a[i : i + chunk]
    b.flush()


@pytest.mark.parametrize("impl", ["copy", "fastact.apply"])
def test_file(benchmark, files, impl, bench_measure):
    from fastact import _cli

    src, dst = files
    size = np.load(src, mmap_mode="r").size
    if impl == "copy":
        call = lambda: _copy_file(src, dst, CHUNK_BYTES // 4)  # noqa: E731
    else:
        call = lambda: _cli.apply("sigmoid", src, dst, chunk_mb=CHUNK_BYTES / 2**20, progress=False)  # noqa: E731
    benchmark.group = f"file sigmoid float32 n={size}"
    seconds = _timed(benchmark, bench_measure, call)
    _seconds[("file", impl)] = seconds
    base = _seconds.get(("file", "copy"))
    benchmark.extra_info.update(kind="file", function="sigmoid", impl=impl, dtype="float32", size=size,
                                bytes=2 * size * 4, gbps=2 * size * 4 / seconds / 1e9,
                                ratio_to_copy=None if base is None else seconds / base)
