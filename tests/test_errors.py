"""Every error rule of the contract, for every function and operation: the exception type,
a message naming the function, what was expected and what was given, and nothing
written (inputs and ``out`` unchanged after the raise)."""

import re

import numpy as np
import pytest
from _helpers import SHAPED, y_refused_cases

import fastact as fa
from fastact._spec import check_params

SENTINEL = 12345.0


def _entries():
    """(label, function name as it appears in messages, runner(x, dy, **kw))."""
    out = []
    for name in SHAPED:
        fn = fa.FUNCTIONS[name]
        out.append((f"{name}", name, lambda x, dy, fn=fn, **kw: fn(x, **kw)))
        if name in fa.ELEMENTWISE:
            out.append((f"{name}.grad", f"{name}.grad", lambda x, dy, fn=fn, **kw: fn.grad(x, **kw)))
        out.append((f"{name}.backward", f"{name}.backward", lambda x, dy, fn=fn, **kw: fn.backward(dy, x=x, **kw)))
        out.append((f"{name}.backward-y", f"{name}.backward", lambda x, dy, fn=fn, **kw: fn.backward(dy, y=x, **kw)))
    return out


ENTRIES = [e for e in _entries()
           if not (e[0].endswith("-y") and e[1].split(".")[0] in fa.ELEMENTWISE
                   and fa.REGISTRY[e[1].split(".")[0]].dfdy is None)]
ids = [e[0] for e in ENTRIES]


class Unchanged:
    """Snapshot arrays, then assert that none of them changed."""

    def __init__(self, *arrays):
        self.arrays = [a for a in arrays if isinstance(a, np.ndarray)]
        self.copies = [a.copy() for a in self.arrays]

    def check(self):
        for a, c in zip(self.arrays, self.copies):
            assert np.array_equal(a, c, equal_nan=True), "an array was written by a call that raised"


def _raises(exc, match, run, *arrays):
    snap = Unchanged(*arrays)
    with pytest.raises(exc, match=match):
        run()
    snap.check()


def _operands(dtype=np.float64, shape=(3, 4)):
    x = np.linspace(-2, 2, np.prod(shape)).reshape(shape).astype(dtype)
    dy = np.full(shape, 0.5, dtype)
    out = np.full(shape, SENTINEL, dtype)
    return x, dy, out


BAD_VALUES = [
    pytest.param(np.array([1.0, None], dtype=object), "object", id="object"),
    pytest.param(np.array(["a", "b"]), "<U1", id="str"),
    pytest.param(np.array([1 + 2j, 3j]), "complex128", id="complex"),
    pytest.param(np.array(["2020-01-01", "2021-01-01"], dtype="datetime64[D]"), r"datetime64\[D\]", id="datetime"),
    pytest.param(np.array([1, 2], dtype="timedelta64[s]"), r"timedelta64\[s\]", id="timedelta"),
    pytest.param("text", "<U4", id="python-str"),
    pytest.param([1j, 2.0], "complex128", id="complex-list"),
]


@pytest.mark.parametrize("bad,dtype_name", BAD_VALUES)
@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_unsupported_dtype(entry, bad, dtype_name):
    _, func, run = entry
    x, dy, out = _operands(shape=(2,))
    msg = rf"{re.escape(func)}\(\).*{dtype_name}.*float16, float32 or float64"
    _raises(TypeError, msg, lambda: run(bad, dy, out=out), x, dy, out)
    # The upstream gradient is checked too.
    if "backward" in func:
        _raises(TypeError, msg, lambda: run(x, bad, out=out), x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_ragged_input_names_the_function(entry):
    _, func, run = entry
    x, dy, out = _operands(shape=(2,))
    ragged = [[1.0, 2.0], [3.0]]
    msg = rf"{re.escape(func)}\(\): (x|y|dy) could not be converted to an array \(.*inhomogeneous"
    _raises(ValueError, msg, lambda: run(ragged, dy, out=out), x, dy, out)
    if "backward" in func:
        _raises(ValueError, rf"{re.escape(func)}\(\): dy could not be converted", lambda: run(x, ragged, out=out),
                x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_out_wrong_dtype(entry):
    _, func, run = entry
    x, dy, _ = _operands()
    for wrong in (np.float32, np.float16, np.int64):
        out = np.full(x.shape, SENTINEL).astype(wrong)
        _raises(TypeError, rf"{re.escape(func)}\(\): out must have dtype float64.*got {np.dtype(wrong)}",
                lambda: run(x, dy, out=out), x, dy, out)
    # float32 input: a float64 out is refused too (no silent casting).
    x32, dy32 = x.astype(np.float32), dy.astype(np.float32)
    out = np.full(x.shape, SENTINEL)
    _raises(TypeError, r"dtype float32.*got float64", lambda: run(x32, dy32, out=out), x32, dy32, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_out_wrong_shape(entry):
    _, func, run = entry
    x, dy, _ = _operands()
    for shape in [(4, 3), (12,), (3, 4, 1), (1, 4), ()]:
        out = np.full(shape, SENTINEL)
        _raises(ValueError, rf"{re.escape(func)}\(\): out must have shape \(3, 4\).*got {re.escape(str(shape))}",
                lambda: run(x, dy, out=out), x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_out_read_only(entry):
    _, func, run = entry
    x, dy, out = _operands()
    out.flags.writeable = False
    _raises(ValueError, rf"{re.escape(func)}\(\): out is read-only", lambda: run(x, dy, out=out), x, dy, out)
    # A read-only *input* is fine.
    x.flags.writeable = False
    run(x, dy)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_out_not_an_ndarray(entry):
    _, func, run = entry
    x, dy, _ = _operands()
    for out in ([[0.0] * 4] * 3, tuple([0.0] * 4 for _ in range(3)), 3.0):
        _raises(TypeError, rf"{re.escape(func)}\(\): out must be a numpy.ndarray, got {type(out).__name__}",
                lambda: run(x, dy, out=out), x, dy)


@pytest.mark.parametrize("target", ["gpu", "CPU", "", 1, "threads"])
@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_bad_target(entry, target):
    _, func, run = entry
    x, dy, out = _operands()
    match = rf"{re.escape(func)}\(\): target must be one of 'auto', 'cpu', 'parallel', 'cuda', got {re.escape(repr(target))}"
    _raises(ValueError, match, lambda: run(x, dy, out=out, target=target), x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_target_that_is_not_a_string(entry):
    """An array (or any non-string) as target gets fastact's message, not NumPy's
    "truth value of an array is ambiguous"."""
    _, func, run = entry
    x, dy, out = _operands()
    for target in (np.array(["cpu", "cpu"]), np.array("cpu"), ["cpu"], b"cpu"):
        _raises(ValueError, rf"{re.escape(func)}\(\): target must be one of 'auto', 'cpu', 'parallel', 'cuda', got",
                lambda: run(x, dy, out=out, target=target), x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_cuda_unavailable(entry):
    if fa.cuda_available():
        pytest.skip("CUDA is available here")
    _, func, run = entry
    x, dy, out = _operands()
    assert issubclass(fa.CudaUnavailableError, Exception)
    _raises(fa.CudaUnavailableError, rf"{re.escape(func)}.*(pip install numba-cuda|needs an NVIDIA GPU)",
            lambda: run(x, dy, out=out, target="cuda"), x, dy, out)


ELEMENTWISE_ENTRIES = [e for e in ENTRIES if e[1].split(".")[0] in fa.ELEMENTWISE]
eids = [e[0] for e in ELEMENTWISE_ENTRIES]


@pytest.mark.parametrize("entry", ELEMENTWISE_ENTRIES, ids=eids)
def test_unknown_parameter(entry):
    _, func, run = entry
    x, dy, out = _operands()
    _raises(TypeError, rf"{re.escape(func)}\(\) got an unexpected keyword argument 'bogus'",
            lambda: run(x, dy, out=out, bogus=1.0), x, dy, out)


@pytest.mark.parametrize("name", fa.ROWWISE)
def test_rowwise_unknown_keyword(name):
    fn = fa.FUNCTIONS[name]
    x, dy, out = _operands()
    _raises(TypeError, rf"{name}\(\) got an unexpected keyword argument 'bogus'",
            lambda: fn(x, out=out, bogus=1.0), x, out)
    _raises(TypeError, rf"{name}\.backward\(\) got an unexpected keyword argument 'bogus'",
            lambda: fn.backward(dy, x=x, out=out, bogus=1.0), x, out)


PARAM_CASES = [(e, p.name) for e in ELEMENTWISE_ENTRIES for p in fa.REGISTRY[e[1].split(".")[0]].params]


@pytest.mark.parametrize("entry,param", PARAM_CASES, ids=[f"{e[0]}-{p}" for e, p in PARAM_CASES])
def test_bad_parameter_values(entry, param):
    _, func, run = entry
    x, dy, out = _operands()
    choices = next(p.choices for p in fa.REGISTRY[func.split(".")[0]].params if p.name == param)
    if choices:  # a string among a few
        options = " or ".join(repr(c) for c in choices)
        for value in (0.0, None, True, b"none"):
            _raises(TypeError, rf"{re.escape(func)}\(\): {param} must be {re.escape(options)}, got {type(value).__name__}",
                    lambda: run(x, dy, out=out, **{param: value}), x, dy, out)
        for value in ("", "None", "TANH", "erf"):
            _raises(ValueError, rf"{re.escape(func)}\(\): {param} must be {re.escape(options)}, got {value!r}",
                    lambda: run(x, dy, out=out, **{param: value}), x, dy, out)
        for value in choices:
            run(x, dy, **{param: value})
        return
    for value, tname in [("0.1", "str"), (1j, "complex"), (True, "bool"), (np.array([0.1]), "ndarray"),
                         (None, "NoneType"), ([0.1], "list")]:
        _raises(TypeError, rf"{re.escape(func)}\(\): {param} must be a real number, got {tname}",
                lambda: run(x, dy, out=out, **{param: value}), x, dy, out)
    for value in (np.nan, np.inf, -np.inf, float("nan")):
        _raises(ValueError, rf"{re.escape(func)}\(\): {param} must be finite, got {re.escape(repr(float(value)))}",
                lambda: run(x, dy, out=out, **{param: value}), x, dy, out)
    # NumPy scalars and ints are real numbers (the default's value, so that y= is allowed).
    default = fa.REGISTRY[func.split(".")[0]].defaults[param]
    run(x, dy, **{param: np.float32(default)})
    if default == int(default):
        run(x, dy, **{param: int(default)})


@pytest.mark.parametrize("entry,param", PARAM_CASES, ids=[f"{e[0]}-{p}" for e, p in PARAM_CASES])
def test_parameter_beyond_the_compute_dtype(entry, param):
    """A finite parameter that would overflow the dtype the call computes in (float32 for
    float16 and float32 input) is refused, not turned into inf (and NaN at x = 0)."""
    label, func, run = entry
    sp = fa.REGISTRY[func.split(".")[0]]
    if any(p.choices for p in sp.params if p.name == param):
        pytest.skip(f"{param} is a choice among strings")
    for value in (1e300, -1e300, 1e39, 10**400):
        try:
            check_params(sp, func, {param: float(min(max(value, -1e308), 1e308))})
        except ValueError:
            continue  # breaks a declared requirement: that message comes first
        for dtype in (np.float16, np.float32):
            x, dy, out = _operands(dtype)
            if isinstance(value, int):
                match = rf"{re.escape(func)}\(\): {param} must be within float64's range"
            else:
                match = rf"{re.escape(func)}\(\): {param}={re.escape(repr(float(value)))} overflows float32"
            if label.endswith("-y") and not isinstance(value, int):
                match = rf"{re.escape(func)}\("  # y= with other parameters may be refused first
            for target in ("cpu", "parallel", "auto"):
                _raises(ValueError, match, lambda: run(x, dy, out=out, target=target, **{param: value}), x, dy, out)
        if not isinstance(value, int) and not label.endswith("-y"):
            x, dy, _ = _operands(np.float64)
            run(x, dy, **{param: value})  # float64 holds it


@pytest.mark.parametrize("name", fa.ELEMENTWISE)
def test_declared_requirements(name):
    """Parameters outside a declared ``requires`` raise ValueError naming it."""
    sp = fa.REGISTRY[name]
    checked = 0
    for p in sp.params:
        if p.requires is None:
            continue
        for v in (-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0):
            try:
                check_params(sp, name, {p.name: v})
            except ValueError:
                x, dy, out = _operands()
                _raises(ValueError, rf"{name}\(\): {re.escape(p.requires)} is required",
                        lambda: fa.FUNCTIONS[name](x, out=out, **{p.name: v}), x, out)
                checked += 1
    if any(p.requires for p in sp.params):
        assert checked, f"{name}: no value breaks its requirement"


@pytest.mark.parametrize("name", SHAPED)
def test_backward_needs_exactly_one_of_x_and_y(name):
    fn = fa.FUNCTIONS[name]
    x, dy, out = _operands()
    match = rf"{name}.backward\(\) takes exactly one of x= .* or y="
    _raises(TypeError, match, lambda: fn.backward(dy, out=out), x, dy, out)
    _raises(TypeError, match, lambda: fn.backward(dy, x=x, y=x, out=out), x, dy, out)


@pytest.mark.parametrize("name", fa.REGISTRY)
def test_backward_refuses_a_positional_operand(name):
    # A saved output passed where the input was expected would give a wrong gradient
    # silently (sigmoid.backward(dout, out) computed dout * sigmoid'(out)).
    fn = fa.FUNCTIONS[name]
    x, dy, out = _operands()
    match = rf"{name}\.backward\(\) takes the forward operand by keyword: pass x= \(the forward input\) or y= \(the forward output\)"
    _raises(TypeError, match, lambda: fn.backward(dy, x, out=out), x, dy, out)
    _raises(TypeError, match, lambda: fn.backward(dy, x, y=x, out=out), x, dy, out)


def test_extra_positional_arguments_say_which_keyword():
    x, _, out = _operands()
    _raises(TypeError, r"relu\(\) takes 1 positional argument \(x\) but 2 were given; to write into an array, "
            r"pass it by keyword: relu\(x, out=o\)", lambda: fa.relu(x, out), x, out)
    _raises(TypeError, r"relu\.grad\(\) takes 1 positional argument .* pass the others by keyword \(out=, target=, "
            r"stream=, at_zero=\)", lambda: fa.relu.grad(x, "cpu"), x)
    _raises(TypeError, r"softmax\(\) takes 1 positional argument \(x\) but 2 were given; pass the axis by keyword: "
            r"softmax\(x, axis=1\)", lambda: fa.softmax(x, 1), x)
    _raises(TypeError, r"softmax\(\): dim= names a dimension of an xarray DataArray; for arrays, use axis= "
            r"\(PyTorch's dim\)", lambda: fa.softmax(x, dim=1), x)
    _raises(TypeError, r"relu\(\) got an unexpected keyword argument 'inplace' .*pass out=x",
            lambda: fa.relu(x, inplace=True), x)
    _raises(TypeError, r"relu\(\) got an unexpected keyword argument 'axis' .*relu is elementwise",
            lambda: fa.relu(x, axis=0), x)


@pytest.mark.parametrize("case", y_refused_cases(), ids=lambda c: f"{c[0]}-{c[1]}")
def test_backward_from_y_refused(case):
    name, params = case
    fn = fa.FUNCTIONS[name]
    x, dy, out = _operands()
    _raises(ValueError, rf"{name}.backward\(dy, y=\.\.\.\).*pass the forward input x instead",
            lambda: fn.backward(dy, y=x, out=out, **params), x, dy, out)
    fn.backward(dy, x=x, out=out, **params)  # from x it works


def test_backward_from_y_refused_named_cases():
    """The cases the contract names, independently of how they are found."""
    x = np.ones(3)
    for fn, params in [(fa.relu, {"at_zero": 1.0}), (fa.relu, {"at_zero": 0.5}),
                       (fa.leaky_relu, {"negative_slope": 0.0}), (fa.leaky_relu, {"negative_slope": -0.1}),
                       (fa.elu, {"alpha": 0.0}), (fa.elu, {"alpha": -1.0})]:
        key, value = next(iter(params.items()))
        with pytest.raises(ValueError, match=rf"requires .*got .*{key}={re.escape(repr(value))}"):
            fn.backward(x, y=x, **params)


@pytest.mark.parametrize("name", fa.ROWWISE)
def test_bad_axis(name):
    fn = fa.FUNCTIONS[name]
    x, dy, out = _operands()
    for axis in (2, -3, 100):
        _raises(np.exceptions.AxisError, rf"{name}.*axis {axis} is out of bounds for an array of dimension 2",
                lambda: fn(x, axis=axis, out=out), x, out)
        _raises(ValueError, rf"{name}.backward.*axis {axis}", lambda: fn.backward(dy, x=x, axis=axis, out=out), x, dy, out)
    for axis, tname in [(1.0, "float"), (None, "NoneType"), ((0, 1), "tuple"), ("0", "str"), (True, "bool")]:
        _raises(TypeError, rf"{name}\(\): axis must be an integer, got {tname}", lambda: fn(x, axis=axis, out=out), x, out)
    assert fn(x, axis=np.int64(0)).shape == x.shape


@pytest.mark.parametrize("entry", [e for e in ENTRIES if "backward" in e[1]], ids=[e[0] for e in ENTRIES if "backward" in e[1]])
def test_backward_shapes_that_do_not_broadcast(entry):
    _, func, run = entry
    x, _, out = _operands()
    dy = np.ones((4, 3))
    _raises(ValueError, rf"{re.escape(func)}\(\): cannot broadcast dy \(4, 3\) and (x|y) \(3, 4\) together",
            lambda: run(x, dy, out=out), x, dy, out)


@pytest.mark.parametrize("entry", ENTRIES, ids=ids)
def test_in_place_error_leaves_input_intact(entry):
    """``out=x`` with a bad parameter or target: x is the out, and is unchanged."""
    _, func, run = entry
    x, dy, _ = _operands()
    _raises(ValueError, "target", lambda: run(x, dy, out=x, target="nope"), x, dy)
    if func.split(".")[0] in fa.ELEMENTWISE:
        _raises(TypeError, "bogus", lambda: run(x, dy, out=x, bogus=1.0), x, dy)
