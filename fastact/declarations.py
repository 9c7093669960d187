"""The math of every fastact function, declared once.

Each declaration is a class body of plain scalar Python functions; nothing here knows
about targets, arrays or dtypes.  :mod:`fastact._codegen` compiles the same functions into
the single-threaded ufuncs, the multi-threaded loops and the CUDA kernels, so a change
here changes every target at once (and ``python -m fastact._codegen`` must be re-run:
the test suite fails until it is).

Conventions every declaration follows:

* NaN in gives NaN out, for ``f``, ``dfdx`` and ``dfdy`` alike.  Comparisons with NaN are
  false, so each function ends in a branch that returns the NaN input itself.
* Infinities give the exact limits, and no expression overflows for finite input
  (sigmoid takes ``exp`` of ``-|x|`` only, a non-positive argument).
* A literal takes the type of the function's first argument (the code generator
  rewrites ``0.5`` into the element's dtype, :mod:`fastact._rewrite`), so float32 kernels
  compute in float32: twice the vector lanes of double precision.  Where float32 would
  lose what matters, ``double(e)`` computes ``e`` in float64, with the reason written
  beside it.
* Prefer straight-line code: on the CPU, ``math.exp``, ``expm1``, ``log``, ``log1p``,
  ``tanh``, ``erf`` and ``erfc`` compile to :mod:`fastact._vmath`'s branch-free
  versions, and a function without calls or data-dependent work in its branches is
  compiled into vector instructions.
* A scalar function that several declarations share is declared once with ``@helper``.
* A derivative at a kink follows PyTorch unless a parameter says otherwise.
* ``work=`` says how much one element costs next to relu's (``exp`` makes it about 3 on
  2 cores, measured as the sizes where the threads start to pay): ``target="auto"``
  starts the threads that many times sooner.
* ``dfdy(y)`` is declared only where it equals ``dfdx(x)`` for ``y = f(x)``; when that
  holds only for some parameters, ``dfdy_requires`` says for which.

To add an activation, add one declaration here (and its docstring) and re-run
``python -m fastact._codegen``: it is then exported, tested and benchmarked.
"""

import math

from fastact._spec import Param, double, elementwise, helper, rowwise  # noqa: F401

# Each docstring is the public documentation of ``fastact.<name>``; its examples run as
# tests.


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


@elementwise(formula="x", derivative="1", second_derivative="0")
class identity:
    r"""Identity, :math:`f(x) = x`, with :math:`f'(x) = 1`.

    Useful as the "no activation" choice of a layer: ``backward`` returns ``dy``.  The
    derivative of a NaN input is NaN, like every other fastact derivative.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.identity(np.array([-1.5, 2.0]))
        array([-1.5,  2. ])
        >>> fa.identity.grad(np.array([-1.5, np.nan]))
        array([ 1., nan])
    """

    def f(x):
        return x

    def dfdx(x):
        return 1.0 if x == x else x

    def dfdy(y):
        return 1.0 if y == y else y

    def d2fdx2(x):
        return 0.0 if x == x else x


@helper
def exp_diff(a, b):
    """``e**(a - b)`` with the difference taken exactly: ``a - b`` is rounded, and its
    rounding error (TwoSum) is added back to first order, ``e**d (1 + err)``.  Without
    it, the rounding of ``x - max(x)`` is an error of ``|x - max(x)|`` ULP in the result
    (20 ULP at a difference of 20 in float32)."""
    d = a - b
    v = d - a
    err = (a - (d - v)) - (b + v)
    t = math.exp(d)
    c = t * err
    # Where d is infinite, err is NaN and the correction is dropped: e**-inf = 0.
    return t + (c if c == c else 0.0)


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

