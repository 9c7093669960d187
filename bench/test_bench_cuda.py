"""The CUDA kernels on a GPU, against a device-to-device copy, PyTorch and CuPy (needs a GPU).

    pytest bench -k cuda --benchmark-json=cuda.json

Every case works on device arrays allocated once and shared by every implementation (no
host transfer, ``out=`` preallocated, PyTorch tensors and CuPy arrays are zero-copy views
of the same memory):

* ``elementwise``: every function's forward pass, ``grad``, ``backward`` from ``x`` and
  ``backward`` from ``y`` (where the default parameters allow it), float32 and float64, on
  64M elements;
* ``rowwise``: softmax, log_softmax and softmin along the last axis, rows of 4096 and of
  32768 (64M elements) and the classifier shape (65536, 10);
* ``latency``: relu, sigmoid and softmax on 1e3 and 1e5 elements, where the time per call
  is the launch path's (validation, argument handling, the launch itself).

The peers run in the same process, on the same buffers, just after fastact: PyTorch as its
users write it (``torch.nn.functional``; backward passes as the ATen kernels autograd runs,
from the tensor autograd saves) and CuPy as one fused ``cupy.ElementwiseKernel`` per
function.  A peer that is missing, or has no such function, is skipped.

Timing.  One round is ``calls`` back-to-back calls followed by one synchronisation, with
``calls`` chosen so that a round lasts about 3 ms: launches are asynchronous, so the time
per call is the GPU's where the kernel is longer than the host's launch path, and the
launch path's where it is shorter (the ``latency`` cases).  pytest-benchmark's statistics
are per round; ``extra_info`` carries the time per call (median over the rounds, and the
spread: ``seconds_q1``/``seconds_q3``), the bytes one call must move (each operand read
once, the result written once), the bandwidth, and its ratio to a device-to-device copy
of the same dtype and size measured in the same run (``fraction_of_copy``).

Skipped where there is no GPU, and under the CUDA simulator, where timings mean nothing.
"""

from __future__ import annotations

import os
import math
import time

import numpy as np
import pytest

import fastact
from bench import cases

if not fastact.cuda_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

from numba import cuda

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("the CUDA simulator has no meaningful timings", allow_module_level=True)

N = 1 << 26
SMOKE_N = 1 << 16
ROW_SHAPES = {"rows4096": (N // 4096, 4096), "rows32768": (N // 32768, 32768), "classes10": (65536, 10)}
LATENCY_SIZES = (1000, 100_000)
LATENCY_FUNCTIONS = ("relu", "sigmoid", "softmax")
ROUND_SECONDS = 3e-3
ROUNDS = 10
IMPLS = ("fastact.cuda", "torch.cuda", "cupy")


# --- peers ------------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _cupy():
    try:
        import cupy
    except ImportError:
        return None
    return cupy


def _torch_table(torch):
    F, A = torch.nn.functional, torch.ops.aten
    fwd = {
        "relu": F.relu,
        "leaky_relu": F.leaky_relu,
        "relu6": F.relu6,
        "hardtanh": F.hardtanh,
        "elu": F.elu,
        "selu": F.selu,
        "celu": F.celu,
        "softplus": F.softplus,
        "silu": F.silu,
        "gelu": F.gelu,
        "mish": F.mish,
        "hardswish": F.hardswish,
        "hardsigmoid": F.hardsigmoid,
        "sigmoid": torch.sigmoid,
        "log_sigmoid": F.logsigmoid,
        "tanh": torch.tanh,
        "softsign": F.softsign,
        "tanhshrink": F.tanhshrink,
        "softshrink": F.softshrink,
        "hardshrink": F.hardshrink,
        "exponential": torch.exp,
        "identity": torch.clone,
        "softmax": lambda x: torch.softmax(x, -1),
        "log_softmax": lambda x: torch.log_softmax(x, -1),
        "softmin": lambda x: F.softmin(x, -1),
    }
    # (function, op) -> f(dy, x, y)
    bwd = {
        ("relu", "backward"): lambda dy, x, y: A.threshold_backward(dy, x, 0),
        ("relu", "backward_y"): lambda dy, x, y: A.threshold_backward(dy, y, 0),
        ("leaky_relu", "backward"): lambda dy, x, y: A.leaky_relu_backward(dy, x, 0.01, False),
        ("hardtanh", "backward"): lambda dy, x, y: A.hardtanh_backward(dy, x, -1.0, 1.0),
        ("elu", "backward"): lambda dy, x, y: A.elu_backward(dy, 1.0, 1, 1, False, x),
        ("elu", "backward_y"): lambda dy, x, y: A.elu_backward(dy, 1.0, 1, 1, True, y),
        ("softplus", "backward"): lambda dy, x, y: A.softplus_backward(dy, x, 1.0, 20.0),
        ("silu", "backward"): lambda dy, x, y: A.silu_backward(dy, x),
        ("gelu", "backward"): lambda dy, x, y: A.gelu_backward(dy, x),
        ("mish", "backward"): lambda dy, x, y: A.mish_backward(dy, x),
        ("hardswish", "backward"): lambda dy, x, y: A.hardswish_backward(dy, x),
        ("hardsigmoid", "backward"): lambda dy, x, y: A.hardsigmoid_backward(dy, x),
        ("sigmoid", "backward_y"): lambda dy, x, y: A.sigmoid_backward(dy, y),
        ("tanh", "backward_y"): lambda dy, x, y: A.tanh_backward(dy, y),
        ("softmax", "backward_y"): lambda dy, x, y: A._softmax_backward_data(dy, y, -1, y.dtype),
        ("log_softmax", "backward_y"): lambda dy, x, y: A._log_softmax_backward_data(dy, y, -1, y.dtype),
    }
    return fwd, bwd


#: CuPy: one fused elementwise kernel per function, as its users write a custom activation.
_CUPY_FORWARD = {
    "relu": "y = x > 0 ? x : (T)0",
    "leaky_relu": "y = x > 0 ? x : (T)0.01 * x",
    "elu": "y = x > 0 ? x : expm1(x)",
    "sigmoid": "y = 1 / (1 + exp(-x))",
    "tanh": "y = tanh(x)",
    "silu": "y = x / (1 + exp(-x))",
    "softplus": "y = x > 20 ? x : log1p(exp(x))",
    "gelu": "y = (T)0.5 * x * erfc(-x * (T)0.7071067811865476)",
    "exponential": "y = exp(x)",
    "identity": "y = x",
}
_CUPY_BACKWARD = {
    ("relu", "backward"): "dx = x > 0 ? dy : (T)0",
    ("sigmoid", "backward_y"): "dx = dy * y * (1 - y)",
    ("tanh", "backward_y"): "dx = dy * (1 - y * y)",
    ("elu", "backward"): "dx = x > 0 ? dy : dy * exp(x)",
}


# --- timing -----------------------------------------------------------------------------------


def _sync():
    cuda.synchronize()


def _calls_per_round(fn) -> int:
    """Back-to-back calls that take about ROUND_SECONDS."""
    fn()
    _sync()
    t = time.perf_counter()
    for _ in range(3):
        fn()
    _sync()
    per = max((time.perf_counter() - t) / 3, 1e-7)
    return max(1, min(10_000, math.ceil(ROUND_SECONDS / per)))


def _measure(benchmark, fn, smoke):
    """Seconds per call (median, q1, q3 over the rounds) of back-to-back calls of ``fn``."""
    fn()  # compile or load from the cache
    _sync()
    calls = 1 if smoke else _calls_per_round(fn)

    def one_round():
        for _ in range(calls):
            fn()
        _sync()

    benchmark.pedantic(one_round, rounds=1 if smoke else ROUNDS, iterations=1, warmup_rounds=0 if smoke else 1)
    data = np.asarray(benchmark.stats.stats.data) / calls
    q1, med, q3 = np.percentile(data, [25, 50, 75])
    return {"seconds": float(med), "seconds_q1": float(q1), "seconds_q3": float(q3), "calls_per_round": calls}


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def buffers(bench_smoke):
    """Device buffers by (dtype, shape): x, dy, y, out, made once, filled on the host."""
    made = {}

    def get(dtype, shape):
        key = (dtype, shape)
        if key not in made:  # about 10 GB in all at full size
            rng = np.random.default_rng(0)
            n = math.prod(shape)
            host = rng.standard_normal(n, dtype=np.float32).astype(dtype).reshape(shape)
            made[key] = {
                "x": cuda.to_device(host),
                "dy": cuda.to_device(np.roll(host, 1)),
                "y": cuda.device_array(shape, dtype),
                "out": cuda.device_array(shape, dtype),
            }
        return made[key]

    return get


@pytest.fixture(scope="module")
def copy_seconds(bench_smoke):
    """Seconds per device-to-device copy (cuMemcpyDtoD) of ``n`` elements of ``dtype``."""
    made = {}

    def get(n, dtype):
        key = (n, dtype)
        if key not in made:
            src = cuda.to_device(np.ones(n, dtype))
            dst = cuda.device_array(n, dtype)

            def copy():
                dst.copy_to_device(src)

            calls = 1 if bench_smoke else _calls_per_round(copy)
            best = []
            for _ in range(1 if bench_smoke else ROUNDS):
                t = time.perf_counter()
                for _ in range(calls):
                    copy()
                _sync()
                best.append((time.perf_counter() - t) / calls)
            made[key] = float(np.median(best))
        return made[key]

    return get


# --- the calls --------------------------------------------------------------------------------


def _fastact_call(name, op, b):
    fn = fastact.FUNCTIONS[name]
    x, dy, y, out = b["x"], b["dy"], b["y"], b["out"]
    if op in ("backward_y",):
        fn(x, out=y)
    return {
        "forward": lambda: fn(x, out=out),
        "grad": lambda: fn.grad(x, out=out),
        "backward": lambda: fn.backward(dy, x=x, out=out),
        "backward_y": lambda: fn.backward(dy, y=y, out=out),
    }[op]


def _peer_call(impl, name, op, b):
    """The peer's call on the same buffers, or None where it has none."""
    x, dy, y, out = b["x"], b["dy"], b["y"], b["out"]
    fastact.FUNCTIONS[name](x, out=y)
    if impl == "torch.cuda":
        torch = _torch()
        if torch is None:
            return None
        fwd, bwd = _torch_table(torch)
        tx, tdy, ty = (torch.as_tensor(a, device="cuda") for a in (x, dy, y))
        if op == "forward" and name in fwd:
            return lambda: fwd[name](tx)
        f = bwd.get((name, op))
        return None if f is None else (lambda: f(tdy, tx, ty))
    if impl == "cupy":
        cp = _cupy()
        if cp is None:
            return None
        cx, cdy, cy, cout = (cp.asarray(a) for a in (x, dy, y, out))
        if op == "forward" and name in _CUPY_FORWARD:
            k = cp.ElementwiseKernel("T x", "T y", _CUPY_FORWARD[name], f"fa_bench_{name}")
            return lambda: k(cx, cout)
        body = _CUPY_BACKWARD.get((name, op))
        if body is None:
            return None
        if op == "backward":
            k = cp.ElementwiseKernel("T dy, T x", "T dx", body, f"fa_bench_{name}_{op}")
            return lambda: k(cdy, cx, cout)
        k = cp.ElementwiseKernel("T dy, T y", "T dx", body, f"fa_bench_{name}_{op}")
        return lambda: k(cdy, cy, cout)
    raise ValueError(impl)


def _call(impl, name, op, b):
    if impl == "fastact.cuda":
        return _fastact_call(name, op, b)
    return _peer_call(impl, name, op, b)


def _record(benchmark, kind, name, op, dtype, shape, impl, timing, copy_s):
    n = math.prod(shape)
    nbytes = cases.OPERANDS[op] * n * np.dtype(dtype).itemsize
    copy_gbps = 2 * n * np.dtype(dtype).itemsize / copy_s / 1e9
    gbps = nbytes / timing["seconds"] / 1e9
    benchmark.extra_info.update(
        kind=f"cuda-{kind}",
        function=name,
        op=op,
        dtype=dtype,
        size=n,
        size_label=f"{n >> 20}M" if n >= 1 << 20 else str(n),
        shape=list(shape),
        mode="out" if impl != "torch.cuda" else "new",
        impl=impl,
        bytes=nbytes,
        gbps=gbps,
        copy_gbps=copy_gbps,
        fraction_of_copy=gbps / copy_gbps,
        **timing,
    )


# --- cases ------------------------------------------------------------------------------------


def _elementwise_cases():
    out = []
    for dtype in ("float32", "float64"):
        for name, spec in fastact.REGISTRY.items():
            if spec.kind != "elementwise":
                continue
            ops = ("forward", "grad", "backward") + (("backward_y",) if cases.dfdy_by_default(spec) else ())
            for op in ops:
                for impl in IMPLS:
                    out.append(pytest.param(name, op, dtype, impl, id=f"{name}-{op}-{dtype}-{impl}"))
    return out


def _rowwise_cases():
    out = []
    for dtype in ("float32", "float64"):
        for name in fastact.ROWWISE:
            for op in ("forward", "backward", "backward_y"):
                for label in ROW_SHAPES:
                    for impl in IMPLS[:2]:
                        out.append(pytest.param(name, op, label, dtype, impl, id=f"{name}-{op}-{label}-{dtype}-{impl}"))
    return out


def _run(benchmark, kind, name, op, dtype, shape, impl, buffers, copy_seconds, bench_smoke):
    b = buffers(dtype, shape)
    call = _call(impl, name, op, b)
    if call is None:
        pytest.skip(f"{impl} has no {name} {op}")
    benchmark.group = f"cuda {name}.{op} {dtype} {'x'.join(map(str, shape))}"
    timing = _measure(benchmark, call, bench_smoke)
    _record(benchmark, kind, name, op, dtype, shape, impl, timing, copy_seconds(math.prod(shape), dtype))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", LATENCY_SIZES)
@pytest.mark.parametrize("name", LATENCY_FUNCTIONS)
def test_cuda_latency(benchmark, name, n, impl, buffers, copy_seconds, bench_smoke):
    shape = (n // 1000, 1000) if name in fastact.ROWWISE else (n,)
    _run(benchmark, "latency", name, "forward", "float32", shape, impl, buffers, copy_seconds, bench_smoke)


@pytest.mark.parametrize(("name", "op", "label", "dtype", "impl"), _rowwise_cases())
def test_cuda_rowwise(benchmark, name, op, label, dtype, impl, buffers, copy_seconds, bench_smoke):
    shape = ROW_SHAPES[label]
    if bench_smoke:
        shape = (max(1, SMOKE_N // shape[1]), shape[1])
    _run(benchmark, "rowwise", name, op, dtype, shape, impl, buffers, copy_seconds, bench_smoke)


@pytest.mark.parametrize(("name", "op", "dtype", "impl"), _elementwise_cases())
def test_cuda_elementwise(benchmark, name, op, dtype, impl, buffers, copy_seconds, bench_smoke):
    n = SMOKE_N if bench_smoke else N
    _run(benchmark, "elementwise", name, op, dtype, (n,), impl, buffers, copy_seconds, bench_smoke)
