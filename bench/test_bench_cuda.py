"""The CUDA kernels against a device-to-device copy of the same bytes (needs a real GPU).

Every case runs on device arrays (no host transfer): elementwise operations on 64M
elements, row-wise ones on rows of 4096.  Each result's ``extra_info`` carries the bytes
the operation must move, its bandwidth (``gbps``) and that bandwidth as a fraction of a
device-to-device copy of an array of the same size (``fraction_of_copy``).  The goals on
an H100-class GPU: elementwise at 0.8 of copy bandwidth or more, row-wise at 0.6 or more.

Skipped where there is no GPU, and under the CUDA simulator, where timings mean nothing.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastact
from bench import cases

if not fastact.cuda_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

from numba import cuda  # noqa: E402
from numba.cuda.core import config as _cuda_config  # noqa: E402

if _cuda_config.ENABLE_CUDASIM:
    pytest.skip("the CUDA simulator has no meaningful timings", allow_module_level=True)

N = 1 << 26
ROW = 4096
SMOKE_N = 1 << 16
#: bench's operation names for fastact's
OPS = {"forward": "forward", "grad": "grad", "backward_x": "backward", "backward_y": "backward_y"}


def _cases():
    out = []
    for name, spec in fastact.REGISTRY.items():
        ops = ("forward", "backward_x", "backward_y")
        if spec.kind == "elementwise":
            ops = ("forward", "grad", "backward_x") + (("backward_y",) if cases.dfdy_by_default(spec) else ())
        for op in ops:
            for dtype in ("float32", "float64"):
                out.append(pytest.param(name, op, dtype, id=f"{name}-{OPS[op]}-{dtype}-cuda"))
    return out


def _timed(benchmark, fn, smoke):
    """Minimum seconds per call of ``fn`` (synchronised), measured by pytest-benchmark."""

    def call():
        fn()
        cuda.synchronize()

    call()  # compile or load from the cache
    benchmark.pedantic(call, rounds=1 if smoke else 30, iterations=1, warmup_rounds=0 if smoke else 3)
    return benchmark.stats.stats.min


@pytest.fixture(scope="module")
def copy_seconds(bench_smoke):
    """Seconds of a device-to-device copy, by element count and dtype (CUDA events)."""
    made = {}

    def get(n, dtype):
        key = (n, dtype)
        if key not in made:
            src = cuda.device_array(n, dtype)
            dst = cuda.device_array(n, dtype)
            dst.copy_to_device(src)
            start, stop = cuda.event(), cuda.event()
            best = np.inf
            for _ in range(3 if bench_smoke else 20):
                start.record()
                dst.copy_to_device(src)
                stop.record()
                stop.synchronize()
                best = min(best, cuda.event_elapsed_time(start, stop) / 1e3)
            made[key] = best
        return made[key]

    return get


@pytest.mark.parametrize(("name", "op", "dtype"), _cases())
def test_cuda_kernel(benchmark, name, op, dtype, copy_seconds, bench_smoke):
    spec = fastact.REGISTRY[name]
    n = SMOKE_N if bench_smoke else N
    shape = (n // ROW, ROW) if spec.kind == "rowwise" else (n,)
    rng = np.random.default_rng(0)
    x = cuda.to_device(rng.standard_normal(shape).astype(dtype))
    dy = cuda.to_device(rng.standard_normal(shape).astype(dtype))
    out = cuda.device_array(shape, dtype)
    fn = fastact.FUNCTIONS[name]
    if op == "forward":
        call = lambda: fn(x, out=out)  # noqa: E731
    elif op == "grad":
        call = lambda: fn.grad(x, out=out)  # noqa: E731
    elif op == "backward_x":
        call = lambda: fn.backward(dy, x=x, out=out)  # noqa: E731
    else:
        y = fn(x)
        call = lambda: fn.backward(dy, y=y, out=out)  # noqa: E731
    benchmark.group = f"cuda {name}.{OPS[op]} {dtype} n={n}"
    seconds = _timed(benchmark, call, bench_smoke)
    nbytes = cases.OPERANDS[OPS[op]] * n * np.dtype(dtype).itemsize
    copy_gbps = 2 * n * np.dtype(dtype).itemsize / copy_seconds(n, dtype) / 1e9
    gbps = nbytes / seconds / 1e9
    benchmark.extra_info.update(
        kind="kernel",
        function=name,
        op=OPS[op],
        dtype=dtype,
        size=n,
        size_label=f"{n >> 20}M" if n >= 1 << 20 else str(n),
        shape=list(shape),
        mode="out",
        impl="fastact.cuda",
        bytes=nbytes,
        gbps=gbps,
        copy_gbps=copy_gbps,
        fraction_of_copy=gbps / copy_gbps,
    )
