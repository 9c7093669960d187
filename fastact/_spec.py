"""The declaration language: what one activation's math looks like to the rest of fastact.

An activation is declared once, in :mod:`fastact.declarations`, as a class body of plain
scalar functions.  The decorators here turn that body into a frozen spec and record it in
:data:`REGISTRY`; the kernel generator (:mod:`fastact._codegen`), the dispatch layer, the
NumPy reference, the tests and the benchmarks all iterate over that registry.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

#: dtypes the kernels are compiled for; float16 is computed in float32 by the dispatch.
DTYPES = ("float32", "float64")

__all__ = ["DTYPES", "Param", "ElementwiseSpec", "RowwiseSpec", "ProjectionSpec", "ReductionSpec", "GatedSpec",
           "WeightedSpec", "elementwise", "rowwise", "projection", "reduction", "gated", "weighted", "helper", "double",
           "REGISTRY", "HELPERS"]


@dataclass(frozen=True)
class Param:
    """A keyword parameter of an activation: a real scalar, or one of a few ``choices``.

    ``requires`` is an optional Python expression over the parameter names that every
    accepted value must satisfy, e.g. ``"beta > 0"``; it doubles as the error message.
    A parameter with ``choices`` (``approximate="none" | "tanh"``) takes one of those
    strings; the scalar functions receive its index among them, as a number, so that a
    declaration tests ``approximate == 1.0`` and every target passes numbers alike.
    """

    name: str
    default: float | str
    doc: str
    requires: str | None = None
    choices: tuple[str, ...] = ()

    def encode(self, value) -> float:
        """The number the kernels receive for the accepted ``value``."""
        return float(self.choices.index(value)) if self.choices else value


class _Parametrised:
    """What both kinds of declaration derive from their ``params``."""

    params: tuple[Param, ...]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict[str, float | str]:
        """The default of each parameter, as a user passes it."""
        return {p.name: p.default for p in self.params}

    @property
    def kernel_defaults(self) -> dict[str, float]:
        """The default of each parameter as the kernels receive it (a choice's index)."""
        return {p.name: p.encode(p.default) for p in self.params}


@dataclass(frozen=True)
class ElementwiseSpec(_Parametrised):
    """One elementwise activation: ``y = f(x)``, its derivative from ``x`` and from ``y``.

    Scalar functions take the input element first and then every parameter, in declaration
    order, whether or not they use it, so that every kernel has one calling convention.
    """

    name: str
    doc: str
    formula: str
    derivative: str
    params: tuple[Param, ...]
    f: Callable
    dfdx: Callable
    dfdy: Callable | None
    # The second derivative f''(x), where declared (``f.grad2``), and its formula.
    d2fdx2: Callable | None = None
    second_derivative: str = ""
    # Expression over the params under which dfdy(y) equals dfdx(x): f must be invertible
    # where its derivative changes, or the kink convention must not depend on the branch.
    dfdy_requires: str | None = None
    work: int = 1
    layer: str = ""
    # Where f or f' is not differentiable: expressions over the params ("0", "min_val").
    kinks: tuple[str, ...] = ()
    # Other names the function is exported under (``swish`` for ``silu``).
    aliases: tuple[str, ...] = ()
    # A randomised activation (``rrelu``): in training mode it is the weighted declaration
    # named here, with one weight per element drawn uniformly between the first two
    # parameters; otherwise (evaluation) it is ``f``, which uses their mean.
    sampled: str = ""
    kind: str = field(default="elementwise", init=False)


@dataclass(frozen=True)
class RowwiseSpec(_Parametrised):
    """A normalisation along one axis, written as two reductions and a map.

    Forward, for a row ``x`` (``key`` is the quantity whose row maximum is subtracted for
    stability)::

        m = max(key(x_j))      s = sum(term(x_j, m))      r = norm(s, m)
        y_j = finish(term(x_j, m), r)        (or y_j = out(x_j, m, r))

    ``norm`` is optional (``r = s``).  Declaring ``finish`` lets the forward pass store
    each term in the output row and finish it in place: one ``exp`` per element and loops
    the compiler vectorises; ``out`` is needed only where the output is not a function of
    the term (``log_softmax``).

    Backward from the output (vector-Jacobian product)::

        d = sum(bterm(dy_j, y_j))    dx_j = bout(dy_j, y_j, d)

    Backward from the input recomputes ``y`` (once, into a scratch row, on the CPU; on the
    fly on CUDA), never in ``out``, so ``out`` may alias ``dy`` or ``x``.  Every target
    builds its kernels from these scalar functions: lane-blocked row loops on the CPU
    (:mod:`fastact._codegen`), a block reduction on CUDA.
    """

    name: str
    doc: str
    formula: str
    key: Callable
    term: Callable
    bterm: Callable
    bout: Callable
    params: tuple[Param, ...] = ()
    norm: Callable | None = None
    finish: Callable | None = None
    out: Callable | None = None
    work: int = 1
    layer: str = ""
    kind: str = field(default="rowwise", init=False)


@dataclass(frozen=True)
class ProjectionSpec(RowwiseSpec):
    """A row-wise function that projects each row onto the probability simplex
    (``sparsemax``): a row-wise function to its users (the same calls, axis and
    backward), computed from a threshold instead of a normalising sum::

        y_j = g(x_j - m - tau),   tau = tau(s, k)   with s = sum of x_j - m and k = the
        number of them over the support (the j with y_j > 0), m = max(x)

    where ``g`` is zero below 0 and the identity above (so that ``sum(y) = 1`` gives
    ``tau`` in closed form on the support).  The kernels find the support by Michelot's
    iteration from ``{x_j > m - 1}`` (which holds it), with a sort of the remaining
    candidates where that has not settled after a few passes.  Backward from the output::

        dx_j = support(y_j) * (dy_j - sum_i support(y_i) dy_i / sum_i support(y_i))

    The ``key`` ... ``bout`` functions of :class:`RowwiseSpec` are unused (None).
    """

    g: Callable | None = None
    tau: Callable | None = None
    support: Callable | None = None


@dataclass(frozen=True)
class ReductionSpec(_Parametrised):
    """A reduction along one or more axes, written as :class:`RowwiseSpec`'s two reductions
    and a value per row (``logsumexp``): for a row ``x``::

        m = max(key(x_j))      s = sum(term(x_j, m))      result = value(s, m)

    Its gradient is the normalised term, as :class:`RowwiseSpec`'s ``finish`` gives it::

        dresult/dx_j = finish(term(x_j, m), norm(s, m))

    so ``backward(dy, x=x)`` is ``dy * finish(term(x_j, m), norm(s, m))``, with ``dy``
    one value per row.  The sums are :class:`RowwiseSpec`'s, block by block in the same
    order on every target.
    """

    name: str
    doc: str
    formula: str
    key: Callable
    term: Callable
    norm: Callable
    finish: Callable
    value: Callable
    params: tuple[Param, ...] = ()
    work: int = 1
    layer: str = ""
    kind: str = field(default="reduction", init=False)


@dataclass(frozen=True)
class GatedSpec(_Parametrised):
    """A gated unit (``glu``): ``x`` split in two halves ``a`` and ``b`` along an axis,
    and ``y = f(a, b)`` elementwise over the halves (half of ``x``'s length there).

    Its gradient is the pair of partial derivatives, into the halves of ``dx``::

        dx[a half] = dy * dfda(a, b)      dx[b half] = dy * dfdb(a, b)

    Scalar functions take ``a``, ``b`` and then every parameter, in declaration order.
    """

    name: str
    doc: str
    formula: str
    derivative: str
    f: Callable
    dfda: Callable
    dfdb: Callable
    params: tuple[Param, ...] = ()
    work: int = 1
    layer: str = ""
    kind: str = field(default="gated", init=False)


@dataclass(frozen=True)
class WeightedSpec(_Parametrised):
    """An elementwise activation with a weight array (``prelu``): ``y = f(x, w)``, where
    ``w`` holds one value per channel along an axis of ``x`` (or one for all), and its
    backward pass has two outputs, the gradient of ``x`` and that of the weight::

        dx = dy * dfdx(x, w)        dw[c] = sum of dy * dfdw(x, w) over channel c's elements

    The weight's sums go block by block in a fixed order (the same bits on every CPU
    target and thread count).  Scalar functions take ``x``, ``w`` and then every
    parameter, in declaration order.  The same kernels take one weight per element
    (``rrelu``'s sampled slopes, :attr:`ElementwiseSpec.sampled`).
    """

    name: str
    doc: str
    formula: str
    derivative: str
    weight_derivative: str
    f: Callable
    dfdx: Callable
    dfdw: Callable
    d2fdx2: Callable | None = None
    second_derivative: str = ""
    params: tuple[Param, ...] = ()
    work: int = 1
    layer: str = ""
    kinks: tuple[str, ...] = ()
    kind: str = field(default="weighted", init=False)


#: name -> spec, in declaration order.
REGISTRY: dict[str, ElementwiseSpec | RowwiseSpec | ReductionSpec | GatedSpec | WeightedSpec] = {}

#: name -> scalar helper function shared by declarations, in declaration order.
HELPERS: dict[str, Callable] = {}


def helper(fn: Callable) -> Callable:
    """Declare a scalar function that several declarations call (``softplus`` inside
    ``mish``, say).  It is compiled for every target like the declared functions, with
    the same rules (literals in the type of its first argument)."""
    if fn.__name__ in HELPERS:
        raise ValueError(f"helper {fn.__name__!r} is declared twice")
    HELPERS[fn.__name__] = fn
    return fn


def double(v):
    """``v`` in double precision, whatever the kernel's dtype: in a declaration, the
    explicit request for float64 arithmetic where float32 would lose what matters (say
    why beside it).  In Python, ``float(v)``."""
    return float(v)


def _register(spec):
    if spec.name in REGISTRY:
        raise ValueError(f"activation {spec.name!r} is declared twice")
    REGISTRY[spec.name] = spec
    return spec


def _functions(cls, names, optional=()):
    body = vars(cls)
    missing = [n for n in names if n not in body]
    if missing:
        raise TypeError(f"declaration {cls.__name__!r} lacks {', '.join(missing)}")
    found = {n: body[n] for n in names}
    found.update({n: body.get(n) for n in optional})
    return found


def _check_work(name, work):
    if type(work) is not int or work < 1:
        raise TypeError(f"{name}: work must be a positive integer, got {work!r}")


def layer_name(name: str) -> str:
    """The default name of a declaration's layer class: ``log_sigmoid`` -> ``LogSigmoid``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def elementwise(*params: Param, formula: str, derivative: str, second_derivative: str = "",
                dfdy_requires: str | None = None, work: int = 1,
                layer: str | None = None, kinks: tuple[str, ...] = (), aliases: tuple[str, ...] = (),
                sampled: str = ""):
    """Declare an elementwise activation from a class body holding ``f``, ``dfdx``, where
    the derivative is a function of the output ``dfdy``, and where the second derivative
    exists ``d2fdx2`` (``f.grad2``).

    ``work``: the cost of an element relative to a memory-bound kernel such as relu's
    (measured with ``bench/``); ``target="auto"`` goes multi-threaded from
    ``PARALLEL_BYTES // work`` bytes of result, since threads pay off sooner where each
    element costs more.  ``layer``: the name of its class in :mod:`fastact.layers`
    (default: the name in CamelCase).  ``kinks``: the points where ``f`` or ``f'`` jumps
    or bends, as expressions over the parameters (``("0",)``, ``("min_val", "max_val")``):
    the plots mark them, and the tests check the declared convention there.  ``aliases``:
    other names under which ``fastact`` exports the same function.  ``sampled``: for a
    randomised activation, the :func:`weighted` declaration it is in training mode, with
    one weight per element drawn uniformly between its first two parameters."""

    def declare(cls) -> ElementwiseSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("f", "dfdx"), optional=("dfdy", "d2fdx2"))
        if dfdy_requires is not None and fns["dfdy"] is None:
            raise TypeError(f"{cls.__name__}: dfdy_requires given without dfdy")
        return _register(
            ElementwiseSpec(
                name=cls.__name__,
                doc=cls.__doc__ or "",
                formula=formula,
                derivative=derivative,
                second_derivative=second_derivative,
                params=tuple(params),
                dfdy_requires=dfdy_requires,
                work=work,
                layer=layer or layer_name(cls.__name__),
                kinks=tuple(kinks),
                aliases=tuple(aliases),
                sampled=sampled,
                **fns,
            )
        )

    return declare


def rowwise(*params: Param, formula: str, work: int = 1, layer: str | None = None):
    """Declare a row-wise normalisation (softmax and kin) from ``key``, ``term``, ``bterm``,
    ``bout``, ``finish`` or ``out``, and optionally ``norm``; see :class:`RowwiseSpec`.
    ``work`` and ``layer`` as for :func:`elementwise`."""

    def declare(cls) -> RowwiseSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("key", "term", "bterm", "bout"), optional=("norm", "finish", "out"))
        if fns["finish"] is None and fns["out"] is None:
            raise TypeError(f"declaration {cls.__name__!r} lacks finish or out")
        return _register(
            RowwiseSpec(
                name=cls.__name__, doc=cls.__doc__ or "", formula=formula, params=tuple(params), work=work,
                layer=layer or layer_name(cls.__name__), **fns
            )
        )

    return declare


def projection(*params: Param, formula: str, work: int = 1, layer: str | None = None):
    """Declare a projection onto the simplex (``sparsemax``) from ``g``, ``tau`` and
    ``support``; see :class:`ProjectionSpec`.  ``work`` and ``layer`` as for
    :func:`elementwise`."""

    def declare(cls) -> ProjectionSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("g", "tau", "support"))
        return _register(
            ProjectionSpec(
                name=cls.__name__, doc=cls.__doc__ or "", formula=formula, params=tuple(params), work=work,
                layer=layer or layer_name(cls.__name__), key=None, term=None, bterm=None, bout=None, **fns
            )
        )

    return declare


def reduction(*params: Param, formula: str, work: int = 1):
    """Declare a reduction (``logsumexp``) from ``key``, ``term``, ``value``, ``norm`` and
    ``finish``; see :class:`ReductionSpec`.  ``work`` as for :func:`elementwise`.  A
    reduction has no layer in :mod:`fastact.layers`."""

    def declare(cls) -> ReductionSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("key", "term", "norm", "finish", "value"))
        return _register(
            ReductionSpec(name=cls.__name__, doc=cls.__doc__ or "", formula=formula, params=tuple(params), work=work,
                          **fns)
        )

    return declare


def gated(*params: Param, formula: str, derivative: str, work: int = 1):
    """Declare a gated unit (``glu``) from ``f(a, b)``, ``dfda(a, b)`` and ``dfdb(a, b)``;
    see :class:`GatedSpec`.  ``work`` as for :func:`elementwise`."""

    def declare(cls) -> GatedSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("f", "dfda", "dfdb"))
        return _register(
            GatedSpec(name=cls.__name__, doc=cls.__doc__ or "", formula=formula, derivative=derivative,
                      params=tuple(params), work=work, **fns)
        )

    return declare


def weighted(*params: Param, formula: str, derivative: str, weight_derivative: str, second_derivative: str = "",
             work: int = 1, layer: str | None = None, kinks: tuple[str, ...] = ()):
    """Declare an activation with a weight array (``prelu``) from ``f(x, w)``,
    ``dfdx(x, w)``, ``dfdw(x, w)`` and optionally ``d2fdx2(x, w)``; see
    :class:`WeightedSpec`.  ``work``, ``layer`` and ``kinks`` as for :func:`elementwise`."""

    def declare(cls) -> WeightedSpec:
        _check_work(cls.__name__, work)
        fns = _functions(cls, ("f", "dfdx", "dfdw"), optional=("d2fdx2",))
        return _register(
            WeightedSpec(name=cls.__name__, doc=cls.__doc__ or "", formula=formula, derivative=derivative,
                         weight_derivative=weight_derivative, second_derivative=second_derivative,
                         params=tuple(params), work=work, layer=layer or layer_name(cls.__name__),
                         kinks=tuple(kinks), **fns)
        )

    return declare


def check_params(spec, func: str, given: dict) -> dict[str, float]:
    """Validate keyword parameters against ``spec``; return them complete, as the numbers
    the kernels receive (a choice as its index).

    Raises ``TypeError`` for an unknown name or a value that is not a real scalar and
    ``ValueError`` for a non-finite value or one that breaks the declared requirement.
    """
    values = dict(spec.kernel_defaults)
    by_name = {p.name: p for p in spec.params}
    for name, value in given.items():
        if name not in values:
            known = ", ".join(spec.param_names) or "none"
            hint = _KEYWORD_HINTS.get(name, "")
            if name == "axis" and spec.kind == "elementwise":
                hint = f"; {spec.name} is elementwise and has no axis"
            raise TypeError(f"{func}() got an unexpected keyword argument {name!r} (parameters: {known}){hint}")
        choices = by_name[name].choices
        if choices:
            options = " or ".join(repr(c) for c in choices)
            if not isinstance(value, str):
                raise TypeError(f"{func}(): {name} must be {options}, got {type(value).__name__} {value!r}")
            if value not in choices:
                raise ValueError(f"{func}(): {name} must be {options}, got {value!r}")
            values[name] = by_name[name].encode(value)
        else:
            values[name] = _real(func, name, value)
    for p in spec.params:
        if p.requires is not None and not eval(p.requires, {"__builtins__": {}}, dict(values)):  # noqa: S307
            raise ValueError(f"{func}(): {p.requires} is required, got {p.name}={values[p.name]!r}")
    return values


#: Keywords of other libraries that users bring along, and what fastact calls them.
_KEYWORD_HINTS = {
    "dim": "; did you mean axis= (PyTorch's dim)?",
    "inplace": "; to compute in place, pass out=x",
}


def _real(func: str, name: str, value) -> float:
    # bool is an Integral, and arrays have __float__: accept neither silently.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{func}(): {name} must be a real number, got {type(value).__name__} {value!r}")
    try:
        as_float = float(value)
    except OverflowError:  # an int beyond float64's range
        raise ValueError(
            f"{func}(): {name} must be within float64's range (about ±1.8e308), got an integer of "
            f"{int(value).bit_length()} bits"
        ) from None
    if not math.isfinite(as_float):
        raise ValueError(f"{func}(): {name} must be finite, got {as_float!r}")
    return as_float


def check_param_range(func: str, spec, values, dtype: np.dtype) -> None:
    """Raise ``ValueError`` if a parameter value (finite, as :func:`check_params` made sure)
    overflows ``dtype``, the dtype the kernel computes in: it would become ``inf``."""
    big = float(np.finfo(dtype).max)
    for p, v in zip(spec.params, values):
        if abs(v) > big:
            raise ValueError(
                f"{func}(): {p.name}={v!r} overflows {dtype}, the dtype this call computes in "
                f"(largest finite value {big:.4g}); pass a smaller value, or float64 input"
            )


def kink_points(spec, params: dict[str, float]) -> list[float]:
    """The declared kinks of ``spec`` for these parameter values, sorted, without repeats."""
    points = {float(eval(k, {"__builtins__": {}}, dict(params))) for k in getattr(spec, "kinks", ())}  # noqa: S307
    return sorted(points)


def dfdy_allowed(spec: ElementwiseSpec, params: dict[str, float]) -> bool:
    if spec.dfdy is None:
        return False
    if spec.dfdy_requires is None:
        return True
    return bool(eval(spec.dfdy_requires, {"__builtins__": {}}, dict(params)))  # noqa: S307
