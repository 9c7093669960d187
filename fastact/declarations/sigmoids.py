"""Sigmoids: bounded, monotone, S-shaped functions (and the step they approach), and the
log-sigmoid."""

import math

from fastact._spec import Param, double, elementwise


@elementwise(
    formula="1 / (1 + exp(-x))",
    derivative="sigmoid(x) * (1 - sigmoid(x))",
    second_derivative="sigmoid'(x) * (1 - 2 sigmoid(x))",
    work=3,
)
class sigmoid:
    r"""Logistic sigmoid.

    .. math::

        \sigma(x) = \frac{1}{1 + e^{-x}}, \qquad \sigma'(x) = \sigma(x)\,(1 - \sigma(x))

    Computed without overflow for any input (``exp`` only ever sees :math:`-|x|`), with
    exact limits ``sigmoid(-inf) = 0`` and ``sigmoid(inf) = 1``.  ``grad`` evaluates
    :math:`e^{-|x|} / (1 + e^{-|x|})^2`, which keeps full relative precision in both
    tails, where :math:`\sigma (1 - \sigma)` would round to 0.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.sigmoid(np.array([-np.inf, 0.0, np.inf]))
        array([0. , 0.5, 1. ])
        >>> float(fa.sigmoid.grad(0.0))
        0.25

    See also: :data:`step`.
    """

    # One exp, of -|x| <= 0, for either sign: 1 / (1 + e) for x >= 0, e / (1 + e) below.
    def f(x):
        e = math.exp(-abs(x))
        return (1.0 if x >= 0.0 else e) / (1.0 + e)

    # exp_f64: exp(-|x|) is subnormal in float32 beyond |x| = 87 (see elu.dfdx).
    def dfdx(x):
        t = math.exp_f64(-abs(x))
        d = 1.0 + t
        return t / (d * d)

    def dfdy(y):
        return y * (1.0 - y)

    # f' (1 - 2 f) = -sign(x) t (1 - t) / (1 + t)^3 with t = exp(-|x|) and 1 - t =
    # -expm1(-|x|): full relative precision in both tails and near 0; double as in dfdx.
    def d2fdx2(x):
        a = -abs(double(x))
        t = math.exp(a)
        d = 1.0 + t
        r = t * math.expm1(a) / (d * d * d)
        return r if x >= 0.0 else -r


@elementwise(
    formula="log(sigmoid(x)) = -softplus(-x)",
    derivative="sigmoid(-x) = 1 - sigmoid(x)",
    second_derivative="-sigmoid(x) * sigmoid(-x)",
    work=4,
)
class log_sigmoid:
    r"""Logarithm of the logistic sigmoid.

    .. math::

        \log\sigma(x) = \min(x, 0) - \log(1 + e^{-|x|}), \qquad
        (\log\sigma)'(x) = \sigma(-x)

    Computed in that form: no overflow for any input (``log_sigmoid(-1e4) == -1e4``) and
    full relative precision in both tails.  ``backward(dy, y=...)`` uses
    :math:`\sigma(-x) = -\mathrm{expm1}(y)`, exact.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.log_sigmoid(np.array([-1e4, 0.0, 50.0]))
        array([-1.00000000e+04, -6.93147181e-01, -1.92874985e-22])

    See also: :data:`sigmoid`, :data:`softplus`.
    """

    def f(x):
        e = math.exp(-abs(x))
        return (x if x < 0.0 else 0.0) - math.log1p(e)

    # exp_f64 in the derivatives: float32's exp, float64 arithmetic rounded once.
    def dfdx(x):
        e = math.exp_f64(-abs(x))
        return (e if x >= 0.0 else 1.0) / (1.0 + e)

    def dfdy(y):
        return -math.expm1(y)

    def d2fdx2(x):
        e = math.exp_f64(-abs(x))
        d = 1.0 + e
        return -(e / (d * d))


@elementwise(
    formula="0 if x <= -3; 1 if x >= 3; x / 6 + 1/2 otherwise",
    derivative="1/6 if -3 < x < 3; 0 otherwise (also at -3 and 3)",
    second_derivative="0",
    kinks=("-3", "3"),
)
class hardsigmoid:
    r"""Hard sigmoid: the piecewise-linear sigmoid of MobileNetV3.

    .. math::

        \mathrm{hardsigmoid}(x) = \frac{\mathrm{relu6}(x + 3)}{6}

    The derivative is 1/6 on :math:`(-3, 3)` and 0 elsewhere, at both kinks too, as in
    PyTorch.  ``jax.nn.hard_sigmoid`` is the same function; Keras's ``hard_sigmoid`` was
    :math:`0.2x + 0.5` before Keras 3.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.hardsigmoid(np.array([-4.0, 0.0, 1.5, 4.0]))
        array([0.  , 0.5 , 0.75, 1.  ])

    See also: :data:`sigmoid`, :data:`hardswish`.
    """

    # (x + 3) / 6: x + 3 is exact near -3, where the result is small.
    def f(x):
        return 0.0 if x <= -3.0 else (1.0 if x >= 3.0 else (x + 3.0) / 6.0)

    def dfdx(x):
        return 0.0 if x <= -3.0 else (0.0 if x >= 3.0 else (1.0 / 6.0 if x == x else x))

    def d2fdx2(x):
        return 0.0 if x == x else x


@elementwise(
    formula="0 if x <= -1; 1 if x >= 1; (x + 1) / 2 otherwise",
    derivative="1/2 if -1 < x < 1; 0 otherwise (also at -1 and 1)",
    second_derivative="0",
    kinks=("-1", "1"),
)
class sparse_sigmoid:
    r"""Sparse sigmoid (Martins et al., 2022), the derivative of :data:`sparse_plus`: a
    sigmoid that is exactly 0 below -1 and 1 above 1.

    .. math::

        \mathrm{sparse\_sigmoid}(x) = \min(\max((x + 1)/2, 0), 1)

    The derivative is 1/2 on :math:`(-1, 1)` and 0 elsewhere, at both kinks too, as in
    JAX.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.sparse_sigmoid(np.array([-2.0, 0.0, 0.5, 2.0]))
        array([0.  , 0.5 , 0.75, 1.  ])

    See also: :data:`sparse_plus`, :data:`hardsigmoid`.
    """

    def f(x):
        return 0.0 if x <= -1.0 else (1.0 if x >= 1.0 else (x + 1.0) * 0.5)

    def dfdx(x):
        return 0.0 if x <= -1.0 else (0.0 if x >= 1.0 else (0.5 if x == x else x))

    def d2fdx2(x):
        return 0.0 if x == x else x


@elementwise(
    formula="tanh(x)",
    derivative="1 - tanh(x)^2",
    second_derivative="-2 tanh(x) (1 - tanh(x)^2)",
    work=3,
)
class tanh:
    r"""Hyperbolic tangent.

    .. math::

        \tanh x = \frac{e^x - e^{-x}}{e^x + e^{-x}}, \qquad
        \tanh' x = 1 - \tanh^2 x = \frac{4 e}{(1 + e)^2},\ e = e^{-2|x|}

    The derivative is computed in the second form, which keeps its relative precision
    where :math:`\tanh^2 x` rounds to 1.  ``backward(dy, y=...)`` uses
    :math:`(1 - y)(1 + y)`, as PyTorch does.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.tanh(np.array([-np.inf, 0.0, 0.5]))
        array([-1.        ,  0.        ,  0.46211716])
        >>> fa.tanh.grad(np.array([0.0, 20.0]))
        array([1.0000000e+00, 1.6993417e-17])

    See also: :data:`sigmoid`, :data:`hardtanh`, :data:`softsign`.
    """

    def f(x):
        return math.tanh(x)

    # exp_f64: float32's exp, float64 arithmetic rounded once.
    def dfdx(x):
        e = math.exp_f64(-2.0 * abs(x))
        d = 1.0 + e
        return 4.0 * e / (d * d)

    def dfdy(y):
        return (1.0 - y) * (1.0 + y)

    def d2fdx2(x):
        e = math.exp_f64(-2.0 * abs(x))
        d = 1.0 + e
        return -2.0 * math.tanh(x) * (4.0 * e / (d * d))


@elementwise(
    formula="x / (1 + |x|)",
    derivative="1 / (1 + |x|)^2",
    second_derivative="-2 sign(x) / (1 + |x|)^3 (0 at x == 0)",
    kinks=("0",),
)
class softsign:
    r"""Softsign.

    .. math::

        \mathrm{softsign}(x) = \frac{x}{1 + |x|}, \qquad
        \mathrm{softsign}'(x) = \frac{1}{(1 + |x|)^2}

    The limits at :math:`\pm\infty` are exact (:math:`\pm 1`).  The second derivative
    jumps from 2 to -2 at 0, where it is taken as 0 (the subgradient of :math:`|x|` that
    PyTorch's autograd uses there).

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.softsign(np.array([-np.inf, -1.0, 0.0, 3.0]))
        array([-1.  , -0.5 ,  0.  ,  0.75])

    See also: :data:`tanh`.
    """

    # Beyond 1e30, x / (1 + |x|) rounds to +-1 (and inf / inf would be NaN).
    def f(x):
        return 1.0 if x > 1e30 else (-1.0 if x < -1e30 else x / (1.0 + abs(x)))

    # double: r * r would round r twice over in float32.
    def dfdx(x):
        r = 1.0 / (1.0 + abs(double(x)))
        return r * r

    def d2fdx2(x):
        r = 1.0 / (1.0 + abs(double(x)))
        t = 2.0 * (r * r * r)
        return -t if x > 0.0 else (t if x < 0.0 else (0.0 if x == x else x))


@elementwise(
    Param("at_zero", 0.0, "Value of the step at exactly ``x == 0``."),
    formula="1 if x > 0; at_zero if x == 0; 0 if x < 0",
    derivative="0 (everywhere it exists; 0 is also used at x == 0)",
    second_derivative="0",
    kinks=("0",),
)
class step:
    r"""Heaviside step function.

    .. math::

        H(x) = \begin{cases} 1 & x > 0 \\ h_0 & x = 0 \\ 0 & x < 0 \end{cases}

    with :math:`h_0` = ``at_zero`` (default 0, as in ``numpy.heaviside(x, 0)``; texts
    disagree, some use 1 or 1/2).  Its derivative is 0 wherever it exists and is taken
    as 0 at :math:`x = 0` too, so ``backward`` passes no gradient.

    Args:
        x: input array.
        at_zero: the value :math:`H(0)`.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.step(np.array([-2.0, 0.0, 3.0]))
        array([0., 0., 1.])
        >>> fa.step(np.array([-2.0, 0.0, 3.0]), at_zero=1.0)
        array([0., 1., 1.])

    See also: :data:`sigmoid`, :func:`numpy.heaviside`.
    """

    def f(x, at_zero):
        if x > 0.0:
            return 1.0
        if x < 0.0:
            return 0.0
        return at_zero if x == 0.0 else x

    def dfdx(x, at_zero):
        return 0.0 if x == x else x

    def dfdy(y, at_zero):
        return 0.0 if y == y else y

    def d2fdx2(x, at_zero):
        return 0.0 if x == x else x
