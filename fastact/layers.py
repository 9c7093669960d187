"""Layer objects: a forward pass that keeps what its backward pass needs, and nothing more.

Every function of :mod:`fastact` has a layer class here, generated from its declaration
(``ReLU``, ``LeakyReLU``, ``ELU``, ``Sigmoid``, ``Softmax``, ...), with the function's
parameters as keyword arguments::

    >>> import numpy as np
    >>> from fastact.layers import ELU
    >>> layer = ELU(alpha=0.5)
    >>> layer.forward(np.array([-1.0, 2.0]))
    array([-0.31606028,  2.        ])
    >>> layer.backward(np.array([1.0, 1.0]))
    array([0.18393972, 1.        ])

What a layer keeps between ``forward`` and ``backward`` is decided from its declaration:
the output where the derivative is a function of the output for these parameters
(``sigmoid``, ``elu`` with ``alpha > 0``, ``relu``, ``softmax``, ...; the ``y=`` column of
the README's function table), otherwise the input.  It keeps a reference, not a copy, so
the array it keeps must not change before ``backward``: the input you passed, or the
output it returned.

A layer never writes into an array it did not make unless asked to: with
``inplace=True``, ``forward`` writes its result into ``x`` and ``backward`` writes the
gradient into ``dout`` (where ``dout`` has the result's shape and dtype), which saves an
allocation and a pass over memory per call in a training loop.  ``inplace=True`` is
refused where ``backward`` needs the input, which an in-place ``forward`` overwrites.

:class:`SoftmaxCrossEntropy` is the output layer of a classifier: softmax and the
negative log-likelihood in one numerically stable step, with the fused gradient
``(softmax(x) - onehot) / n``.
"""

from __future__ import annotations

import inspect

import numpy as np

from fastact import FUNCTIONS, REGISTRY, _config
from fastact._dispatch import as_input, check_target, result_dtype, use_parallel
from fastact._spec import RowwiseSpec, check_params, dfdy_allowed

__all__ = ["Activation", "Sampled", "Weighted", "SoftmaxCrossEntropy"]


class Activation:
    """The base of every generated layer class: ``forward(x)``, ``backward(dout)``, and
    ``__call__`` (the same as ``forward``).

    Args:
        inplace: write ``forward``'s result into ``x`` and ``backward``'s into ``dout``.
        target: where the kernels run (see :func:`fastact.config`); None takes the
            configured default at each call.
        **params: the function's own parameters (``negative_slope=``, ``alpha=``,
            ``axis=`` for row-wise functions).
    """

    #: The fastact function the layer applies (set on each generated class).
    function = None

    def __init__(self, *, inplace: bool = False, target: str | None = None, **params):
        name = type(self).__name__
        spec = self.function.spec
        self._options = {}
        if isinstance(spec, RowwiseSpec):
            axis = params.pop("axis", -1)
            if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
                raise TypeError(f"{name}(): axis must be an integer, got {type(axis).__name__} {axis!r}")
            self._options["axis"] = int(axis)
        checked = check_params(spec, name, params)
        if not isinstance(inplace, (bool, np.bool_)):
            raise TypeError(f"{name}(): inplace must be True or False, got {type(inplace).__name__} {inplace!r}")
        if target is not None:
            check_target(name, target)
        #: The parameters, complete (defaults included), as numbers (a choice as its string).
        self.params = {p.name: p.choices[int(checked[p.name])] if p.choices else checked[p.name] for p in spec.params}
        # Only what differs from the defaults is passed on: calls with default parameters
        # take the kernels' fastest path.
        self._kwargs = {k: self.params[k] for k, v in checked.items() if v != spec.kernel_defaults[k]}
        self._kwargs.update(self._options)
        self.inplace = bool(inplace)
        self.target = target
        #: What backward uses: "y" (the forward output) or "x" (the forward input).
        self.keeps = "y" if isinstance(spec, RowwiseSpec) or dfdy_allowed(spec, checked) else "x"
        if self.inplace and self.keeps == "x":
            why = spec.dfdy_requires and f" unless {spec.dfdy_requires}"
            raise ValueError(
                f"{self._repr()}: inplace=True is refused because backward needs the forward input, which an "
                f"in-place forward overwrites (the derivative of {spec.name} is not a function of its output"
                f"{why or ''})"
            )
        self._saved = None

    def forward(self, x):
        """``f(x)``; keeps the input or the output for :meth:`backward`."""
        if self.inplace:
            x = self._writeable(x, "forward", "x")
            y = self.function(x, out=x, target=self.target, **self._kwargs)
        else:
            y = self.function(x, target=self.target, **self._kwargs)
        self._saved = y if self.keeps == "y" else x
        return y

    __call__ = forward

    def backward(self, dout):
        """The gradient with respect to the last ``forward``'s input: ``dout * f'(x)``
        (for row-wise functions the vector-Jacobian product along the axis)."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before forward()")
        out = None
        if self.inplace:
            out = self._writeable(dout, "backward", "dout", like=self._saved)
        return self.function.backward(dout, out=out, target=self.target, **{self.keeps: self._saved}, **self._kwargs)

    def _writeable(self, a, method, name, like=None):
        """``a`` if it can take the result in place, else a ``TypeError`` (``forward``) or None
        (``backward``: dout of another shape or dtype broadcasts into a new array)."""
        ok = isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.flags.writeable
        if like is not None:
            like = np.asarray(like)
            if not ok or a.shape != like.shape or a.dtype != like.dtype:
                return None
            return a
        if not ok:
            if not isinstance(a, np.ndarray):
                what = type(a).__name__
            else:
                what = f"{'read-only ' if a.dtype.kind == 'f' else ''}{a.dtype} array"
            raise TypeError(
                f"{self._repr()}.{method}(): {name} must be a writeable float16, float32 or float64 ndarray "
                f"to be computed in place, got {what}"
            )
        return a

    def _repr(self):
        args = [f"{k}={v!r}" for k, v in self._kwargs.items()]
        if self.inplace:
            args.append("inplace=True")
        if self.target is not None:
            args.append(f"target={self.target!r}")
        return f"{type(self).__name__}({', '.join(args)})"

    def __repr__(self):
        return self._repr()


def _layer_doc(spec) -> str:
    fn = f"fastact.{spec.name}"
    params = "".join(f", {p.name}={p.default!r}" for p in spec.params)
    if isinstance(spec, RowwiseSpec):
        params = ", axis=-1" + params
    training = ""
    if getattr(spec, "sampled", ""):
        params += ", training=False, rng=None"
        training = ("With ``training=True`` each ``forward`` draws new slopes from ``rng`` and\n"
                    "``backward`` uses them (see :class:`fastact.layers.Sampled`).\n")
    summary = _summary(spec)
    return (
        f"{summary} (:data:`{fn}`) as a layer.\n\n"
        f"``{spec.layer}(*, inplace=False, target=None{params})``: ``forward(x)`` computes\n"
        f"``{spec.name}(x)``, ``backward(dout)`` the gradient with respect to ``x``.  See\n"
        f":class:`fastact.layers.Activation` for the options and :data:`{fn}` for the math.\n"
        + training
    )


class Sampled(Activation):
    """The base of the layers of randomised activations (``RReLU``): ``training=True``
    draws new slopes at each ``forward`` from ``rng`` (anything
    :func:`numpy.random.default_rng` accepts, made into one generator when the layer is
    built) and keeps them, with the input, for ``backward``; ``training=False`` is the
    evaluation mode (the mean slope).  Set ``layer.training`` to switch modes.
    """

    def __init__(self, *, training: bool = False, rng=None, inplace: bool = False, target: str | None = None,
                 **params):
        if type(training) is not bool:
            raise TypeError(f"{type(self).__name__}(): training must be True or False, got {training!r}")
        super().__init__(inplace=inplace and not training, target=target, **params)
        if inplace and training:
            raise ValueError(f"{type(self).__name__}(): inplace=True is refused in training mode: backward needs the "
                             "forward input")
        self.training = training
        self.rng = np.random.default_rng(rng)
        self._slopes = None

    def forward(self, x):
        if not self.training:
            self._slopes = None
            return super().forward(x)
        y, self._slopes = self.function(x, training=True, rng=self.rng, target=self.target, **self._kwargs)
        self._saved = x
        return y

    __call__ = forward

    def backward(self, dout):
        if self._slopes is None:
            return super().backward(dout)
        return self.function.backward(dout, x=self._saved, slopes=self._slopes, target=self.target)


class Weighted:
    """The base of the layers of activations with a weight array (``PReLU``): the weight is
    the layer's parameter, learned with the network.

    Args:
        num_parameters: the weight's length: 1 (one slope for all, PyTorch's default) or
            the number of channels along ``axis``.
        init: the weight's initial value (PyTorch's 0.25).
        axis: the channel axis (PyTorch's 1).
        dtype: the weight's dtype (float32, as PyTorch's; a float64 weight makes float32
            input compute in float64).
        target: where the kernels run (see :func:`fastact.config`).

    ``forward(x)`` keeps ``x``; ``backward(dout)`` returns the gradient with respect to it
    and adds the weight's gradient into ``weight_grad`` (as PyTorch accumulates
    ``.grad``; :meth:`zero_grad` resets it).
    """

    function = None

    def __init__(self, num_parameters: int = 1, init: float = 0.25, *, axis: int = 1, dtype=np.float32,
                 target: str | None = None):
        name = type(self).__name__
        if type(num_parameters) is bool or not isinstance(num_parameters, (int, np.integer)) or num_parameters < 1:
            raise TypeError(f"{name}(): num_parameters must be a positive integer, got {num_parameters!r}")
        if target is not None:
            check_target(name, target)
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"{name}(): dtype must be a float dtype, got {dt}")
        #: The learned weight, and the sum of its gradients since the last zero_grad().
        self.weight = np.full(int(num_parameters), init, dt)
        self.weight_grad = np.zeros_like(self.weight)
        self.axis = axis
        self.target = target
        self._saved = None

    def forward(self, x):
        """``f(x, weight)``; keeps ``x`` for :meth:`backward`."""
        y = self.function(x, self.weight, axis=self.axis, target=self.target)
        self._saved = x
        return y

    __call__ = forward

    def backward(self, dout):
        """The gradient with respect to the last ``forward``'s input; the weight's gradient
        is added into ``weight_grad``."""
        if self._saved is None:
            raise RuntimeError(f"{type(self).__name__}.backward() was called before forward()")
        dx, dw = self.function.backward(dout, x=self._saved, weight=self.weight, axis=self.axis, target=self.target)
        self.weight_grad += dw
        return dx

    def zero_grad(self):
        """Reset ``weight_grad`` to zeros."""
        self.weight_grad[...] = 0

    def __repr__(self):
        return f"{type(self).__name__}(num_parameters={self.weight.size}, axis={self.axis})"


def _build():
    made = {}
    for name, spec in REGISTRY.items():
        if spec.kind in ("reduction", "gated"):  # not shape-preserving activations: no layer
            continue
        if spec.kind == "weighted":
            base = Weighted
            doc = (f"{_summary(spec)} (:data:`fastact.{name}`) as a layer with a learned weight.\n\n"
                   + inspect.cleandoc(Weighted.__doc__).split("\n\n", 1)[1] + "\n")
        else:
            base, doc = (Sampled if getattr(spec, "sampled", "") else Activation), _layer_doc(spec)
        cls = type(spec.layer, (base,), {"function": FUNCTIONS[name], "__doc__": doc, "__module__": __name__})
        made[spec.layer] = cls
    return made


def _summary(spec) -> str:
    """The first sentence of the declaration's docstring, without its final stop."""
    first = " ".join(inspect.cleandoc(spec.doc).split("\n\n")[0].split()) or spec.name
    return first.split(". ")[0].rstrip(".")


LAYERS = _build()
globals().update(LAYERS)
__all__ += list(LAYERS)


_losses = None


def _kernels():
    """:mod:`fastact._losses`, imported (with Numba) on the first use of the loss."""
    global _losses
    if _losses is None:
        from fastact import _cpu
        from fastact._interrupts import deferred

        with deferred():
            from fastact import _losses as mod

            _cpu.protect_module(mod)
            _losses = mod
    return _losses


class SoftmaxCrossEntropy:
    """Softmax and the negative log-likelihood of the true classes, fused: the output
    layer of a classifier.

    .. math::

        \\ell_i = -\\log \\mathrm{softmax}(x_i)_{t_i}
               = \\log \\sum_j e^{x_{ij}} - x_{i t_i}

    computed from the softmax, with :math:`a` the row's argmax, as
    :math:`x_{ia} - x_{it_i} + \\operatorname{log1p}(\\sum_{j \\ne a} y_{ij} / y_{ia})`,
    which neither overflows nor loses relative precision for any finite logits, a tiny
    loss included (the textbook ``-log(softmax(x)[t] + 1e-7)`` overflows and clips).
    With probabilities ``t`` (one-hot or soft labels) in place of class indices,
    :math:`\\ell_i = -\\sum_j t_{ij} \\log \\mathrm{softmax}(x_i)_j`.

    ``backward(dout=1.0)`` is :math:`(\\mathrm{softmax}(x) - \\mathrm{onehot}(t)) \\cdot
    dout / n` for the mean (:math:`n` rows), without the :math:`1/n` for the sum, and
    per row for ``reduction="none"`` (``dout`` then has one value per row).

    Args:
        reduction: ``"mean"`` (default, as PyTorch), ``"sum"`` or ``"none"``.
        axis: the class axis of the logits (default ``-1``; PyTorch's ``CrossEntropyLoss``
            uses axis 1).
        target: where the softmax runs (see :func:`fastact.config`).

    ``forward(logits, labels)`` takes integer class indices (the logits' shape without
    ``axis``) or probabilities (the logits' shape), and returns the loss: a NumPy scalar of
    the logits' dtype, or an array of one loss per row for ``reduction="none"``.  The
    softmax of the last forward pass is :attr:`probabilities`.

    Example:
        >>> import numpy as np
        >>> from fastact.layers import SoftmaxCrossEntropy
        >>> loss = SoftmaxCrossEntropy()
        >>> logits = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, 0.3]])
        >>> round(float(loss.forward(logits, np.array([0, 1]))), 6)
        0.31854
        >>> loss.backward().round(4)
        array([[-0.1705,  0.1212,  0.0493],
               [ 0.0543, -0.0988,  0.0445]])
        >>> float(loss.forward(np.array([[1e4, 0.0]]), np.array([1])))     # no overflow
        10000.0
    """

    REDUCTIONS = ("mean", "sum", "none")

    def __init__(self, *, reduction: str = "mean", axis: int = -1, target: str | None = None):
        if reduction not in self.REDUCTIONS:
            raise ValueError(
                f"SoftmaxCrossEntropy(): reduction must be one of {', '.join(map(repr, self.REDUCTIONS))}, "
                f"got {reduction!r}"
            )
        if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"SoftmaxCrossEntropy(): axis must be an integer, got {type(axis).__name__} {axis!r}")
        if target is not None:
            check_target("SoftmaxCrossEntropy", target)
            if target == "cuda":
                raise ValueError("SoftmaxCrossEntropy(): the loss runs on the host; target must be 'auto', 'cpu' "
                                 "or 'parallel', got 'cuda'")
        self.reduction, self.axis, self.target = reduction, int(axis), target
        self._y = None

    @property
    def probabilities(self):
        """The softmax of the last forward pass's logits (along the class axis), in the
        logits' layout and dtype."""
        if self._y is None:
            return None
        y = self._y.reshape(self._shape[:-1] + self._shape[-1:])
        return np.moveaxis(y, -1, self._axis).astype(self._dtype, copy=False)

    def forward(self, logits, labels):
        """The loss of ``logits`` for the true ``labels`` (indices or probabilities)."""
        _losses = _kernels()
        func = "SoftmaxCrossEntropy.forward"
        x = as_input(func, "logits", logits)
        if x.ndim == 0:
            raise ValueError(f"{func}(): logits must have a class axis, got a scalar")
        rdt, cdt = result_dtype([x])
        axis = self.axis % x.ndim if -x.ndim <= self.axis < x.ndim else None
        if axis is None:
            raise np.exceptions.AxisError(f"{func}(): axis {self.axis} is out of bounds for logits of dimension "
                                          f"{x.ndim}")
        k = x.shape[axis]
        labels = self._check_labels(labels, x.shape, axis, k)
        moved = x if axis == x.ndim - 1 else np.moveaxis(x, axis, -1)
        rows = np.ascontiguousarray(moved, dtype=cdt).reshape(-1, k)
        y = np.empty_like(rows)
        losses = np.empty(rows.shape[0], cdt)
        parallel = self._parallel(rows.size)
        if labels.dtype.kind in "iu":
            lab = np.ascontiguousarray(labels, dtype=np.intp).reshape(-1)
            kernel = _losses.forward_labels_parallel if parallel else _losses.forward_labels
            if rows.size and (bad := kernel(rows, lab, y, losses)) >= 0:
                raise ValueError(f"{func}(): labels must be class indices in [0, {k}), got {lab[bad]}")
        else:
            lab = np.ascontiguousarray(labels if axis == x.ndim - 1 else np.moveaxis(labels, axis, -1), dtype=cdt)
            lab = lab.reshape(-1, k)
            kernel = _losses.forward_probs_parallel if parallel else _losses.forward_probs
            if rows.size:
                kernel(rows, lab, y, losses)
        self._y, self._labels, self._parallel_rows = y, lab, parallel
        self._shape, self._axis, self._dtype = moved.shape, axis, rdt
        if self.reduction == "none":
            return losses.reshape(moved.shape[:-1]).astype(rdt, copy=False)
        total = np.add.reduce(losses, dtype=np.float64)
        if self.reduction == "mean":
            total = total / max(losses.size, 1) if losses.size else np.nan
        return rdt.type(total)

    __call__ = forward

    def backward(self, dout=1.0):
        """The gradient of the loss with respect to the logits of the last forward pass:
        ``(softmax(logits) - onehot(labels)) * dout / n`` for the mean."""
        _losses = _kernels()
        y = self._y
        if y is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() was called before forward()")
        lab = self._labels
        n = y.shape[0]
        rows = self._shape[:-1]
        if self.reduction == "none":
            try:
                scale = np.ascontiguousarray(np.broadcast_to(np.asarray(dout, dtype=y.dtype), rows)).reshape(-1)
            except ValueError:
                raise ValueError(f"SoftmaxCrossEntropy.backward(): dout must have one value per row, shape "
                                 f"{rows}, got {np.shape(dout)}") from None
        else:
            d = np.asarray(dout, dtype=np.float64)
            if d.ndim:
                raise ValueError(f"SoftmaxCrossEntropy.backward(): dout must be a scalar for reduction="
                                 f"{self.reduction!r}, got shape {d.shape}")
            per_row = d / n if self.reduction == "mean" and n else d
            scale = np.full(n, per_row, dtype=y.dtype)
        g = np.empty_like(y)
        if y.size:
            if lab.ndim == 1:
                kernel = _losses.backward_labels_parallel if self._parallel_rows else _losses.backward_labels
            else:
                kernel = _losses.backward_probs_parallel if self._parallel_rows else _losses.backward_probs
            kernel(y, lab, scale, g)
        g = g.reshape(self._shape)
        if self._axis != len(self._shape) - 1:
            g = np.moveaxis(g, -1, self._axis)
        return g.astype(self._dtype, copy=False)

    def _parallel(self, size):
        target = self.target or _config.target()
        if target == "cuda":  # a configured default: the loss itself runs on the host
            target = "auto"
        return use_parallel(target, size, REGISTRY["softmax"])

    def _check_labels(self, labels, shape, axis, k):
        func = "SoftmaxCrossEntropy.forward"
        labels = np.asarray(labels)
        rows = shape[:axis] + shape[axis + 1:]
        if labels.dtype.kind in "iu":
            if labels.shape != rows:
                raise ValueError(f"{func}(): integer labels must have shape {rows} "
                                 f"(the logits' without the class axis), got {labels.shape}")
            return labels  # their range is checked by the kernel's caller
        if labels.dtype.kind in "fb":
            if labels.shape != shape:
                raise ValueError(f"{func}(): probability labels must have the logits' shape "
                                 f"{shape}, got {labels.shape} (pass integer class indices of shape {rows} instead)")
            return labels
        raise TypeError(f"{func}(): labels must be integer class indices or probabilities, "
                        f"got dtype {labels.dtype}")

    def __repr__(self):
        args = []
        if self.reduction != "mean":
            args.append(f"reduction={self.reduction!r}")
        if self.axis != -1:
            args.append(f"axis={self.axis}")
        if self.target is not None:
            args.append(f"target={self.target!r}")
        return f"SoftmaxCrossEntropy({', '.join(args)})"
