"""The elementary functions: the identity and the exponential."""

import math

from fastact._spec import elementwise


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


@elementwise(
    formula="exp(x)",
    derivative="exp(x)",
    second_derivative="exp(x)",
    work=3,
)
class exponential:
    r"""The exponential, as an activation (Keras's ``exponential``).

    .. math::

        f(x) = f'(x) = f''(x) = e^x

    ``backward(dy, y=...)`` uses :math:`f'(x) = y`.  It overflows to ``inf`` above
    :math:`\log` of the dtype's largest value (88.7 in float32), as :func:`numpy.exp` does.

    Args:
        x: input array.

    Example:
        >>> import numpy as np, fastact as fa
        >>> fa.exponential(np.array([-np.inf, 0.0, 1.0]))
        array([0.        , 1.        , 2.71828183])

    See also: :data:`elu`, :data:`softplus`.
    """

    def f(x):
        return math.exp(x)

    # exp_f64: backward's dy * e**x rounds once, over float64's range (as elu's).
    def dfdx(x):
        return math.exp_f64(x)

    def dfdy(y):
        return y

    def d2fdx2(x):
        return math.exp_f64(x)
