"""Plain-NumPy reference implementations of every fastact function.

Written the way a NumPy user writes them (the textbook formulas, made numerically safe),
they are the oracle of the test suite and the baseline of the benchmark suite.  Each
function computes in the dtype of its input; pass float64 to get a float64 oracle.

``REFERENCE[name]`` has, for an elementwise activation, ``forward(x, **params)``,
``grad(x, **params)``, ``grad_y(y, **params)`` (where declared), ``grad2(x, **params)`` and ``backward(dy, x=None,
y=None, **params)``; for a row-wise function, ``forward(x, axis)`` and
``backward(dy, x=None, y=None, axis=-1)``; for a reduction, ``forward(x, axis, keepdims)``
and ``backward(dy, x, axis, keepdims)``; for a gated unit, ``forward(x, axis)`` and
``backward(dy, x, axis)``; for an activation with a weight array, ``forward(x, weight,
axis)``, ``grad(x, weight, axis)`` and ``backward(dy, x, weight, axis)``, which returns
``(dx, dweight)``.
"""

from __future__ import annotations

import functools
import warnings
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


# --- the rest of the elementwise functions ---------------------------------------------------
# Independent of the declarations' scalar code: NumPy's own functions (which the tests
# evaluate in long double), mpmath where NumPy has none (the normal distribution), and
# PyTorch's conventions at kinks.


def _zero_like(x):
    return _nan_where(x, np.zeros_like(x))


def _const(x, c):
    return _nan_where(x, np.full_like(x, c))


def relu6(x):
    return _nan_where(x, np.clip(x, 0, 6))


def relu6_grad(x):
    return _nan_where(x, np.where((x > 0) & (x < 6), 1, 0))


def hardtanh(x, min_val=-1.0, max_val=1.0):
    return _nan_where(x, np.minimum(np.maximum(x, min_val), max_val))


def hardtanh_grad(x, min_val=-1.0, max_val=1.0):
    return _nan_where(x, np.where((x > min_val) & (x < max_val), 1, 0))


def threshold(x, threshold=0.0, value=0.0):
    return _nan_where(x, np.where(x > threshold, x, value))


def threshold_grad(x, threshold=0.0, value=0.0):
    return _nan_where(x, np.where(x > threshold, 1, 0))


def threshold_grad_y(y, threshold=0.0, value=0.0):
    return _nan_where(y, np.where(y > threshold, 1, 0))


_SELU_SCALE = 1.0507009873554804934193349852946
_SELU_ALPHA = 1.6732632423543772848170429916717


def selu(x):
    return _SELU_SCALE * np.where(x > 0, x, _SELU_ALPHA * np.expm1(x))


def selu_grad(x):
    return _SELU_SCALE * np.where(x > 0, 1, _SELU_ALPHA * np.exp(x))


def selu_grad2(x):
    return _SELU_SCALE * np.where(x > 0, _nan_where(x, 0), _SELU_ALPHA * np.exp(x))


def celu(x, alpha=1.0):
    return np.where(x > 0, x, alpha * np.expm1(x / alpha))


def celu_grad(x, alpha=1.0):
    return np.where(x > 0, 1, np.exp(x / alpha))


def celu_grad_y(y, alpha=1.0):
    return np.where(y > 0, 1, 1 + y / alpha)


def celu_grad2(x, alpha=1.0):
    return np.where(x > 0, _nan_where(x, 0), np.exp(x / alpha) / alpha)


def _sigmoid_of(z):
    """sigmoid(z) and sigmoid(-z) without overflow."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1, e) / (1 + e), np.where(z >= 0, e, 1) / (1 + e)


def softplus(x, beta=1.0, threshold=20.0):
    z = beta * x
    return np.where(z > threshold, x, (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta)


def softplus_grad(x, beta=1.0, threshold=20.0):
    z = beta * x
    return np.where(z > threshold, 1, _sigmoid_of(z)[0])


def softplus_grad2(x, beta=1.0, threshold=20.0):
    z = beta * x
    s, sm = _sigmoid_of(z)
    return np.where(z > threshold, _nan_where(x, 0), beta * s * sm)


def silu(x, beta=1.0):
    s = _sigmoid_of(beta * x)[0]
    return np.where(s == 0, np.copysign(0.0, x), x * s)


def silu_grad(x, beta=1.0):
    z = beta * x
    s, sm = _sigmoid_of(z)
    return s + np.where(s * sm == 0, 0, z * s * sm)


def silu_grad2(x, beta=1.0):
    z = beta * x
    s, sm = _sigmoid_of(z)
    q = s * sm
    return np.where(q == 0, q, beta * q * (2 + z * (sm - s)))


def _silu_scale_grad(x, beta=1.0):
    z = beta * x
    s, sm = _sigmoid_of(z)
    return np.abs(s) + np.abs(np.where(s * sm == 0, 0, z * s * sm))


def _silu_scale_grad2(x, beta=1.0):
    z = beta * x
    s, sm = _sigmoid_of(z)
    q = s * sm
    return np.where(q == 0, 0, np.abs(beta) * q * (2 + np.abs(z * (sm - s))))


_MP_CACHE: dict = {}


def _mp(name, fn):
    """``fn`` (of an mpmath number, returning one) over an array, in 40-digit arithmetic,
    returned in the array's dtype (long double keeps what float64 cannot).  Memoised: the
    tests ask again for the same points."""

    def run(x):
        import mpmath

        x = np.asarray(x)
        out = np.empty(x.shape, dtype=x.dtype)
        flat, res = x.ravel(), out.ravel()
        with mpmath.workdps(40), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a value below the dtype's range becomes 0
            for i, v in enumerate(flat):
                key = (name, float(v))
                r = _MP_CACHE.get(key)
                if r is None:
                    r = _MP_CACHE[key] = str(fn(mpmath.mpf(float(v)))) if np.isfinite(v) else None
                res[i] = np.nan if r is None else x.dtype.type(r)
        return out

    return run


def _gelu_tanh_parts(x):
    c, k = np.sqrt(2 / np.pi, dtype=x.dtype), 0.044715
    u = c * (x + k * x**3)
    du = c * (1 + 3 * k * x**2)
    s, sm = _sigmoid_of(2 * u)
    return u, du, s, sm


_ndtr_mp = _mp("ndtr", lambda v: __import__("mpmath").ncdf(v))
_npdf_mp = _mp("npdf", lambda v: __import__("mpmath").npdf(v))


# Beyond |x| = 1e4 (where mpmath's erfc gives up on huge arguments) both round as at 1e4,
# to 0 or 1 even in long double.
def _ndtr(x):
    return _ndtr_mp(np.clip(x, -1e4, 1e4))


def _npdf(x):
    return _npdf_mp(np.clip(x, -1e4, 1e4))


def gelu(x, approximate="none"):
    if approximate == "tanh":
        s = _gelu_tanh_parts(x)[2]
    else:
        s = np.where(np.isposinf(x), 1, np.where(np.isneginf(x), 0, _ndtr(x)))
    return np.where(s == 0, np.copysign(0.0, x), x * s)


def gelu_grad(x, approximate="none"):
    if approximate == "tanh":
        u, du, s, sm = _gelu_tanh_parts(x)
        q = s * sm
        return s + np.where(q == 0, 0, 2 * x * du * q)
    p, d = _ndtr(x), _npdf(x)
    p = np.where(np.isposinf(x), 1, np.where(np.isneginf(x), 0, p))
    return p + np.where(np.isfinite(x), x * d, _nan_where(x, 0))


def gelu_grad2(x, approximate="none"):
    if approximate == "tanh":
        u, du, s, sm = _gelu_tanh_parts(x)
        q = s * sm
        ddu = 6 * 0.044715 * np.sqrt(2 / np.pi, dtype=x.dtype) * x
        return np.where(q == 0, _nan_where(x, 0), 2 * q * (2 * du + x * ddu - 2 * x * du**2 * (s - sm)))
    d = _npdf(x)
    return np.where(d == 0, _nan_where(x, 0), d * (2 - x * x))


def _gelu_scale_forward(x, approximate="none"):
    if approximate != "tanh":
        return np.zeros_like(x)
    u = _gelu_tanh_parts(x)[0]
    return np.abs(gelu(x, "tanh")) * 8 * np.abs(u)  # the rounding of u, |2u| amplified


def _gelu_scale_grad(x, approximate="none"):
    if approximate == "tanh":
        u, du, s, sm = _gelu_tanh_parts(x)
        q = s * sm
        return (np.abs(s) + np.abs(np.where(q == 0, 0, 2 * x * du * q))) * (1 + 8 * np.abs(u))
    return np.abs(_ndtr(x)) + np.abs(np.where(np.isfinite(x), x * _npdf(x), 0))


def _gelu_scale_grad2(x, approximate="none"):
    if approximate != "tanh":
        return np.zeros_like(x)
    u, du, s, sm = _gelu_tanh_parts(x)
    q = s * sm
    ddu = 6 * 0.044715 * np.sqrt(2 / np.pi, dtype=x.dtype) * x
    terms = 2 * q * (2 * du + np.abs(x * ddu) + 2 * np.abs(x) * du**2 * np.abs(s - sm))
    return np.where(q == 0, 0, terms) * (1 + 8 * np.abs(u))


def _gelu_scale_sub(x, approximate="none"):
    # The tanh form's derivatives multiply the subnormal sigmoid tail by up to x u'^2,
    # a fifth power of x.
    return (1 + x * x) ** 3


def _mish_parts(x):
    sp = np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))  # softplus
    t = np.tanh(sp)
    s, sm = _sigmoid_of(x)
    # 1 - t^2 = sech^2(sp), from e^{-2 sp} without cancellation.
    e = np.exp(-2 * sp)
    sech2 = 4 * e / (1 + e) ** 2
    return t, s, sm, sech2 * s


def mish(x):
    t = _mish_parts(x)[0]
    return np.where(t == 0, np.copysign(0.0, x), x * t)


def mish_grad(x):
    t, s, sm, g = _mish_parts(x)
    return t + np.where(g == 0, 0, x * g)


def mish_grad2(x):
    t, s, sm, g = _mish_parts(x)
    return np.where(g == 0, g, g * (2 + x * (sm - 2 * t * s)))


def _mish_scale_grad(x):
    t, s, sm, g = _mish_parts(x)
    return np.abs(t) + np.abs(np.where(g == 0, 0, x * g))


def _mish_scale_grad2(x):
    t, s, sm, g = _mish_parts(x)
    return np.where(g == 0, 0, np.abs(g) * (2 + np.abs(x) * (np.abs(sm) + 2 * np.abs(t * s))))


def hardswish(x):
    return np.where(x <= -3, _nan_where(x, -0.0), np.where(x >= 3, x, x * (x + 3) / 6))


def hardswish_grad(x):
    return np.where(x <= -3, _nan_where(x, 0), np.where(x >= 3, 1, (2 * x + 3) / 6))


def hardswish_grad2(x):
    return _nan_where(x, np.where((x > -3) & (x < 3), 1 / 3, 0))


def squareplus(x, b=4.0):
    s = np.sqrt(x * x + b)
    big = np.abs(x) > 1e150  # x * x overflows: the function is x or 0 there
    return np.where(big, np.where(x > 0, x, b / (4 * np.abs(x))),
                    np.where(x >= 0, (x + s) / 2, b / (2 * (s - x))))


def squareplus_grad(x, b=4.0):
    s = np.sqrt(x * x + b)
    big = np.abs(x) > 1e150
    return np.where(big, np.where(x > 0, 1, b / (4 * x * x)), np.where(x >= 0, (s + x) / (2 * s), b / (2 * s * (s - x))))


def squareplus_grad_y(y, b=4.0):
    return 1 / (1 + b / (4 * y * y))


def squareplus_grad2(x, b=4.0):
    s = np.sqrt(x * x + b)
    return np.where(np.abs(x) > 1e150, 0, b / (2 * s**3))


def sparse_plus(x):
    return np.where(x <= -1, 0, np.where(x >= 1, x, (x + 1) ** 2 / 4))


def sparse_plus_grad(x):
    return np.where(x <= -1, 0, np.where(x >= 1, 1, (x + 1) / 2))


def sparse_plus_grad_y(y):
    return np.where(y <= 0, 0, np.where(y >= 1, 1, np.sqrt(np.abs(y))))


def sparse_plus_grad2(x):
    return _nan_where(x, np.where((x > -1) & (x < 1), 0.5, 0))


def log_sigmoid(x):
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def log_sigmoid_grad(x):
    return _sigmoid_of(x)[1]


def log_sigmoid_grad_y(y):
    return -np.expm1(y)


def log_sigmoid_grad2(x):
    s, sm = _sigmoid_of(x)
    return -s * sm


def hardsigmoid(x):
    return np.where(x <= -3, 0, np.where(x >= 3, 1, (x + 3) / 6))


def hardsigmoid_grad(x):
    return _nan_where(x, np.where((x > -3) & (x < 3), 1 / 6, 0))


def sparse_sigmoid(x):
    return np.where(x <= -1, 0, np.where(x >= 1, 1, (x + 1) / 2))


def sparse_sigmoid_grad(x):
    return _nan_where(x, np.where((x > -1) & (x < 1), 0.5, 0))


def tanh(x):
    return np.tanh(x)


def tanh_grad(x):
    e = np.exp(-2 * np.abs(x))
    return 4 * e / (1 + e) ** 2


def tanh_grad_y(y):
    return (1 - y) * (1 + y)


def tanh_grad2(x):
    return -2 * np.tanh(x) * tanh_grad(x)


def softsign(x):
    return np.where(np.isinf(x), np.sign(x), x / (1 + np.abs(x)))


def softsign_grad(x):
    return 1 / (1 + np.abs(x)) ** 2


def softsign_grad2(x):
    return np.where(x == 0, 0, -2 * np.sign(x) / (1 + np.abs(x)) ** 3)


def softshrink(x, lambd=0.5):
    return np.where(x > lambd, x - lambd, np.where(x < -lambd, x + lambd, _nan_where(x, 0)))


def shrink_grad(x, lambd=0.5):
    return _nan_where(x, np.where(np.abs(x) > lambd, 1, 0))


def shrink_grad_y(y, lambd=0.5):
    return _nan_where(y, np.where(y != 0, 1, 0))


def hardshrink(x, lambd=0.5):
    return np.where(np.abs(x) > lambd, x, _nan_where(x, 0))


_tanhshrink_small = _mp("tanhshrink", lambda v: v - __import__("mpmath").tanh(v))


def tanhshrink(x):
    x = np.asarray(x)
    small = np.abs(x) < 1
    out = np.array(x - np.tanh(x))
    if small.any():
        out[small] = _tanhshrink_small(x[small])
    return out


def tanhshrink_grad(x):
    return np.tanh(x) ** 2


def tanhshrink_grad2(x):
    return 2 * np.tanh(x) * tanh_grad(x)


def _tanhshrink_scale_forward(x):
    return np.where(np.isfinite(x), np.abs(x) + np.abs(np.tanh(x)), 0)


def exponential(x):
    return np.exp(x)


def exponential_grad_y(y):
    return np.array(y, copy=True)


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


def log_softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    top = np.isposinf(x)
    count = np.sum(top, axis=axis, keepdims=True)
    finite_m = np.where(np.isfinite(m), m, 0)
    lse = np.log(np.sum(np.exp(x - finite_m), axis=axis, keepdims=True))
    y = (x - finite_m) - lse
    # A row whose maximum is +inf: 0 at its single +inf, -inf elsewhere; NaN for several
    # (and for a row of -inf only, as softmax).
    y = np.where(np.isposinf(m), np.where(top, 0.0, -np.inf).astype(y.dtype), y)
    bad = (np.isposinf(m) & (count > 1)) | np.isneginf(m)
    return np.where(bad, np.nan, y).astype(y.dtype)


def log_softmax_backward_y(dy, y, axis=-1):
    return dy - np.exp(y) * np.sum(dy, axis=axis, keepdims=True)


def softmin(x, axis=-1):
    return softmax(-x, axis)


def softmin_backward_y(dy, y, axis=-1):
    return -softmax_backward_y(dy, y, axis)


def logsumexp(x, axis, keepdims=False):
    """``m + log(sum(exp(x - m)))``; ``+inf`` anywhere gives ``+inf``, a row of ``-inf``
    only ``-inf``, a NaN NaN (``m`` taken as 0 where it is not finite)."""
    m = np.max(x, axis=axis, keepdims=True)
    finite_m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    r = finite_m + np.log(np.sum(np.exp(x - finite_m), axis=axis, keepdims=True))
    r = np.where(np.isnan(m) | np.isnan(r), np.nan, np.where(np.isinf(m), m, r)).astype(r.dtype)
    return r if keepdims else np.squeeze(r, axis=axis)


def logsumexp_backward(dy, x, axis, keepdims=False):
    """``dy * softmax(x)`` over the reduced axes (softmax's limits at infinities)."""
    axes = tuple(range(x.ndim)) if axis is None else np.lib.array_utils.normalize_axis_tuple(axis, max(x.ndim, 1))
    shape = tuple(1 if k in axes else n for k, n in enumerate(x.shape))
    reduced = tuple(n for k, n in enumerate(x.shape) if k not in axes)
    dyk = np.reshape(np.broadcast_to(dy, shape if keepdims else reduced), shape)
    if not x.ndim:
        return dy * softmax(x.reshape(1)).reshape(())
    moved = np.moveaxis(x, axes, tuple(range(-len(axes), 0)))
    flat = moved.reshape(*moved.shape[: x.ndim - len(axes)], -1)
    y = np.moveaxis(softmax(flat, axis=-1).reshape(moved.shape), tuple(range(-len(axes), 0)), axes)
    return dyk * y


def glu(x, axis=-1):
    a, b = np.split(x, 2, axis=axis)
    return a * sigmoid(b)


def glu_backward(dy, x, axis=-1):
    a, b = np.split(x, 2, axis=axis)
    s = sigmoid(b)
    return np.concatenate([dy * s, dy * a * sigmoid_grad(b)], axis=axis)


def sparsemax(x, axis=-1):
    """The sort-based algorithm (Martins & Astudillo): the support is the largest k with
    1 + k z_(k) > the sum of the k largest; rows with NaN, several +inf or only -inf are
    NaN, one +inf is its limit (1 there)."""
    x = np.asarray(x)
    if x.ndim == 0:  # one row of one element, whatever the axis (as fastact and softmax)
        return sparsemax(x.reshape(1)).reshape(())
    x = np.moveaxis(x, axis, -1)
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    out = np.empty(rows.shape, np.result_type(rows.dtype, np.float32))
    for i, r in enumerate(rows):
        inf = np.isposinf(r)
        if np.isnan(r).any() or inf.sum() > 1 or (r.size and np.all(np.isneginf(r))):
            out[i] = np.nan
            continue
        if inf.any():
            out[i] = inf
            continue
        if r.size == 0:
            continue
        # In long double where NumPy has it: the support's test 1 + k z_k > sum can be
        # decided by less than float64's rounding of the sum.
        z = np.sort(r.astype(np.longdouble) - r.max())[::-1]
        cum = np.cumsum(z)
        k = np.nonzero(1 + np.arange(1, z.size + 1) * z > cum)[0][-1] + 1
        tau = (cum[k - 1] - 1) / k
        out[i] = np.maximum(r.astype(np.longdouble) - r.max() - tau, 0)
    return np.moveaxis(out.reshape(shape), -1, axis)


def sparsemax_backward_y(dy, y, axis=-1):
    s = np.where(y > 0, 1.0, np.where(y <= 0, 0.0, y)).astype(y.dtype)
    d = np.sum(s * dy, axis=axis, keepdims=True) / np.sum(s, axis=axis, keepdims=True)
    return s * (dy - d) + 0.0


def _sparsemax_scale_forward(x, y, axis):
    # tau is a sum over the support, of values within 1 of the maximum: accurate to n ULP
    # of 1 (the row's sum), whatever the size of y.
    return np.ones_like(y)


def _sparsemax_scale_backward(dy, y, axis):
    s = np.where(y > 0, 1.0, 0.0)
    return s * (np.abs(dy) + np.sum(np.abs(dy) * s, axis=axis, keepdims=True) / np.maximum(
        np.sum(s, axis=axis, keepdims=True), 1))


def rrelu(x, lower=1 / 8, upper=1 / 3):
    return leaky_relu(x, (lower + upper) / 2)


def rrelu_grad(x, lower=1 / 8, upper=1 / 3):
    return leaky_relu_grad(x, (lower + upper) / 2)


def rrelu_grad2(x, lower=1 / 8, upper=1 / 3):
    return _nan_where(x, np.zeros_like(x))


def _channel_weight(w, ndim, axis):
    """``w`` shaped to broadcast against an array of ``ndim`` dimensions along ``axis``."""
    w = np.asarray(w)
    if w.size == 1:
        return w.reshape(())
    shape = [1] * ndim
    shape[axis] = w.size
    return w.reshape(shape)


def prelu(x, weight, axis=1):
    return np.where(x > 0, x, _channel_weight(weight, x.ndim, axis) * x)


def prelu_grad(x, weight, axis=1):
    w = _channel_weight(weight, x.ndim, axis)
    return _nan_where(x, np.where(x > 0, 1, w) + np.zeros_like(x))


def prelu_backward(dy, x, weight, axis=1):
    """(dx, dweight): the weight's gradient summed over every axis but the channel's."""
    dx = dy * prelu_grad(x, weight, axis)
    terms = np.where(x > 0, 0, dy * x) + np.zeros_like(dy)
    if np.size(weight) == 1:
        return dx, np.sum(terms).reshape(np.shape(weight))
    others = tuple(k for k in range(x.ndim) if k != axis % x.ndim)
    return dx, np.sum(terms, axis=others)


# --- the table the tests and benchmarks iterate over ----------------------------------------


def _elementwise(forward, grad, grad_y=None, grad2=None, scale=None, ulp=None, slow=False):
    """``scale``: for an operation whose kernel adds terms that can cancel, a function of
    ``(x, **params)`` giving the sum of the terms' magnitudes: the kernels are accurate to
    a few ULP of that, not of the (small) result, as any evaluation of the formula is;
    ``scale["sub"]``, what multiplies a factor that may be subnormal (default
    ``max(1, |x|)``).  ``ulp``: the accuracy the function's docstring states, in ULP,
    by dtype name, where it is not the tests' default.  ``slow``: evaluated point by point
    in mpmath (an oracle; the benchmarks leave it out)."""
    def backward(dy, x=None, y=None, **params):
        return dy * (grad(x, **params) if y is None else grad_y(y, **params))

    return SimpleNamespace(
        kind="elementwise",
        forward=_quiet(forward),
        grad=_quiet(grad),
        grad_y=None if grad_y is None else _quiet(grad_y),
        grad2=None if grad2 is None else _quiet(grad2),
        backward=_quiet(backward),
        scale={op: _quiet(fn) for op, fn in (scale or {}).items()},
        ulp=dict(ulp or {}),
        slow=slow,
    )


def _rowwise(forward, backward_y, scale=None):
    """``scale``: ``{"forward": fn(x, y, axis), "backward": fn(dy, y, axis)}``, the
    magnitudes that a row's sums and differences are accurate to ``n`` ULP of (by default
    softmax's: ``|y|``, and ``|y| (|dy| + sum |dy y|)``)."""
    def backward(dy, x=None, y=None, axis=-1):
        return backward_y(dy, forward(x, axis) if y is None else y, axis)

    return SimpleNamespace(kind="rowwise", forward=_quiet(forward), backward=_quiet(backward),
                           scale={k: _quiet(f) for k, f in (scale or {}).items()})


def _log_softmax_scale_forward(x, y, axis):
    # (x - m) - log(s): log(s) is accurate to n ULP of 1 (s >= 1), not of a tiny result.
    return np.abs(x - np.max(x, axis=axis, keepdims=True)) + 1


def _log_softmax_scale_backward(dy, y, axis):
    return np.abs(dy) + np.exp(y) * np.sum(np.abs(dy), axis=axis, keepdims=True)


REFERENCE = {
    "relu": _elementwise(relu, relu_grad, relu_grad_y, relu_grad2),
    "leaky_relu": _elementwise(leaky_relu, leaky_relu_grad, leaky_relu_grad_y, leaky_relu_grad2),
    "rrelu": _elementwise(rrelu, rrelu_grad, rrelu_grad, rrelu_grad2),
    "elu": _elementwise(elu, elu_grad, elu_grad_y, elu_grad2),
    "sigmoid": _elementwise(sigmoid, sigmoid_grad, sigmoid_grad_y, sigmoid_grad2),
    "step": _elementwise(step, step_grad, step_grad_y, step_grad2),
    "identity": _elementwise(identity, identity_grad, identity_grad_y, identity_grad2),
    "relu6": _elementwise(relu6, relu6_grad, relu6_grad, _zero_like),
    "hardtanh": _elementwise(hardtanh, hardtanh_grad, hardtanh_grad, lambda x, **p: _zero_like(x)),
    "threshold": _elementwise(threshold, threshold_grad, threshold_grad_y, lambda x, **p: _zero_like(x)),
    "selu": _elementwise(selu, selu_grad, None, selu_grad2),
    "celu": _elementwise(celu, celu_grad, celu_grad_y, celu_grad2),
    "softplus": _elementwise(softplus, softplus_grad, None, softplus_grad2),
    "silu": _elementwise(silu, silu_grad, None, silu_grad2,
                         scale={"grad": _silu_scale_grad, "grad2": _silu_scale_grad2}),
    "gelu": _elementwise(gelu, gelu_grad, None, gelu_grad2, ulp={"float32": 4}, slow=True,
                         scale={"forward": _gelu_scale_forward, "grad": _gelu_scale_grad, "grad2": _gelu_scale_grad2,
                                "sub": _gelu_scale_sub}),
    "mish": _elementwise(mish, mish_grad, None, mish_grad2, scale={"grad": _mish_scale_grad, "grad2": _mish_scale_grad2}),
    "hardswish": _elementwise(hardswish, hardswish_grad, None, hardswish_grad2),
    "squareplus": _elementwise(squareplus, squareplus_grad, squareplus_grad_y, squareplus_grad2, ulp={"float64": 6}),
    "sparse_plus": _elementwise(sparse_plus, sparse_plus_grad, sparse_plus_grad_y, sparse_plus_grad2),
    "log_sigmoid": _elementwise(log_sigmoid, log_sigmoid_grad, log_sigmoid_grad_y, log_sigmoid_grad2),
    "hardsigmoid": _elementwise(hardsigmoid, hardsigmoid_grad, None, _zero_like),
    "sparse_sigmoid": _elementwise(sparse_sigmoid, sparse_sigmoid_grad, None, _zero_like),
    "tanh": _elementwise(tanh, tanh_grad, tanh_grad_y, tanh_grad2),
    "softsign": _elementwise(softsign, softsign_grad, None, softsign_grad2),
    "softshrink": _elementwise(softshrink, shrink_grad, shrink_grad_y, lambda x, **p: _zero_like(x)),
    "hardshrink": _elementwise(hardshrink, shrink_grad, shrink_grad_y, lambda x, **p: _zero_like(x)),
    "tanhshrink": _elementwise(tanhshrink, tanhshrink_grad, None, tanhshrink_grad2, ulp={"float64": 6}, slow=True,
                               scale={"forward": _tanhshrink_scale_forward}),
    "exponential": _elementwise(exponential, exponential, exponential_grad_y, exponential),
    "softmax": _rowwise(softmax, softmax_backward_y),
    "log_softmax": _rowwise(log_softmax, log_softmax_backward_y,
                            scale={"forward": _log_softmax_scale_forward, "backward": _log_softmax_scale_backward}),
    "softmin": _rowwise(softmin, softmin_backward_y),
    "logsumexp": SimpleNamespace(kind="reduction", forward=_quiet(logsumexp), backward=_quiet(logsumexp_backward)),
    "sparsemax": _rowwise(sparsemax, sparsemax_backward_y,
                          scale={"forward": _sparsemax_scale_forward, "backward": _sparsemax_scale_backward}),
    "glu": SimpleNamespace(kind="gated", forward=_quiet(glu), backward=_quiet(glu_backward)),
    "prelu": SimpleNamespace(kind="weighted", forward=_quiet(prelu), grad=_quiet(prelu_grad),
                             backward=_quiet(prelu_backward)),
}
