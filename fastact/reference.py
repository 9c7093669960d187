"""Plain-NumPy reference implementations of every fastact function.

Written the way a NumPy user writes them (the textbook formulas, made numerically safe),
they are the oracle of the test suite and the baseline of the benchmark suite.  Each
function computes in the dtype of its input; pass float64 to get a float64 oracle.

``REFERENCE[name]`` has, for an elementwise activation, ``forward(x, **params)``,
``grad(x, **params)``, ``grad_y(y, **params)`` (where declared), ``grad2(x, **params)`` and ``backward(dy, x=None,
y=None, **params)``; for a row-wise function, ``forward(x, axis)`` and
``backward(dy, x=None, y=None, axis=-1)``.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np

__all__ = ["REFERENCE"]


def _quiet(fn):
    # NaN and inf inputs legitimately produce NaN (inf - inf) or 0 * inf along the way.
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapped


def _nan_where(x, value):
    """``value`` with NaN wherever ``x`` is NaN."""
    return np.where(np.isnan(x), x, value)


# --- elementwise -----------------------------------------------------------------------------


def relu(x, at_zero=0.0):
    return np.where(x > 0, x, _nan_where(x, 0))


def relu_grad(x, at_zero=0.0):
    return _nan_where(x, np.where(x > 0, 1, np.where(x < 0, 0, at_zero)))


def relu_grad_y(y, at_zero=0.0):
    return _nan_where(y, np.where(y > 0, 1, 0))


def relu_grad2(x, at_zero=0.0):
    return _nan_where(x, np.zeros_like(x))


def leaky_relu(x, negative_slope=0.01):
    return np.where(x > 0, x, negative_slope * x)


def leaky_relu_grad(x, negative_slope=0.01):
    return _nan_where(x, np.where(x > 0, 1, negative_slope))


leaky_relu_grad_y = leaky_relu_grad


def leaky_relu_grad2(x, negative_slope=0.01):
    return _nan_where(x, np.zeros_like(x))


def elu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(x))


def elu_grad(x, alpha=1.0):
    return np.where(x > 0, 1, alpha * np.exp(x))


def elu_grad_y(y, alpha=1.0):
    return np.where(y > 0, 1, y + alpha)


def elu_grad2(x, alpha=1.0):
    return np.where(x > 0, 0, alpha * np.exp(x))


def sigmoid(x):
    # exp(-|x|) never overflows; the two branches are the same function.
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def sigmoid_grad(x):
    z = np.exp(-np.abs(x))
    return z / (1 + z) ** 2


def sigmoid_grad_y(y):
    return y * (1 - y)


def sigmoid_grad2(x):
    # sigmoid' * (1 - 2 sigmoid), where 1 - 2 sigmoid = -tanh(x / 2)
    z = np.exp(-np.abs(x))
    return z / (1 + z) ** 2 * -np.tanh(x / 2)


def step(x, at_zero=0.0):
    return np.heaviside(x, at_zero)


def step_grad(x, at_zero=0.0):
    return _nan_where(x, np.zeros_like(x))


def step_grad_y(y, at_zero=0.0):
    return _nan_where(y, np.zeros_like(y))


def step_grad2(x, at_zero=0.0):
    return _nan_where(x, np.zeros_like(x))


def identity(x):
    return np.array(x, copy=True)


def identity_grad(x):
    return _nan_where(x, np.ones_like(x))


identity_grad_y = identity_grad


def identity_grad2(x):
    return _nan_where(x, np.zeros_like(x))


# --- row-wise --------------------------------------------------------------------------------


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    # The limits at +inf (fastact's contract): a row whose maximum is +inf is 1 at its
    # single +inf and 0 elsewhere, NaN where it has several.
    top = np.isposinf(x)
    count = np.sum(top, axis=axis, keepdims=True)
    e = np.where(np.isposinf(m), np.where(top, 1.0, 0.0).astype(e.dtype), e)
    y = e / np.sum(e, axis=axis, keepdims=True)
    return np.where(np.isposinf(m) & (count > 1), np.nan, y).astype(y.dtype)


def softmax_backward_y(dy, y, axis=-1):
    return y * (dy - np.sum(dy * y, axis=axis, keepdims=True))


# --- the table the tests and benchmarks iterate over ----------------------------------------


def _elementwise(forward, grad, grad_y=None, grad2=None):
    def backward(dy, x=None, y=None, **params):
        return dy * (grad(x, **params) if y is None else grad_y(y, **params))

    return SimpleNamespace(
        kind="elementwise",
        forward=_quiet(forward),
        grad=_quiet(grad),
        grad_y=None if grad_y is None else _quiet(grad_y),
        grad2=None if grad2 is None else _quiet(grad2),
        backward=_quiet(backward),
    )


def _rowwise(forward, backward_y):
    def backward(dy, x=None, y=None, axis=-1):
        return backward_y(dy, forward(x, axis) if y is None else y, axis)

    return SimpleNamespace(kind="rowwise", forward=_quiet(forward), backward=_quiet(backward))


REFERENCE = {
    "relu": _elementwise(relu, relu_grad, relu_grad_y, relu_grad2),
    "leaky_relu": _elementwise(leaky_relu, leaky_relu_grad, leaky_relu_grad_y, leaky_relu_grad2),
    "elu": _elementwise(elu, elu_grad, elu_grad_y, elu_grad2),
    "sigmoid": _elementwise(sigmoid, sigmoid_grad, sigmoid_grad_y, sigmoid_grad2),
    "step": _elementwise(step, step_grad, step_grad_y, step_grad2),
    "identity": _elementwise(identity, identity_grad, identity_grad_y, identity_grad2),
    "softmax": _rowwise(softmax, softmax_backward_y),
}
