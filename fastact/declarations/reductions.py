"""Reductions: one value per row along the reduced axes."""

import math

from fastact._spec import double, reduction
from fastact.declarations.helpers import exp_diff, row_has_limit


@reduction(formula="max(x) + log(sum(exp(x - max(x))))", work=2)
class logsumexp:
    r"""Logarithm of the sum of exponentials along one or more axes.

    .. math::

        \mathrm{logsumexp}(x) = m + \log \sum_j e^{x_j - m}, \qquad m = \max_j x_j

    Subtracting the maximum makes it exact for any finite input (no overflow at
    ``x = 1e4``, no underflow to ``-inf`` at ``x = -1e4``), with :math:`x_j - m` taken
    exactly and the sum in double precision, in a fixed order (every target gives the same
    bits).  Accurate to 1 ULP (float32: the float64 value rounded once) or 4 ULP
    (float64), or, where :math:`m` and :math:`\log \sum` cancel (a result near 0), to 2
    (float32) or 4 (float64) ULP of :math:`1 + |m|`: the sum's rounding is an absolute
    error of its logarithm, whatever the formula.  Infinities give the limits: ``+inf``
    anywhere in a row gives ``+inf``, a row of ``-inf`` only (or an empty row) gives
    ``-inf``, and a NaN gives NaN.

    ``axis`` is required, as PyTorch's ``dim`` is: an int, a tuple of ints, or None for
    every axis (JAX and SciPy default to None; fastact makes no silent choice).
    ``keepdims=True`` keeps the reduced axes with length 1, as NumPy's.

    ``logsumexp.backward(dy, x=x, axis=...)`` is :math:`dy \cdot \mathrm{softmax}(x)`
    along the reduced axes, ``dy`` having the result's shape (with or without
    ``keepdims``); in float64 it equals ``dy * fa.softmax(x)`` bit for bit for one axis
    (in float32 it rounds once where that product rounds twice).  Like
    softmax's, it is 1 at a row's single ``+inf`` and 0 elsewhere, and NaN for rows of
    several ``+inf`` or of ``-inf`` only (PyTorch and JAX give NaN at any ``+inf``).
    There is no ``y=``: the gradient needs the input, the output alone does not determine
    it.

    Args:
        x: input array.
        axis: the axis or axes to reduce (required); None reduces all.
        keepdims: keep the reduced axes, with length 1 (default False).

    Example:
        >>> import numpy as np, fastact as fa
        >>> x = np.array([[0.0, np.log(3.0)], [1e4, 1e4]])
        >>> fa.logsumexp(x, axis=-1)
        array([1.38629436e+00, 1.00006931e+04])
        >>> fa.logsumexp.backward(np.ones(2), x=x, axis=-1)
        array([[0.25, 0.75],
               [0.5 , 0.5 ]])
        >>> float(fa.logsumexp(np.array([-np.inf, np.inf]), axis=None))
        inf

    See also: :data:`softmax`, :data:`log_softmax`.
    """

    def key(x):
        return x

    # As softmax's: 1 at the maximum (+inf included), so that s counts the +inf.
    def term(x, m):
        return 1.0 if x == m else exp_diff(x, m)

    # s is a float64 sum; double() keeps log(s) a float64 under the CUDA simulator too,
    # so that the float32 result is rounded once.  m = +inf gives +inf however many there
    # are; a row of -inf gives -inf + log(n) = -inf.
    def value(s, m):
        return double(m) + math.log(double(s))

    # The gradient: softmax's norm and finish.
    def norm(s, m):
        return 1.0 / s if row_has_limit(s, m) else math.nan

    def finish(t, r):
        return math.mul_wide(t, r)
