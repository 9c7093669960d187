"""The peers: PyTorch, JAX, ONNX Runtime, numexpr and SciPy, each written the way its users
write the function, on one thread (``<peer>.1``) and on its default thread pool.

Peers are optional: a peer that is not installed shows up as skipped benchmarks.  Each
is imported on first use only (importing PyTorch or JAX takes seconds).  Thread counts
are set when a case is built, and cases of one implementation run one after another, so
each benchmark runs with the count its name says.  JAX's threads are fixed when it starts
(XLA's defaults): it has no one-thread variant here.
"""

from __future__ import annotations

import importlib
from functools import partial

import numpy as np

from bench.cases import MODES, Unavailable

#: Peer -> the module a case of it needs.
MODULES = {
    "torch": "torch",
    "jax": "jax",
    "onnxruntime": "onnxruntime",
    "numexpr": "numexpr",
    "scipy": "scipy.special",
}


def _peer(impl: str) -> tuple[str, int | None]:
    """(peer, threads): ``"torch.1"`` -> ("torch", 1); ``"torch"`` -> ("torch", None)."""
    name, _, threads = impl.partition(".")
    return name, int(threads) if threads else None


def module(impl: str):
    name = MODULES[_peer(impl)[0]]
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise Unavailable(f"{name} is not installed ({e})") from None


def available(impl: str) -> str | None:
    """None if ``impl`` can run here, else why not."""
    if impl.startswith("fastact.") or impl.startswith("numpy"):
        return None
    try:
        module(impl)
    except Unavailable as e:
        return str(e)
    return None


def supports(impl: str, function: str, op: str, mode: str) -> bool:
    name, _ = _peer(impl)
    table = ENTRIES.get(name, {})
    return mode in table.get((function, op), {})


def build(case, a):
    name, threads = _peer(case.impl)
    mod = module(case.impl)
    if name == "torch":
        default = _default_threads(mod)  # read before the first set_num_threads changes it
        mod.set_num_threads(threads or default)
    elif name == "numexpr":
        mod.set_num_threads(threads or mod.detect_number_of_cores())
    entry = ENTRIES[name][(case.function, case.op)][case.mode]
    return entry(mod, _adapt(name, mod, a, case, threads))


def describe() -> dict:
    """Versions and threads of the peers this process imported (for the report)."""
    import sys

    out = {}
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        out["torch"] = {"version": torch.__version__, "threads": _default_threads(torch)}
    if "jax" in sys.modules:
        jax = sys.modules["jax"]
        out["jax"] = {"version": jax.__version__, "threads": "XLA's default"}
    if "onnxruntime" in sys.modules:
        ort = sys.modules["onnxruntime"]
        out["onnxruntime"] = {"version": ort.__version__, "threads": "its default (intra-op pool)"}
    if "numexpr" in sys.modules:
        ne = sys.modules["numexpr"]
        out["numexpr"] = {"version": ne.__version__, "threads": ne.detect_number_of_cores()}
    if "scipy.special" in sys.modules:
        out["scipy"] = {"version": sys.modules["scipy"].__version__, "threads": 1}
    return out


_TORCH_DEFAULT = None


def _default_threads(torch) -> int:
    global _TORCH_DEFAULT
    if _TORCH_DEFAULT is None:
        _TORCH_DEFAULT = torch.get_num_threads()
    return _TORCH_DEFAULT


def _adapt(name, mod, a, case, threads):
    """The arrays as the peer's users hold them."""
    if name == "torch":
        _default_threads(mod)  # read before anything sets it
        t = type(a)(**{k: (mod.from_numpy(v) if isinstance(v, np.ndarray) else v) for k, v in vars(a).items()})
        t.zero = mod.tensor(0.0, dtype=t.x.dtype)
        return t
    if name == "numexpr":
        dt = a.x.dtype.type
        # Typed constants: a Python float literal would make numexpr compute in float64.
        a.const = {"zero": dt(0), "one": dt(1), "slope": dt(0.01)}
        return a
    if name == "jax":
        import jax.numpy as jnp

        # A float64 array needs JAX's x64 mode; without it JAX would compute in float32.
        if a.x.dtype == np.float64 and not mod.config.read("jax_enable_x64"):
            mod.config.update("jax_enable_x64", True)
        j = type(a)(**{k: (jnp.asarray(v) if isinstance(v, np.ndarray) else v) for k, v in vars(a).items()})
        return j
    if name == "onnxruntime":
        a.threads = threads
        a.case = case
        return a
    return a


# --- PyTorch ------------------------------------------------------------------------------------
# Backward: the ATen kernel autograd runs for the function, from the tensor autograd saves
# (the input, or the output where PyTorch saves that).
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
        ("glu", "forward"): {"new": lambda m, t: partial(F(m).glu, t.x, dim=-1)},
        ("glu", "backward"): {"new": lambda m, t: partial(aten(m).glu_backward, t.dy, t.x, -1)},
        ("logsumexp", "forward"): {
            "new": lambda m, t: partial(m.logsumexp, t.x, dim=-1),
            "out": lambda m, t: partial(m.logsumexp, t.x, dim=-1, out=t.out),
        },
        # What autograd runs for it (a composite: there is no ATen kernel of its own), from
        # the saved input and result.
        ("logsumexp", "backward"): {"new": lambda m, t: partial(_torch_logsumexp_backward, m, t.dy, t.x,
                                                                m.logsumexp(t.x, dim=-1))},
        ("softmax", "backward_y"): {
            "new": lambda m, t: partial(aten(m)._softmax_backward_data, t.dy, t.y, -1, t.x.dtype)
        },
        ("prelu", "forward"): {"new": lambda m, t: partial(F(m).prelu, t.x, t.w)},
        # Autograd's: the ATen kernel's elementwise gradients, the weight's summed to its shape.
        ("prelu", "backward"): {"new": lambda m, t: partial(_torch_prelu_backward, aten(m), t.dy, t.x, t.w)},
        ("rrelu", "forward"): {"new": lambda m, t: partial(F(m).rrelu, t.x)},  # training=False
        ("rrelu", "backward"): {  # evaluation mode: leaky_relu's kernel with the mean slope
            "new": lambda m, t: partial(aten(m).leaky_relu_backward, t.dy, t.x, (1 / 8 + 1 / 3) / 2, False)
        },
        **_torch_zoo(F, aten),
    }


def _torch_prelu_backward(aten, dy, x, w):
    dx, dw = aten._prelu_kernel_backward(dy, x, w)
    return dx, dw.sum_to_size(w.shape)


def _torch_logsumexp_backward(torch, dy, x, result):
    return dy.unsqueeze(-1) * (x - result.unsqueeze(-1)).exp()


#: The rest of the zoo in PyTorch, forward as ``torch.nn.functional`` (or ``torch``) with
#: fastact's defaults, which are PyTorch's; backward where ATen has the kernel autograd runs.
_TORCH_FORWARD = {
    "relu6": lambda F, m: F(m).relu6,
    "hardtanh": lambda F, m: F(m).hardtanh,
    "selu": lambda F, m: F(m).selu,
    "celu": lambda F, m: F(m).celu,
    "softplus": lambda F, m: F(m).softplus,
    "silu": lambda F, m: F(m).silu,
    "gelu": lambda F, m: F(m).gelu,
    "mish": lambda F, m: F(m).mish,
    "hardswish": lambda F, m: F(m).hardswish,
    "hardsigmoid": lambda F, m: F(m).hardsigmoid,
    "log_sigmoid": lambda F, m: F(m).logsigmoid,
    "tanh": lambda F, m: m.tanh,
    "softsign": lambda F, m: F(m).softsign,
    "softshrink": lambda F, m: F(m).softshrink,
    "hardshrink": lambda F, m: F(m).hardshrink,
    "tanhshrink": lambda F, m: F(m).tanhshrink,
    "exponential": lambda F, m: m.exp,
    "log_softmax": lambda F, m: partial(F(m).log_softmax, dim=-1),
    "softmin": lambda F, m: partial(F(m).softmin, dim=-1),
}
#: (function, op) -> ATen backward from (aten, tensors): from x ("backward") or y ("backward_y").
_TORCH_BACKWARD = {
    ("hardtanh", "backward"): lambda A, t: partial(A.hardtanh_backward, t.dy, t.x, -1.0, 1.0),
    ("softplus", "backward"): lambda A, t: partial(A.softplus_backward, t.dy, t.x, 1.0, 20.0),
    ("silu", "backward"): lambda A, t: partial(A.silu_backward, t.dy, t.x),
    ("gelu", "backward"): lambda A, t: partial(A.gelu_backward, t.dy, t.x),
    ("mish", "backward"): lambda A, t: partial(A.mish_backward, t.dy, t.x),
    ("hardswish", "backward"): lambda A, t: partial(A.hardswish_backward, t.dy, t.x),
    ("hardsigmoid", "backward"): lambda A, t: partial(A.hardsigmoid_backward, t.dy, t.x),
    ("tanh", "backward_y"): lambda A, t: partial(A.tanh_backward, t.dy, t.y),
    ("softshrink", "backward"): lambda A, t: partial(A.softshrink_backward, t.dy, t.x, 0.5),
    ("log_softmax", "backward_y"): lambda A, t: partial(A._log_softmax_backward_data, t.dy, t.y, -1, t.x.dtype),
}


def _torch_zoo(F, aten):
    out = {}
    for function, make in _TORCH_FORWARD.items():
        out[(function, "forward")] = {"new": lambda m, t, make=make: partial(make(F, m), t.x)}
    for key, make in _TORCH_BACKWARD.items():
        out[key] = {"new": lambda m, t, make=make: make(aten(m), t)}
    return out


# --- JAX ------------------------------------------------------------------------------------------
# Jitted once per case; ``block_until_ready`` so that the time covers the computation.
_JAX_FUNCTIONS = {
    "relu": lambda nn: nn.relu,
    "leaky_relu": lambda nn: nn.leaky_relu,
    "elu": lambda nn: nn.elu,
    "sigmoid": lambda nn: nn.sigmoid,
    "identity": lambda nn: (lambda x: x),
    "softmax": lambda nn: (lambda x: nn.softmax(x, axis=-1)),
    # the zoo, with fastact's defaults (jax.nn.gelu's own default is the tanh form)
    "relu6": lambda nn: nn.relu6,
    "hardtanh": lambda nn: nn.hard_tanh,
    "selu": lambda nn: nn.selu,
    "celu": lambda nn: nn.celu,
    "silu": lambda nn: nn.silu,
    "gelu": lambda nn: (lambda x: nn.gelu(x, approximate=False)),
    "hardswish": lambda nn: nn.hard_swish,
    "squareplus": lambda nn: nn.squareplus,
    "sparse_plus": lambda nn: nn.sparse_plus,
    "log_sigmoid": lambda nn: nn.log_sigmoid,
    "sparse_sigmoid": lambda nn: nn.sparse_sigmoid,
    "tanh": lambda nn: nn.tanh,
    "softsign": lambda nn: nn.soft_sign,
    "log_softmax": lambda nn: (lambda x: nn.log_softmax(x, axis=-1)),
    "logsumexp": lambda nn: (lambda x: nn.logsumexp(x, axis=-1)),
    "glu": lambda nn: (lambda x: nn.glu(x, axis=-1)),
}
#: Row-wise functions, reductions and gated units: no elementwise derivative.
_JAX_ROWWISE = ("softmax", "log_softmax", "logsumexp", "glu")


def _jax_entry(function, op):
    def builder(jax, j):
        f = _JAX_FUNCTIONS[function](jax.nn)
        if op == "forward":
            g = jax.jit(f)
            args = (j.x,)
        elif op == "grad":
            g = jax.jit(jax.vmap(jax.grad(f)))
            args = (j.x,)
        else:  # backward from x: the vector-Jacobian product
            g = jax.jit(lambda x, dy: jax.vjp(f, x)[1](dy)[0])
            args = (j.x, j.dy)
        g(*args).block_until_ready()  # compile outside the timing

        def call():
            return g(*args).block_until_ready()

        return call

    return {"new": builder}


def _jax_entries():
    out = {}
    for function in _JAX_FUNCTIONS:
        ops = ("forward", "backward") if function in _JAX_ROWWISE else ("forward", "grad", "backward")
        for op in ops:
            out[(function, op)] = _jax_entry(function, op)
    return out


# --- ONNX Runtime ---------------------------------------------------------------------------------
# A one-node graph per function, built with onnx.helper; "out" binds the preallocated array
# as the session's output (I/O binding), "new" lets the session allocate from its arena.
_ONNX_OPS = {
    "relu": ("Relu", {}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.01}),
    "rrelu": ("LeakyRelu", {"alpha": (1 / 8 + 1 / 3) / 2}),  # evaluation mode: the mean slope
    "prelu": ("PRelu", {}),  # the slope: a second input, an initializer of the weight's values
    "elu": ("Elu", {"alpha": 1.0}),
    "sigmoid": ("Sigmoid", {}),
    "identity": ("Identity", {}),
    "softmax": ("Softmax", {"axis": -1}),
    "selu": ("Selu", {}),
    "celu": ("Celu", {"alpha": 1.0}),
    "softplus": ("Softplus", {}),
    "hardsigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
    "hardswish": ("HardSwish", {}),
    "tanh": ("Tanh", {}),
    "softsign": ("Softsign", {}),
    "softshrink": ("Shrink", {"lambd": 0.5, "bias": 0.5}),
    "hardshrink": ("Shrink", {"lambd": 0.5}),
    "exponential": ("Exp", {}),
    "log_softmax": ("LogSoftmax", {"axis": -1}),
}


def _onnx_session(ort, function, dtype, shape, threads, weight=None):
    try:
        import onnx
        import onnx.numpy_helper
        from onnx import TensorProto, helper
    except ImportError as e:
        raise Unavailable(f"onnx is not installed ({e})") from None
    op, attrs = _ONNX_OPS[function]
    et = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}[np.dtype(dtype)]
    inputs, initializers = ["x"], []
    if weight is not None:  # PRelu's slope, broadcast along the last axis (axis 1 of a matrix)
        inputs.append("slope")
        initializers.append(onnx.numpy_helper.from_array(np.asarray(weight, dtype), "slope"))
    node = helper.make_node(op, inputs, ["y"], **attrs)
    graph = helper.make_graph(
        [node], function, [helper.make_tensor_value_info("x", et, list(shape))],
        [helper.make_tensor_value_info("y", et, list(shape))], initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    so = ort.SessionOptions()
    if threads is not None:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    try:
        return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - a kernel ONNX Runtime lacks for this dtype
        raise Unavailable(f"ONNX Runtime cannot run {op} on {dtype} ({type(e).__name__})") from None


def _onnx_entry(function):
    def new(ort, a):
        s = _onnx_session(ort, function, a.x.dtype, a.x.shape, a.threads, a.w)
        return partial(s.run, None, {"x": a.x})

    def out(ort, a):
        s = _onnx_session(ort, function, a.x.dtype, a.x.shape, a.threads, a.w)
        binding = s.io_binding()
        binding.bind_cpu_input("x", a.x)
        binding.bind_output("y", "cpu", 0, a.out.dtype, list(a.out.shape), a.out.ctypes.data)
        return partial(s.run_with_iobinding, binding)

    return {"new": new, "out": out}


# --- numexpr --------------------------------------------------------------------------------------
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
    ("sigmoid", "forward"): ("x", "one / (one + exp(-x))"),
    ("sigmoid", "grad"): ("x", "exp(-x) / (one + exp(-x))**2"),
    ("sigmoid", "backward"): ("dy", "dy * exp(-x) / (one + exp(-x))**2"),
    ("sigmoid", "backward_y"): ("dy", "dy * y * (one - y)"),
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


# --- SciPy ----------------------------------------------------------------------------------------
_SCIPY = {
    ("sigmoid", "forward"): {
        "new": lambda sp, a: partial(sp.expit, a.x),
        "out": lambda sp, a: partial(sp.expit, a.x, out=a.out),
        "inplace": lambda sp, a: partial(sp.expit, a.work, out=a.work),
    },
    ("softmax", "forward"): {"new": lambda sp, a: partial(sp.softmax, a.x, axis=-1)},
    ("logsumexp", "forward"): {"new": lambda sp, a: partial(sp.logsumexp, a.x, axis=-1)},
}

#: peer -> {(function, op): {mode: builder(module, arrays) -> callable}}
ENTRIES = {
    "torch": _torch_entries(),
    "jax": _jax_entries(),
    "onnxruntime": {(f, "forward"): _onnx_entry(f) for f in _ONNX_OPS},
    "numexpr": {k: _numexpr_entry(*v) for k, v in _NUMEXPR.items()},
    "scipy": _SCIPY,
}
