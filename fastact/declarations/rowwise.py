"""Row-wise functions: each output depends on the whole row along an axis."""

import math

from fastact._spec import rowwise
from fastact.declarations.helpers import exp_diff  # noqa: F401  (the generated code calls it by name)


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
        return 1.0 / s if m > -math.inf and (m < math.inf or s == 1.0) else math.nan

    def finish(t, r):
        return t * r

    def bterm(dy, y):
        return dy * y

    def bout(dy, y, d):
        return y * (dy - d)
