"""Scalar helpers that several declarations share (``@helper``): compiled once per target
beside the declarations, and called from their scalar functions by name."""

import math

from fastact._spec import helper


@helper
def exp_neg_abs_prod(a, x):
    """``e**-|a x|`` with the product taken exactly: ``a x`` is rounded, and its rounding
    error (an FMA gives it exactly) is added back to first order.  Rounded, the product
    would cost ``|a x|`` ULP of the result (20 ULP at ``a x = -20``).  Where the product is
    infinite the correction is NaN and dropped."""
    z = a * x
    err = math.fma(a, x, -z)
    e = math.exp(-abs(z))
    c = e * (err if z < 0.0 else -err)
    return e + (c if c == c else 0.0)


@helper
def exp_f64_neg_abs_prod(a, x):
    """:func:`exp_neg_abs_prod` as a float64 computed to the element's precision
    (:func:`fastact._vmath.exp_f64`): for the derivatives, whose few operations after the
    exponential then round once, and whose tails stay normal where dy scales them."""
    z = a * x
    err = math.fma(a, x, -z)
    e = math.exp_f64(-abs(z))
    c = e * (err if z < 0.0 else -err)
    return e + (c if c == c else 0.0)


@helper
def exp_diff(a, b):
    """``e**(a - b)`` for ``a <= b`` with the difference taken exactly
    (:func:`fastact._vmath.exp_diff`): without that, the rounding of ``x - max(x)`` is an
    error of ``|x - max(x)|`` ULP in the result (20 ULP at a difference of 20 in float32).
    ``e**(-inf - b)`` is 0."""
    return math.exp_diff(a, b)


@helper
def row_has_limit(s, m):
    """Whether a row with maximum key ``m`` and term sum ``s`` has a finite softmax: ``m``
    finite, or ``m = +inf`` reached by a single element (its term is 1, the others 0, so
    ``s == 1``).  A row of ``-inf`` only, or with several ``+inf``, has none."""
    return m > -math.inf and (m < math.inf or s == 1.0)
