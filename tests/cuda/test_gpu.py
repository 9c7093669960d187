"""What only a real GPU can check: the machine code, sizes beyond the simulator's reach,
and CuPy arrays and PyTorch CUDA tensors as operands.

Skipped under the simulator and where there is no GPU.
"""

from __future__ import annotations

import os
import inspect
import re

import numpy as np
import pytest

import fastact as fa

if not fa.cuda_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

from numba import cuda, float32, float64  # noqa: E402

if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0"):
    pytest.skip("needs a real GPU, not the simulator", allow_module_level=True)

from fastact import _kernels_cuda as K  # noqa: E402
from _helpers import SHAPED, tolerance
from test_cuda import MAX_ULP, ROW_MAX_ULP, assert_close, assert_close_backward, elementwise_data  # noqa: E402

# --- float32 kernels compute in float32 -------------------------------------------------------

_SOURCES = {n: inspect.getsource(v.py_func) for n, v in vars(K).items() if hasattr(v, "py_func")}
#: What in a declaration's source asks for double precision: an explicit float64 operand,
#: or float32's exp evaluated in float64 arithmetic.
_ASKS_F64 = re.compile(r"np\.float64\(|\bexp_f64\(")


def _asks_for_f64(src: str, seen: set) -> bool:
    if _ASKS_F64.search(src):
        return True
    for callee in set(re.findall(r"\b(\w+__\w+)\(", src)) - seen:
        seen.add(callee)
        if callee in _SOURCES and _asks_for_f64(_SOURCES[callee], seen):
            return True
    return False


def _float32_kernels():
    out = []
    for name in sorted(_SOURCES):
        # cast__cuda converts between dtypes; _sum_parts__cuda adds float64 partial sums.
        if name.startswith(("cast__", "_")) or not re.search(r"__cuda(_block|_serial)?$", name):
            continue
        out.append(name)
    return out


@pytest.mark.parametrize("kernel", _float32_kernels())
def test_float32_kernels_have_no_f64_unless_asked(kernel):
    """The PTX of a float32 kernel holds no f64 instruction unless its declaration asks for
    double precision (``double(x)``, ``exp_f64``), and a row-wise kernel's only f64 work is
    its row sums (accumulated in float64 by design)."""
    k = getattr(K, kernel)
    params = list(inspect.signature(k.py_func).parameters)
    nd = 1 if kernel.endswith("__cuda") else (2 if kernel.endswith("_block") else 3)
    arr = {1: float32[::1], 2: float32[:, ::1], 3: float32[:, :, ::1]}
    # A reduction's values (its forward out, its backward dy) have one dimension fewer.
    reduction = kernel.split("__")[0] in fa.REDUCTIONS
    fewer = {"dy", "out"} if "__forward__" in kernel else {"dy"}
    dims = {p: nd - (reduction and p in fewer) for p in params}
    if kernel.split("__")[0] in fa.GATED:  # x (outer, 2, m); dy and the forward result (outer, m)
        dims = {p: 3 if p == "x" or (p == "out" and "__backward" in kernel) else 2 for p in params}
    weighted = kernel.split("__")[0] in fa.WEIGHTED  # (outer, C, inner) arrays, w (C,), part (C, parts) float64
    if weighted:
        dims = {p: 3 for p in params}
    sig = tuple(arr[dims[p]] if p in ("out", "x", "y", "dy", "acc") else float32 for p in params)
    if weighted:
        sig = tuple(float32[::1] if p == "w" else float64[:, ::1] if p == "part" else t for p, t in zip(params, sig))
    ptx, _ = cuda.compile_ptx_for_current_device(k.py_func, sig)
    f64 = [line.strip() for line in ptx.splitlines() if re.search(r"\.f64\b", line) and not line.strip().startswith(".reg")]
    rowwise = nd > 1 and kernel.split("__")[0] not in fa.GATED
    sums = rowwise or (weighted and "__backward_xw__" in kernel)  # the weight's gradient: float64 sums
    if sums or _asks_for_f64(_SOURCES[kernel], set()):
        if sums:
            assert f64, f"{kernel}: the row sums are float64 by design, yet the PTX has no f64 instruction"
        return
    assert not f64, f"{kernel}: {len(f64)} f64 instructions in a float32 kernel, e.g. {f64[:5]}"


# --- sizes the simulator cannot reach ---------------------------------------------------------


@pytest.mark.parametrize("name", fa.ELEMENTWISE)
def test_elementwise_beyond_one_grid(name):
    """More elements than one grid covers (the grid-stride loop's later rounds), an odd count."""
    f = fa.FUNCTIONS[name]
    rng = np.random.default_rng(len(name))
    n = 3_000_017
    x = (rng.standard_normal(n) * 8).astype(np.float32)
    dy = rng.standard_normal(n).astype(np.float32)
    d = cuda.to_device(x)
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    params = {}
    atol = 2 * tolerance(name, "forward", x64, dy64, params, np.float32, MAX_ULP)
    assert_close(f(d).copy_to_host(), f(x, target="cpu"), name, atol=atol)
    atol = 2 * tolerance(name, "backward_x", x64, dy64, params, np.float32, MAX_ULP)
    got = f.backward(cuda.to_device(dy), x=d).copy_to_host()
    assert_close(got, f.backward(dy, x=x, target="cpu"), f"{name}.backward", atol=atol)


@pytest.mark.parametrize(("shape", "axis"), [((3_000_017,), 0), ((64, 3, 40_000), 1), ((50_000, 61), -1)])
@pytest.mark.parametrize("name", fa.WEIGHTED)
def test_weighted_beyond_one_grid(name, shape, axis):
    """More elements than one grid covers, and the weight's gradient over long channels
    (blocks of many parts, added in order)."""
    f = fa.FUNCTIONS[name]
    rng = np.random.default_rng(len(shape))
    x = (rng.standard_normal(shape) * 8).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    w = np.linspace(0.05, 0.5, shape[axis] if len(shape) > 1 else 1).astype(np.float32)
    np.testing.assert_array_equal(f(cuda.to_device(x), w, axis=axis).copy_to_host(), f(x, w, axis=axis, target="cpu"))
    dx, dw = f.backward(cuda.to_device(dy), x=cuda.to_device(x), weight=cuda.to_device(w), axis=axis)
    edx, edw = f.backward(dy, x=x, weight=w, axis=axis, target="cpu")
    np.testing.assert_array_equal(dx.copy_to_host(), edx)
    np.testing.assert_allclose(dw.copy_to_host(), edw, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 31, 255, 257, 4096, 5000, 32768])
@pytest.mark.parametrize("name", fa.REDUCTIONS)
def test_reduction_rows_of_every_length(name, n):
    f = fa.FUNCTIONS[name]
    rng = np.random.default_rng(n)
    rows = max(1, min(64, (1 << 20) // n))
    x = (rng.standard_normal((rows, n)) * 4).astype(np.float32)
    dy = rng.standard_normal(rows).astype(np.float32)
    assert_close(f(cuda.to_device(x), axis=-1).copy_to_host(), f(x, axis=-1, target="cpu"), name, maxulp=ROW_MAX_ULP)
    assert_close(f(cuda.to_device(x), axis=0).copy_to_host(), f(x, axis=0, target="cpu"), name, maxulp=ROW_MAX_ULP)
    got = f.backward(cuda.to_device(dy), x=cuda.to_device(x), axis=-1).copy_to_host()
    assert_close(got, f.backward(dy, x=x, axis=-1, target="cpu"), f"{name}.backward", maxulp=4 * ROW_MAX_ULP)


@pytest.mark.parametrize("n", [1, 31, 255, 257, 4096, 5000, 32768])
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rows_of_every_length(name, n):
    """Rows shorter than a warp, not a multiple of the block, and far longer than it."""
    f = fa.FUNCTIONS[name]
    rng = np.random.default_rng(n)
    rows = max(1, min(64, (1 << 20) // n))
    x = (rng.standard_normal((rows, n)) * 4).astype(np.float32)
    dy = rng.standard_normal((rows, n)).astype(np.float32)
    y = f(x, target="cpu")
    assert_close(f(cuda.to_device(x)).copy_to_host(), y, name, maxulp=ROW_MAX_ULP, atol=_forward_atol(name, x, y))
    got = f.backward(cuda.to_device(dy), y=cuda.to_device(y)).copy_to_host()
    assert_close_backward(got, f.backward(dy, y=y, target="cpu"), y, dy, -1, f"{name} n={n}", 4 * ROW_MAX_ULP)


def _forward_atol(name, x, y):
    from fastact.reference import REFERENCE

    own = REFERENCE[name].scale.get("forward")
    if own is None:
        return None
    return 2 * ROW_MAX_ULP * float(np.finfo(x.dtype).eps) * own(x.astype(np.float64), y.astype(np.float64), -1)


# --- CuPy arrays and PyTorch CUDA tensors -----------------------------------------------------


def _frameworks():
    out = []
    try:
        import cupy

        out.append(pytest.param(("cupy", cupy), id="cupy"))
    except ImportError:
        out.append(pytest.param(None, id="cupy", marks=pytest.mark.skip("CuPy is not installed")))
    try:
        import torch

        ok = torch.cuda.is_available()
    except ImportError:
        ok = False
    if ok:
        out.append(pytest.param(("torch", torch), id="torch"))
    else:
        out.append(pytest.param(None, id="torch", marks=pytest.mark.skip("PyTorch with CUDA is not installed")))
    return out


def _to(fw, a):
    kind, mod = fw
    return mod.asarray(a) if kind == "cupy" else mod.as_tensor(a, device="cuda")


def _host(fw, a):
    kind, _ = fw
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    return a.get() if kind == "cupy" else a.cpu().numpy()


def _stream(fw):
    return fw[1].cuda.Stream()  # cupy.cuda.Stream and torch.cuda.Stream alike


@pytest.mark.parametrize("fw", _frameworks())
@pytest.mark.parametrize("name", SHAPED)
def test_framework_arrays_as_inputs_and_out(fw, name):
    f = fa.FUNCTIONS[name]
    x, dy = elementwise_data(np.float32, 7, shape=(8, 33))
    if name in fa.ROWWISE:
        x = np.nan_to_num(x, nan=0.0, posinf=3.0, neginf=-3.0)
    expected = f(x, target="cpu")
    assert_close(_host(fw, f(_to(fw, x))), expected, name, maxulp=ROW_MAX_ULP)
    out = _to(fw, np.full_like(x, np.nan))
    assert f(_to(fw, x), out=out) is out
    assert_close(_host(fw, out), expected, name, maxulp=ROW_MAX_ULP)
    # in place, in the framework's own array
    work = _to(fw, x)
    assert f(work, out=work) is work
    assert_close(_host(fw, work), expected, name, maxulp=ROW_MAX_ULP)
    # backward from x, into the framework's out, on the framework's stream
    s = _stream(fw)
    out = _to(fw, np.zeros_like(x))
    assert f.backward(_to(fw, dy), x=_to(fw, x), out=out, stream=s) is out
    s.synchronize()
    expected = f.backward(dy, x=x, target="cpu")
    got = _host(fw, out)
    if name in fa.ROWWISE:
        assert_close_backward(got, expected, f(x, target="cpu"), dy, -1, name, 4 * ROW_MAX_ULP)
    else:
        assert_close(got, expected, f"{name}.backward")


@pytest.mark.parametrize("fw", _frameworks())
def test_framework_float16_and_float64(fw):
    for dtype in (np.float16, np.float64):
        x, _ = elementwise_data(np.float32, 3, shape=(5, 7))
        x = x.astype(dtype)
        r = fa.elu(_to(fw, x))
        assert_close(_host(fw, r), fa.elu(x, target="cpu"), f"elu {np.dtype(dtype).name}", maxulp=4)
