"""What is benchmarked: the grid of cases, the implementations, and the data they run on.

Everything here is derived from ``fastact.REGISTRY``: a newly declared activation gets its
fastact and NumPy-reference benchmarks with no edit in this package.  Peers (PyTorch,
numexpr, SciPy, NumPy's own one-liners) are written out per function, the way their users
write them, and cover the functions they have.

A case is one (function, operation, dtype, size, mode, implementation); its pytest id is
``function-op-dtype-size-mode-impl`` (e.g. ``relu-forward-float32-16M-out-fastact.auto``)
and its pytest-benchmark group holds every implementation of the same
(function, op, dtype, size, mode), so pytest-benchmark's own table compares them side by
side.  Every result carries ``extra_info`` (see :meth:`Case.extra_info`) from which
``python -m bench`` builds its report.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import numpy as np

import fastact
from fastact.reference import REFERENCE

# --- the grid ----------------------------------------------------------------------------------

#: Array sizes (number of elements) and their labels.
SIZES = {"1e3": 1_000, "1e5": 100_000, "1e6": 1_000_000, "16M": 16_000_000}
DTYPES = ("float32", "float64")
#: How the result is stored: a new array each call, a preallocated ``out``, or over the input.
MODES = ("new", "out", "inplace")
MODE_LABELS = {"new": "new array", "out": "preallocated out", "inplace": "in place"}
#: Row length of the row-wise functions: an array of n elements is (n // ROW, ROW).
ROW = 1_000

ELEMENTWISE_OPS = ("forward", "grad", "backward", "backward_y")
ROWWISE_OPS = ("forward", "backward", "backward_y")
#: Arrays each operation reads plus the one it writes: the bytes it must move at least.
OPERANDS = {"forward": 2, "grad": 2, "backward": 3, "backward_y": 3}

FASTACT_TARGETS = ("cpu", "parallel", "auto")
IMPLEMENTATIONS = (
    *(f"fastact.{t}" for t in FASTACT_TARGETS),
    "numpy",
    "numpy.ufunc",
    "torch",
    "numexpr",
    "scipy",
)
IMPL_LABELS = {
    "fastact.cpu": "fastact cpu",
    "fastact.parallel": "fastact parallel",
    "fastact.auto": "fastact auto",
    "fastact.cuda": "fastact cuda",
    "numpy": "NumPy",
    "numpy.ufunc": "NumPy ufunc",
    "torch": "PyTorch",
    "numexpr": "numexpr",
    "scipy": "SciPy",
    "copy": "parallel copy",
}


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
    """A selection of the grid: which dtypes, sizes, modes and operations run."""

    name: str
    dtypes: tuple[str, ...]
    sizes: tuple[str, ...]
    modes: tuple[str, ...]
    ops: tuple[str, ...]
    # Subprocess rounds of the compile-time measurements: (import, cold, warm).
    compile_rounds: tuple[int, int, int]
    compile_targets: tuple[str, ...]
    # Functions whose first call is timed: the first elementwise and the first row-wise.
    compile_functions: tuple[str, ...] = tuple(fastact.ELEMENTWISE[:1] + fastact.ROWWISE[:1])
    # Implementations measured in the modes other than "new" (None: all of them).
    other_mode_impls: tuple[str, ...] | None = None


GRIDS = {
    # What the report's summary, roofline, tables and plots need, in under 3 minutes on
    # 2 cores: every implementation with a new array each call, and fastact's auto target
    # (and NumPy's one-ufunc spellings) into a preallocated out.
    "default": Grid(
        "default",
        dtypes=("float32",),
        sizes=tuple(SIZES),
        modes=("new", "out"),
        ops=("forward", "grad", "backward"),
        compile_rounds=(2, 1, 2),
        compile_targets=("cpu", "parallel"),
        compile_functions=fastact.ELEMENTWISE[:1],
        other_mode_impls=("fastact.auto", "numpy.ufunc"),
    ),
    "full": Grid(
        "full",
        dtypes=DTYPES,
        sizes=tuple(SIZES),
        modes=MODES,
        ops=ELEMENTWISE_OPS,
        compile_rounds=(5, 3, 5),
        compile_targets=("cpu", "parallel"),
    ),
    # Every implementation, operation, dtype and mode once, on tiny arrays: keeps the suite
    # from rotting, and checks every implementation against the NumPy reference.
    "smoke": Grid(
        "smoke",
        dtypes=DTYPES,
        sizes=("1e3",),
        modes=MODES,
        ops=ELEMENTWISE_OPS,
        compile_rounds=(1, 1, 1),
        compile_targets=("cpu",),
        compile_functions=fastact.ELEMENTWISE[:1],
    ),
}


def ops_of(name: str) -> tuple[str, ...]:
    """Operations ``name`` has: backward from the output only where the contract allows it
    with default parameters."""
    spec = fastact.REGISTRY[name]
    if spec.kind == "rowwise":
        return ROWWISE_OPS
    ops = ["forward", "grad", "backward"]
    if spec.dfdy is not None and _dfdy_by_default(spec):
        ops.append("backward_y")
    return tuple(ops)


def _dfdy_by_default(spec) -> bool:
    from fastact._spec import dfdy_allowed

    return dfdy_allowed(spec, dict(spec.defaults))


@dataclass(frozen=True)
class Case:
    function: str
    op: str
    dtype: str
    size: str  # a key of SIZES
    mode: str
    impl: str

    @property
    def n(self) -> int:
        return SIZES[self.size]

    @property
    def kind(self) -> str:
        return fastact.REGISTRY[self.function].kind

    @property
    def id(self) -> str:
        return f"{self.function}-{self.op}-{self.dtype}-{self.size}-{self.mode}-{self.impl}"

    @property
    def group(self) -> str:
        return f"{op_label(self.function, self.op)} {self.dtype} n={self.size} {MODE_LABELS[self.mode]}"

    @property
    def nbytes(self) -> int:
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
            "shape": list(shape_of(self.kind, self.n)),
            "mode": self.mode,
            "impl": self.impl,
            "bytes": self.nbytes,
        }


def shape_of(kind: str, n: int) -> tuple[int, ...]:
    return (n // ROW, ROW) if kind == "rowwise" and n >= ROW else (n,)


def kernel_cases(grid: Grid, impls=IMPLEMENTATIONS, functions=None) -> list[Case]:
    """Every case of ``grid`` that ``impls`` can express, ordered so that consecutive
    cases share their data (dtype and size outermost) and one group's implementations run
    one after the other."""
    functions = tuple(fastact.REGISTRY) if functions is None else functions
    cases = []
    for dtype in grid.dtypes:
        for size in grid.sizes:
            for function in functions:
                for op in ops_of(function):
                    if op not in grid.ops:
                        continue
                    for mode in grid.modes:
                        for impl in impls:
                            if (
                                mode != "new"
                                and grid.other_mode_impls is not None
                                and impl not in grid.other_mode_impls
                            ):
                                continue
                            if supports(impl, function, op, mode):
                                cases.append(Case(function, op, dtype, size, mode, impl))
    return cases


def supports(impl: str, function: str, op: str, mode: str) -> bool:
    """Whether ``impl`` has a way to write this operation in this mode (known without
    importing the peer, so that a missing peer shows up as skipped benchmarks)."""
    if impl.startswith("fastact."):
        return True
    if impl == "numpy":
        # The reference allocates its result; it is the baseline of every mode.
        return mode == "new"
    return mode in PEERS[impl].get((function, op), {})


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
        """Views of the arrays in the case's shape (rows of ``ROW`` for row-wise functions)."""
        shape = shape_of(case.kind, self.n)
        ns = SimpleNamespace(
            x=self.x.reshape(shape),
            dy=self.dy.reshape(shape),
            out=self.out.reshape(shape),
            work=self.work.reshape(shape),
            y=None,
            restore=None,
        )
        if case.op == "backward_y":
            ns.y = self.y(case.function).reshape(shape)
        if case.mode == "inplace":
            # The in-place operand: the input of forward/grad, dy of backward.
            src = self.x if case.op in ("forward", "grad") else self.dy
            work = self.work

            def restore():
                np.copyto(work, src)

            ns.restore = restore
        return ns

    def y(self, function: str) -> np.ndarray:
        """The forward output ``f(x)`` (for backward from the output)."""
        if function not in self._y:
            if len(self._y) >= 2:  # 16M float64 outputs are 128 MB each
                self._y.pop(next(iter(self._y)))
            spec = fastact.REGISTRY[function]
            x = self.x.reshape(shape_of(spec.kind, self.n))
            self._y[function] = np.ascontiguousarray(fastact.FUNCTIONS[function](x)).reshape(-1)
        return self._y[function]


# --- implementations ---------------------------------------------------------------------------


class Unavailable(Exception):
    """The implementation cannot run here (its package is not installed)."""


def build(case: Case, a: SimpleNamespace):
    """A zero-argument callable that performs the case once (a ``functools.partial``, so
    that every implementation pays the same, minimal, call overhead)."""
    if case.impl.startswith("fastact."):
        return _fastact(case, a)
    if case.impl == "numpy":
        return _numpy_reference(case, a)
    peer = PEERS[case.impl]
    module = _import(peer["__module__"])
    return peer[(case.function, case.op)][case.mode](module, _adapt(case.impl, module, a))


def _fastact(case: Case, a):
    f = fastact.FUNCTIONS[case.function]
    target = case.impl.split(".", 1)[1]
    call = {"forward": f, "grad": getattr(f, "grad", None), "backward": f.backward, "backward_y": f.backward}[
        case.op
    ]
    kw = {"target": target}
    if case.mode == "out":
        kw["out"] = a.out
    elif case.mode == "inplace":
        kw["out"] = a.work
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
        # ~2 us a call: a NumPy user does not write it, and the benchmark data is finite.
        return getattr(fn, "__wrapped__", fn)

    if case.op == "forward":
        return partial(plain(ref.forward), a.x)
    if case.op == "grad":
        return partial(plain(ref.grad), a.x)
    if case.op == "backward":
        return partial(plain(ref.backward), a.dy, x=a.x)
    if ref.kind == "elementwise" and ref.grad_y is None:
        raise Unavailable(f"fastact.reference has no derivative of {case.function} from its output")
    return partial(plain(ref.backward), a.dy, y=a.y)


def _import(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Unavailable(f"{module} is not installed ({e})") from None


def available(impl: str) -> str | None:
    """None if ``impl`` can run here, else why not."""
    if impl.startswith("fastact.") or impl == "numpy":
        return None
    try:
        _import(PEERS[impl]["__module__"])
    except Unavailable as e:
        return str(e)
    return None


def _adapt(impl, module, a):
    """The arrays as the peer's users hold them."""
    if impl == "torch":
        t = SimpleNamespace(
            **{k: (module.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in vars(a).items()}
        )
        t.zero = module.tensor(0.0, dtype=t.x.dtype)
        return t
    if impl == "numexpr":
        dt = a.x.dtype.type
        # Typed constants: a Python float literal would make numexpr compute in float64.
        a.const = {"zero": dt(0), "one": dt(1), "slope": dt(0.01)}
    return a


# PyTorch, as a PyTorch user writes each function on CPU tensors (torch.from_numpy shares
# the NumPy buffers).  Backward: the ATen kernel autograd runs for the function, from the
# tensor autograd saves (the input, or the output where PyTorch saves that).
def _torch_entries():
    def F(m):
        return m.nn.functional

    def aten(m):
        return m.ops.aten

    return {
        ("relu", "forward"): {
            "new": lambda m, t: partial(F(m).relu, t.x),
            "inplace": lambda m, t: partial(F(m).relu, t.work, inplace=True),
        },
        ("relu", "backward"): {"new": lambda m, t: partial(aten(m).threshold_backward, t.dy, t.x, 0)},
        ("relu", "backward_y"): {"new": lambda m, t: partial(aten(m).threshold_backward, t.dy, t.y, 0)},
        ("leaky_relu", "forward"): {
            "new": lambda m, t: partial(F(m).leaky_relu, t.x),
            "inplace": lambda m, t: partial(F(m).leaky_relu, t.work, inplace=True),
        },
        ("leaky_relu", "backward"): {
            "new": lambda m, t: partial(aten(m).leaky_relu_backward, t.dy, t.x, 0.01, False)
        },
        ("leaky_relu", "backward_y"): {
            "new": lambda m, t: partial(aten(m).leaky_relu_backward, t.dy, t.y, 0.01, True)
        },
        ("elu", "forward"): {
            "new": lambda m, t: partial(F(m).elu, t.x),
            "inplace": lambda m, t: partial(F(m).elu, t.work, inplace=True),
        },
        ("elu", "backward"): {"new": lambda m, t: partial(aten(m).elu_backward, t.dy, 1.0, 1, 1, False, t.x)},
        ("elu", "backward_y"): {
            "new": lambda m, t: partial(aten(m).elu_backward, t.dy, 1.0, 1, 1, True, t.y)
        },
        ("sigmoid", "forward"): {
            "new": lambda m, t: partial(m.sigmoid, t.x),
            "out": lambda m, t: partial(m.sigmoid, t.x, out=t.out),
            "inplace": lambda m, t: partial(m.sigmoid_, t.work),
        },
        ("sigmoid", "backward_y"): {"new": lambda m, t: partial(aten(m).sigmoid_backward, t.dy, t.y)},
        ("step", "forward"): {
            "new": lambda m, t: partial(m.heaviside, t.x, t.zero),
            "out": lambda m, t: partial(m.heaviside, t.x, t.zero, out=t.out),
            "inplace": lambda m, t: partial(m.Tensor.heaviside_, t.work, t.zero),
        },
        ("identity", "forward"): {
            "new": lambda m, t: partial(m.clone, t.x),
            "out": lambda m, t: partial(t.out.copy_, t.x),
        },
        ("softmax", "forward"): {"new": lambda m, t: partial(F(m).softmax, t.x, dim=-1)},
        ("softmax", "backward_y"): {
            "new": lambda m, t: partial(aten(m)._softmax_backward_data, t.dy, t.y, -1, t.x.dtype)
        },
    }


# numexpr, as its users write expressions; out= and in place through ``out``.
_NUMEXPR = {
    ("relu", "forward"): ("x", "where(x > 0, x, zero)"),
    ("relu", "grad"): ("x", "where(x > 0, one, zero)"),
    ("relu", "backward"): ("dy", "where(x > 0, dy, zero)"),
    ("relu", "backward_y"): ("dy", "where(y > 0, dy, zero)"),
    ("leaky_relu", "forward"): ("x", "where(x > 0, x, slope * x)"),
    ("leaky_relu", "grad"): ("x", "where(x > 0, one, slope)"),
    ("leaky_relu", "backward"): ("dy", "where(x > 0, dy, slope * dy)"),
    ("leaky_relu", "backward_y"): ("dy", "where(y > 0, dy, slope * dy)"),
    ("elu", "forward"): ("x", "where(x > 0, x, expm1(x))"),
    ("elu", "grad"): ("x", "where(x > 0, one, exp(x))"),
    ("elu", "backward"): ("dy", "where(x > 0, dy, dy * exp(x))"),
    ("elu", "backward_y"): ("dy", "where(y > 0, dy, dy * (y + one))"),
    ("sigmoid", "forward"): ("x", "1 / (1 + exp(-x))"),
    ("sigmoid", "grad"): ("x", "exp(-x) / (1 + exp(-x))**2"),
    ("sigmoid", "backward"): ("dy", "dy * exp(-x) / (1 + exp(-x))**2"),
    ("sigmoid", "backward_y"): ("dy", "dy * y * (1 - y)"),
    ("step", "forward"): ("x", "where(x > 0, one, zero)"),
}


def _numexpr_entry(inplace_operand, expr):
    def make(mode):
        def builder(ne, a):
            names = {"x": a.x, "dy": a.dy, "y": a.y, **a.const}
            kw = {}
            if mode == "out":
                kw["out"] = a.out
            elif mode == "inplace":
                names[inplace_operand] = a.work
                kw["out"] = a.work
            local = {k: v for k, v in names.items() if v is not None}
            return partial(ne.evaluate, expr, local_dict=local, **kw)

        return builder

    return {mode: make(mode) for mode in MODES}


# NumPy's own one-call spellings, where a single ufunc is the whole function.
_NUMPY_UFUNC = {
    ("relu", "forward"): {
        "new": lambda np_, a: partial(np_.maximum, a.x, 0),
        "out": lambda np_, a: partial(np_.maximum, a.x, 0, out=a.out),
        "inplace": lambda np_, a: partial(np_.maximum, a.work, 0, out=a.work),
    },
    ("step", "forward"): {
        "new": lambda np_, a: partial(np_.heaviside, a.x, 0.0),
        "out": lambda np_, a: partial(np_.heaviside, a.x, 0.0, out=a.out),
        "inplace": lambda np_, a: partial(np_.heaviside, a.work, 0.0, out=a.work),
    },
    ("identity", "forward"): {
        "new": lambda np_, a: a.x.copy,
        "out": lambda np_, a: partial(np_.copyto, a.out, a.x),
    },
}

_SCIPY = {
    ("sigmoid", "forward"): {
        "new": lambda sp, a: partial(sp.expit, a.x),
        "out": lambda sp, a: partial(sp.expit, a.x, out=a.out),
        "inplace": lambda sp, a: partial(sp.expit, a.work, out=a.work),
    },
    ("softmax", "forward"): {"new": lambda sp, a: partial(sp.softmax, a.x, axis=-1)},
}

#: impl -> {(function, op): {mode: builder(module, arrays) -> callable}, "__module__": name}
PEERS = {
    "numpy.ufunc": {"__module__": "numpy", **_NUMPY_UFUNC},
    "torch": {"__module__": "torch", **_torch_entries()},
    "numexpr": {"__module__": "numexpr", **{k: _numexpr_entry(*v) for k, v in _NUMEXPR.items()}},
    "scipy": {"__module__": "scipy.special", **_SCIPY},
}
