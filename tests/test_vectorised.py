"""Every generated CPU kernel compiles to vector instructions and calls no C math library.

For every function, operation and float dtype: the single-threaded ufunc's inner loop
(its contiguous path), the multi-threaded loop, and for row-wise functions the row loops.
Each is compiled afresh (cached code cannot be inspected) and its assembly read: some
loop in it must be made of packed floating-point instructions, and no call may go to
``exp``, ``log`` and their kin, which would leave one call per element.
"""

import inspect
import platform
import re
import types
import warnings

import numpy as np
import pytest
from numba import njit

import fastact as fa
from fastact import _codegen, _cpu, _loops
from fastact._spec import DTYPES, ProjectionSpec

pytestmark = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="reads x86 assembly")

LIBM = re.compile(r"\$(?:exp|expf|expm1|expm1f|log|logf|log1p|log1pf|tanh|tanhf|erf|erff|erfc|erfcf|pow|powf|"
                  r"fma|fmaf|sin|sinf|cos|cosf)\b")
#: A packed floating-point instruction (vaddps, vfmadd231pd, vmulps, vcvtps2pd, ...).
PACKED = re.compile(r"^\s+v\w*p[sd]\s+.*%[xyz]mm", re.MULTILINE)


#: LLVM's run-time test that a loop's arrays do not overlap before its vector loop runs
#: (the blocks it names so): it fails, and the loop runs one element at a time, where one
#: array is read and written under two names.
OVERLAP_CHECK = re.compile(r"%diff\.check|vector\.memcheck")


def _loops_in(asm: str) -> list[str]:
    """The bodies of the loops in ``asm``: from a label to a jump back to it."""
    lines = asm.splitlines()
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"^(\.LBB\w+):", line))}
    bodies = []
    for i, line in enumerate(lines):
        m = re.match(r"^\s+j\w+\s+(\.LBB\w+)$", line)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            bodies.append("\n".join(lines[labels[m.group(1)]:i + 1]))
    return bodies


def _check(asm: str, what: str):
    assert not LIBM.search(asm), f"{what}: calls the C math library ({LIBM.search(asm).group(0)})"
    if re.search(r"\$(?:memcpy|memmove)\b", asm):
        return  # a plain copy (identity), which LLVM hands to the C library's vectorised memcpy
    best = max((len(PACKED.findall(body)) for body in _loops_in(asm)), default=0)
    assert best >= 2, f"{what}: no loop of packed floating-point instructions"


@njit(inline="always")
def _always(a, b):
    return True


def _in_place(fn):
    """The generated ``fn`` with every ``_loops.same(out, x)`` true, so that only its
    in-place loops are left to compile: the loop for ``out`` and ``x`` one array must be
    vectorised too, and LLVM's overlap check would keep it scalar had it two names for
    that array."""
    py = getattr(fn, "py_func", fn)
    assert "_loops.same(" in inspect.getsource(py), f"{py.__name__} has no in-place loop"
    shim = types.ModuleType("in_place_loops")
    shim.__dict__.update({k: getattr(_loops, k) for k in _loops.__all__}, same=_always)
    return types.FunctionType(py.__code__, {**py.__globals__, "_loops": shim}, py.__name__)


def _elementwise_cases():
    out = []
    for name in fa.ELEMENTWISE:
        spec = fa.REGISTRY[name]
        for op in _codegen.elementwise_ops(spec):
            for t in DTYPES:
                out.append((name, op, t))
    return out


@pytest.mark.parametrize("case", _elementwise_cases(), ids=lambda c: "-".join(c))
def test_elementwise_kernels_are_vectorised(case):
    name, op, t = case
    kernels = _cpu.kernels()
    loops = [f"{name}__{op}__loop_{t}"] + ([f"{name}__{op}__{t}__loop_{t}"] if fa.REGISTRY[name].params else [])
    unary = len(_codegen.ELEMENTWISE_OPS[op][0]) == 1
    # The in-place variants once per function and operation (float32, the general loop):
    # the same template as the rest, and each is one more compilation.
    in_place = t == "float32" and (name, op) != ("identity", "forward")  # identity in place: no loop left
    for loop in loops:
        _check(_loops.loop(getattr(kernels, loop), cache=False)._library.get_asm_str(), loop)
        if in_place and loop == loops[0]:
            library = _loops.loop(_in_place(getattr(kernels, loop)), cache=False)._library
            _check(library.get_asm_str(), f"{loop} in place")
            if unary:  # one array left: nothing for LLVM to check for overlap
                assert not OVERLAP_CHECK.search(library.get_llvm_str()), f"{loop} in place: reads out under two names"
    kernel = getattr(kernels, f"{name}__{op}__parallel")
    dt = np.dtype(t)
    nin = len(_codegen.ELEMENTWISE_OPS[op][0])
    x = np.linspace(-3, 3, 64).astype(dt)
    params = [dt.type(v) for v in fa.REGISTRY[name].kernel_defaults.values()]
    twin = getattr(kernels, f"{name}__{op}__parallel_inplace")
    for py, what in ((kernel.py_func, "parallel"), *([(twin.py_func, "parallel_inplace")] if in_place else [])):
        parallel = njit(parallel=True, nogil=True)(py)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parallel(np.empty_like(x), *([x] * nin), *params)
        _check(parallel.inspect_asm(parallel.signatures[0]), f"{name}__{op}__{what} {t}")
        if unary and py is not kernel.py_func:
            llvm = parallel.inspect_llvm(parallel.signatures[0])
            assert not OVERLAP_CHECK.search(llvm), f"{name}__{op}__{what}: reads out under two names"


def _check_kernel(name, op, kind, t, *args):
    """Compile the generated loop ``<name>__<op>__<kind>`` afresh (the cached one has no
    assembly to inspect), run it on ``args`` and check its assembly."""
    py = getattr(_cpu.kernels(), f"{name}__{op}__{kind}").py_func
    kernel = njit(parallel=kind == "blocks" or kind.endswith("parallel"), nogil=True, error_model="numpy")(py)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kernel(*args)
    _check(kernel.inspect_asm(kernel.signatures[0]), f"{name}__{op}__{kind} {t}")


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("op", list(_codegen.ROWWISE_OPS))
@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rowwise_kernels_are_vectorised(name, op, t):
    dt = np.dtype(t)
    x = np.linspace(-3, 3, 4 * 64).astype(dt).reshape(4, 64)
    inputs = [x] * len(_codegen.ROWWISE_OPS[op])
    scratch = op == "backward_x"  # the caller's scratch: a row, or a row per chunk of rows
    for kind, extra in (("rows", (np.empty(64, dt),) if scratch else ()),
                        ("parallel", (np.empty((2, 64), dt),) if scratch else ()),
                        ("blocks", ())):
        _check_kernel(name, op, kind, t, np.empty_like(x), *inputs, *extra)


NORMALISED = [n for n in fa.ROWWISE if not isinstance(fa.REGISTRY[n], ProjectionSpec)]
PROJECTIONS = [n for n in fa.ROWWISE if isinstance(fa.REGISTRY[n], ProjectionSpec)]


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("name", NORMALISED)
def test_rowwise_element_loops_are_vectorised(name, t):
    # A row kernel has several loops, some of them scalar by design (remainders), so the
    # kernels above are only checked for one vectorised loop; here each of the loops over
    # a row's elements, as the row functions write them, is checked alone.
    kernels = _cpu.kernels()
    spec = fa.REGISTRY[name]
    term, bout = getattr(kernels, f"{name}__term"), getattr(kernels, f"{name}__bout")
    # The last loop of forward: finish(t, r) from the stored term, or out(x, m, r).
    finish = getattr(kernels, f"{name}__finish" if spec.finish is not None else f"{name}__out")
    nfinish = 2 if spec.finish is not None else 3

    @njit(error_model="numpy")
    def terms(x, out, m):
        for j in range(x.shape[0]):
            out[j] = term(x[j], m)

    if nfinish == 2:
        @njit(error_model="numpy")
        def finished(t, out, r):
            for j in range(t.shape[0]):
                out[j] = finish(t[j], r)
    else:
        @njit(error_model="numpy")
        def finished(t, out, r):
            m = t[-1]
            for j in range(t.shape[0]):
                out[j] = finish(t[j], m, r)

    @njit(error_model="numpy")
    def backward(dy, y, out, d):
        for j in range(dy.shape[0]):
            out[j] = bout(dy[j], y[j], d)

    dt = np.dtype(t)
    x = np.linspace(-3, 3, 64).astype(dt)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terms(x, out, dt.type(3))
        finished(x, out, 0.5)
        backward(x, x, out, 0.5)
    for probe in (terms, finished, backward):
        _check(probe.inspect_asm(probe.signatures[0]), f"{name} {probe.__name__} {t}")


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("name", PROJECTIONS)
def test_projection_element_loops_are_vectorised(name, t):
    """A projection's loops over a row's elements, each alone: a pass of the support's
    sums (``_support_sums``: the masked store and the lane sum), the output
    ``g(x - m - tau)``, and backward's ``support(y) * (dy - d)``."""
    kernels = _cpu.kernels()
    g, support = getattr(kernels, f"{name}__g"), getattr(kernels, f"{name}__support")
    sums = njit(error_model="numpy")(kernels._support_sums.py_func)

    @njit(error_model="numpy")
    def output(x, out, m, tau):
        for j in range(x.shape[0]):
            out[j] = g((x[j] - m) - tau)

    @njit(error_model="numpy")
    def backward(dy, y, out, d):
        for j in range(dy.shape[0]):
            out[j] = support(y[j]) * (dy[j] - d) + 0.0

    dt = np.dtype(t)
    x = np.linspace(-3, 3, 4096).astype(dt)
    out = np.empty_like(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sums(x, dt.type(3), -1.0, np.empty(2048, dt))
        output(x, out, dt.type(3), -0.5)
        backward(x, x, out, 0.5)
    for probe in (sums, output, backward):
        _check(probe.inspect_asm(probe.signatures[0]), f"{name} {probe.__name__} {t}")


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("op", list(_codegen.REDUCTION_OPS))
@pytest.mark.parametrize("name", fa.REDUCTIONS)
def test_reduction_kernels_are_vectorised(name, op, t):
    """A reduction's loops over rows, on one thread, on all, and over each row's blocks:
    a vectorised loop and no C math library call in each."""
    dt = np.dtype(t)
    x = np.linspace(-3, 3, 4 * 64).astype(dt).reshape(4, 64)
    out = np.empty(4, dt) if op == "forward" else np.empty_like(x)
    inputs = (x,) if op == "forward" else (np.ones(4, dt), x)
    for kind in ("rows", "parallel", "blocks"):
        _check_kernel(name, op, kind, t, out, *inputs)


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("op", list(_codegen.GATED_OPS))
@pytest.mark.parametrize("name", fa.GATED)
def test_gated_kernels_are_vectorised(name, op, t):
    dt = np.dtype(t)
    x = np.linspace(-3, 3, 4 * 2 * 64).astype(dt).reshape(4, 2, 64)
    out = np.empty((4, 64), dt) if op == "forward" else np.empty_like(x)
    inputs = (x,) if op == "forward" else (np.ones((4, 64), dt), x)
    for kind in ("rows", "parallel"):
        _check_kernel(name, op, kind, t, out, *inputs)


@pytest.mark.parametrize("t", DTYPES)
@pytest.mark.parametrize("op", list(_codegen.WEIGHTED_OPS))
@pytest.mark.parametrize("name", fa.WEIGHTED)
def test_weighted_kernels_are_vectorised(name, op, t):
    """Both layouts (a channel's run with its weight, a row of positions with theirs), on
    one thread and on all, the weight's gradient sums included."""
    if op not in _codegen.weighted_ops(fa.REGISTRY[name]):
        pytest.skip(f"{name} declares no {op}")
    dt = np.dtype(t)
    x3 = np.linspace(-3, 3, 4 * 3 * 64).astype(dt).reshape(4, 3, 64)
    x2 = x3.reshape(4, 3 * 64)
    for layout, x, w, extra in (
        ("chan", x3, np.full(3, 0.25, dt), (np.empty((4, 3, 1)),)),
        ("pos", x2, np.full(3 * 64, 0.25, dt), (np.zeros((2, 3 * 64)), np.zeros((2, 3 * 64)))),
    ):
        inputs = (x,) if _codegen.WEIGHTED_OPS[op] == ("x",) else (np.ones_like(x), x)
        for kind in (layout, f"{layout}_parallel"):
            _check_kernel(name, op, kind, t, np.empty_like(x), *inputs, w,
                          *(extra if op == "backward_xw" else ()))


def test_a_scalar_loop_is_detected():
    # The check itself: a loop over the C library's exp fails it.
    import math

    @njit
    def scalar(x, out):
        for i in range(x.shape[0]):
            out[i] = math.exp(x[i])

    x = np.ones(8)
    scalar(x, np.empty_like(x))
    with pytest.raises(AssertionError, match="calls the C math library"):
        _check(scalar.inspect_asm(scalar.signatures[0]), "scalar")


def test_lane_sums_match_their_plain_python_order_and_float64_is_compensated():
    """The compiled lane reductions and their plain-Python versions (what NUMBA_DISABLE_JIT
    runs) give the same bits, contiguous or strided, inf and NaN included; a float64 sum
    carries its rounding errors (within an ULP of the exact sum, where a plain lane sum of
    these terms is hundreds of ULP off)."""
    import math

    from fastact import _lanes

    py_sum, py_dot = _lanes._python_versions()[:2]

    @njit
    def compiled(a, b, start, stop):
        return _lanes.lane_sum(a, start, stop), _lanes.lane_dot(a, b, start, stop)

    rng = np.random.default_rng(3)
    a64 = rng.standard_normal(1037) * np.logspace(-8, 8, 1037)
    b64 = rng.standard_normal(1037)
    special = a64.copy()
    special[[5, 400]] = [np.inf, -np.inf]
    for a, b in [(a64, b64), (a64.astype(np.float32), b64.astype(np.float32)), (a64[::3], b64[::3]),
                 (special, b64), (np.where(np.arange(1037) == 7, np.nan, a64), b64)]:
        stop = a.shape[0] - 2
        got = compiled(a, b, 1, stop)
        want = (py_sum(a, 1, stop), py_dot(a, b, 1, stop))
        assert np.array_equal(np.array(got), np.array(want), equal_nan=True), (a.dtype, got, want)
    # Every length of tail (masked loads), from several starts, and the extremes too.
    py_max, py_min = _lanes._python_versions()[2:4]

    @njit
    def extremes(a, start, stop):
        return _lanes.lane_max(a, start, stop), _lanes.lane_min(a, start, stop)

    for a, b in [(a64, b64), (a64.astype(np.float32), b64.astype(np.float32)), (a64[::-2], b64[::-2])]:
        for start in (0, 3, 17):
            for stop in [*range(start, start + 140), a.shape[0] - start]:
                got = (*compiled(a, b, start, stop), *extremes(a, start, stop))
                want = (py_sum(a, start, stop), py_dot(a, b, start, stop), py_max(a, start, stop), py_min(a, start, stop))
                assert np.array_equal(np.array(got), np.array(want)), (a.dtype, a.strides, start, stop, got, want)
    exact = math.fsum(a64[1:1035].tolist())
    assert abs(compiled(a64, b64, 1, 1035)[0] - exact) <= np.spacing(abs(exact))
    assert abs(py_sum(a64, 1, 1035) - exact) <= np.spacing(abs(exact))
