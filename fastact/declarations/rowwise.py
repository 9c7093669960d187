"""Row-wise functions: each output depends on the whole row along an axis."""

import math

from fastact._spec import double, projection, rowwise
from fastact.declarations.helpers import exp_diff, row_has_limit  # noqa: F401  (called by name)


@rowwise(formula="exp(x - max(x)) / sum(exp(x - max(x)))", work=2)
class softmax:
    r"""Softmax along one axis.

    .. math::

        \mathrm{softmax}(x)_i = \frac{e^{x_i - m}}{\sum_j e^{x_j - m}}, \qquad m = \max_j x_j

    Subtracting the row maximum makes it exact for any finite input (no overflow at
    ``x = 1e4``), and the difference :math:`x_i - m` is taken exactly.  Infinities give the
    limit: a row with exactly one ``+inf`` gives 1 there and 0 elsewhere (PyTorch and JAX
    give NaN); a row with several ``+inf``, or of ``-inf`` only, or with a NaN anywhere, is
    NaN.  Sums are in double precision, in a fixed order (so every target gives the same
    bits).

    ``softmax.backward(dy, y=y)`` is the vector-Jacobian product
    :math:`y \odot (dy - \langle dy, y \rangle)` along the axis; ``backward(dy, x=x)``
    recomputes ``y``.  At a row with one ``+inf`` it is 0.  There is no ``softmax.grad``:
    the derivative is a full Jacobian, not an elementwise function.

    Args:
        x: input array.
        axis: the axis along which the outputs sum to 1 (default ``-1``).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.softmax(np.array([[1.0, 1.0], [0.0, np.log(3.0)]]))
        array([[0.5 , 0.5 ],
               [0.25, 0.75]])
        >>> fa.softmax(np.array([1e4, 0.0]))
        array([1., 0.])
        >>> fa.softmax(np.array([np.inf, 0.0, -np.inf]))
        array([1., 0., 0.])
    """

    def key(x):
        return x

    # At the row's maximum the term is 1 exactly: a +inf included, whose limit that is.
    def term(x, m):
        return 1.0 if x == m else exp_diff(x, m)

    # m = +inf: s counts the +inf, and only a single one has a limit; m = -inf: every
    # element is -inf.  Either way otherwise NaN.
    def norm(s, m):
        return 1.0 / s if row_has_limit(s, m) else math.nan

    # r = 1 / s in float64: the product in the element's type (mul_wide), rounded once.
    def finish(t, r):
        return math.mul_wide(t, r)

    def bterm(dy, y):
        return dy * y

    def bout(dy, y, d):
        return y * (dy - d)


@rowwise(formula="x - max(x) - log(sum(exp(x - max(x))))", work=2)
class log_softmax:
    r"""Logarithm of the softmax along one axis.

    .. math::

        \mathrm{log\_softmax}(x)_i = x_i - m - \log \sum_j e^{x_j - m}, \qquad m = \max_j x_j

    Computed in that form (never as ``log(softmax(x))``, which would round tiny
    probabilities to 0 and give ``-inf``): no overflow for any finite input, and
    :math:`x_i - m` taken exactly.  Limits at infinities as :data:`softmax`'s: a row with
    one ``+inf`` gives 0 there and ``-inf`` elsewhere; several ``+inf``, only ``-inf`` or a
    NaN give a row of NaN.

    ``backward(dy, y=y)`` is :math:`dy - e^{y} \sum_j dy_j` (exact from the output, as
    PyTorch computes it); ``backward(dy, x=x)`` recomputes ``y``.

    Args:
        x: input array.
        axis: the axis along which the softmax normalises (default ``-1``).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.log_softmax(np.array([[0.0, 0.0], [1e4, 0.0]]))
        array([[-6.93147181e-01, -6.93147181e-01],
               [ 0.00000000e+00, -1.00000000e+04]])

    See also: :data:`softmax`, :data:`log_sigmoid`.
    """

    def key(x):
        return x

    def term(x, m):
        return 1.0 if x == m else exp_diff(x, m)

    # As softmax's norm, with log(s) for 1 / s; s is a float64 sum, and double() keeps the
    # log a float64 under the CUDA simulator too.
    def norm(s, m):
        return math.log(double(s)) if row_has_limit(s, m) else math.nan

    # (x - m) - r with x - m's rounding error (TwoSum) added back, in the element's type
    # (sub_wide: r is a float64); at the maximum, -r rounded once (m = +inf included; 0 -
    # r: +0, not -0, where r is 0).
    def out(x, m, r):
        d = x - m
        v = d - x
        err = (x - (d - v)) - (m + v)
        y = math.sub_wide(d, r, err if err == err else 0.0)
        return math.sub_wide(0.0, r, 0.0) if x == m else y

    def bterm(dy, y):
        return dy

    # exp_f64: e**y underflows in float32 long before it does in float64 (y < -104), where
    # an infinite d would then give NaN instead of the limit.
    def bout(dy, y, d):
        return dy - math.exp_f64(y) * d


@rowwise(formula="exp(min(x) - x) / sum(exp(min(x) - x))", work=2)
class softmin:
    r"""Softmin along one axis: the softmax of ``-x``.

    .. math::

        \mathrm{softmin}(x)_i = \frac{e^{m - x_i}}{\sum_j e^{m - x_j}}, \qquad m = \min_j x_j

    Exact for any finite input, with :data:`softmax`'s limits mirrored: a row with one
    ``-inf`` gives 1 there and 0 elsewhere.  ``backward(dy, y=y)`` is
    :math:`y \odot (\langle dy, y \rangle - dy)`.

    Args:
        x: input array.
        axis: the axis along which the outputs sum to 1 (default ``-1``).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.softmin(np.array([0.0, np.log(3.0)]))
        array([0.75, 0.25])

    See also: :data:`softmax`.
    """

    def key(x):
        return -x

    def term(x, m):
        return 1.0 if -x == m else exp_diff(-x, m)

    def norm(s, m):
        return 1.0 / s if row_has_limit(s, m) else math.nan

    # r = 1 / s in float64: the product in the element's type (mul_wide), rounded once.
    def finish(t, r):
        return math.mul_wide(t, r)

    def bterm(dy, y):
        return dy * y

    def bout(dy, y, d):
        return y * (d - dy)


@projection(formula="max(x - tau, 0), tau such that the row sums to 1", work=3)
class sparsemax:
    r"""Sparsemax along one axis: the Euclidean projection of the row onto the
    probability simplex, a softmax whose small entries are exactly 0.

    .. math::

        \mathrm{sparsemax}(x)_i = \max(x_i - \tau, 0), \qquad
        \sum_i \max(x_i - \tau, 0) = 1

    (Martins & Astudillo, 2016; Keras' ``sparsemax``, whose default axis, ``-1``, this
    shares).  :math:`\tau` is :math:`(\sum_{i \in S} x_i - 1) / |S|` over the support
    :math:`S` (the entries left positive), found from the row maximum without sorting
    the row: Michelot's iteration from the entries within 1 of the maximum (a few passes
    over the row), finished by a sort of those entries where it has not settled after 16
    passes (``n + 1`` for rows up to 64; a tie at the support's edge within an ULP can
    keep it from settling).  Computed on :math:`x - \max(x)` (exact on the support), with
    sums in double precision in a fixed order (every CPU target gives the same bits):
    the results are within a few ULP of 1 (the row's sum) of the exact values, which
    are exactly 0 off the support.  Infinities give the limits: a single ``+inf`` gives
    1 there and 0 elsewhere, ``-inf`` entries give 0; a row with several ``+inf``, of
    ``-inf`` only, or with a NaN is NaN, as for :data:`softmax`.

    ``sparsemax.backward(dy, y=y)`` is the vector-Jacobian product
    :math:`s \odot (dy - \langle s, dy \rangle / \langle s, s \rangle)`, where
    :math:`s` is 1 on the support and 0 off it (exact from the output, since the
    support is where :math:`y > 0`); ``backward(dy, x=x)`` recomputes ``y``.  A NaN in
    ``dy`` makes its row NaN (as :math:`0 \cdot \mathrm{NaN}`, like softmax's).  There
    is no ``sparsemax.grad``: the derivative is a Jacobian.

    Args:
        x: input array.
        axis: the axis along which the outputs sum to 1 (default ``-1``).

    Example:
        >>> import numpy as np, fastact as fa
        >>> y = fa.sparsemax(np.array([[1.0, 1.2, 0.1], [0.5, 1.0, 2.5]]))
        >>> y.round(6)
        array([[0.4, 0.6, 0. ],
               [0. , 0. , 1. ]])
        >>> fa.sparsemax.backward(np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), y=y).round(6)
        array([[ 0.5, -0.5,  0. ],
               [ 0. ,  0. ,  0. ]])

    See also: :data:`softmax`.
    """

    # x - m - tau; NaN in, NaN out.
    def g(t):
        return t if t > 0.0 else (0.0 if t <= 0.0 else t)

    # The threshold (relative to the maximum) from the support's sum of x - m and size.
    def tau(s, k):
        return (s - 1.0) / k

    def support(y):
        return 1.0 if y > 0.0 else (0.0 if y <= 0.0 else y)
