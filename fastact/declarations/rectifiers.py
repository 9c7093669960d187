"""Rectifiers: about the identity for large inputs, and bounded or zero below.

The piecewise-linear ones (relu, leaky_relu, relu6, hardtanh, threshold), the
exponential-linear ones (elu, selu, celu) and the smooth ones (softplus, silu, gelu,
mish, hardswish, squareplus, sparse_plus).
"""

import math

from fastact._spec import Param, double, elementwise
from fastact.declarations.helpers import exp_f64_neg_abs_prod, exp_neg_abs_prod  # noqa: F401  (called by name)


@elementwise(
    Param("at_zero", 0.0, "Subgradient used by ``grad``/``backward`` at exactly ``x == 0``."),
    formula="max(x, 0)",
    derivative="1 if x > 0; at_zero if x == 0; 0 if x < 0",
    second_derivative="0",
    dfdy_requires="at_zero == 0",
    layer="ReLU",
    kinks=("0",),
)
class relu:
    r"""Rectified linear unit.

    .. math::

        \mathrm{relu}(x) = \max(x, 0)

    The derivative is 1 for :math:`x > 0` and 0 for :math:`x < 0`.  At :math:`x = 0`
    it does not exist; ``grad`` and ``backward`` use the subgradient ``at_zero`` there,
    0 by default as in PyTorch and JAX (some texts use 1).  ``relu(-0.0)`` is ``+0.0``.

    Args:
        x: input array (or anything :func:`numpy.asarray` accepts).
        at_zero: value of the derivative at exactly 0; ignored by the forward pass.
            ``backward(dy, y=...)`` requires ``at_zero == 0``, because ``y == 0`` does
            not tell ``x == 0`` from ``x < 0``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.relu(np.array([-3.0, 0.0, 0.1, 2.0]))
        array([0. , 0. , 0.1, 2. ])
        >>> fa.relu.grad(np.array([-1.0, 0.0, 1.0]), at_zero=1.0)
        array([0., 1., 1.])

    See also: :data:`leaky_relu`, :data:`elu`.
    """

    def f(x, at_zero):
        return x if x > 0.0 else (0.0 if x <= 0.0 else x)

    def dfdx(x, at_zero):
        if x > 0.0:
            return 1.0
        if x < 0.0:
            return 0.0
        return at_zero if x == 0.0 else x

    def dfdy(y, at_zero):
        return 1.0 if y > 0.0 else (0.0 if y <= 0.0 else y)

    # 0 on either side of the kink (and taken as 0 at it).
    def d2fdx2(x, at_zero):
        return 0.0 if x == x else x


@elementwise(
    Param("negative_slope", 0.01, "Slope for ``x <= 0``."),
    formula="x if x > 0 else negative_slope * x",
    derivative="1 if x > 0; negative_slope if x <= 0",
    second_derivative="0",
    dfdy_requires="negative_slope > 0",
    layer="LeakyReLU",
    kinks=("0",),
)
class leaky_relu:
    r"""Leaky rectified linear unit.

    .. math::

        \mathrm{leaky\_relu}(x) = \begin{cases} x & x > 0 \\
        \alpha x & x \le 0 \end{cases}

    with :math:`\alpha` = ``negative_slope``.  The derivative at the kink, :math:`x = 0`,
    is taken from the left: ``negative_slope``, as in PyTorch.

    Args:
        x: input array.
        negative_slope: slope :math:`\alpha` for non-positive input (PyTorch's default,
            0.01). ``backward(dy, y=...)`` requires ``negative_slope > 0``, so that the
            sign of ``y`` is the sign of ``x``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.leaky_relu(np.array([-10.0, 0.0, 15.0]))
        array([-0.1,  0. , 15. ])
        >>> fa.leaky_relu.grad(np.array([-1.0, 0.0, 1.0]), negative_slope=0.2)
        array([0.2, 0.2, 1. ])

    See also: :data:`relu`, :data:`elu`.
    """

    def f(x, negative_slope):
        return x if x > 0.0 else negative_slope * x

    def dfdx(x, negative_slope):
        return 1.0 if x > 0.0 else (negative_slope if x <= 0.0 else x)

    def dfdy(y, negative_slope):
        return 1.0 if y > 0.0 else (negative_slope if y <= 0.0 else y)

    def d2fdx2(x, negative_slope):
        return 0.0 if x == x else x


@elementwise(
    Param("lower", 1.0 / 8.0, "Lower bound of the random slopes (training mode)."),
    Param("upper", 1.0 / 3.0, "Upper bound of the random slopes (training mode).", requires="lower <= upper"),
    formula="x if x > 0 else (lower + upper) / 2 * x",
    derivative="1 if x > 0; (lower + upper) / 2 if x <= 0",
    second_derivative="0",
    dfdy_requires="lower + upper >= 0",
    layer="RReLU",
    kinks=("0",),
    sampled="prelu",
)
class rrelu:
    r"""Randomised leaky rectified linear unit: in training, a leaky ReLU whose slope for
    negative input is drawn for each element; in evaluation, the mean slope.

    .. math::

        \mathrm{rrelu}(x) = \begin{cases} x & x > 0 \\ a\, x & x \le 0 \end{cases}
        \qquad a = \frac{l + u}{2} \ \text{(evaluation)}, \quad
        a \sim U(l, u) \ \text{per element (training)}

    with :math:`l` = ``lower`` and :math:`u` = ``upper``, PyTorch's defaults 1/8 and 1/3.
    By default (``training=False``) it is :data:`leaky_relu` with ``negative_slope =
    (lower + upper) / 2``, as PyTorch's ``F.rrelu`` in evaluation.

    In training mode the slopes come from a NumPy random generator, and the backward pass
    needs the same slopes, so the call returns them with the result::

        y, slopes = fa.rrelu(x, training=True, rng=rng)   # slopes: x's shape and dtype
        dx = fa.rrelu.backward(dy, x=x, slopes=slopes)     # dy * (1 if x > 0 else slope)

    ``rng`` is anything :func:`numpy.random.default_rng` accepts (a ``Generator``, a
    seed; None draws from fresh OS entropy); the slopes are ``rng.random`` in ``x``'s
    dtype mapped to :math:`[l, u]`, one per element (drawn for every element, used where
    :math:`x \le 0`).  ``fa.rrelu(x, slopes=slopes)`` computes the training-mode result
    for given slopes (it returns the result alone), and ``rrelu.grad(x, slopes=...)`` its
    derivative.  These are :data:`prelu` with one weight per element, through the same
    kernels.  The derivative at the kink :math:`x = 0` is the slope (from the left, as
    PyTorch).

    Args:
        x: input array.
        lower: lower bound of the slopes (default 1/8).
        upper: upper bound (default 1/3), at least ``lower``.
        training: draw random slopes (default False: the mean slope).
        rng: the random generator, or its seed, for ``training=True``.
        slopes: the slopes of a training-mode call, one per element of ``x``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> x = np.array([-3.0, 0.0, 2.0])
        >>> fa.rrelu(x, lower=0.1, upper=0.3)
        array([-0.6,  0. ,  2. ])
        >>> y, slopes = fa.rrelu(x, training=True, rng=0)
        >>> bool(np.all((slopes >= 0.125) & (slopes <= 1 / 3)))
        True
        >>> dx = fa.rrelu.backward(np.ones(3), x=x, slopes=slopes)
        >>> bool(dx[0] == slopes[0] and dx[2] == 1.0)
        True

    See also: :data:`leaky_relu`, :data:`prelu`.
    """

    def f(x, lower, upper):
        return x if x > 0.0 else ((lower + upper) * 0.5) * x

    def dfdx(x, lower, upper):
        return 1.0 if x > 0.0 else ((lower + upper) * 0.5 if x <= 0.0 else x)

    # y > 0 exactly where x > 0, for a non-negative mean slope.
    def dfdy(y, lower, upper):
        return 1.0 if y > 0.0 else ((lower + upper) * 0.5 if y <= 0.0 else y)

    def d2fdx2(x, lower, upper):
        return 0.0 if x == x else x


@elementwise(
    formula="min(max(x, 0), 6)",
    derivative="1 if 0 < x < 6; 0 otherwise (also at 0 and 6)",
    second_derivative="0",
    layer="ReLU6",
    kinks=("0", "6"),
)
class relu6:
    r"""Rectified linear unit capped at 6.

    .. math::

        \mathrm{relu6}(x) = \min(\max(x, 0), 6)

    The derivative is 1 on :math:`(0, 6)` and 0 outside; at both kinks it is 0, as in
    PyTorch (``relu6`` is ``hardtanh(x, 0, 6)`` there).  ``relu6(-0.0)`` is ``+0.0``.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.relu6(np.array([-1.0, 0.0, 3.0, 6.0, 8.0]))
        array([0., 0., 3., 6., 6.])
        >>> fa.relu6.grad(np.array([0.0, 3.0, 6.0]))
        array([0., 1., 0.])

    See also: :data:`relu`, :data:`hardtanh`.
    """

    def f(x):
        return 6.0 if x > 6.0 else (x if x > 0.0 else (0.0 if x <= 0.0 else x))

    def dfdx(x):
        return 0.0 if x <= 0.0 else (0.0 if x >= 6.0 else (1.0 if x == x else x))

    # y in (0, 6) exactly where x is.
    def dfdy(y):
        return 0.0 if y <= 0.0 else (0.0 if y >= 6.0 else (1.0 if y == y else y))

    def d2fdx2(x):
        return 0.0 if x == x else x


@elementwise(
    Param("min_val", -1.0, "Lower bound."),
    Param("max_val", 1.0, "Upper bound.", requires="min_val <= max_val"),
    formula="min(max(x, min_val), max_val)",
    derivative="1 if min_val < x < max_val; 0 otherwise (also at both bounds)",
    second_derivative="0",
    kinks=("min_val", "max_val"),
)
class hardtanh:
    r"""Hard hyperbolic tangent: the identity clipped to ``[min_val, max_val]``.

    .. math::

        \mathrm{hardtanh}(x) = \min(\max(x, a), b), \qquad a = \mathrm{min\_val},\ b = \mathrm{max\_val}

    The derivative is 1 on :math:`(a, b)` and 0 outside; at both bounds it is 0, as in
    PyTorch.  JAX's ``hard_tanh`` has fixed bounds -1 and 1.

    Args:
        x: input array.
        min_val: lower bound (default -1).
        max_val: upper bound (default 1); at least ``min_val``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.hardtanh(np.array([-2.0, -0.5, 0.5, 2.0]))
        array([-1. , -0.5,  0.5,  1. ])
        >>> fa.hardtanh.grad(np.array([-1.0, 0.0, 1.0]))
        array([0., 1., 0.])

    See also: :data:`relu6`, :data:`tanh`.
    """

    def f(x, min_val, max_val):
        return max_val if x > max_val else (min_val if x < min_val else x)

    def dfdx(x, min_val, max_val):
        return 0.0 if x <= min_val else (0.0 if x >= max_val else (1.0 if x == x else x))

    # y is strictly between the bounds exactly where x is.
    def dfdy(y, min_val, max_val):
        return 0.0 if y <= min_val else (0.0 if y >= max_val else (1.0 if y == y else y))

    def d2fdx2(x, min_val, max_val):
        return 0.0 if x == x else x


@elementwise(
    Param("threshold", 0.0, "The input is kept above this value."),
    Param("value", 0.0, "What replaces the input at or below ``threshold``."),
    formula="x if x > threshold else value",
    derivative="1 if x > threshold; 0 otherwise (also at threshold)",
    second_derivative="0",
    dfdy_requires="value <= threshold",
    kinks=("threshold",),
)
class threshold:
    r"""Threshold: the input above ``threshold``, ``value`` elsewhere.

    .. math::

        \mathrm{threshold}(x) = \begin{cases} x & x > t \\ v & x \le t \end{cases}

    The derivative is 1 above the threshold and 0 at or below it, as in PyTorch.  PyTorch
    requires both parameters; here they default to 0, which makes this :data:`relu`.

    Args:
        x: input array.
        threshold: :math:`t`.
        value: :math:`v`.  ``backward(dy, y=...)`` requires ``value <= threshold``, so
            that ``y > threshold`` tells the two branches apart.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.threshold(np.array([-1.0, 0.5, 2.0]), threshold=1.0, value=-5.0)
        array([-5., -5.,  2.])

    See also: :data:`relu`, :data:`hardshrink`.
    """

    def f(x, threshold, value):
        return x if x > threshold else (value if x <= threshold else x)

    def dfdx(x, threshold, value):
        return 1.0 if x > threshold else (0.0 if x <= threshold else x)

    def dfdy(y, threshold, value):
        return 1.0 if y > threshold else (0.0 if y <= threshold else y)

    def d2fdx2(x, threshold, value):
        return 0.0 if x == x else x


@elementwise(
    Param("alpha", 1.0, "Scale of the negative saturation value."),
    formula="x if x > 0 else alpha * (exp(x) - 1)",
    derivative="1 if x > 0; alpha * exp(x) if x <= 0",
    second_derivative="0 if x > 0; alpha * exp(x) if x <= 0",
    dfdy_requires="alpha > 0",
    work=3,
    layer="ELU",
    kinks=("0",),
)
class elu:
    r"""Exponential linear unit.

    .. math::

        \mathrm{elu}(x) = \begin{cases} x & x > 0 \\
        \alpha (e^x - 1) & x \le 0 \end{cases}

    computed with ``expm1`` so that small negative inputs keep full precision.  The
    derivative at :math:`x = 0` is taken from the left, :math:`\alpha`, as in PyTorch;
    ``elu(-inf) = -alpha``.

    Args:
        x: input array.
        alpha: :math:`\alpha`, the value approached as :math:`x \to -\infty` is
            :math:`-\alpha` (default 1.0). ``backward(dy, y=...)`` requires
            ``alpha > 0``; it then uses :math:`f'(x) = y + \alpha` for :math:`y \le 0`.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.elu(np.array([-np.inf, 0.0, 2.0]), alpha=0.5)
        array([-0.5,  0. ,  2. ])
        >>> fa.elu.grad(np.array([0.0, 1.0]))
        array([1., 1.])

    See also: :data:`relu`, :data:`leaky_relu`.
    """

    def f(x, alpha):
        return x if x > 0.0 else alpha * math.expm1(x)

    # exp_f64: in float32, exp(x) is subnormal for x < -87 and would lose the precision
    # that backward's dy * f'(x) needs (dy = 1e30, x = -100); exp_f64 keeps it, at the
    # cost of float32's exp.  f is fine in float32.
    def dfdx(x, alpha):
        return 1.0 if x > 0.0 else alpha * math.exp_f64(x)

    def dfdy(y, alpha):
        return 1.0 if y > 0.0 else y + alpha

    # From the left at 0, as dfdx; exp_f64 as in dfdx.
    def d2fdx2(x, alpha):
        return 0.0 if x > 0.0 else alpha * math.exp_f64(x)


@elementwise(
    formula="scale * (x if x > 0 else alpha * (exp(x) - 1)), scale = 1.0507..., alpha = 1.6732...",
    derivative="scale if x > 0; scale * alpha * exp(x) if x <= 0",
    second_derivative="0 if x > 0; scale * alpha * exp(x) if x <= 0",
    work=3,
    layer="SELU",
    kinks=("0",),
)
class selu:
    r"""Scaled exponential linear unit (Klambauer et al., 2017).

    .. math::

        \mathrm{selu}(x) = \lambda \begin{cases} x & x > 0 \\
        \alpha (e^x - 1) & x \le 0 \end{cases}

    with :math:`\lambda = 1.0507009873554804934193349852946` and
    :math:`\alpha = 1.6732632423543772848170429916717`, PyTorch's constants (JAX's and
    Keras's agree).  The derivative at 0 is taken from the left,
    :math:`\lambda\alpha`, as in PyTorch.  ``backward`` needs the input: from the output,
    :math:`y + \lambda\alpha` would cancel as :math:`x \to -\infty` with the rounding of
    the irrational :math:`\lambda\alpha` (elu's :math:`y + \alpha` has an exact
    :math:`\alpha`).

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.selu(np.array([-np.inf, 0.0, 1.0]))
        array([-1.75809934,  0.        ,  1.05070099])

    See also: :data:`elu`, :data:`celu`.
    """

    def f(x):
        return 1.0507009873554804934193349852946 * x if x > 0.0 else 1.7580993408473768599402175208123 * math.expm1(x)

    # exp_f64 as in elu.dfdx.
    def dfdx(x):
        return 1.0507009873554804934193349852946 if x > 0.0 else 1.7580993408473768599402175208123 * math.exp_f64(x)

    def d2fdx2(x):
        return 0.0 if x > 0.0 else 1.7580993408473768599402175208123 * math.exp_f64(x)


@elementwise(
    Param("alpha", 1.0, "Scale and temperature of the negative part.", requires="alpha != 0"),
    formula="x if x > 0 else alpha * (exp(x / alpha) - 1)",
    derivative="1 if x > 0; exp(x / alpha) if x <= 0",
    second_derivative="0 if x > 0; exp(x / alpha) / alpha if x <= 0",
    dfdy_requires="alpha > 0",
    work=3,
    layer="CELU",
    kinks=("0",),
)
class celu:
    r"""Continuously differentiable exponential linear unit (Barron, 2017).

    .. math::

        \mathrm{celu}(x) = \begin{cases} x & x > 0 \\
        \alpha (e^{x/\alpha} - 1) & x \le 0 \end{cases}

    Its derivative is continuous at 0 (it is 1 from both sides) for every
    :math:`\alpha`.  The quotient :math:`x/\alpha` is taken exactly (its rounding error
    is added back), so the result keeps its precision where :math:`|x/\alpha|` is large.
    ``backward(dy, y=...)`` uses :math:`f'(x) = 1 + y/\alpha` for :math:`y \le 0`.

    Args:
        x: input array.
        alpha: :math:`\alpha \ne 0` (default 1, where celu is :data:`elu`).
            ``backward(dy, y=...)`` requires ``alpha > 0``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.celu(np.array([-np.inf, -1.0, 2.0]), alpha=2.0)
        array([-2.        , -0.78693868,  2.        ])

    See also: :data:`elu`, :data:`selu`.
    """

    # q + e = x / alpha exactly (to first order): e from the FMA remainder, dropped
    # where it is not finite (x infinite).
    def f(x, alpha):
        q = x / alpha
        e = math.fma(-q, alpha, x) / alpha
        e = e if abs(e) < 1.0 else 0.0
        t = math.expm1(q)
        return x if x > 0.0 else alpha * (t + (t * e + e))

    def dfdx(x, alpha):
        q = x / alpha
        e = math.fma(-q, alpha, x) / alpha
        e = e if abs(e) < 1.0 else 0.0
        t = math.exp_f64(q)
        return 1.0 if x > 0.0 else t + t * e

    def dfdy(y, alpha):
        return 1.0 if y > 0.0 else 1.0 + y / alpha

    def d2fdx2(x, alpha):
        q = x / alpha
        e = math.fma(-q, alpha, x) / alpha
        e = e if abs(e) < 1.0 else 0.0
        t = math.exp_f64(q)
        return 0.0 if x > 0.0 else (t + t * e) / alpha


@elementwise(
    Param("beta", 1.0, "Sharpness: softplus approaches relu as beta grows.", requires="beta > 0"),
    Param("threshold", 20.0, "Above ``beta * x > threshold`` the function is the identity."),
    formula="log(1 + exp(beta * x)) / beta; x if beta * x > threshold",
    derivative="sigmoid(beta * x); 1 if beta * x > threshold",
    second_derivative="beta * sigmoid(beta * x) * (1 - sigmoid(beta * x)); 0 if beta * x > threshold",
    work=4,
)
class softplus:
    r"""Softplus, a smooth relu.

    .. math::

        \mathrm{softplus}(x) = \frac{1}{\beta} \log(1 + e^{\beta x}),
        \qquad \mathrm{softplus}'(x) = \sigma(\beta x)

    and :math:`x` itself where :math:`\beta x` exceeds ``threshold``, as in PyTorch (whose
    derivative there is 1).  Computed as :math:`(\max(\beta x, 0) +
    \log(1 + e^{-|\beta x|})) / \beta`, which never overflows, with :math:`\beta x` taken
    exactly.  JAX and Keras have neither ``beta`` nor ``threshold`` (``beta = 1``, no
    threshold: pass ``threshold=math.inf``... or any value above the largest input).

    Args:
        x: input array.
        beta: :math:`\beta > 0` (default 1).
        threshold: where the identity takes over (default 20).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.softplus(np.array([-1e4, 0.0, 1.0, 1e4]))
        array([0.00000000e+00, 6.93147181e-01, 1.31326169e+00, 1.00000000e+04])
        >>> fa.softplus.grad(np.array([0.0]))
        array([0.5])

    See also: :data:`relu`, :data:`sigmoid`, :data:`log_sigmoid`.
    """

    def f(x, beta, threshold):
        z = beta * x
        e = exp_neg_abs_prod(beta, x)
        m = z if z > 0.0 else 0.0
        return x if z > threshold else (m + math.log1p(e)) / beta

    # The derivatives from exp_f64: float32's exp, then float64 arithmetic, rounded once.
    def dfdx(x, beta, threshold):
        z = beta * x
        e = exp_f64_neg_abs_prod(beta, x)
        return 1.0 if z > threshold else (1.0 if z >= 0.0 else e) / (1.0 + e)

    def d2fdx2(x, beta, threshold):
        z = beta * x
        e = exp_f64_neg_abs_prod(beta, x)
        d = 1.0 + e
        return 0.0 if z > threshold else beta * (e / (d * d))


@elementwise(
    Param("beta", 1.0, "Slope of the sigmoid (tf.nn.silu's ``beta``)."),
    formula="x * sigmoid(beta * x)",
    derivative="s + beta * x * s * (1 - s), s = sigmoid(beta * x)",
    second_derivative="beta * s * (1 - s) * (2 + beta * x * (1 - 2 s))",
    work=3,
    layer="SiLU",
    aliases=("swish",),
)
class silu:
    r"""Sigmoid-weighted linear unit, also called swish (Hendrycks and Gimpel, 2016;
    Ramachandran et al., 2017).

    .. math::

        \mathrm{silu}(x) = x\,\sigma(\beta x), \qquad
        \mathrm{silu}'(x) = s + \beta x\, s (1 - s), \quad s = \sigma(\beta x)

    ``beta`` is TensorFlow's (``tf.nn.silu(x, beta)``); PyTorch, JAX and Keras have
    ``beta = 1`` only.  Exact limits: 0 at :math:`-\infty` (for :math:`\beta > 0`), the
    identity's at :math:`+\infty`.  ``fastact.swish`` is the same function.

    Args:
        x: input array.
        beta: :math:`\beta` (default 1).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.silu(np.array([-np.inf, -1.0, 0.0, 1.0]))
        array([-0.        , -0.26894142,  0.        ,  0.73105858])

    See also: :data:`sigmoid`, :data:`gelu`, :data:`mish`.
    """

    # s = sigmoid(beta x) from e = exp(-|beta x|); x * s is 0 where s is (the limit at an
    # infinite x, with x's sign).
    # exp_f64: float32's exp, then float64 arithmetic rounded once (x s and s + z q would
    # round three or four times in float32).
    def f(x, beta):
        z = beta * x
        e = exp_f64_neg_abs_prod(beta, x)
        s = (1.0 if z >= 0.0 else e) / (1.0 + e)
        return (-0.0 if x < 0.0 else 0.0) if s == 0.0 else x * s

    # s + z s (1 - s) with s (1 - s) = e / (1 + e)**2; z * q is 0 where q is.
    def dfdx(x, beta):
        z = beta * x
        e = exp_f64_neg_abs_prod(beta, x)
        d = 1.0 + e
        s = (1.0 if z >= 0.0 else e) / d
        q = e / (d * d)
        return s + (z * q if q > 0.0 else 0.0)

    # beta q (2 - |z| t), t = (1 - e) / (1 + e) = |1 - 2 s|.
    def d2fdx2(x, beta):
        z = beta * x
        e = exp_f64_neg_abs_prod(beta, x)
        d = 1.0 + e
        q = e / (d * d)
        t = (1.0 - e) / d
        return 0.0 * q if q == 0.0 else beta * q * (2.0 - abs(z) * t)


@elementwise(
    Param("approximate", "none", "``\"none\"``: the exact form with erf; ``\"tanh\"``: the tanh approximation.",
          choices=("none", "tanh")),
    formula="x * Phi(x) (approximate='none'); x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ('tanh')",
    derivative="Phi(x) + x phi(x) ('none'); the tanh form's derivative ('tanh')",
    second_derivative="phi(x) (2 - x^2) ('none'); the tanh form's ('tanh')",
    work=5,
    layer="GELU",
)
class gelu:
    r"""Gaussian error linear unit (Hendrycks and Gimpel, 2016).

    .. math::

        \mathrm{gelu}(x) = x\,\Phi(x), \qquad \mathrm{gelu}'(x) = \Phi(x) + x\,\varphi(x)

    with :math:`\Phi` the standard normal distribution function and :math:`\varphi` its
    density.  With ``approximate="tanh"``, the approximation
    :math:`\tfrac{x}{2}\bigl(1 + \tanh(\sqrt{2/\pi}\,(x + 0.044715 x^3))\bigr)` and its
    exact derivative.  The default is PyTorch's (exact); ``jax.nn.gelu`` defaults to
    ``approximate=True``, which is ``approximate="tanh"`` here.

    :math:`\Phi(x)` is computed with its argument :math:`-x/\sqrt 2` taken exactly, so the
    exact form keeps its relative precision in the left tail, and the tanh form is
    evaluated as :math:`x\,\sigma(2u)`, which never overflows.  In the tanh form's left
    tail (:math:`x < -3`) the rounding of the cubic :math:`u` costs a few times
    :math:`|u|` ULP (as in every implementation of that formula).  Accuracy elsewhere: 4 ULP
    in float32 (:math:`\Phi` is within 3), 4 in float64.

    Args:
        x: input array.
        approximate: ``"none"`` (default) or ``"tanh"``.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.gelu(np.array([-3.0, 0.0, 1.0]))
        array([-0.00404969,  0.        ,  0.84134475])
        >>> fa.gelu(np.array([-3.0, 0.0, 1.0]), approximate="tanh")
        array([-0.00363739,  0.        ,  0.84119199])

    See also: :data:`silu`, :data:`mish`.
    """

    # The tanh form as x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3); x * Phi(x) is 0
    # where Phi(x) is (x = -inf).
    def f(x, approximate):
        u = 0.7978845608028654 * (x + 0.044715 * (x * x * x))
        e = math.exp(-abs(2.0 * u))
        s = (1.0 if u >= 0.0 else e) / (1.0 + e)
        p = math.ndtr(x) if approximate == 0.0 else s
        return (-0.0 if x < 0.0 else 0.0) if p == 0.0 else x * p

    # Phi + x phi, phi(x) = exp(-x^2 / 2) / sqrt(2 pi) with x^2 = p + err exactly (FMA).
    # Tanh form: s + x s (1 - s) 2 u', u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    def dfdx(x, approximate):
        p = x * x
        err = math.fma(x, x, -p)
        err = err if abs(err) < 1.0 else 0.0  # large or infinite x: exp(-p / 2) is 0
        phi = 0.3989422804014327 * math.exp_f64(-0.5 * p) * (1.0 - 0.5 * err)
        exact = math.ndtr(x) + (x * phi if phi > 0.0 else 0.0)
        u = 0.7978845608028654 * (x + 0.044715 * (x * p))
        du = 0.7978845608028654 * (1.0 + 0.134145 * p)
        e = math.exp_f64(-abs(2.0 * u))
        d = 1.0 + e
        s = (1.0 if u >= 0.0 else e) / d
        q = e / (d * d)
        tanh_form = s + (2.0 * x * du * q if q > 0.0 else 0.0)
        return exact if approximate == 0.0 else tanh_form

    # phi (2 - x^2); tanh form: 2 q (2 u' + x u'' - 2 x u'^2 (2 s - 1)), u'' = 6 * 0.044715 sqrt(2/pi) x.
    def d2fdx2(x, approximate):
        p = x * x
        err = math.fma(x, x, -p)
        err = err if abs(err) < 1.0 else 0.0
        phi = 0.3989422804014327 * math.exp_f64(-0.5 * p) * (1.0 - 0.5 * err)
        exact = phi * ((2.0 - p) - err) if phi > 0.0 else 0.0 * phi
        u = 0.7978845608028654 * (x + 0.044715 * (x * p))
        du = 0.7978845608028654 * (1.0 + 0.134145 * p)
        ddu = 0.21406444881780073 * x
        e = math.exp_f64(-abs(2.0 * u))
        d = 1.0 + e
        q = e / (d * d)
        t = (1.0 - e) / d  # |2 s - 1|
        w = t if u >= 0.0 else -t  # 2 s - 1
        tanh_form = 2.0 * q * (2.0 * du + x * ddu - 2.0 * x * du * du * w) if q > 0.0 else 0.0 * q
        return exact if approximate == 0.0 else tanh_form


@elementwise(
    formula="x * tanh(softplus(x))",
    derivative="t + x * (1 - t^2) * sigmoid(x), t = tanh(softplus(x))",
    second_derivative="g * (2 + x * (1 - sigmoid(x) - 2 t sigmoid(x))), g = (1 - t^2) sigmoid(x)",
    work=4,
)
class mish:
    r"""Mish (Misra, 2019).

    .. math::

        \mathrm{mish}(x) = x \tanh(\mathrm{softplus}(x)), \qquad
        \mathrm{mish}'(x) = t + x (1 - t^2) \sigma(x), \quad t = \tanh(\mathrm{softplus}(x))

    With :math:`e = e^{-|x|}`, :math:`t = (1 + 2e) / (1 + 2e + 2e^2)` for :math:`x > 0` and
    :math:`n / (n + 2)`, :math:`n = e (e + 2)`, below: one exponential, no overflow, and
    :math:`1 - t^2` without cancellation.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.mish(np.array([-np.inf, -1.0, 0.0, 1.0]))
        array([-0.        , -0.30340146,  0.        ,  0.86509839])

    See also: :data:`silu`, :data:`softplus`.
    """

    # exp_f64: float32's exp, then float64 arithmetic rounded once.
    def f(x):
        e = math.exp_f64(-abs(x))
        n = e * (e + 2.0)
        t = (1.0 + 2.0 * e) / (1.0 + 2.0 * e + 2.0 * e * e) if x > 0.0 else n / (n + 2.0)
        return -0.0 if t == 0.0 else x * t

    # 1 - t^2 = 4 e^2 (1 + e)^2 / D^2 (x > 0, D = 1 + 2e + 2e^2) or 4 (n + 1) / (n + 2)^2.
    def dfdx(x):
        e = math.exp_f64(-abs(x))
        n = e * (e + 2.0)
        big = 1.0 + 2.0 * e + 2.0 * e * e
        t = (1.0 + 2.0 * e) / big if x > 0.0 else n / (n + 2.0)
        r = 2.0 * e * (1.0 + e) / big
        c = r * r if x > 0.0 else 4.0 * (n + 1.0) / ((n + 2.0) * (n + 2.0))
        s = (1.0 if x > 0.0 else e) / (1.0 + e)
        g = c * s
        return t + (x * g if g > 0.0 else 0.0)

    def d2fdx2(x):
        e = math.exp_f64(-abs(x))
        n = e * (e + 2.0)
        big = 1.0 + 2.0 * e + 2.0 * e * e
        t = (1.0 + 2.0 * e) / big if x > 0.0 else n / (n + 2.0)
        r = 2.0 * e * (1.0 + e) / big
        c = r * r if x > 0.0 else 4.0 * (n + 1.0) / ((n + 2.0) * (n + 2.0))
        s = (1.0 if x > 0.0 else e) / (1.0 + e)
        sm = (e if x > 0.0 else 1.0) / (1.0 + e)  # 1 - s
        g = c * s
        return 0.0 * g if g == 0.0 else g * (2.0 + x * (sm - 2.0 * t * s))


@elementwise(
    formula="0 if x <= -3; x if x >= 3; x (x + 3) / 6 otherwise",
    derivative="0 if x <= -3; 1 if x >= 3; (2x + 3) / 6 otherwise",
    second_derivative="1/3 if -3 < x < 3; 0 otherwise",
    kinks=("-3", "3"),
)
class hardswish:
    r"""Hard swish (Howard et al., 2019): a piecewise-quadratic :data:`silu`.

    .. math::

        \mathrm{hardswish}(x) = x\,\frac{\mathrm{relu6}(x + 3)}{6}

    The derivative is :math:`(2x + 3)/6` on :math:`(-3, 3)`, 0 from -3 down and 1 from 3
    up (at the kinks, where it jumps, the outer values, as in PyTorch).
    ``jax.nn.hard_swish`` is the same function.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.hardswish(np.array([-4.0, -1.5, 0.0, 1.0, 4.0]))
        array([-0.        , -0.375     ,  0.        ,  0.66666667,  4.        ])

    See also: :data:`hardsigmoid`, :data:`silu`.
    """

    def f(x):
        return -0.0 if x <= -3.0 else (x if x >= 3.0 else x * (x + 3.0) / 6.0)

    def dfdx(x):
        return 0.0 if x <= -3.0 else (1.0 if x >= 3.0 else ((2.0 * x + 3.0) / 6.0 if x == x else x))

    def d2fdx2(x):
        return 0.0 if x <= -3.0 else (0.0 if x >= 3.0 else (1.0 / 3.0 if x == x else x))


@elementwise(
    Param("b", 4.0, "Smoothness: the curvature at 0 is 1 / (2 sqrt(b)).", requires="b > 0"),
    formula="(x + sqrt(x^2 + b)) / 2",
    derivative="(1 + x / sqrt(x^2 + b)) / 2",
    second_derivative="b / (2 (x^2 + b)^(3/2))",
)
class squareplus:
    r"""Squareplus (Barron, 2021): a smooth relu with only arithmetic and a square root.

    .. math::

        \mathrm{squareplus}(x) = \frac{x + \sqrt{x^2 + b}}{2}

    For :math:`x < 0` it is computed as :math:`b / (2(\sqrt{x^2 + b} - x))`, without
    cancellation, and :math:`\sqrt{x^2 + b}` without overflow; float32 in double
    precision, rounded once.  Float64 results are within 6 ULP.  ``backward(dy, y=...)``
    uses :math:`f'(x) = 4y^2 / (4y^2 + b)`.  JAX's ``squareplus(x, b=4)``.

    Args:
        x: input array.
        b: :math:`b > 0` (default 4).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.squareplus(np.array([-1e4, 0.0, 1.0]))
        array([9.99999990e-05, 1.00000000e+00, 1.61803399e+00])

    See also: :data:`softplus`, :data:`relu`.
    """

    # s = sqrt(x^2 + b), as |x| sqrt(1 + b / x^2) where x^2 would overflow.  double: in
    # float32 the square, the root and the quotient round once each, which adds up to
    # 3 ULP; in double they round once in all.
    def f(x, b):
        a = abs(double(x))
        s = a * math.sqrt(1.0 + b / (a * a)) if a > 1e18 else math.sqrt(a * a + b)
        return (x + s) * 0.5 if x >= 0.0 else b / (2.0 * (s + a))

    def dfdx(x, b):
        a = abs(double(x))
        s = a * math.sqrt(1.0 + b / (a * a)) if a > 1e18 else math.sqrt(a * a + b)
        r = x / s if a <= 1e18 else 1.0
        return 0.5 * (1.0 + r) if x >= 0.0 else b / (2.0 * s * (s + a))

    # 4 y^2 / (4 y^2 + b) as 1 / (1 + b / (4 y^2)): no overflow for large y; double as
    # in f.
    def dfdy(y, b):
        yd = double(y)
        return 1.0 / (1.0 + b / (4.0 * yd * yd))

    def d2fdx2(x, b):
        a = abs(double(x))
        s = a * math.sqrt(1.0 + b / (a * a)) if a > 1e18 else math.sqrt(a * a + b)
        return 0.5 * b / s / s / s


@elementwise(
    formula="0 if x <= -1; (x + 1)^2 / 4 if -1 < x < 1; x if x >= 1",
    derivative="0 if x <= -1; (x + 1) / 2 if -1 < x < 1; 1 if x >= 1",
    second_derivative="1/2 if -1 < x < 1; 0 otherwise (also at -1 and 1)",
    kinks=("-1", "1"),
)
class sparse_plus:
    r"""Sparse plus (Martins et al., 2022): a piecewise-quadratic softplus, exactly 0 below
    -1.

    .. math::

        \mathrm{sparse\_plus}(x) = \begin{cases} 0 & x \le -1 \\
        (x + 1)^2 / 4 & -1 < x < 1 \\ x & x \ge 1 \end{cases}

    Its derivative is :data:`sparse_sigmoid`; the second derivative takes 0 at both kinks,
    as JAX's ``sparse_plus`` does.  ``backward(dy, y=...)`` uses :math:`f'(x) = \sqrt y`
    for :math:`0 < y < 1`.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.sparse_plus(np.array([-2.0, 0.0, 0.5, 2.0]))
        array([0.    , 0.25  , 0.5625, 2.    ])

    See also: :data:`sparse_sigmoid`, :data:`softplus`.
    """

    def f(x):
        return 0.0 if x <= -1.0 else (x if x >= 1.0 else (x + 1.0) * (x + 1.0) * 0.25)

    def dfdx(x):
        return 0.0 if x <= -1.0 else (1.0 if x >= 1.0 else ((x + 1.0) * 0.5 if x == x else x))

    def dfdy(y):
        return 0.0 if y <= 0.0 else (1.0 if y >= 1.0 else (math.sqrt(y) if y == y else y))

    def d2fdx2(x):
        return 0.0 if x <= -1.0 else (0.0 if x >= 1.0 else (0.5 if x == x else x))
