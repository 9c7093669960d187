"""Shrinkage: zero (or nearly) around the origin, the identity shifted or not outside."""

import math

from fastact._spec import Param, double, elementwise


@elementwise(
    Param("lambd", 0.5, "Half-width of the interval mapped to 0.", requires="lambd >= 0"),
    formula="x - lambd if x > lambd; x + lambd if x < -lambd; 0 otherwise",
    derivative="1 if |x| > lambd; 0 otherwise (also at +-lambd)",
    second_derivative="0",
    kinks=("-lambd", "lambd"),
)
class softshrink:
    r"""Soft shrinkage (soft thresholding), the proximal operator of :math:`\lambda |x|`.

    .. math::

        \mathrm{softshrink}(x) = \mathrm{sign}(x) \max(|x| - \lambda, 0)

    The derivative is 1 for :math:`|x| > \lambda` and 0 on :math:`[-\lambda, \lambda]`
    (at its ends too), as in PyTorch.  ``backward(dy, y=...)`` uses :math:`y \ne 0`.

    Args:
        x: input array.
        lambd: :math:`\lambda \ge 0` (default 0.5; PyTorch's name).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.softshrink(np.array([-2.0, -0.25, 0.5, 1.5]))
        array([-1.5,  0. ,  0. ,  1. ])

    See also: :data:`hardshrink`, :data:`tanhshrink`.
    """

    def f(x, lambd):
        return x - lambd if x > lambd else (x + lambd if x < -lambd else (0.0 if x == x else x))

    def dfdx(x, lambd):
        return 1.0 if x > lambd else (1.0 if x < -lambd else (0.0 if x == x else x))

    # y != 0 exactly where |x| > lambd (x - lambd is exact near lambd).
    def dfdy(y, lambd):
        return 1.0 if y > 0.0 else (1.0 if y < 0.0 else (0.0 if y == y else y))

    def d2fdx2(x, lambd):
        return 0.0 if x == x else x


@elementwise(
    Param("lambd", 0.5, "Half-width of the interval mapped to 0.", requires="lambd >= 0"),
    formula="x if |x| > lambd; 0 otherwise",
    derivative="1 if |x| > lambd; 0 otherwise (also at +-lambd)",
    second_derivative="0",
    kinks=("-lambd", "lambd"),
)
class hardshrink:
    r"""Hard shrinkage (hard thresholding).

    .. math::

        \mathrm{hardshrink}(x) = \begin{cases} x & |x| > \lambda \\ 0 & |x| \le \lambda \end{cases}

    The derivative is 1 for :math:`|x| > \lambda` and 0 on :math:`[-\lambda, \lambda]`
    (at its ends too), as in PyTorch.  ``backward(dy, y=...)`` uses :math:`y \ne 0`.

    Args:
        x: input array.
        lambd: :math:`\lambda \ge 0` (default 0.5).

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.hardshrink(np.array([-2.0, -0.25, 0.5, 1.5]))
        array([-2. ,  0. ,  0. ,  1.5])

    See also: :data:`softshrink`, :data:`threshold`.
    """

    def f(x, lambd):
        return x if x > lambd else (x if x < -lambd else (0.0 if x == x else x))

    def dfdx(x, lambd):
        return 1.0 if x > lambd else (1.0 if x < -lambd else (0.0 if x == x else x))

    def dfdy(y, lambd):
        return 1.0 if y > 0.0 else (1.0 if y < 0.0 else (0.0 if y == y else y))

    def d2fdx2(x, lambd):
        return 0.0 if x == x else x


@elementwise(
    formula="x - tanh(x)",
    derivative="tanh(x)^2",
    second_derivative="2 tanh(x) (1 - tanh(x)^2)",
    work=4,
)
class tanhshrink:
    r"""Tanh shrinkage.

    .. math::

        \mathrm{tanhshrink}(x) = x - \tanh x, \qquad \mathrm{tanhshrink}'(x) = \tanh^2 x

    Near 0 the difference cancels (it is :math:`x^3/3 + O(x^5)`): for :math:`|x| < 1/2` it
    is its Taylor series (17 terms, from the Bernoulli numbers), and float32 takes the
    difference in double precision beyond.  In float64, for :math:`1/2 \le |x| \le 2`,
    the difference of the two terms costs up to 12 ULP of the result (2 ULP of
    :math:`|x| + |\tanh x|`), and the derivatives are within 6 ULP (:math:`\tanh^2`
    doubles tanh's error); float32 is within 2 ULP.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.tanhshrink(np.array([-2.0, 1e-3, 1.0]))
        array([-1.03597242e+00,  3.33333200e-10,  2.38405844e-01])

    See also: :data:`tanh`, :data:`softshrink`.
    """

    # double: in float32, both branches in double precision (the difference would cancel,
    # and the series' products round more than once); float64's own as written.
    def f(x):
        xd = double(x)
        z = xd * xd
        p = 1.7406618963571648e-07
        p = p * z - 4.294911078273806e-07
        p = p * z + 1.0597268320104654e-06
        p = p * z - 2.6147711512907546e-06
        p = p * z + 6.451689215655431e-06
        p = p * z - 1.5918905069328964e-05
        p = p * z + 3.927832388331683e-05
        p = p * z - 9.691537956929451e-05
        p = p * z + 0.00023912911424355248
        p = p * z - 0.000590027440945586
        p = p * z + 0.0014558343870513183
        p = p * z - 0.003592128036572481
        p = p * z + 0.008863235529902197
        p = p * z - 0.021869488536155203
        p = p * z + 0.05396825396825397
        p = p * z - 0.13333333333333333
        p = p * z + 0.3333333333333333

        small = xd * z * p
        return small if abs(x) < 0.5 else xd - math.tanh(xd)

    # double: tanh(x)**2 doubles tanh's error in float32.
    def dfdx(x):
        t = math.tanh(double(x))
        return t * t

    # 2 t sech^2, sech^2 = 4 e / (1 + e)^2 with e = exp(-2|x|).
    def d2fdx2(x):
        t = math.tanh(double(x))
        e = math.exp(-2.0 * abs(double(x)))
        d = 1.0 + e
        return 2.0 * t * (4.0 * e / (d * d))
