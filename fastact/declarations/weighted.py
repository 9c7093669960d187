"""Activations with a weight array: one slope per channel, learned with the network."""

from fastact._spec import weighted


@weighted(
    formula="x if x > 0 else w * x",
    derivative="1 if x > 0; w if x <= 0",
    weight_derivative="0 if x > 0; x if x <= 0",
    second_derivative="0",
    layer="PReLU",
    kinks=("0",),
)
class prelu:
    r"""Parametric rectified linear unit: a leaky ReLU whose slope for negative input is a
    weight, one per channel.

    .. math::

        \mathrm{prelu}(x, w) = \begin{cases} x & x > 0 \\ w_c\, x & x \le 0 \end{cases}

    where :math:`c` is the element's index along ``axis`` (the channel).  ``weight`` is
    a 1-d array with one slope per channel, of length ``x.shape[axis]``, or a single
    slope (a scalar or any array of one element) for every element, as PyTorch's
    ``F.prelu`` (whose channel axis is 1; ``axis=1`` by default here too, and any axis
    may be named: ``axis=-1`` for channels-last data).

    ``prelu.grad(x, weight)`` is :math:`\partial y/\partial x`: 1 for :math:`x > 0` and
    :math:`w_c` for :math:`x \le 0` (at the kink from the left, as PyTorch).
    ``prelu.backward(dy, x=x, weight=w)`` returns the pair ``(dx, dweight)``: ``dx =
    dy * prelu.grad(x, w)`` and, for each channel, the sum of :math:`dy \cdot x` over its
    elements where :math:`x \le 0` (``dweight`` has ``weight``'s shape), in one pass over
    ``dy`` and ``x``.  The sums are taken in a fixed order, in double precision for
    float32 (within 1 ULP of the exact sum for float32; compensated for float64), the
    same bits on every CPU target and thread count.  A NaN in ``x`` gives NaN in ``y``,
    ``dx`` and its channel's ``dweight`` (PyTorch gives :math:`w_c \cdot dy` for ``dx``
    there); a NaN weight makes its channel's non-positive elements NaN.  There is no
    ``y=``: the weight's gradient needs the input.

    Args:
        x: input array.
        weight: the slopes: one per channel along ``axis``, or one for all.
        axis: the channel axis (default 1, PyTorch's); unused for a single slope.

    Example:
        >>> import numpy as np, fastact as fa
        >>> x = np.array([[-2.0, -1.0], [3.0, -4.0]])
        >>> fa.prelu(x, np.array([0.1, 0.5]), axis=1)
        array([[-0.2, -0.5],
               [ 3. , -2. ]])
        >>> dx, dw = fa.prelu.backward(np.ones((2, 2)), x=x, weight=np.array([0.1, 0.5]))
        >>> dx
        array([[0.1, 0.5],
               [1. , 0.5]])
        >>> dw
        array([-2., -5.])

    See also: :data:`leaky_relu`, :data:`rrelu`, :class:`fastact.layers.PReLU`.
    """

    def f(x, w):
        return x if x > 0.0 else w * x

    def dfdx(x, w):
        return 1.0 if x > 0.0 else (w if x <= 0.0 else x)

    def dfdw(x, w):
        return 0.0 if x > 0.0 else x

    def d2fdx2(x, w):
        return 0.0 if x == x else x
