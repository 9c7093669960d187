"""What is benchmarked: the grid of cases, the arrays they run on, and fastact's and NumPy's
implementations (the peers' are in :mod:`bench.peers`).

Everything here is derived from ``fastact.REGISTRY``: a newly declared activation gets its
fastact and NumPy benchmarks with no edit in this package.

A case is one (function, operation, dtype, size, mode, implementation); its pytest id is
``function-op-dtype-size-mode-impl`` (e.g. ``relu-forward-float32-16M-new-fastact.cpu``)
and its pytest-benchmark group holds every implementation of the same
(function, op, dtype, size, mode), so pytest-benchmark's own table compares them side by
side.  Every result carries ``extra_info`` (:meth:`Case.extra_info`) from which
``python -m bench`` builds its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import numpy as np

import fastact
from fastact.reference import REFERENCE

# --- the grid ----------------------------------------------------------------------------------

#: Array sizes of the elementwise functions (elements) and their labels.  With float32 on
#: the development machine they sit in L1, L2, the last-level cache and memory; the report
#: says which level each measures on the machine it ran on.
SIZES = {"1e3": 1_000, "1e5": 100_000, "1e6": 1_000_000, "16M": 16_000_000}
#: Shapes of the row-wise functions: classifier outputs, rows of 1000, long rows, and the
#: rows of 1000 that make up 16M elements.
ROW_SHAPES = {"512x10": (512, 10), "4096x1000": (4096, 1000), "64x65536": (64, 65536), "16000x1000": (16000, 1000)}
DTYPES = ("float32", "float64")
#: How the result is stored: a new array each call, a preallocated ``out``, or over the input.
MODES = ("new", "out", "inplace")
MODE_LABELS = {"new": "new array", "out": "preallocated out", "inplace": "in place"}

ELEMENTWISE_OPS = ("forward", "grad", "backward", "backward_y")
ROWWISE_OPS = ("forward", "backward", "backward_y")
#: Reductions (logsumexp) along the last axis of the row shapes: one value per row.
REDUCTION_OPS = ("forward", "backward")
#: Arrays each operation reads plus the one it writes: the bytes it must move at least.
OPERANDS = {"forward": 2, "grad": 2, "backward": 3, "backward_y": 3}

FASTACT_TARGETS = ("cpu", "parallel", "auto")
#: Every implementation, in the order of the report's columns.  ``.1``: the peer on one
#: thread (compared with ``target="cpu"``); without it, on its default thread pool.
IMPLEMENTATIONS = (
    *(f"fastact.{t}" for t in FASTACT_TARGETS),
    "numpy",
    "numpy.nansafe",
    "torch.1",
    "torch",
    "jax",
    "onnxruntime.1",
    "onnxruntime",
    "numexpr.1",
    "numexpr",
    "scipy",
)
IMPL_LABELS = {
    "fastact.cpu": "fastact cpu",
    "fastact.parallel": "fastact parallel",
    "fastact.auto": "fastact auto",
    "fastact.cuda": "fastact cuda",
    "numpy": "NumPy",
    "numpy.nansafe": "NumPy, NaN-safe",
    "torch.1": "PyTorch, 1 thread",
    "torch": "PyTorch",
    "jax": "JAX",
    "onnxruntime.1": "ONNX Runtime, 1 thread",
    "onnxruntime": "ONNX Runtime",
    "numexpr.1": "numexpr, 1 thread",
    "numexpr": "numexpr",
    "scipy": "SciPy",
    "copy": "parallel copy",
}
#: One line on what each column is (the report prints them).
IMPL_NOTES = {
    "fastact.cpu": '`target="cpu"`: the single-threaded kernels (with the default settings: a new result '
    "of 32 MiB or more is made from the memory of a dropped one, as ONNX Runtime's comes from its arena)",
    "fastact.parallel": '`target="parallel"`: the multi-threaded kernels on all of Numba\'s threads',
    "fastact.auto": '`target="auto"` (the default): one thread below a size threshold, all above',
    "numpy": "the NumPy one-liner a NumPy user writes: `np.maximum(x, 0)`, `1 / (1 + np.exp(-x))`, "
    "`np.where(x > 0, x, alpha * np.expm1(x))`, the textbook softmax with the row maximum (warnings silenced)",
    "numpy.nansafe": "`fastact.reference`: NumPy formulas that keep NaN and infinities exact "
    "(`np.where` on every branch), the test suite's oracle",
    "torch.1": "`torch.nn.functional` on CPU tensors sharing the NumPy buffers, `torch.set_num_threads(1)`; "
    "backward: the ATen kernel autograd runs",
    "torch": "the same on PyTorch's default thread pool",
    "jax": "`jax.nn` under `jax.jit`, XLA's default threads; grad: `vmap(grad(f))`, backward: `vjp`",
    "onnxruntime.1": "a one-node ONNX graph on the CPU execution provider, `intra_op_num_threads=1` "
    "(its output comes from the session's memory arena; attributes such as LeakyRelu's slope are float32 "
    "even in float64 graphs)",
    "onnxruntime": "the same on its default thread pool",
    "numexpr.1": "`numexpr.evaluate`, constants typed like the array, one thread",
    "numexpr": "the same on numexpr's default threads",
    "scipy": "`scipy.special.expit`, `scipy.special.softmax`",
}
#: Implementations measured on one thread, and on all: the two halves of the summary.
ONE_THREAD = ("numpy", "numpy.nansafe", "torch.1", "onnxruntime.1", "numexpr.1", "scipy")
ALL_THREADS = ("numpy", "numpy.nansafe", "torch", "jax", "onnxruntime", "numexpr", "scipy")


def op_label(function: str, op: str) -> str:
    """How users spell the operation: ``relu``, ``relu.grad``, ``relu.backward(dy, y=)``."""
    return {
        "forward": function,
        "grad": f"{function}.grad",
        "backward": f"{function}.backward",
        "backward_y": f"{function}.backward(y=)",
    }[op]


@dataclass(frozen=True)
class Grid:
    """A selection of the grid: which dtypes, sizes, modes and operations run, and which
    implementations where."""

    name: str
    dtypes: tuple[str, ...]
    sizes: tuple[str, ...]
    row_shapes: tuple[str, ...]
    modes: tuple[str, ...]
    ops: tuple[str, ...]
    # Subprocess rounds of the compile-time measurements: (import, cold, warm).
    compile_rounds: tuple[int, int, int]
    compile_targets: tuple[str, ...]
    # Functions whose first call is timed: the first elementwise and the first row-wise.
    compile_functions: tuple[str, ...] = tuple(fastact.ELEMENTWISE[:1] + fastact.ROWWISE[:1])
    # Implementations measured at every size (None: all of them); the others run at the
    # largest size (the summary's) and on every row shape.
    everywhere: tuple[str, ...] | None = None
    # Implementations measured in the modes other than "new" at every size, and at the
    # largest size (None: all that have the mode).
    other_modes_everywhere: tuple[str, ...] | None = None
    other_modes_largest: tuple[str, ...] | None = None
    # The thread-scaling section: (functions, size) or None.
    scaling: tuple[tuple[str, ...], str] | None = None
    # Functions measured as above (None: all); the others only at the largest size or row
    # shape, the function and backward, a new array each call, on one thread and on all
    # (auto is parallel there), against NumPy's one-liner and the peers.
    sweep: tuple[str, ...] | None = None

    def swept(self, function: str) -> bool:
        return self.sweep is None or function in self.sweep

    def runs(self, impl: str, mode: str, largest: bool, rowwise: bool, function: str | None = None) -> bool:
        """Whether ``impl`` is measured in ``mode`` at this size, for ``function``."""
        if function is not None and not self.swept(function):
            return largest and mode == "new" and impl not in ("fastact.auto", "numpy.nansafe")
        if largest and impl == "fastact.auto" and self.sweep is not None:
            return False  # at the largest size auto is parallel: measured once, as parallel
        if mode != "new":
            allowed = self.other_modes_largest if largest else self.other_modes_everywhere
            return allowed is None or impl in allowed
        return largest or rowwise or self.everywhere is None or impl in self.everywhere


GRIDS = {
    # What the report's summary, roofline, tables and plots need, in under 5 minutes on
    # 2 cores: float32 and float64, every size; fastact and NumPy at every size, every peer
    # at the largest size and on every row shape; a new array each call, and
    # into a preallocated out (every implementation that can at the largest size, fastact's
    # auto target at every size).
    "default": Grid(
        "default",
        dtypes=DTYPES,
        sizes=tuple(SIZES),
        row_shapes=tuple(ROW_SHAPES),
        modes=("new", "out"),
        ops=("forward", "grad", "backward"),
        compile_rounds=(2, 1, 2),
        compile_targets=("cpu", "parallel"),
        compile_functions=fastact.ELEMENTWISE[:1],
        everywhere=(*(f"fastact.{t}" for t in FASTACT_TARGETS), "numpy"),
        other_modes_everywhere=("fastact.auto",),
        other_modes_largest=(*(f"fastact.{t}" for t in FASTACT_TARGETS), "numpy", "onnxruntime.1", "onnxruntime"),
        scaling=(("relu", "sigmoid"), "16M"),
        # Every size (and row shape) for the memory-bound and the exp-bound functions, gelu
        # and softmax; the others at the largest only.
        sweep=("relu", "leaky_relu", "elu", "sigmoid", "step", "identity", "gelu", "softmax"),
    ),
    "full": Grid(
        "full",
        dtypes=DTYPES,
        sizes=tuple(SIZES),
        row_shapes=tuple(ROW_SHAPES),
        modes=MODES,
        ops=ELEMENTWISE_OPS,
        compile_rounds=(5, 3, 5),
        compile_targets=("cpu", "parallel"),
        scaling=(("relu", "sigmoid", "softmax"), "16M"),
    ),
    # Every implementation, operation, dtype and mode once, on small arrays: keeps the
    # suite from rotting, and checks every implementation against the NumPy reference.
    "smoke": Grid(
        "smoke",
        dtypes=DTYPES,
        sizes=("1e3",),
        row_shapes=("512x10",),
        modes=MODES,
        ops=ELEMENTWISE_OPS,
        compile_rounds=(1, 1, 1),
        compile_targets=("cpu",),
        compile_functions=fastact.ELEMENTWISE[:1],
        scaling=(("relu",), "1e3"),
    ),
}


def ops_of(name: str) -> tuple[str, ...]:
    """Operations ``name`` has: backward from the output only where the contract allows it
    with default parameters."""
    spec = fastact.REGISTRY[name]
    if spec.kind == "rowwise":
        return ROWWISE_OPS
    if spec.kind in ("reduction", "gated", "weighted"):
        return REDUCTION_OPS
    ops = ["forward", "grad", "backward"]
    if spec.dfdy is not None and dfdy_by_default(spec):
        ops.append("backward_y")
    return tuple(ops)


def dfdy_by_default(spec) -> bool:
    from fastact._spec import dfdy_allowed

    return dfdy_allowed(spec, dict(spec.defaults))


@dataclass(frozen=True)
class Case:
    function: str
    op: str
    dtype: str
    size: str  # a key of SIZES, or of ROW_SHAPES for row-wise functions
    mode: str
    impl: str

    @property
    def kind(self) -> str:
        return fastact.REGISTRY[self.function].kind

    @property
    def shape(self) -> tuple[int, ...]:
        return ROW_SHAPES[self.size] if self.kind != "elementwise" else (SIZES[self.size],)

    @property
    def result_shape(self) -> tuple[int, ...]:
        """The shape of the result: the input's, or a reduction's one value per row."""
        if self.kind == "reduction" and self.op == "forward":
            return self.shape[:-1]
        if self.kind == "gated" and self.op == "forward":
            return self.half_shape
        return self.shape

    @property
    def half_shape(self) -> tuple[int, ...]:
        """A gated unit's forward result (and dy): half of the last axis."""
        return self.shape[:-1] + (self.shape[-1] // 2,)

    @property
    def n(self) -> int:
        return int(np.prod(self.shape))

    @property
    def id(self) -> str:
        return f"{self.function}-{self.op}-{self.dtype}-{self.size}-{self.mode}-{self.impl}"

    @property
    def group(self) -> str:
        return f"{op_label(self.function, self.op)} {self.dtype} n={self.size} {MODE_LABELS[self.mode]}"

    @property
    def nbytes(self) -> int:
        if self.kind == "reduction":  # x read (and the gradient written); dy, y: a value per row
            return (1 if self.op == "forward" else 2) * self.n * np.dtype(self.dtype).itemsize
        if self.kind == "gated":  # x and half of it (the result, or dy), and the gradient written
            return (3 if self.op == "forward" else 5) * self.n * np.dtype(self.dtype).itemsize // 2
        return OPERANDS[self.op] * self.n * np.dtype(self.dtype).itemsize

    def extra_info(self) -> dict:
        """What the report reads: the case's coordinates and the bytes one call must move."""
        return {
            "kind": "kernel",
            "function": self.function,
            "op": self.op,
            "dtype": self.dtype,
            "size": self.n,
            "size_label": self.size,
            "shape": list(self.shape),
            "mode": self.mode,
            "impl": self.impl,
            "bytes": self.nbytes,
        }


def kernel_cases(grid: Grid, impls=IMPLEMENTATIONS, functions=None) -> list[Case]:
    """Every case of ``grid`` that ``impls`` can express, ordered so that consecutive
    cases share their data (dtype and size outermost) and one group's implementations run
    one after the other."""
    from bench import peers

    functions = tuple(fastact.REGISTRY) if functions is None else functions
    cases = []
    for dtype in grid.dtypes:
        for rowwise in (False, True):
            sizes = grid.row_shapes if rowwise else grid.sizes
            for size in sizes:
                largest = size == sizes[-1]
                for function in functions:
                    if (fastact.REGISTRY[function].kind != "elementwise") != rowwise:
                        continue
                    for op in ops_of(function):
                        if op not in grid.ops and not (op == "backward_y" and rowwise and "backward" in grid.ops):
                            continue
                        if op == "grad" and not grid.swept(function):
                            continue
                        for mode in grid.modes:
                            for impl in impls:
                                if grid.runs(impl, mode, largest, rowwise, function) and supports(
                                        impl, function, op, mode, peers):
                                    cases.append(Case(function, op, dtype, size, mode, impl))
    return cases


def supports(impl: str, function: str, op: str, mode: str, peers=None) -> bool:
    """Whether ``impl`` has a way to write this operation in this mode (known without
    importing the peer, so that a missing peer shows up as skipped benchmarks)."""
    if fastact.REGISTRY[function].kind in ("reduction", "gated") and mode == "inplace":
        return False  # the result has another shape than the operand it would overwrite
    if impl.startswith("fastact."):
        return True
    if impl == "numpy.nansafe":
        # The reference allocates its result; where it takes mpmath (gelu's Phi), it is an
        # oracle, not something to time.
        ref = REFERENCE[function]
        return (mode == "new" and not getattr(ref, "slow", False)
                and (op != "backward_y" or ref.kind == "rowwise" or ref.grad_y is not None))
    if impl == "numpy":
        return mode in NUMPY.get((function, op), {})
    if peers is None:
        from bench import peers
    return peers.supports(impl, function, op, mode)


# --- data ----------------------------------------------------------------------------------------


class Data:
    """The arrays of one (dtype, size): input ``x`` (normal, scale 3: both signs and the
    exponential regions), upstream gradient ``dy``, a preallocated ``out`` and a ``work``
    buffer that in-place benchmarks restore before every round."""

    def __init__(self, dtype: str, n: int):
        rng = np.random.default_rng(20240601)
        self.dtype = np.dtype(dtype)
        self.n = n
        self.x = (3 * rng.standard_normal(n)).astype(self.dtype)
        self.dy = rng.standard_normal(n).astype(self.dtype)
        self.out = np.empty(n, self.dtype)
        self.work = np.empty(n, self.dtype)
        self._y = {}

    def arrays(self, case: Case) -> SimpleNamespace:
        """Views of the arrays in the case's shape."""
        shape = case.shape
        rows = {"reduction": shape[:-1], "gated": case.half_shape}.get(case.kind, shape)  # dy: the result's
        ns = SimpleNamespace(
            # The weight of an activation with one (prelu): one per channel, axis 1.
            w=np.linspace(0.05, 0.5, shape[1]).astype(self.dtype) if case.kind == "weighted" else None,
            x=self.x.reshape(shape),
            dy=self.dy[: int(np.prod(rows))].reshape(rows),
            out=self.out[: int(np.prod(case.result_shape))].reshape(case.result_shape),
            work=self.work.reshape(shape),
            y=None,
            restore=None,
        )
        if case.op == "backward_y":
            ns.y = self.y(case.function, shape)
        if case.mode == "inplace":
            # The in-place operand: the input of forward/grad, dy of backward.
            src = self.x if case.op in ("forward", "grad") else self.dy
            work = self.work

            def restore():
                np.copyto(work, src)

            ns.restore = restore
        return ns

    def y(self, function: str, shape) -> np.ndarray:
        """The forward output ``f(x)`` (for backward from the output)."""
        key = (function, tuple(shape))
        if key not in self._y:
            if len(self._y) >= 2:  # 16M float64 outputs are 128 MB each
                self._y.pop(next(iter(self._y)))
            self._y[key] = np.ascontiguousarray(fastact.FUNCTIONS[function](self.x.reshape(shape)))
        return self._y[key]


def data_size(dtype: str, size: str) -> int:
    """Elements of the shared buffers for a size label (of SIZES or ROW_SHAPES)."""
    return SIZES[size] if size in SIZES else int(np.prod(ROW_SHAPES[size]))


# --- implementations ---------------------------------------------------------------------------


class Unavailable(Exception):
    """The implementation cannot run here (its package is not installed)."""


def build(case: Case, a: SimpleNamespace):
    """A zero-argument callable that performs the case once (a ``functools.partial`` where
    possible, so that every implementation pays the same, minimal, call overhead)."""
    if case.impl.startswith("fastact."):
        return _fastact(case, a)
    if case.impl == "numpy.nansafe":
        return _numpy_reference(case, a)
    if case.impl == "numpy":
        return NUMPY[(case.function, case.op)][case.mode](a)
    from bench import peers

    return peers.build(case, a)


def _fastact(case: Case, a):
    f = fastact.FUNCTIONS[case.function]
    target = case.impl.split(".", 1)[1]
    call = {"forward": f, "grad": getattr(f, "grad", None), "backward": f.backward, "backward_y": f.backward}[
        case.op
    ]
    kw = {"target": target}
    if case.kind == "reduction":
        kw["axis"] = -1
    if case.mode == "out":
        kw["out"] = a.out
    elif case.mode == "inplace":
        kw["out"] = a.work
    if case.kind == "weighted":  # the weight along axis 1; backward gives (dx, dweight)
        if case.op in ("forward", "grad"):
            return partial(call, a.work if case.mode == "inplace" else a.x, a.w, **kw)
        if "out" in kw:
            kw["out"] = (kw["out"], None)
        return partial(call, a.work if case.mode == "inplace" else a.dy, x=a.x, weight=a.w, **kw)
    if case.op in ("forward", "grad"):
        return partial(call, a.work if case.mode == "inplace" else a.x, **kw)
    dy = a.work if case.mode == "inplace" else a.dy
    if case.op == "backward":
        return partial(call, dy, x=a.x, **kw)
    return partial(call, dy, y=a.y, **kw)


def _numpy_reference(case: Case, a):
    ref = REFERENCE.get(case.function)
    if ref is None:
        raise Unavailable(f"fastact.reference has no {case.function}")

    def plain(fn):
        # The reference guards against NaN/inf warnings with np.errstate, which costs
        # ~2 us a call: the benchmark process silences NumPy's warnings once instead.
        return getattr(fn, "__wrapped__", fn)

    if case.kind in ("reduction", "gated"):
        if case.op == "forward":
            return partial(plain(ref.forward), a.x, -1)
        return partial(plain(ref.backward), a.dy, a.x, -1)
    if case.kind == "weighted":
        if case.op == "forward":
            return partial(plain(ref.forward), a.x, a.w, 1)
        return partial(plain(ref.backward), a.dy, a.x, a.w, 1)
    if case.op == "forward":
        return partial(plain(ref.forward), a.x)
    if case.op == "grad":
        return partial(plain(ref.grad), a.x)
    if case.op == "backward":
        return partial(plain(ref.backward), a.dy, x=a.x)
    return partial(plain(ref.backward), a.dy, y=a.y)


# NumPy as its users write each function: the one-liner of the tutorials and of Stack
# Overflow, with constants as Python scalars (weak in NumPy 2: the result keeps x's dtype).
def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _numpy_entries():
    def new(fn, *names):
        return {"new": lambda a: partial(fn, *(getattr(a, n) for n in names))}

    def sig_grad(x):
        s = _sigmoid(x)
        return s * (1 - s)

    def sig_backward(dy, x):
        s = _sigmoid(x)
        return dy * s * (1 - s)

    def softmax_backward_y(dy, y):
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))

    def where(cond, a, b):
        return np.where(cond, a, b)

    def log_softmax(x):
        z = x - x.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    zoo = {
        # The rest of the functions, forward only: what a NumPy user writes for each.
        "relu6": lambda x: np.clip(x, 0, 6),
        "hardtanh": lambda x: np.clip(x, -1, 1),
        "threshold": lambda x: where(x > 0, x, 0),
        "selu": lambda x: 1.0507009873554805 * where(x > 0, x, 1.6732632423543772 * np.expm1(x)),
        "celu": lambda x: where(x > 0, x, np.expm1(x)),
        "softplus": lambda x: np.logaddexp(0, x),
        "silu": lambda x: x / (1 + np.exp(-x)),
        "mish": lambda x: x * np.tanh(np.logaddexp(0, x)),
        "hardswish": lambda x: x * np.clip(x / 6 + 0.5, 0, 1),
        "squareplus": lambda x: (x + np.sqrt(x * x + 4)) / 2,
        "sparse_plus": lambda x: where(x <= -1, 0, where(x >= 1, x, (x + 1) ** 2 / 4)),
        "log_sigmoid": lambda x: -np.logaddexp(0, -x),
        "hardsigmoid": lambda x: np.clip(x / 6 + 0.5, 0, 1),
        "sparse_sigmoid": lambda x: np.clip((x + 1) / 2, 0, 1),
        "tanh": np.tanh,
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softshrink": lambda x: np.sign(x) * np.maximum(np.abs(x) - 0.5, 0),
        "hardshrink": lambda x: where(np.abs(x) > 0.5, x, 0),
        "tanhshrink": lambda x: x - np.tanh(x),
        "exponential": np.exp,
        "log_softmax": log_softmax,
        "softmin": lambda x: _softmax(-x),
    }
    entries = {(name, "forward"): new(fn, "x") for name, fn in zoo.items()}
    entries[("tanh", "backward_y")] = new(lambda dy, y: dy * (1 - y * y), "dy", "y")
    entries[("tanh", "backward")] = new(lambda dy, x: dy * (1 - np.tanh(x) ** 2), "dy", "x")
    return entries | {
        ("relu", "forward"): {
            "new": lambda a: partial(np.maximum, a.x, 0),
            "out": lambda a: partial(np.maximum, a.x, 0, out=a.out),
            "inplace": lambda a: partial(np.maximum, a.work, 0, out=a.work),
        },
        ("relu", "grad"): new(lambda x: (x > 0).astype(x.dtype), "x"),
        ("relu", "backward"): new(lambda dy, x: dy * (x > 0), "dy", "x"),
        ("relu", "backward_y"): new(lambda dy, y: dy * (y > 0), "dy", "y"),
        ("leaky_relu", "forward"): new(lambda x: np.where(x > 0, x, 0.01 * x), "x"),
        ("leaky_relu", "grad"): new(lambda x: np.where(x > 0, 1, 0.01).astype(x.dtype), "x"),
        ("leaky_relu", "backward"): new(lambda dy, x: np.where(x > 0, dy, 0.01 * dy), "dy", "x"),
        ("leaky_relu", "backward_y"): new(lambda dy, y: np.where(y > 0, dy, 0.01 * dy), "dy", "y"),
        ("elu", "forward"): new(lambda x: np.where(x > 0, x, np.expm1(x)), "x"),
        ("elu", "grad"): new(lambda x: np.where(x > 0, 1, np.exp(x)), "x"),
        ("elu", "backward"): new(lambda dy, x: dy * np.where(x > 0, 1, np.exp(x)), "dy", "x"),
        ("elu", "backward_y"): new(lambda dy, y: dy * np.where(y > 0, 1, y + 1), "dy", "y"),
        ("sigmoid", "forward"): {
            "new": lambda a: partial(_sigmoid, a.x),
        },
        ("sigmoid", "grad"): new(sig_grad, "x"),
        ("sigmoid", "backward"): new(sig_backward, "dy", "x"),
        ("sigmoid", "backward_y"): new(lambda dy, y: dy * y * (1 - y), "dy", "y"),
        ("step", "forward"): {
            "new": lambda a: partial(np.heaviside, a.x, 0),
            "out": lambda a: partial(np.heaviside, a.x, 0, out=a.out),
            "inplace": lambda a: partial(np.heaviside, a.work, 0, out=a.work),
        },
        ("step", "grad"): new(np.zeros_like, "x"),
        ("step", "backward"): new(lambda dy, x: np.zeros_like(dy), "dy", "x"),
        ("step", "backward_y"): new(lambda dy, y: np.zeros_like(dy), "dy", "y"),
        ("identity", "forward"): {
            "new": lambda a: a.x.copy,
            "out": lambda a: partial(np.copyto, a.out, a.x),
        },
        ("identity", "grad"): new(np.ones_like, "x"),
        ("identity", "backward"): new(lambda dy, x: dy.copy(), "dy", "x"),
        ("identity", "backward_y"): new(lambda dy, y: dy.copy(), "dy", "y"),
        ("softmax", "forward"): new(_softmax, "x"),
        ("softmax", "backward"): new(lambda dy, x: softmax_backward_y(dy, _softmax(x)), "dy", "x"),
        ("softmax", "backward_y"): new(softmax_backward_y, "dy", "y"),
        # logsumexp as NumPy's users write it (SciPy's is a peer of its own).
        ("logsumexp", "forward"): new(lambda x: _logsumexp(x), "x"),
        ("logsumexp", "backward"): new(lambda dy, x: dy[..., None] * _softmax(x), "dy", "x"),
        ("glu", "forward"): new(lambda x: _glu(x), "x"),
        ("rrelu", "forward"): new(lambda x: np.where(x > 0, x, (1 / 8 + 1 / 3) / 2 * x), "x"),
        ("sparsemax", "forward"): new(_sparsemax, "x"),
        # prelu with one weight per column (axis 1 of the row shapes), and its two gradients.
        ("prelu", "forward"): new(lambda x, w: np.where(x > 0, x, w * x), "x", "w"),
        ("prelu", "backward"): new(lambda dy, x, w: (np.where(x > 0, dy, w * dy), np.where(x > 0, 0, dy * x).sum(0)),
                                   "dy", "x", "w"),
    }


def _sparsemax(x):
    """The sort-based sparsemax of the paper (and of Keras and TensorFlow Addons)."""
    z = np.sort(x, axis=-1)[..., ::-1]
    cum = np.cumsum(z, axis=-1)
    k = np.arange(1, x.shape[-1] + 1, dtype=x.dtype)
    size = np.sum(1 + k * z > cum, axis=-1, keepdims=True)
    tau = (np.take_along_axis(cum, size - 1, axis=-1) - 1) / size.astype(x.dtype)
    return np.maximum(x - tau, 0)


def _glu(x):
    a, b = np.split(x, 2, axis=-1)
    return a * _sigmoid(b)


def _logsumexp(x):
    m = x.max(axis=-1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))[..., 0]


#: (function, op) -> {mode: builder(arrays) -> callable}: the idiomatic NumPy baseline.
NUMPY = _numpy_entries()
