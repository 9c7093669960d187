"""fastact.layers: one layer class per declaration, and SoftmaxCrossEntropy."""

import pickle

import numpy as np
import pytest
from _helpers import SHAPED, param_sets, params_id, y_allowed

import fastact as fa
from fastact._spec import layer_name
from fastact import layers

CASES = [(name, params) for name in SHAPED for params in param_sets(name)]
IDS = [f"{n}-{params_id(p)}" for n, p in CASES]


def _layer(name, params, **options):
    return getattr(layers, fa.REGISTRY[name].layer)(**params, **options)


def _x(rng, name):
    x = rng.standard_normal((6, 5)) * 3
    x[0, :3] = [0.0, -0.0, 1.0]
    return x


def test_every_activation_has_a_layer():
    names = {fa.REGISTRY[n].layer for n in SHAPED}
    assert {"ReLU", "LeakyReLU", "ELU", "Sigmoid", "Step", "Identity", "Softmax"} <= names
    for name in SHAPED:
        spec = fa.REGISTRY[name]
        cls = getattr(layers, spec.layer)
        assert cls.function is fa.FUNCTIONS[name] and spec.layer in layers.__all__
        assert issubclass(cls, layers.Activation) and cls.__module__ == "fastact.layers"
        assert f"fastact.{name}" in cls.__doc__
    assert fa.layers is layers
    # Reductions and gated units change the shape: no layer, and no class named after them.
    others = fa.REDUCTIONS + fa.GATED
    assert others and not any(hasattr(layers, layer_name(n)) or hasattr(layers, n.upper()) for n in others)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_forward_and_backward_are_the_functions(case, rng):
    name, params = case
    fn = fa.FUNCTIONS[name]
    layer = _layer(name, params)
    x = _x(rng, name)
    dout = rng.standard_normal(x.shape)
    kept_x, kept_dout = x.copy(), dout.copy()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, fn(x, **params))
    operand = {"x": x} if layer.keeps == "x" else {"y": y}
    np.testing.assert_array_equal(layer.backward(dout), fn.backward(dout, **operand, **params))
    # From a kept output the derivative carries y's rounding, amplified where f'(y) is
    # steep in y (tanh's 1 - y^2 near |y| = 1): tests/test_elementwise.py bounds that.
    np.testing.assert_allclose(layer.backward(dout), fn.backward(dout, x=x, **params), rtol=1e-9, atol=1e-300)
    # Out of place, nothing the caller owns is written.
    np.testing.assert_array_equal(x, kept_x)
    np.testing.assert_array_equal(dout, kept_dout)
    assert layer(x) is not x and np.array_equal(layer(x), y)  # __call__ is forward


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_keeps_the_output_where_the_derivative_is_a_function_of_it(case, rng):
    name, params = case
    layer = _layer(name, params)
    x = _x(rng, name)
    y = layer.forward(x)
    want = "y" if name in fa.ROWWISE or y_allowed(name, params) else "x"
    assert layer.keeps == want
    assert layer._saved is (y if want == "y" else x)  # a reference: nothing else is kept
    assert [k for k, v in vars(layer).items() if isinstance(v, np.ndarray)] == ["_saved"]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_inplace_writes_into_x_and_dout(case, rng):
    name, params = case
    fn = fa.FUNCTIONS[name]
    x = _x(rng, name)
    dout = rng.standard_normal(x.shape)
    if not (name in fa.ROWWISE or y_allowed(name, params)):
        with pytest.raises(ValueError, match=r"inplace=True is refused because backward needs the forward input"):
            _layer(name, params, inplace=True)
        return
    layer = _layer(name, params, inplace=True)
    want_y = fn(x, **params)
    want_dx = fn.backward(dout, y=want_y, **params)
    xi, di = x.copy(), dout.copy()
    assert layer.forward(xi) is xi
    np.testing.assert_array_equal(xi, want_y)
    assert layer.backward(di) is di
    np.testing.assert_array_equal(di, want_dx)
    # A dout that cannot take the result (another dtype, a broadcast shape) is left alone.
    d32 = dout.astype(np.float32)
    r = layer.backward(d32)
    assert r is not d32 and r.dtype == np.float64
    r = layer.backward(1.0)
    assert r.shape == x.shape


def test_inplace_forward_needs_a_writeable_float_array():
    layer = layers.ReLU(inplace=True)
    for bad, what in [([1.0, -1.0], "list"), (np.arange(3), "int64 array"), (np.ones(3).view(), None)]:
        if what is None:
            bad.flags.writeable = False
            what = "read-only float64 array"
        with pytest.raises(TypeError, match=rf"ReLU\(inplace=True\)\.forward\(\): x must be a writeable .* got {what}"):
            layer.forward(bad)


def test_refusals_name_the_layer_and_the_reason():
    with pytest.raises(ValueError, match=r"ReLU\(at_zero=0.5, inplace=True\): .* unless at_zero == 0"):
        layers.ReLU(at_zero=0.5, inplace=True)
    with pytest.raises(TypeError, match=r"LeakyReLU\(\) got an unexpected keyword argument 'slope'"):
        layers.LeakyReLU(slope=0.1)
    with pytest.raises(ValueError, match=r"ELU\(\): target must be one of"):
        layers.ELU(target="gpu")
    with pytest.raises(TypeError, match=r"Softmax\(\): axis must be an integer"):
        layers.Softmax(axis=1.0)
    with pytest.raises(TypeError, match=r"Sigmoid\(\): inplace must be True or False"):
        layers.Sigmoid(inplace="yes")
    with pytest.raises(RuntimeError, match=r"Sigmoid\.backward\(\) was called before forward\(\)"):
        layers.Sigmoid().backward(np.ones(3))


def test_repr_and_pickle():
    assert repr(layers.ReLU()) == "ReLU()"
    assert repr(layers.LeakyReLU(negative_slope=0.2, target="cpu")) == "LeakyReLU(negative_slope=0.2, target='cpu')"
    assert repr(layers.Softmax(axis=0, inplace=True)) == "Softmax(axis=0, inplace=True)"
    layer = layers.ELU(alpha=0.5)
    layer.forward(np.array([-1.0, 1.0]))
    back = pickle.loads(pickle.dumps(layer))
    assert type(back) is layers.ELU
    np.testing.assert_array_equal(back.backward(np.ones(2)), layer.backward(np.ones(2)))


def test_softmax_layer_along_an_axis(rng):
    x = rng.standard_normal((4, 3, 5))
    dout = rng.standard_normal(x.shape)
    layer = layers.Softmax(axis=1)
    np.testing.assert_array_equal(layer.forward(x), fa.softmax(x, axis=1))
    np.testing.assert_array_equal(layer.backward(dout), fa.softmax.backward(dout, x=x, axis=1))


def test_target_option_and_config(monkeypatch):
    with fa.config(target="parallel"):
        assert layers.ReLU(target="cpu").forward(np.ones(3)).tolist() == [1.0, 1.0, 1.0]
    if not fa.cuda_available():
        with pytest.raises(fa.CudaUnavailableError):
            layers.ReLU(target="cuda").forward(np.ones(3))
        with fa.config(target="cuda"), pytest.raises(fa.CudaUnavailableError):
            layers.ReLU().forward(np.ones(3))


def test_the_tutorial_bug_cannot_happen():
    # A tutorial layer keeps its output and hands it to backward: with fastact.layers the
    # layer decides what to keep, and the gradient is right.
    x = np.array([-2.0, 0.5, 3.0])
    layer = layers.Sigmoid()
    y = layer.forward(x)
    s = 1 / (1 + np.exp(-x))
    np.testing.assert_allclose(layer.backward(np.ones(3)), s * (1 - s), rtol=1e-14)
    assert layer.keeps == "y" and layer._saved is y


# --- SoftmaxCrossEntropy -----------------------------------------------------------------


def _nll(x, labels, axis=-1):
    """The loss per row in long double, from log-sum-exp."""
    xl = np.moveaxis(np.asarray(x, np.longdouble), axis, -1)
    m = xl.max(-1, keepdims=True)
    lse = (m + np.log(np.exp(xl - m).sum(-1, keepdims=True)))[..., 0]
    if np.asarray(labels).dtype.kind in "iu":
        return (lse - np.take_along_axis(xl, np.asarray(labels)[..., None], -1)[..., 0]).astype(np.float64)
    t = np.moveaxis(np.asarray(labels, np.longdouble), axis, -1)
    return (t * (lse[..., None] - xl)).sum(-1).astype(np.float64)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("labels_kind", ["indices", "onehot", "soft"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_cross_entropy_against_reference_and_finite_differences(reduction, labels_kind, dtype, rng):
    n, k = 7, 5
    x = (rng.standard_normal((n, k)) * 4).astype(dtype)
    idx = rng.integers(0, k, n)
    labels = {"indices": idx, "onehot": np.eye(k)[idx], "soft": rng.dirichlet(np.ones(k), n)}[labels_kind]
    loss = layers.SoftmaxCrossEntropy(reduction=reduction)
    got = loss.forward(x, labels)
    per_row = _nll(x, labels)
    want = {"mean": per_row.mean(), "sum": per_row.sum(), "none": per_row}[reduction]
    assert np.asarray(got).dtype == dtype
    tol = 2e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    np.testing.assert_allclose(loss.probabilities, fa.softmax(x), rtol=8 * np.finfo(dtype).eps, atol=0)

    dout = rng.standard_normal(n) if reduction == "none" else 1.5
    g = loss.backward(dout)
    assert g.dtype == dtype and g.shape == x.shape
    # Closed form, and central differences of the float64 loss.
    y = fa.softmax(x.astype(np.float64))
    t = np.eye(k)[idx] if labels_kind == "indices" else labels
    scale = np.asarray(dout)[:, None] if reduction == "none" else dout / (n if reduction == "mean" else 1)
    np.testing.assert_allclose(g, (y - t) * scale, rtol=tol * 10, atol=tol)
    x64 = x.astype(np.float64)
    fd = np.empty_like(x64)
    h = 1e-6
    weights = np.asarray(dout) if reduction == "none" else dout
    for i in range(n):
        for j in range(k):
            e = np.zeros_like(x64)
            e[i, j] = h
            f = lambda v: np.sum(weights * _reduce(_nll(v, labels), reduction))  # noqa: E731
            fd[i, j] = (f(x64 + e) - f(x64 - e)) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-4 if dtype == np.float32 else 1e-6, atol=1e-6)


def _reduce(v, reduction):
    return {"mean": v.mean(), "sum": v.sum(), "none": v}[reduction]


def test_cross_entropy_does_not_overflow_where_the_textbook_does():
    x = np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0], [-1e4, 1e4, 5e3]])
    loss = layers.SoftmaxCrossEntropy(reduction="none")
    with np.errstate(all="raise"):
        got = loss.forward(x, np.array([1, 2, 1]))
    np.testing.assert_allclose(got, [1e4, np.log(3.0), 0.0], rtol=1e-15)
    g = loss.backward(np.ones(3))
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g[0], [1.0, -1.0, 0.0], atol=1e-300)
    # The loss of a confident right answer keeps relative precision (exp(-40) ~ 4e-18).
    tiny = loss.forward(np.array([[40.0, 0.0]]), np.array([0]))
    np.testing.assert_allclose(tiny, [np.exp(-40.0)], rtol=1e-12)


def test_cross_entropy_class_axis_and_torch_layout(rng):
    # (N, C, L) with the classes on axis 1, as PyTorch's CrossEntropyLoss takes them.
    x = rng.standard_normal((3, 4, 5))
    labels = rng.integers(0, 4, (3, 5))
    loss = layers.SoftmaxCrossEntropy(axis=1)
    got = loss.forward(x, labels)
    np.testing.assert_allclose(got, _nll(x, labels, axis=1).mean(), rtol=1e-14)
    g = loss.backward()
    onehot = np.moveaxis(np.eye(4)[labels], -1, 1)
    np.testing.assert_allclose(g, (fa.softmax(x, axis=1) - onehot) / 15, rtol=1e-13, atol=1e-17)


def test_cross_entropy_errors():
    loss = layers.SoftmaxCrossEntropy()
    x = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"labels must be class indices in \[0, 3\), got 3"):
        loss.forward(x, np.array([0, 3]))
    with pytest.raises(ValueError, match=r"integer labels must have shape \(2,\)"):
        loss.forward(x, np.array([[0], [1]]))
    with pytest.raises(ValueError, match=r"probability labels must have the logits' shape \(2, 3\)"):
        loss.forward(x, np.ones((2, 2)))
    with pytest.raises(TypeError, match=r"labels must be integer class indices or probabilities, got dtype <U1"):
        loss.forward(x, np.array(["a", "b"]))
    with pytest.raises(ValueError, match=r"must have a class axis"):
        loss.forward(1.0, np.array(0))
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none', got 'avg'"):
        layers.SoftmaxCrossEntropy(reduction="avg")
    with pytest.raises(RuntimeError, match=r"before forward"):
        layers.SoftmaxCrossEntropy().backward()
    loss.forward(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"dout must be a scalar for reduction='mean'"):
        loss.backward(np.ones(2))
    none = layers.SoftmaxCrossEntropy(reduction="none")
    none.forward(x, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"dout must have one value per row, shape \(2,\), got \(3,\)"):
        none.backward(np.ones(3))
    assert repr(none) == "SoftmaxCrossEntropy(reduction='none')"


def test_prelu_layer_learns_its_weight(rng):
    layer = layers.PReLU(3, init=0.1)
    assert layer.weight.dtype == np.float32 and np.array_equal(layer.weight, np.full(3, 0.1, np.float32))
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    dout = rng.standard_normal(x.shape).astype(np.float32)
    np.testing.assert_array_equal(layer(x), fa.prelu(x, layer.weight))
    dx, dw = fa.prelu.backward(dout, x=x, weight=layer.weight)
    np.testing.assert_array_equal(layer.backward(dout), dx)
    np.testing.assert_array_equal(layer.weight_grad, dw)
    layer.backward(dout)  # gradients accumulate, as PyTorch's .grad
    np.testing.assert_array_equal(layer.weight_grad, dw + dw)
    layer.zero_grad()
    assert not layer.weight_grad.any()
    assert isinstance(layer, layers.Weighted) and repr(layer) == "PReLU(num_parameters=3, axis=1)"
    assert "fastact.prelu" in layers.PReLU.__doc__
    with pytest.raises(RuntimeError, match="before forward"):
        layers.PReLU().backward(dout)
    with pytest.raises(TypeError, match="num_parameters"):
        layers.PReLU(0)


def test_rrelu_layer_training_and_evaluation(rng):
    x = rng.standard_normal((20, 10))
    dout = rng.standard_normal(x.shape)
    layer = layers.RReLU(training=True, rng=3)
    y = layer(x)
    _, slopes = fa.rrelu(x, training=True, rng=np.random.default_rng(3))  # the layer's first draw
    np.testing.assert_array_equal(y, fa.rrelu(x, slopes=slopes))
    np.testing.assert_array_equal(layer.backward(dout), fa.rrelu.backward(dout, x=x, slopes=slopes))
    assert not np.array_equal(layer(x), y)  # new slopes at each forward
    layer.training = False
    np.testing.assert_array_equal(layer(x), fa.rrelu(x))
    np.testing.assert_array_equal(layer.backward(dout), fa.rrelu.backward(dout, x=x))
    with pytest.raises(ValueError, match="refused in training mode"):
        layers.RReLU(training=True, inplace=True)
