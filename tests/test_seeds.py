"""The tutorial examples fastact grew from, with fastact in place of their helpers."""

import numpy as np
import pytest

import fastact as fa


def test_relu_of_python_scalars():
    # print(relu_func(2)), relu_func(0), relu_func(0.1), relu_func(-3)
    got = [fa.relu(v) for v in (2, 0, 0.1, -3)]
    assert got == [2.0, 0.0, 0.1, 0.0]
    assert all(isinstance(g, np.float64) for g in got)  # ints are promoted to float64


def test_relu_and_its_derivative_over_arange():
    z = np.arange(-3, 5, 1)
    y = fa.relu(z)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [0, 0, 0, 0, 1, 2, 3, 4])
    np.testing.assert_array_equal(y, np.maximum(0, z))  # the tutorial's own formula
    # The tutorials' f'(x) = 1 for x >= 0 is at_zero=1; PyTorch's convention is the default.
    np.testing.assert_array_equal(fa.relu.grad(z), [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(fa.relu.grad(z, at_zero=1.0), [0, 0, 0, 1, 1, 1, 1, 1])


@pytest.mark.parametrize(("x", "relu", "leaky"), [(1.0, 1.0, 1.0), (-10.0, 0.0, -0.1), (0.0, 0.0, 0.0),
                                                  (15.0, 15.0, 15.0), (-20.0, 0.0, -0.2)])
def test_relu_and_leaky_relu_of_the_tutorial_values(x, relu, leaky):
    assert fa.relu(x) == relu
    assert fa.leaky_relu(x) == pytest.approx(leaky, rel=1e-15)
    assert "Applying Leaky Relu on (%.1f) gives %.1f" % (x, fa.leaky_relu(x)) == (
        "Applying Leaky Relu on (%.1f) gives %.1f" % (x, leaky)
    )


def test_leaky_relu_gradient_of_the_tutorial():
    # f'(x) = 1 for x >= 0 (here: x > 0), 0.01 for x < 0
    np.testing.assert_array_equal(fa.leaky_relu.grad(np.array([-2.0, -0.5, 0.5, 3.0])), [0.01, 0.01, 1.0, 1.0])


class ReLU:
    """The tutorial's layer, rewritten: forward keeps x, backward is one fused call."""

    fn = fa.relu
    params: dict = {}

    def __init__(self, target="auto"):
        self.x = None
        self.target = target

    def forward(self, z):
        self.x = z
        return type(self).fn(z, target=self.target, **self.params)

    def backward(self, dout):
        return type(self).fn.backward(dout, x=self.x, target=self.target, **self.params)


class LeakyReLU(ReLU):
    fn = fa.leaky_relu
    params = {"negative_slope": 0.001}  # the tutorial's slope


class ELU(ReLU):
    fn = fa.elu


@pytest.mark.parametrize("target", ["cpu", "parallel", "auto"])
def test_layer_classes_forward_backward(target):
    z = np.array([[-2.0, -0.5, 0.0], [0.5, 1.0, 3.0]])
    dout = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    kept = z.copy()
    expected = {
        ReLU: (np.maximum(z, 0), dout * (z > 0)),
        LeakyReLU: (np.where(z > 0, z, 0.001 * z), dout * np.where(z > 0, 1.0, 0.001)),
        ELU: (np.where(z > 0, z, np.expm1(z)), dout * np.where(z > 0, 1.0, np.exp(z))),
    }
    for cls, (fwd, bwd) in expected.items():
        layer = cls(target)
        np.testing.assert_allclose(layer.forward(z), fwd, rtol=1e-15)
        np.testing.assert_allclose(layer.backward(dout), bwd, rtol=1e-15)
        # Unlike the tutorial's layers, forward does not overwrite its input.
        np.testing.assert_array_equal(z, kept)
    # ELU's backward from its saved output (the tutorial's out + 1) matches.
    y = fa.elu(z)
    np.testing.assert_allclose(fa.elu.backward(dout, y=y), dout * np.where(z > 0, 1.0, y + 1), rtol=1e-15)


def test_layer_classes_plain():
    z = np.array([-1.0, 0.0, 2.0])
    for cls in (ReLU, LeakyReLU, ELU):
        layer = cls()
        out = layer.forward(z)
        assert out is not z and layer.x is z
        g = layer.backward(np.ones(3))
        np.testing.assert_array_equal(g, type(layer).fn.grad(z, **layer.params))
    np.testing.assert_array_equal(z, [-1.0, 0.0, 2.0])


def test_sigmoid():
    # def sigmoid(x): return 1 / (1 + np.exp(-x))
    x = np.linspace(-10, 10, 101)
    np.testing.assert_allclose(fa.sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-15)
    assert fa.sigmoid(0) == 0.5


def test_step_function_at_zero():
    # The tutorial's code returns 0 at x == 0, its formula 1: at_zero settles it.
    x = np.array([-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(fa.step(x), [0.0, 0.0, 1.0])
    np.testing.assert_array_equal(fa.step(x, at_zero=1.0), [0.0, 1.0, 1.0])
    assert fa.step(0) == 0.0 and fa.step(0, at_zero=1.0) == 1.0


def test_softmax():
    a = np.array([0.3, 2.9, 4.0])
    e = np.exp(a - a.max())
    np.testing.assert_allclose(fa.softmax(a), e / e.sum(), rtol=1e-15)
    assert fa.softmax(a).sum() == pytest.approx(1.0, rel=1e-15)
