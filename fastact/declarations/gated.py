"""Gated units: one half of the input, along an axis, gates the other half."""

import math

from fastact._spec import gated


@gated(formula="a * sigmoid(b), (a, b) = the halves of x along axis",
       derivative="d/da = sigmoid(b); d/db = a * sigmoid(b) * (1 - sigmoid(b))", work=3)
class glu:
    r"""Gated linear unit: the first half of ``x`` along ``axis`` times the sigmoid of the
    second half.

    .. math::

        \mathrm{glu}(x) = a \odot \sigma(b), \qquad x = [a, b] \text{ along the axis}

    The result is half as long as ``x`` along ``axis``, whose length must be even (as
    PyTorch's ``F.glu`` and JAX's ``jax.nn.glu``; ``axis=-1`` by default, as theirs).
    :math:`\sigma` is :data:`sigmoid`'s, without overflow for any ``b``: ``b = +inf``
    passes ``a`` through, ``b = -inf`` gives 0 (NaN where ``a`` is infinite, as
    ``inf * 0``).

    ``glu.backward(dy, x=x)`` is the gradient with respect to ``x``: :math:`dy \odot
    \sigma(b)` in the first half and :math:`dy \odot a\,\sigma'(b)` in the second, in one
    pass; ``dy`` has the result's shape.  A NaN in either half makes both halves of the
    gradient NaN at that position (PyTorch gives :math:`\sigma(b)` where only ``a`` is
    NaN).  There is no ``y=`` (the output does not give ``a`` and ``b``).  float32
    results are within 3 ULP (the sigmoid's 2 and the product's rounding), float64
    within 4.

    Args:
        x: input array, of even length along ``axis``.
        axis: the axis split in two halves (default ``-1``).

    Example:
        >>> import numpy as np, fastact as fa
        >>> x = np.array([[1.0, 2.0, 0.0, np.inf]])
        >>> fa.glu(x)
        array([[0.5, 2. ]])
        >>> fa.glu.backward(np.ones((1, 2)), x=x)
        array([[0.5 , 1.  , 0.25, 0.  ]])

    See also: :data:`sigmoid`, :data:`silu`.
    """

    # sigmoid's: one exp, of -|b| <= 0.
    def f(a, b):
        e = math.exp(-abs(b))
        return a * ((1.0 if b >= 0.0 else e) / (1.0 + e))

    # NaN where a is NaN too, though sigmoid(b) does not depend on it: NaN in, NaN out.
    def dfda(a, b):
        e = math.exp(-abs(b))
        s = (1.0 if b >= 0.0 else e) / (1.0 + e)
        return s if a == a else a

    # sigmoid's derivative: exp_f64, as sigmoid.dfdx, for its float32 tails.
    def dfdb(a, b):
        t = math.exp_f64(-abs(b))
        d = 1.0 + t
        return a * (t / (d * d))
