"""The public callables: argument checking, target choice and memory layout.

Every call goes through the same steps, in this order, so that a call that raises has
written nothing:

1. parameters are checked against the declaration (:func:`fastact._spec.check_params`);
2. inputs become native-endian arrays of a supported dtype (:func:`as_input`);
3. the target is resolved (``auto`` picks ``cpu`` or ``parallel`` by size);
4. the result's shape and dtype are derived and ``out`` is checked against them;
5. only then does a kernel run.

The ``cpu`` target calls the ufunc, which handles strides, broadcasting and overlap
itself (row-wise functions: a loop over 2-d views of the rows).  The ``parallel`` target
runs a ``prange`` loop over 1-d views (rows for row-wise functions); operands that cannot
be viewed that way are copied, and an ``out`` that partially overlaps an input is
computed in scratch memory first, so every target gives the same bits for every layout.
"""

from __future__ import annotations

import inspect
import math

import numpy as np

from fastact import _config, _cpu, _cuda, _lazy, _memory, _threads
from fastact._cuda import CudaUnavailableError  # noqa: F401  (re-exported by fastact)
from fastact._spec import (
    ElementwiseSpec,
    GatedSpec,
    ReductionSpec,
    RowwiseSpec,
    WeightedSpec,
    check_param_range,
    check_params,
    dfdy_allowed,
)

TARGETS = ("auto", "cpu", "parallel", "cuda")

#: ``auto`` runs the multi-threaded kernels of a memory-bound function (relu) from a
#: result of this many bytes on, and those of a function that declares ``work=w`` from
#: this many divided by ``w``.  Measured on 2 cores (relu crosses over at 2**17 float32
#: and 2**16 float64 elements): below it, waking the thread pool costs more than it saves.
PARALLEL_BYTES = 1 << 19

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
_KERNEL_DTYPES = (_F32, _F64)
_FAST_TARGETS = ("auto", "cpu", "parallel")
# Elements per block where operands are cast to the kernel's dtype: NumPy's default
# buffer for one thread, and enough work per block for the threads to pay off.
_CONVERT_BLOCK = 1 << 13
_CONVERT_BLOCK_PARALLEL = 1 << 18
# Rows longer than this are split between the threads when there are fewer rows than
# threads (four blocks of the row sums per thread at least).
_ROW_SPLIT = 8 * 2048


# NumPy checks the floating-point status flags after every ufunc loop.  Vectorised
# comparisons with NaN raise FE_INVALID, and the branch-free code LLVM emits evaluates
# both sides of a branch (exp of a huge argument raises FE_OVERFLOW), so a ufunc would
# warn for inputs that the scalar math handles exactly.  np.errstate costs ~3 us per call,
# more than the kernel at n=1000; setting NumPy's context variable directly costs ~0.1 us.
try:
    from numpy._core._ufunc_config import _extobj_contextvar, _make_extobj

    _IGNORE_FP = _make_extobj(all="ignore")

    def _fp_ignore():
        return _extobj_contextvar.set(_IGNORE_FP)

    _fp_restore = _extobj_contextvar.reset

except ImportError:  # pragma: no cover - other NumPy versions

    def _fp_ignore():
        state = np.errstate(all="ignore")
        state.__enter__()
        return state

    def _fp_restore(state):
        state.__exit__(None, None, None)


def _quiet(ufunc, *args, **kwargs):
    token = _fp_ignore()
    try:
        return ufunc(*args, **kwargs)
    finally:
        _fp_restore(token)


def as_input(func: str, name: str, value) -> np.ndarray:
    """``value`` as an aligned, native-endian ndarray of a supported dtype, or a ``TypeError``.

    Subclasses (``np.matrix``, ``np.memmap``) are read through their base ndarray, as by
    :func:`numpy.asarray`; a masked array is refused, because its mask would be ignored.
    """
    if type(value) is not np.ndarray:
        if isinstance(value, np.ma.MaskedArray):
            raise TypeError(
                f"{func}() does not support masked arrays for {name}: the mask would be ignored; "
                f"pass {name}.filled(value) or np.ma.getdata({name}) and apply the mask to the result"
            )
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as e:  # a ragged list, an object NumPy cannot read
            raise type(e)(f"{func}(): {name} could not be converted to an array ({e})") from None
    dt = input_dtype(func, name, value.dtype)
    if dt is not value.dtype:
        return value.astype(dt)
    # A buffer at an odd address (np.frombuffer with an offset, a packed record field):
    # the kernels assume aligned elements.
    return value if value.flags.aligned else value.copy()


def input_dtype(func: str, name: str, dt: np.dtype) -> np.dtype:
    """The dtype an input of dtype ``dt`` becomes (host and device inputs alike): floats keep
    theirs, in native byte order; bool and integers become float64; the rest is refused."""
    if dt.kind == "f" and dt.itemsize <= 8:
        return dt if dt.isnative else dt.newbyteorder("=")
    if dt.kind in "biu":
        return _F64
    raise TypeError(
        f"{func}() does not support {name} of dtype {dt}: expected float16, float32 or float64 "
        "(bool and integer input is promoted to float64)"
    )


def result_dtype(arrays, named=None) -> tuple[np.dtype, np.dtype]:
    """(dtype of the result, dtype the kernel computes in).

    Python scalars among the operands (``named``: the values as given) are weak, as in
    NumPy 2's promotion rules: ``relu.backward(1.0, x=x)`` has the dtype of ``x``."""
    if len(arrays) > 1 and named is not None:
        strong = [a for a, (_, v) in zip(arrays, named) if type(v) not in (bool, int, float)]
        arrays = strong or arrays
    rdt = arrays[0].dtype if len(arrays) == 1 else np.result_type(*arrays)
    return rdt, (_F32 if rdt == _F16 else rdt)


def check_target(func: str, target) -> str:
    if isinstance(target, str) and target in TARGETS:
        return target
    raise ValueError(f"{func}(): target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}")


def require_cuda(func: str):
    """Raise :class:`CudaUnavailableError`, saying why and how to install, unless the CUDA
    target can run."""
    _cuda.require(func)


def resolve_target(func: str, target, named, out, stream):
    """(target, named, out, launch): the checked target, ``"cuda"`` for ``"auto"`` when an
    operand is a device array.  For the CUDA target, ``launch`` is a :class:`fastact._cuda.Launch`
    and ``named``/``out`` hold NumPy shadows of the device operands' shapes and dtypes, so
    that the checks below are the same for every target; otherwise ``launch`` is None."""
    target = check_target(func, target)
    on_device = _cuda.is_device_array(out) or any(_cuda.is_device_array(v) for _, v in named)
    if target == "cuda" or (target == "auto" and on_device):
        launch = _cuda.Launch(func, named, out, stream, input_dtype)
        return "cuda", launch.named, launch.out, launch
    if on_device:
        raise TypeError(f"{func}(): device arrays need target='cuda' or 'auto', got target={target!r}")
    if stream is not None:
        raise ValueError(
            f"{func}(): stream= is for the CUDA target only, and this call runs on the host "
            f"(target={target!r}, no device arrays); pass target='cuda' to run it on the GPU"
        )
    return target, named, out, None


def check_out(func: str, out, shape: tuple, dtype: np.dtype, distinct: bool = True) -> np.ndarray:
    """``out`` checked, as the plain ndarray to write (the call still returns ``out``).

    One rule for subclasses, on every target: one that only adds attributes or methods
    (``np.memmap``, a user's ``ndarray`` subclass) is written through its memory; one that
    defines what operations on it mean (``__array_ufunc__`` or ``__array_function__``:
    units, masks, lazy arrays) is refused, since fastact cannot honour its rules.
    With ``distinct``, an ``out`` whose elements share memory is refused (the CUDA
    target's stand-ins for device arrays are checked otherwise).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{func}(): out must be a numpy.ndarray, got {type(out).__name__}")
    cls = type(out)
    if cls is not np.ndarray:
        if isinstance(out, np.ma.MaskedArray):
            raise TypeError(
                f"{func}(): out must be a numpy.ndarray, got MaskedArray (its mask would no longer "
                "describe its data); write into out.data and set the mask yourself"
            )
        overrides = [m for m in ("__array_ufunc__", "__array_function__")
                     if getattr(cls, m, None) is not getattr(np.ndarray, m)]
        if overrides:
            raise TypeError(
                f"{func}(): out must be a numpy.ndarray or a subclass that keeps NumPy's semantics; "
                f"got {cls.__module__}.{cls.__qualname__}, which overrides {' and '.join(overrides)} "
                "(write into a plain array and convert)"
            )
    if out.dtype != dtype:
        raise TypeError(f"{func}(): out must have dtype {dtype} (the result's), got {out.dtype}")
    if out.shape != shape:
        raise ValueError(f"{func}(): out must have shape {shape} (the result's), got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{func}(): out is read-only")
    if distinct and has_internal_overlap(out):
        raise ValueError(
            f"{func}(): out has elements that share memory with each other (strides {out.strides} "
            f"for shape {out.shape}), so the result would depend on the order of writes; pass an "
            "array whose elements are distinct"
        )
    return out if cls is np.ndarray else out.view(np.ndarray)


def has_internal_overlap(a: np.ndarray) -> bool:
    """Whether two elements of ``a`` share memory (a zero stride; rows that overlap)."""
    if a.flags.c_contiguous or a.flags.f_contiguous or a.size <= 1:
        return False
    dims = sorted((abs(st), n) for n, st in zip(a.shape, a.strides) if n > 1)
    extent = a.itemsize  # bytes spanned by the axes of smaller strides
    for stride, n in dims:
        if stride < extent:
            return _overlaps_exactly(a)
        extent += stride * (n - 1)
    return False  # each stride steps past everything the smaller ones reach


def _overlaps_exactly(a: np.ndarray) -> bool:
    """The exact answer where the quick sufficient test of :func:`has_internal_overlap`
    cannot tell (interleaved strides): NumPy's solver, else every element's offset."""
    try:
        from numpy._core._multiarray_tests import internal_overlap
    except ImportError:  # pragma: no cover - other NumPy versions
        internal_overlap = None
    if internal_overlap is not None:
        return bool(internal_overlap(a))
    offsets = np.zeros((), np.int64)
    for n, st in zip(a.shape, a.strides):
        offsets = np.add.outer(offsets, np.arange(n, dtype=np.int64) * st)
    offsets = np.sort(offsets, axis=None)
    return bool(np.any(offsets[1:] - offsets[:-1] < a.itemsize))


def threshold(spec, itemsize: int = 4) -> int:
    """The number of elements from which ``auto`` runs ``spec``'s multi-threaded kernels
    on elements of ``itemsize`` bytes."""
    return max(1, PARALLEL_BYTES // itemsize // spec.work)


def use_parallel(target: str, size: int, spec, itemsize: int = 4) -> bool:
    if target == "cpu":
        return False
    if target == "auto" and size < threshold(spec, itemsize):
        return False
    return _threads.parallel_allowed(target)


def _ufunc_can_write(out: np.ndarray) -> bool:
    """Whether a Numba-built (g)ufunc may write ``out`` directly.  Into a non-contiguous
    ``out`` it writes wrong elements, and with a negative stride it can corrupt the heap
    (numba 0.68, NumPy 2.4: ``v(x, out=np.empty(8)[::2])`` fills half of it), so such an
    ``out`` gets the result through a contiguous temporary.  Strided inputs are fine."""
    return out.flags.c_contiguous or out.flags.f_contiguous


def _new_result(arrays, shape, dtype) -> np.ndarray:
    """A new result array, laid out like the first input of the result's shape (as a ufunc
    does, so that Fortran-ordered input gives Fortran-ordered output)."""
    for a in arrays:
        if a.shape == shape:
            return _memory.empty_like(a, dtype)
    return _memory.empty(shape, dtype)


def broadcast_shape(func: str, named, arrays) -> tuple:
    """The broadcast shape of the operands, or a ``ValueError`` naming them (any number of
    dimensions: NumPy's own helpers stop at 32)."""
    shapes = [a.shape for a in arrays]
    if all(sh == shapes[0] for sh in shapes):
        return shapes[0]
    nd = max(len(sh) for sh in shapes)
    out = []
    for k in range(1, nd + 1):
        sizes = {sh[-k] for sh in shapes if len(sh) >= k} - {1}
        if len(sizes) > 1:
            desc = " and ".join(f"{n} {a.shape}" for (n, _), a in zip(named, arrays))
            raise ValueError(f"{func}(): cannot broadcast {desc} together")
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))


def broadcast_to(a: np.ndarray, shape: tuple) -> np.ndarray:
    """A read-only view of ``a`` broadcast to ``shape`` (any number of dimensions)."""
    if a.shape == shape:
        return a
    if len(shape) <= 32:
        return np.broadcast_to(a, shape)
    lead = len(shape) - a.ndim
    strides = (0,) * lead + tuple(0 if n == 1 and m != 1 else st for n, m, st in zip(a.shape, shape[lead:], a.strides))
    return np.lib.stride_tricks.as_strided(a, shape, strides, writeable=False)


def finish(result: np.ndarray, out):
    """What a call returns: ``out`` if given, else the result (a NumPy scalar if 0-d)."""
    if out is not None:
        return out
    return result[()] if result.ndim == 0 else result


# --- layout helpers for the parallel kernels ----------------------------------------------


def _flat(a: np.ndarray, order):
    """A 1-d view of ``a`` in the given axis order, or None when that needs a copy."""
    v = a if order is None else a.transpose(order)
    try:
        return np.reshape(v, -1, copy=False)
    except ValueError:
        return None


def _needs_scratch(result: np.ndarray, inputs, cdt) -> bool:
    """True when the kernel must not write ``result`` directly: it has another dtype than
    the kernel's, or it partially overlaps an input (exact aliasing is safe)."""
    if result.dtype != cdt:
        return True
    return any(np.may_share_memory(a, result) and not _memory.same_view(a, result) for a in inputs)


def _run_elementwise_parallel(kernel, inputs, params, result, cdt):
    order = _memory.axis_order(result)
    flat_out = None if _needs_scratch(result, inputs, cdt) else _flat(result, order)
    scratch = None
    if flat_out is None:
        shape = result.shape if order is None else tuple(result.shape[k] for k in order)
        scratch = _memory.empty(shape, cdt)
        flat_out = scratch.reshape(-1)
    flats = []
    for a in inputs:
        f = _flat(a, order)
        if f is None:
            f = np.ascontiguousarray(a if order is None else a.transpose(order)).reshape(-1)
        flats.append(f)
    kernel(flat_out, *flats, *params)
    if scratch is not None:
        back = scratch if order is None else scratch.transpose(np.argsort(order))
        _quiet(np.copyto, result, back, casting="unsafe")  # float16 overflow: inf, silently


# --- the public callables ------------------------------------------------------------------


def methods(spec) -> tuple[str, ...]:
    """The operations a declaration's callable offers: ``__call__`` and its methods."""
    if isinstance(spec, (RowwiseSpec, ReductionSpec, GatedSpec)):
        return ("__call__", "backward")
    return ("__call__", "grad", *(("grad2",) if spec.d2fdx2 is not None else ()), "backward")


def _weighted_signature(spec, method: str) -> inspect.Signature:
    P = inspect.Parameter
    if method == "backward":
        params = [P("dy", P.POSITIONAL_ONLY), P("x", P.KEYWORD_ONLY), P("weight", P.KEYWORD_ONLY)]
    else:
        params = [P("x", P.POSITIONAL_OR_KEYWORD), P("weight", P.POSITIONAL_OR_KEYWORD)]
    params += [P("axis", P.KEYWORD_ONLY, default=1), P("out", P.KEYWORD_ONLY, default=None),
               P("target", P.KEYWORD_ONLY, default=None), P("stream", P.KEYWORD_ONLY, default=None),
               P("dim", P.KEYWORD_ONLY, default=None)]
    params += [P(p.name, P.KEYWORD_ONLY, default=p.default) for p in spec.params]
    return inspect.Signature(params)


def signature(spec, method: str) -> inspect.Signature:
    """The call signature of ``fastact.<name>`` (``method="__call__"``) or of one of its
    methods, as :func:`inspect.signature` and ``help()`` show it."""
    if isinstance(spec, WeightedSpec):
        return _weighted_signature(spec, method)
    P = inspect.Parameter
    pos = [P("dy" if method == "backward" else "x", P.POSITIONAL_ONLY)]
    kw = []
    if method == "backward":
        if isinstance(spec, (ReductionSpec, GatedSpec)):  # the gradient needs x; y alone does not give it
            kw.append(P("x", P.KEYWORD_ONLY))
        else:
            kw += [P("x", P.KEYWORD_ONLY, default=None), P("y", P.KEYWORD_ONLY, default=None)]
    if isinstance(spec, (RowwiseSpec, GatedSpec)):
        kw.append(P("axis", P.KEYWORD_ONLY, default=-1))
    if isinstance(spec, ReductionSpec):  # axis required, as PyTorch's dim
        kw += [P("axis", P.KEYWORD_ONLY), P("keepdims", P.KEYWORD_ONLY, default=False)]
    kw.append(P("out", P.KEYWORD_ONLY, default=None))
    if method == "backward" and isinstance(spec, ElementwiseSpec):
        kw.append(P("accumulate", P.KEYWORD_ONLY, default=False))
    kw += [P("target", P.KEYWORD_ONLY, default=None), P("stream", P.KEYWORD_ONLY, default=None)]
    if isinstance(spec, (RowwiseSpec, ReductionSpec, GatedSpec)):
        kw.append(P("dim", P.KEYWORD_ONLY, default=None))
    kw += [P(p.name, P.KEYWORD_ONLY, default=p.default) for p in spec.params]
    if getattr(spec, "sampled", ""):  # rrelu's training mode
        if method == "__call__":
            kw += [P("training", P.KEYWORD_ONLY, default=False), P("rng", P.KEYWORD_ONLY, default=None)]
        kw.append(P("slopes", P.KEYWORD_ONLY, default=None))
    return inspect.Signature(pos + kw)


_COMMON_ARGS = """
    Every call also takes, by keyword:

    * ``out``: an array of the result's shape and dtype to write into (it may be the input
      itself); it is returned.
    * ``target``: ``"auto"``, ``"cpu"``, ``"parallel"`` or ``"cuda"``; None (the default)
      takes :func:`fastact.config`'s, which is ``"auto"`` unless set.
    * ``stream``: a CUDA stream, for the ``cuda`` target.

    Dask arrays give Dask arrays (lazy, chunk by chunk, each chunk on the ``cpu`` target
    unless ``target`` says otherwise), xarray DataArrays give DataArrays with their dims,
    coordinates and attrs; the functions along an axis (row-wise, reductions, gated
    units) then also take ``dim=`` for ``axis=``.
"""


def _doc(spec) -> str:
    """The callable's docstring: its signatures, as ``help()`` would otherwise not show them
    for an object, then the declaration's documentation."""
    lines = []
    for m in methods(spec):
        name = spec.name if m == "__call__" else f"{spec.name}.{m}"
        lines.append(f"{name}{signature(spec, m)}")
    return "\n".join(lines) + "\n\n" + inspect.cleandoc(spec.doc) + "\n\n" + inspect.cleandoc(_COMMON_ARGS) + "\n"


class _Function:
    """What elementwise and row-wise functions share: identity, docs and repr."""

    def __init__(self, spec):
        self.spec = spec
        self.__name__ = self.__qualname__ = spec.name
        self.__module__ = "fastact"
        self.__signature__ = signature(spec, "__call__")
        self.__doc__ = _doc(spec)
        self._defaults = tuple(spec.kernel_defaults.values())

    def __repr__(self):
        return f"<fastact.{self.spec.kind} {self.spec.name}>"

    def __reduce__(self):  # pickles by name, like a ufunc
        return self.spec.name  # the global fastact.<name>, as pickle looks up functions

    def _params(self, func, params):
        if not params:
            return self._defaults
        return tuple(check_params(self.spec, func, params).values())

    def _positional(self, func, first, args):
        """Raise the ``TypeError`` of a call with more than one positional argument, saying
        which keyword the extra one was probably meant for."""
        along = isinstance(self.spec, (RowwiseSpec, ReductionSpec, GatedSpec))
        keywords = (*(("axis",) if along else ()), "out", "target", "stream", *self.spec.param_names)
        extra = args[0]
        if along and isinstance(extra, (int, np.integer)) and not isinstance(extra, bool):
            hint = f"pass the axis by keyword: {func}(x, axis={int(extra)})"
        elif isinstance(extra, np.ndarray) or _cuda.is_device_array(extra):
            hint = f"to write into an array, pass it by keyword: {func}(x, out=o)"
        else:
            hint = "pass the others by keyword (" + ", ".join(k + "=" for k in keywords) + ")"
        raise TypeError(f"{func}() takes 1 positional argument ({first}) but {1 + len(args)} were given; {hint}")

    def _lazy_result(self, kind, op, func, named, out, target, params, stream, accumulate=False, axis=None, dim=None):
        """The call on Dask arrays or DataArrays (:mod:`fastact._lazy`)."""
        target = check_target(func, target)
        if kind != "xarray" and dim is not None:  # dim= without a DataArray
            raise TypeError(
                f"{func}(): dim= names a dimension of an xarray DataArray; for arrays, use axis= (PyTorch's dim)"
            )
        _lazy.refuse(func, out, stream, accumulate)
        if kind == "dask":
            return _lazy.dask_call(self.spec, op, func, named, target, params, axis)

        def call(values, ax):
            inner = tuple((n, v) for (n, _), v in zip(named, values, strict=True))
            if _lazy.kind_of(inner) == "dask":
                return _lazy.dask_call(self.spec, op, func, inner, target, params, ax)
            return _lazy.call(self.spec.name, op, target, tuple(params.items()), ax, *values)

        return _lazy.xarray_call(call, func, named, dim, axis)


def _backward_positional(func, args):
    raise TypeError(
        f"{func}() takes the forward operand by keyword: pass x= (the forward input) or y= "
        f"(the forward output), e.g. {func}(dy, x=x) or {func}(dy, y=y); a positional second "
        f"argument is refused, since an output taken for an input gives a wrong gradient silently "
        f"({1 + len(args)} positional arguments were given)"
    )


class Elementwise(_Function):
    """An elementwise activation: ``f(x)``, ``f.grad(x)`` and ``f.backward(dy, x | y=)``.

    Instances are built from a declaration in :mod:`fastact.declarations`; see the
    activation's own docstring for its math and parameters.
    """

    spec: ElementwiseSpec

    def __init__(self, spec):
        super().__init__(spec)
        self._ufuncs = {}
        self._dfdy_by_default = dfdy_allowed(spec, spec.kernel_defaults)

    def __call__(self, x, *args, out=None, target=None, stream=None, **params):
        if args:
            self._positional(self.spec.name, "x", args)
        if target is None:
            target = _config.target()
        if type(target) is str and target in _FAST_TARGETS and not params and stream is None:
            r = self._small("forward", x, None, out, target)
            if r is not None:
                return r
        return self._run("forward", self.spec.name, (("x", x),), out, target, params, stream)

    def grad(self, x, *args, out=None, target=None, stream=None, **params):
        """Elementwise derivative ``f'(x)``, with the same parameters as the function.

        At a kink the declared convention applies (see the function's docstring).
        """
        return self._derivative("grad", x, args, out, target, stream, params)

    def grad2(self, x, *args, out=None, target=None, stream=None, **params):
        """Elementwise second derivative ``f''(x)``, with the same parameters as the
        function (for Hessian-vector products: ``dy * f''(x) * v``).

        At a kink the declared convention applies (see the function's docstring).
        """
        if self.spec.d2fdx2 is None:
            raise AttributeError(f"{self.spec.name} declares no second derivative")
        return self._derivative("grad2", x, args, out, target, stream, params)

    def _derivative(self, op, x, args, out, target, stream, params):
        """``grad`` and ``grad2``: an elementwise operation of ``x`` alone."""
        func = f"{self.spec.name}.{op}"
        if args:
            self._positional(func, "x", args)
        if target is None:
            target = _config.target()
        if type(target) is str and target in _FAST_TARGETS and not params and stream is None:
            r = self._small(op, x, None, out, target)
            if r is not None:
                return r
        return self._run(op, func, (("x", x),), out, target, params, stream)

    def backward(self, dy, *args, x=None, y=None, out=None, accumulate=False, target=None, stream=None, **params):
        """Fused vector-Jacobian product ``dy * f'(x)`` in one pass, without temporaries.

        Give exactly one of ``x=`` (the forward input) or ``y=`` (the forward output, where
        the derivative is a function of it), by keyword.  The result has the broadcast
        shape of ``dy`` and ``x`` (or ``y``); ``out=dy`` computes it in place.  With
        ``accumulate=True`` the product is added into ``out`` (``out += dy * f'(x)``, one
        pass, no temporary), as a loop that sums gradients over batches needs.
        """
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        if (x is None) == (y is None):
            raise TypeError(f"{func}() takes exactly one of x= (the forward input) or y= (the forward output)")
        if target is None:
            target = _config.target()
        if accumulate is not False:
            return self._accumulate(func, dy, x, y, out, accumulate, target, params, stream)
        if y is None:
            if type(target) is str and target in _FAST_TARGETS and not params and stream is None:
                r = self._small("backward_x", dy, x, out, target)
                if r is not None:
                    return r
            return self._run("backward_x", func, (("dy", dy), ("x", x)), out, target, params, stream)
        if type(target) is str and target in _FAST_TARGETS and not params and stream is None and self._dfdy_by_default:
            r = self._small("backward_y", dy, y, out, target)
            if r is not None:
                return r
        self._check_y(func, params)
        return self._run("backward_y", func, (("dy", dy), ("y", y)), out, target, params, stream)

    def _accumulate(self, func, dy, x, y, out, accumulate, target, params, stream):
        """``out += dy * f'(x)`` (or ``f'`` from ``y``): the ``*_acc`` kernels, which read
        ``out`` as their last operand and write it in the same pass."""
        if accumulate is not True:
            raise TypeError(f"{func}(): accumulate must be True or False, got {accumulate!r}")
        if out is None:
            raise TypeError(f"{func}(): accumulate=True adds into out=, which was not given")
        if y is not None:
            self._check_y(func, params)
            op, named = "backward_y_acc", (("dy", dy), ("y", y))
        else:
            op, named = "backward_x_acc", (("dy", dy), ("x", x))
        return self._run(op, func, named, out, target, params, stream, accumulate=True)

    def _check_y(self, func, params):
        """Raise unless ``backward(dy, y=)`` is exact for these parameters."""
        if self.spec.dfdy is None:
            raise ValueError(
                f"{func}(dy, y=...) is not supported: the derivative of {self.spec.name} "
                "is not a function of its output; pass the forward input x instead"
            )
        if params or self.spec.dfdy_requires:
            checked = check_params(self.spec, func, params)
            if not dfdy_allowed(self.spec, checked):
                raise ValueError(
                    f"{func}(dy, y=...) requires {self.spec.dfdy_requires}, got "
                    + ", ".join(f"{k}={v!r}" for k, v in checked.items())
                    + "; pass the forward input x instead"
                )

    def _ufunc(self, op, dtype, params):
        """(ufunc, trailing scalar operands) that compute ``op`` for ``dtype`` inputs.

        With the default parameters this is a unary (or binary) ufunc with the defaults
        baked in; other parameters are passed as scalar operands of the general ufunc.
        Both compute with the parameter rounded to ``dtype``: the same bits either way.
        """
        key = (op, dtype) if params == self._defaults else op
        uf = self._ufuncs.get(key)
        if uf is None:
            kernel = f"{self.spec.name}__{op}"
            nin = {"forward": 1, "grad": 1, "grad2": 1, "backward_x": 2, "backward_y": 2}.get(op, 3)
            if not self._defaults:
                uf = _cpu.ufunc(kernel, nin)
            elif key == op:
                uf = _cpu.ufunc(kernel, nin + len(self._defaults))
            else:
                uf = _cpu.ufunc(f"{kernel}__{dtype.name}", nin, (dtype.name,))
            self._ufuncs[key] = uf
        return uf, (() if key != op else tuple(dtype.type(p) for p in params))

    def _small(self, op, a, b, out, target):
        """The common call with only the checks it needs: native float32/float64 arrays of
        one dtype and shape, default parameters, target ``cpu``, ``parallel`` or ``auto``
        (and, for the threads, C-contiguous operands with an ``out`` that is new, one of
        the inputs, or apart from them).  Returns None for anything else, which then takes
        the general path.  At n=1000 this path costs a fraction of the general one."""
        if type(a) is not np.ndarray or a.ndim == 0:
            return None
        dt = a.dtype
        if dt is not _F32 and dt is not _F64:
            return None
        if b is not None and (type(b) is not np.ndarray or b.dtype is not dt or b.shape != a.shape):
            return None
        if target == "parallel" or (target == "auto" and a.size >= threshold(self.spec, dt.itemsize)):
            # Where the threading layer is unsafe here, the general path decides.
            return self._small_parallel(op, a, b, out) if _threads.parallel_allowed(target) else None
        if out is None:
            out = _memory.empty_like(a if b is None else b)
        elif (type(out) is not np.ndarray or out.dtype is not dt or out.shape != a.shape or not out.flags.writeable
              or not _ufunc_can_write(out)):
            return None
        uf = self._ufuncs.get((op, dt)) or self._ufunc(op, dt, self._defaults)[0]
        token = _fp_ignore()
        try:
            if b is None:
                uf(a, out=out)
            else:
                uf(a, b, out=out)
        finally:
            _fp_restore(token)
        return out

    def _small_parallel(self, op, a, b, out):
        if not a.flags.c_contiguous or a.size == 0 or (b is not None and not b.flags.c_contiguous):
            return None
        if out is None:
            out = _memory.empty_like(a)
        elif (type(out) is not np.ndarray or out.dtype is not a.dtype or out.shape != a.shape
              or not out.flags.writeable or not out.flags.c_contiguous):
            return None
        elif _overlaps_partially(out, a, b):
            return None
        params = tuple(a.dtype.type(p) for p in self._defaults)
        flat = (a.reshape(-1),) if b is None else (a.reshape(-1), b.reshape(-1))
        _cpu.parallel(self.spec.name, op)(out.reshape(-1), *flat, *params)
        return out

    def _run(self, op, func, named, out, target, params, stream=None, accumulate=False):
        pvals = self._params(func, params)
        lazy = _lazy.kind_of(named, out)
        if lazy is not None:
            return self._lazy_result(lazy, op, func, named, out, target, params, stream, accumulate)
        if accumulate:  # out is also the last operand
            named = (*named, ("out", out))
        target, named, out, launch = resolve_target(func, target, named, out, stream)
        arrays = [as_input(func, name, value) for name, value in named]
        rdt, cdt = result_dtype(arrays[:-1] if accumulate else arrays, named)
        shape = broadcast_shape(func, named, arrays)
        if pvals is not self._defaults:
            check_param_range(func, self.spec, pvals, cdt)
        if out is not None:
            dest = check_out(func, out, shape, rdt, distinct=launch is None or launch.device_out is None)
        if accumulate:
            arrays[-1] = dest if launch is None else arrays[-1]
        if launch is not None:
            with np.errstate(all="ignore"):  # float16 overflow: inf, silently, as on the host
                return launch.elementwise(self.spec.name, op, arrays, shape, rdt, cdt, pvals, finish)

        result = dest if out is not None else _new_result(arrays, shape, rdt)
        size = result.size
        if size == 0:
            return finish(result, out)
        parallel = use_parallel(target, size, self.spec, cdt.itemsize)
        if result.dtype != cdt or any(a.dtype != cdt for a in arrays):
            self._run_converted(op, arrays, pvals, result, cdt, parallel)
            return finish(result, out)
        inputs = arrays
        if parallel:
            inputs = [broadcast_to(a, shape) for a in inputs]
            params = tuple(cdt.type(p) for p in pvals)
            _run_elementwise_parallel(_cpu.parallel(self.spec.name, op), inputs, params, result, cdt)
        else:
            uf, scalars = self._ufunc(op, cdt, pvals)
            if result.dtype == cdt and _ufunc_can_write(result):
                _quiet(uf, *inputs, *scalars, out=result)
            else:
                _quiet(np.copyto, result, _quiet(uf, *inputs, *scalars), casting="unsafe")
        return finish(result, out)

    def _run_converted(self, op, arrays, pvals, result, cdt, parallel):
        """The kernel over operands of another dtype than its own (float16, integers,
        bool), cast block by block in NumPy's iterator buffers: memory bounded by the
        block, not proportional to the arrays."""
        if parallel:
            kernel = _cpu.parallel(self.spec.name, op)
            params = tuple(cdt.type(p) for p in pvals)

            def run(o, *ins):
                kernel(o, *ins, *params)

        else:
            uf, scalars = self._ufunc(op, cdt, pvals)

            def run(o, *ins):
                if _ufunc_can_write(o):
                    uf(*ins, *scalars, out=o)
                else:
                    o[...] = uf(*ins, *scalars)

        n = len(arrays)
        elementwise = "overlap_assume_elementwise"
        token = _fp_ignore()  # float16 overflow in the cast: inf, silently
        try:
            it = np.nditer(
                [*arrays, result],
                flags=["external_loop", "buffered", "grow_inner", "zerosize_ok", "copy_if_overlap"],
                op_flags=[["readonly", elementwise]] * n + [["writeonly", elementwise]],
                op_dtypes=[cdt] * (n + 1),
                casting="unsafe",
                buffersize=_CONVERT_BLOCK_PARALLEL if parallel else _CONVERT_BLOCK,
            )
            with it:
                for ops in it:
                    run(ops[n], *ops[:n])
        finally:
            _fp_restore(token)


class Sampled(Elementwise):
    """A randomised elementwise activation (``rrelu``): the declared function in evaluation
    mode; in training mode (``training=True``, or given ``slopes=``) the weighted
    declaration ``spec.sampled`` with one weight per element, drawn uniformly between the
    first two parameters from ``rng``.

    ``f(x, training=True, rng=rng)`` returns ``(y, slopes)``; ``f(x, slopes=s)``,
    ``f.grad(x, slopes=s)`` and ``f.backward(dy, x=x, slopes=s)`` use given slopes.
    """

    def __call__(self, x, *args, training=False, rng=None, slopes=None, out=None, target=None, stream=None,
                 **params):
        func = self.spec.name
        if type(training) is not bool:
            raise TypeError(f"{func}(): training must be True or False, got {training!r}")
        if rng is not None and not training:
            raise TypeError(f"{func}(): rng= draws the slopes of training mode; pass training=True with it")
        if training and slopes is not None:
            raise TypeError(
                f"{func}(): pass either training=True (new slopes, drawn from rng=) or slopes= (given ones), not both"
            )
        if not training and slopes is None:
            return super().__call__(x, *args, out=out, target=target, stream=stream, **params)
        if args:
            self._positional(func, "x", args)
        if slopes is None:
            slopes = self.sample(func, x, rng, params)
            return self._sampled("forward", func, (("x", x), ("slopes", slopes)), out, target, stream), slopes
        return self._sampled("forward", func, (("x", x), ("slopes", slopes)), out, target, stream, params)

    def grad(self, x, *args, slopes=None, out=None, target=None, stream=None, **params):
        """Elementwise derivative ``f'(x)``: with the mean slope (evaluation), or with
        ``slopes=`` those of a training-mode call."""
        if slopes is None:
            return super().grad(x, *args, out=out, target=target, stream=stream, **params)
        func = f"{self.spec.name}.grad"
        if args:
            self._positional(func, "x", args)
        return self._sampled("grad", func, (("x", x), ("slopes", slopes)), out, target, stream, params)

    def backward(self, dy, *args, x=None, y=None, slopes=None, out=None, accumulate=False, target=None, stream=None,
                 **params):
        """Fused ``dy * f'(x)`` in one pass, as :meth:`Elementwise.backward`; with
        ``slopes=`` (those a training-mode call returned) the derivative uses them, and
        needs ``x=``."""
        if slopes is None:
            if params.pop("training", False):
                raise TypeError(
                    f"{self.spec.name}.backward(): training mode needs the slopes of the forward call: "
                    f"y, slopes = fastact.{self.spec.name}(x, training=True, rng=rng); "
                    f"{self.spec.name}.backward(dy, x=x, slopes=slopes)"
                )
            return super().backward(dy, *args, x=x, y=y, out=out, accumulate=accumulate, target=target,
                                    stream=stream, **params)
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        if (x is None) == (y is None):
            raise TypeError(f"{func}() takes exactly one of x= (the forward input) or y= (the forward output)")
        if y is not None:  # the contract's rule for a y= that is not exact: ValueError
            raise ValueError(f"{func}(dy, y=...) is not supported with slopes=: y does not give x's sign where a "
                             "slope is 0 or negative; pass the forward input x instead")
        if accumulate is not False:
            raise TypeError(f"{func}(): accumulate=True is not supported with slopes=")
        return self._sampled("backward_x", func, (("dy", dy), ("x", x), ("slopes", slopes)), out, target, stream,
                             params)

    def _sampled(self, op, func, named, out, target, stream, params=None):
        # The bounds only shape the draw; checked here all the same, as every call's params.
        if params:
            self._params(func, params)
        from fastact._spec import REGISTRY

        return run_weighted(REGISTRY[self.spec.sampled], op, func, named, None, out, target, stream, None, {}, (),
                            per_element=True)

    def sample(self, func, x, rng, params):
        """Slopes for ``x``: one per element, uniform in ``[lower, upper]`` (the first two
        parameters), in ``x``'s result dtype, from ``np.random.default_rng(rng)``."""
        checked = check_params(self.spec, func, params)
        lower, upper = list(checked.values())[:2]
        try:
            gen = np.random.default_rng(rng)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{func}(): rng must be a numpy.random.Generator, a seed or None, got {rng!r} ({e})") from None
        if _lazy.kind_of((("x", x),)) is not None:
            raise TypeError(f"{func}(): training mode draws its slopes in memory; pass a NumPy array, or draw "
                            "Dask slopes yourself and pass slopes=")
        a = as_input(func, "x", x)
        dt = a.dtype if a.dtype in (_F32, _F64) else (_F32 if a.dtype == _F16 else _F64)
        s = gen.random(a.shape, dtype=dt)
        s *= dt.type(upper - lower)
        s += dt.type(lower)
        np.minimum(s, dt.type(upper), out=s)  # the rounding of the last step may pass upper
        return s.astype(a.dtype, copy=False) if a.dtype == _F16 else s


class Rowwise(_Function):
    """A normalisation along one axis: ``f(x, axis=)`` and ``f.backward(dy, x | y=, axis=)``.

    See the function's own docstring for its math.
    """

    spec: RowwiseSpec

    def __call__(self, x, *args, axis=-1, out=None, target=None, stream=None, dim=None, **params):
        if args:
            self._positional(self.spec.name, "x", args)
        if target is None:
            target = _config.target()
        if not params and stream is None and dim is None:
            r = self._small("forward", x, None, axis, out, target)
            if r is not None:
                return r
        self._params(self.spec.name, params)
        return self._run("forward", self.spec.name, (("x", x),), axis, out, target, stream, dim)

    def backward(self, dy, *args, x=None, y=None, axis=-1, out=None, target=None, stream=None, dim=None,
                 **params):
        """Vector-Jacobian product along ``axis`` (or, for DataArrays, the dimension
        ``dim``), from the forward input ``x=`` or the forward output ``y=`` (exactly one,
        by keyword).  ``out=dy`` computes it in place."""
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        self._params(func, params)
        if (x is None) == (y is None):
            raise TypeError(f"{func}() takes exactly one of x= (the forward input) or y= (the forward output)")
        if target is None:
            target = _config.target()
        op, other = ("backward_x", x) if y is None else ("backward_y", y)
        if not params and stream is None and dim is None:
            r = self._small(op, dy, other, axis, out, target)
            if r is not None:
                return r
        if y is None:
            return self._run("backward_x", func, (("dy", dy), ("x", x)), axis, out, target, stream, dim)
        return self._run("backward_y", func, (("dy", dy), ("y", y)), axis, out, target, stream, dim)

    def _small(self, op, a, b, axis, out, target):
        """The common call with only the checks it needs: C-contiguous float32/float64
        arrays of one dtype and shape, the last axis, target ``cpu`` (or ``auto`` below the
        parallel threshold), and an ``out`` that is new, one of the inputs or apart from
        them.  Returns None for anything else, which then takes the general path."""
        if type(a) is not np.ndarray or a.ndim == 0 or not a.flags.c_contiguous or a.size == 0 or type(target) is not str:
            return None
        dt = a.dtype
        if target != "cpu" and (target != "auto" or a.size >= threshold(self.spec, dt.itemsize)):
            return None
        if (dt is not _F32 and dt is not _F64) or type(axis) is not int or (axis != -1 and axis != a.ndim - 1):
            return None
        if b is not None and (type(b) is not np.ndarray or b.dtype is not dt or b.shape != a.shape
                              or not b.flags.c_contiguous):
            return None
        if out is None:
            out = _memory.empty_like(a)
        elif (type(out) is not np.ndarray or out.dtype is not dt or out.shape != a.shape or not out.flags.writeable
              or not out.flags.c_contiguous):
            return None
        elif _overlaps_partially(out, a, b):
            return None
        n = a.shape[-1]
        rows = [out.reshape(-1, n), a.reshape(-1, n)] + ([] if b is None else [b.reshape(-1, n)])
        if op == "backward_x":
            rows.append(np.empty(n, dt))  # the scratch row, before anything is written
        _cpu.rows(self.spec.name, op)(*rows)
        return out

    def __getattr__(self, name):
        if name == "grad":
            raise AttributeError(
                f"{self.spec.name} has no elementwise derivative (its Jacobian is not diagonal): "
                f"use {self.spec.name}.backward(dy, x) or {self.spec.name}.backward(dy, y=y)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _run(self, op, func, named, axis, out, target, stream=None, dim=None):
        lazy = _lazy.kind_of(named, out)
        if lazy is not None or dim is not None:
            return self._lazy_result(lazy, op, func, named, out, target, {}, stream, axis=axis, dim=dim)
        target, named, out, launch = resolve_target(func, target, named, out, stream)
        arrays = [as_input(func, name, value) for name, value in named]
        rdt, cdt = result_dtype(arrays, named)
        shape = broadcast_shape(func, named, arrays)
        axis = _check_axis(func, axis, len(shape))
        if out is not None:
            dest = check_out(func, out, shape, rdt, distinct=launch is None or launch.device_out is None)
        if launch is not None:
            with np.errstate(all="ignore"):  # float16 overflow: inf, silently, as on the host
                return launch.rowwise(self.spec.name, op, arrays, shape, axis, rdt, cdt, finish)

        result = dest if out is not None else _new_result(arrays, shape, rdt)
        if result.size == 0:
            return finish(result, out)
        # A 0-d input is a row of one element.
        inputs = [broadcast_to(a if a.dtype == cdt else a.astype(cdt), shape).reshape(shape or (1,)) for a in arrays]
        res = result.reshape(1) if result.ndim == 0 else result
        rows = result.size // res.shape[axis]
        if use_parallel(target, result.size, self.spec, cdt.itemsize):
            # Rows to the threads where there are enough of them, otherwise each row's
            # blocks: the same bits either way (the row kernels sum block by block).
            threads = _threads.num_threads()
            n = res.shape[axis]
            extra = ()
            if rows < threads and n > _ROW_SPLIT:
                kernel = _cpu.blocks(self.spec.name, op)
            else:
                kernel = _cpu.parallel(self.spec.name, op)
                if op == "backward_x":  # a scratch row for each chunk of rows
                    extra = (_memory.empty((min(rows, 4 * threads), n), cdt),)
            _run_rowwise_parallel(kernel, inputs, res, axis, cdt, extra)
        else:
            _run_rows(_cpu.rows(self.spec.name, op), op, inputs, res, axis, cdt)
        return finish(result, out)


def _check_axis(func, axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{func}(): axis must be an integer, got {type(axis).__name__} {axis!r}")
    nd = max(ndim, 1)
    if not -nd <= axis < nd:
        raise np.exceptions.AxisError(f"{func}(): axis {axis} is out of bounds for an array of dimension {ndim}")
    return int(axis) % nd


def _rows(a: np.ndarray, axis: int):
    """``a`` with ``axis`` last, as a 2-d (rows, n) view, or None when that needs a copy."""
    v = np.moveaxis(a, axis, -1)
    try:
        return np.reshape(v, (-1, v.shape[-1]), copy=False)
    except ValueError:
        return None


def _row_parts(arrays, axis):
    """``[(rows of arrays[0], rows of arrays[1], ...), ...]``: the arrays split into parts
    whose rows along ``axis`` are 2-d views (a Python loop over the outer axes that cannot
    be merged; one part where the layout allows)."""
    views = [_rows(a, axis) for a in arrays]
    if all(v is not None for v in views):
        return [views]
    d = 0 if axis != 0 else 1
    sub_axis = axis - 1 if d < axis else axis
    index = (slice(None),) * d
    parts = []
    for i in range(arrays[0].shape[d]):
        parts += _row_parts([a[(*index, i)] for a in arrays], sub_axis)
    return parts


def _run_rows(kernel, op, inputs, result, axis, cdt):
    """The single-threaded row loop over any layout: on 2-d row views of the operands,
    split where their outer axes cannot be merged; into scratch memory where ``result`` has
    another dtype or partially overlaps an input.  Scratch is allocated before anything
    is written."""
    target = _memory.empty(result.shape, cdt) if _needs_scratch(result, inputs, cdt) else result
    extra = (np.empty(result.shape[axis], cdt),) if op == "backward_x" else ()
    for views in _row_parts([target, *inputs], axis):
        kernel(*views, *extra)
    if target is not result:
        _quiet(np.copyto, result, target, casting="unsafe")


def _overlaps_partially(out, a, b) -> bool:
    """Whether ``out`` shares memory with ``a`` or ``b`` other than by being the same view."""
    return any(v is not None and np.may_share_memory(out, v) and not _memory.same_view(out, v) for v in (a, b))


def _run_rowwise_parallel(kernel, inputs, result, axis, cdt, extra=()):
    rows_out = None if _needs_scratch(result, inputs, cdt) else _rows(result, axis)
    scratch = None
    if rows_out is None:
        scratch = _memory.empty(np.moveaxis(result, axis, -1).shape, cdt)
        rows_out = scratch.reshape(-1, scratch.shape[-1])
    rows_in = []
    for a in inputs:
        r = _rows(a, axis)
        if r is None:
            r = np.ascontiguousarray(np.moveaxis(a, axis, -1)).reshape(rows_out.shape)
        rows_in.append(r)
    kernel(rows_out, *rows_in, *extra)
    if scratch is not None:
        _quiet(np.copyto, result, np.moveaxis(scratch, -1, axis), casting="unsafe")


#: ``axis=`` not given (a reduction's axis is required).
_NO_AXIS = object()


class Reduction(_Function):
    """A reduction along one or more axes: ``f(x, axis=, keepdims=)`` and
    ``f.backward(dy, x=, axis=, keepdims=)``.

    See the function's own docstring for its math.
    """

    spec: ReductionSpec

    def __call__(self, x, *args, axis=_NO_AXIS, keepdims=False, out=None, target=None, stream=None, dim=None,
                 **params):
        func = self.spec.name
        if args:
            self._positional(func, "x", args)
        self._params(func, params)
        return self._run("forward", func, (("x", x),), axis, keepdims, out, target, stream, dim)

    def backward(self, dy, *args, x=None, axis=_NO_AXIS, keepdims=False, out=None, target=None, stream=None,
                 dim=None, **params):
        """``dy`` times the gradient of the reduction with respect to the forward input
        ``x=`` (``dy`` has the forward result's shape, with or without ``keepdims``): an
        array of ``x``'s shape.  ``out=x`` computes it in place."""
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        if "y" in params:
            raise TypeError(
                f"{func}() takes the forward input x=, not y=: the gradient of {self.spec.name} is a function "
                f"of the input, which the output alone does not determine"
            )
        self._params(func, params)
        if x is None:
            raise TypeError(f"{func}() needs x= (the forward input)")
        return self._run("backward_x", func, (("dy", dy), ("x", x)), axis, keepdims, out, target, stream, dim)

    def __getattr__(self, name):
        if name == "grad":
            raise AttributeError(
                f"{self.spec.name} is a reduction and has no elementwise derivative: use "
                f"{self.spec.name}.backward(dy, x=x, axis=...)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _run(self, op, func, named, axis, keepdims, out, target, stream, dim):
        if not isinstance(keepdims, (bool, np.bool_)):
            raise TypeError(f"{func}(): keepdims must be True or False, got {type(keepdims).__name__} {keepdims!r}")
        if target is None:
            target = _config.target()
        lazy_target = _lazy_target(func, named, out, target, stream, dim)
        if lazy_target is not None:
            return _lazy.reduction_call(self.spec, op, func, named, lazy_target, axis, bool(keepdims), dim, _NO_AXIS)
        if axis is _NO_AXIS:
            raise TypeError(_missing_axis(func))
        target, named, out, launch = resolve_target(func, target, named, out, stream)
        arrays = [as_input(func, name, value) for name, value in named]
        rdt, cdt = result_dtype(arrays, named)
        x = arrays[-1]
        axes = reduction_axes(func, axis, x.ndim)
        shape, kept = reduced_shapes(x.shape, axes, bool(keepdims))
        rshape = shape
        if op == "backward_x":
            if not _broadcasts_to(arrays[0].shape, rshape):
                raise ValueError(
                    f"{func}(): dy must have the shape of the forward result, {rshape} (keepdims={bool(keepdims)}), "
                    f"or broadcast to it; got {arrays[0].shape}"
                )
            shape = x.shape
        if out is not None:
            dest = check_out(func, out, shape, rdt, distinct=launch is None or launch.device_out is None)
        if launch is not None:
            with np.errstate(all="ignore"):
                return launch.reduction(self.spec.name, op, arrays, axes, kept, rshape, shape, rdt, cdt, finish)
        result = dest if out is not None else _memory.empty(shape, rdt)
        if result.size == 0:
            return finish(result, out)
        _run_reduction(self.spec, op, arrays, axes, kept, rshape, result, cdt, target)
        return finish(result, out)


def _lazy_target(func, named, out, target, stream, dim):
    """For a reduction or a gated unit: the checked target where the call is lazy (a Dask
    array or DataArray among the operands, or ``dim=``), after the checks of a lazy call;
    None for an in-memory call."""
    lazy = _lazy.kind_of(named, out)
    if lazy is None and dim is None:
        return None
    target = check_target(func, target)
    _lazy.refuse(func, out, stream, False)
    if dim is not None and lazy != "xarray":
        raise TypeError(f"{func}(): dim= names dimensions of an xarray DataArray; for arrays, use axis= (PyTorch's dim)")
    return target


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(shape[::-1], target[::-1]))


def _missing_axis(func: str) -> str:
    return (
        f"{func}() needs axis=: an int, a tuple of ints, or None for every axis (required, as PyTorch's dim; "
        "JAX and SciPy default to None)"
    )


def reduction_axes(func: str, axis, ndim: int) -> tuple[int, ...]:
    """``axis`` (an int, a sequence of ints or None) as sorted non-negative axes of an
    array of ``ndim`` dimensions (a 0-d array is reduced as a row of one)."""
    nd = max(ndim, 1)
    if axis is None:
        return tuple(range(nd))
    many = isinstance(axis, (tuple, list))
    given = tuple(axis) if many else (axis,)
    axes = tuple(_check_axis(func, a, ndim) for a in given)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{func}(): axis {tuple(given)} repeats an axis")
    if not axes:
        raise ValueError(f"{func}(): axis=() reduces nothing; give at least one axis, or None for all")
    return tuple(sorted(axes))


def reduced_shapes(shape: tuple, axes, keepdims: bool) -> tuple[tuple, tuple]:
    """(the result's shape, the shape with the reduced axes kept as 1)."""
    if not shape:
        return (), ()
    kept = tuple(1 if k in axes else n for k, n in enumerate(shape))
    return (kept if keepdims else tuple(n for k, n in enumerate(shape) if k not in axes)), kept


def _as_rows(a: np.ndarray, axes, cdt) -> np.ndarray:
    """``a`` with ``axes`` moved last and merged: a 2-d (rows, n) array of dtype ``cdt``,
    a view where the layout allows, else a copy."""
    a = a.reshape(1) if a.ndim == 0 else a
    moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
    n = math.prod(moved.shape[moved.ndim - len(axes):])
    rows = np.reshape(moved, (-1, n), copy=None)
    return rows if rows.dtype == cdt and rows.flags.c_contiguous else np.ascontiguousarray(rows, cdt)


def _run_reduction(spec, op, arrays, axes, kept, rshape, result, cdt, target):
    """A reduction's ``op`` on the host into ``result`` (non-empty): the rows of ``x``
    along ``axes`` through the row kernels (``rshape``: the forward result's shape), via
    scratch memory where ``result`` is not a C-contiguous array of ``cdt`` in the rows'
    layout, or overlaps an input other than by being ``x`` itself."""
    x = arrays[-1]
    if x.size == 0:  # rows of no elements (the result is not empty): the sum of no terms
        result[...] = -np.inf
        return
    xr = _as_rows(x, axes, cdt)
    rows, n = xr.shape
    if op == "forward":
        inputs = (xr,)
        view = result.reshape(rows) if result.dtype == cdt and result.flags.c_contiguous else None
    else:
        dyk = np.reshape(broadcast_to(arrays[0], rshape), kept)
        inputs = (_as_rows(dyk, axes, cdt).reshape(rows), xr)
        view = _rows_view(result, axes, rows, n) if result.dtype == cdt else None
    if view is not None and _needs_scratch(view, inputs, cdt):  # out inside x's rows, say
        view = None
    dest = view if view is not None else _memory.empty((rows,) if op == "forward" else (rows, n), cdt)
    if use_parallel(target, x.size, spec, cdt.itemsize):
        few_long = rows < _threads.num_threads() and n > _ROW_SPLIT
        kernel = _cpu.blocks(spec.name, op) if few_long else _cpu.parallel(spec.name, op)
    else:
        kernel = _cpu.rows(spec.name, op)
    kernel(dest, *inputs)
    if view is None:
        if op == "forward":
            _quiet(np.copyto, result, dest.reshape(result.shape), casting="unsafe")
        else:
            res = result.reshape(1) if result.ndim == 0 else result
            last = tuple(range(-len(axes), 0))
            moved_shape = np.moveaxis(res, axes, last).shape
            _quiet(np.copyto, res, np.moveaxis(dest.reshape(moved_shape), last, axes), casting="unsafe")


def _rows_view(a: np.ndarray, axes, rows: int, n: int) -> np.ndarray | None:
    """``a`` with ``axes`` moved last as a C-contiguous (rows, n) view, or None."""
    a = a.reshape(1) if a.ndim == 0 else a
    moved = np.moveaxis(a, axes, tuple(range(-len(axes), 0)))
    try:
        v = np.reshape(moved, (rows, n), copy=False)
    except ValueError:
        return None
    return v if v.flags.c_contiguous else None


class Gated(_Function):
    """A gated unit: ``f(x, axis=)`` over the two halves of ``x`` along ``axis``, and
    ``f.backward(dy, x=, axis=)``.

    See the function's own docstring for its math.
    """

    spec: GatedSpec

    def __call__(self, x, *args, axis=-1, out=None, target=None, stream=None, dim=None, **params):
        func = self.spec.name
        if args:
            self._positional(func, "x", args)
        pvals = self._params(func, params)
        return self._run("forward", func, (("x", x),), axis, out, target, stream, dim, params, pvals)

    def backward(self, dy, *args, x=None, axis=-1, out=None, target=None, stream=None, dim=None, **params):
        """``dy`` (of the result's shape) times the gradient with respect to the forward
        input ``x=``: an array of ``x``'s shape, both halves in one pass."""
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        if "y" in params:
            raise TypeError(f"{func}() takes the forward input x=, not y=: the output does not give the two halves")
        pvals = self._params(func, params)
        if x is None:
            raise TypeError(f"{func}() needs x= (the forward input)")
        return self._run("backward_x", func, (("dy", dy), ("x", x)), axis, out, target, stream, dim, params, pvals)

    def __getattr__(self, name):
        if name == "grad":
            raise AttributeError(
                f"{self.spec.name} has no elementwise derivative (each output depends on two inputs): use "
                f"{self.spec.name}.backward(dy, x=x)"
            )
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _run(self, op, func, named, axis, out, target, stream, dim, params, pvals):
        if target is None:
            target = _config.target()
        lazy_target = _lazy_target(func, named, out, target, stream, dim)
        if lazy_target is not None:
            return _lazy.gated_call(self.spec, op, func, named, lazy_target, axis, dim, params)
        target, named, out, launch = resolve_target(func, target, named, out, stream)
        arrays = [as_input(func, name, value) for name, value in named]
        rdt, cdt = result_dtype(arrays, named)
        x = arrays[-1]
        check_param_range(func, self.spec, pvals, cdt)
        axis, half = gated_halves(func, axis, x.shape)
        shape = half
        if op == "backward_x":
            if not _broadcasts_to(arrays[0].shape, half):
                raise ValueError(
                    f"{func}(): dy must have the shape of the forward result, {half}, or broadcast to it; "
                    f"got {arrays[0].shape}"
                )
            shape = x.shape
        if out is not None:
            dest = check_out(func, out, shape, rdt, distinct=launch is None or launch.device_out is None)
        if launch is not None:
            with np.errstate(all="ignore"):
                return launch.gated(self.spec.name, op, arrays, axis, half, shape, rdt, cdt, pvals, finish)
        result = dest if out is not None else _new_result(arrays[-1:], shape, rdt)
        if result.size == 0:
            return finish(result, out)
        _run_gated(self.spec, op, arrays, axis, half, result, cdt, pvals, target)
        return finish(result, out)


def gated_halves(func: str, axis, shape: tuple) -> tuple[int, tuple]:
    """(the checked axis, the shape of one half) for a gated unit of input ``shape``."""
    if not shape:
        raise ValueError(f"{func}(): x must have at least one dimension (its axis is split in two halves), got a 0-d array")
    axis = _check_axis(func, axis, len(shape))
    n = shape[axis]
    if n % 2:
        raise ValueError(f"{func}(): x's length along axis {axis} must be even (it is split in two halves), got {n}")
    return axis, shape[:axis] + (n // 2,) + shape[axis + 1:]


def gated_layout(shape: tuple, axis: int) -> tuple[int, int]:
    """(outer, m): a C-contiguous input of ``shape`` is an (outer, 2, m) array, its halves
    along ``axis`` at [:, 0] and [:, 1]."""
    return math.prod(shape[:axis]), shape[axis] // 2 * math.prod(shape[axis + 1:])


def _run_gated(spec, op, arrays, axis, half, result, cdt, pvals, target):
    """A gated unit's ``op`` on the host into ``result`` (non-empty), through scratch
    memory where ``result`` is not a C-contiguous array of ``cdt`` or overlaps an input
    other than by being ``x`` itself."""
    x = arrays[-1]
    outer, m = gated_layout(x.shape, axis)
    x3 = np.ascontiguousarray(x, cdt).reshape(outer, 2, m)
    inputs = [x3]
    if op == "backward_x":
        inputs.insert(0, np.ascontiguousarray(broadcast_to(arrays[0], half), cdt).reshape(outer, m))
    kshape = (outer, m) if op == "forward" else (outer, 2, m)
    view = result.reshape(kshape) if result.dtype == cdt and result.flags.c_contiguous else None
    if view is not None and _needs_scratch(view, inputs, cdt):
        view = None
    dest = view if view is not None else _memory.empty(kshape, cdt)
    params = tuple(cdt.type(p) for p in pvals)
    kernel = (_cpu.parallel if use_parallel(target, x.size, spec, cdt.itemsize) else _cpu.rows)(spec.name, op)
    kernel(dest, *inputs, *params)
    if view is None:
        _quiet(np.copyto, result, dest.reshape(result.shape), casting="unsafe")


# --- activations with a weight array ------------------------------------------------------

#: A channel's run of elements at least this long is computed by the ``__chan`` kernels
#: (a loop over the run with its one weight); shorter runs by the ``__pos`` kernels (a loop
#: over a row of positions, each with its weight), which LLVM vectorises either way.
_CHANNEL_RUN = 64
#: The weighted kernels' tasks: blocks of at most this many elements of a channel's run
#: (the weight's gradient summed block by block; at most :data:`fastact._lanes.BLOCK`,
#: the kernels' stack block), and at least this many chunks of rows for runs shorter than
#: ``_CHANNEL_RUN``.  The code generator writes the same constants into the kernels.
#: Fixed, so that the sums' order depends on the shape only.
WEIGHT_BLOCK = 2048
WEIGHT_TASKS = 64
#: Rows of positions shorter than this are taken several at a time as one row.
_SUPER_ROW = 1024


class Weighted(_Function):
    """An activation with a weight array: ``f(x, weight, axis=)``, ``f.grad(x, weight)``
    and ``f.backward(dy, x=, weight=)``, which returns ``(dx, dweight)``.

    See the function's own docstring for its math.
    """

    spec: WeightedSpec

    def __call__(self, x, weight=None, *args, axis=1, out=None, target=None, stream=None, dim=None, **params):
        return self._forward("forward", self.spec.name, x, weight, args, axis, out, target, stream, dim, params)

    def grad(self, x, weight=None, *args, axis=1, out=None, target=None, stream=None, dim=None, **params):
        """Elementwise derivative ``df/dx`` for the given weight, with the function's
        parameters and its convention at the kink."""
        return self._forward("grad", f"{self.spec.name}.grad", x, weight, args, axis, out, target, stream, dim, params)

    def grad2(self, x, weight=None, *args, axis=1, out=None, target=None, stream=None, dim=None, **params):
        """Elementwise second derivative ``d2f/dx2`` for the given weight."""
        if self.spec.d2fdx2 is None:
            raise AttributeError(f"{self.spec.name} declares no second derivative")
        return self._forward("grad2", f"{self.spec.name}.grad2", x, weight, args, axis, out, target, stream, dim,
                             params)

    def backward(self, dy, *args, x=None, y=None, weight=None, axis=1, out=None, target=None, stream=None, dim=None,
                 **params):
        """``(dx, dweight)``: ``dy`` times the derivative with respect to the forward input
        ``x=``, and the gradient of ``weight=`` (``weight``'s shape: each channel's sum),
        in one pass.  ``out=(dx_out, dweight_out)`` writes either or both (None for a new
        array)."""
        func = f"{self.spec.name}.backward"
        if args:
            _backward_positional(func, args)
        if y is not None:
            raise TypeError(f"{func}() takes the forward input x=, not y=: the weight's gradient needs the input")
        if x is None:
            raise TypeError(f"{func}() needs x= (the forward input)")
        if weight is None:
            raise TypeError(f"{func}() needs weight= (the forward weight)")
        pvals = self._params(func, params)
        if out is None:
            out = (None, None)
        elif not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(
                f"{func}(): out must be a pair (dx_out, dweight_out), either of them None, got {type(out).__name__}"
            )
        return run_weighted(self.spec, "backward_xw", func, (("dy", dy), ("x", x), ("weight", weight)), axis, out,
                            target, stream, dim, params, pvals)

    def _forward(self, op, func, x, weight, args, axis, out, target, stream, dim, params):
        if args:
            raise TypeError(
                f"{func}() takes 2 positional arguments (x, weight) but {2 + len(args)} were given; pass the others "
                "by keyword (" + ", ".join(k + "=" for k in ("axis", "out", "target", "stream",
                                                               *self.spec.param_names)) + ")"
            )
        if weight is None:
            raise TypeError(f"{func}() missing its weight: {func}(x, weight), one value per channel or one for all")
        pvals = self._params(func, params)
        return run_weighted(self.spec, op, func, (("x", x), ("weight", weight)), axis, out, target, stream, dim,
                            params, pvals)


def weight_layout(func: str, wshape: tuple, xshape: tuple, axis) -> tuple[int, int, int]:
    """(outer, C, inner): the (outer, channels, inner) view of a C-ordered ``x`` for one
    weight per channel along ``axis`` (C = 1: one weight for every element), or a
    ``ValueError``/``TypeError`` that says what the weight must be."""
    n = math.prod(xshape)
    if len(wshape) > 1:
        raise ValueError(
            f"{func}(): weight must be 1-d (one value per channel along axis) or a scalar, got shape {wshape}"
        )
    channels = wshape[0] if wshape else 1
    if channels == 1:
        return 1, 1, n
    if type(axis) is bool or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"{func}(): axis must be an int, got {type(axis).__name__} {axis!r}")
    if not xshape:
        raise ValueError(f"{func}(): x is 0-d, so it has no channels for the {channels} values of weight; "
                         "pass one weight for all, or x with a channel axis")
    axis = _check_axis(func, int(axis), len(xshape))
    if xshape[axis] != channels:
        raise ValueError(
            f"{func}(): weight has {channels} values, but x has {xshape[axis]} channels along axis {axis} "
            f"(x's shape {xshape}); pass one weight per channel, or one for all"
        )
    return math.prod(xshape[:axis]), channels, math.prod(xshape[axis + 1:])


def run_weighted(spec, op, func, named, axis, out, target, stream, dim, params, pvals, per_element=False):
    """An activation with a weight array: ``op`` of declaration ``spec`` on ``named``
    (``dy`` for the backward passes, ``x``, and last the weight), the weight laid out as
    :func:`weight_layout` says, or with ``per_element`` one weight per element of ``x``
    (``rrelu``'s slopes).  ``backward_xw`` takes and gives the pair (dx, dweight)."""
    if target is None:
        target = _config.target()
    two = op == "backward_xw"
    out_x, out_w = out if two else (out, None)
    lazy_target = _lazy_target(func, named, out_x if out_x is not None else out_w, target, stream, dim)
    if lazy_target is not None:
        return _lazy.weighted_call(spec, op, func, named, lazy_target, axis, dim, params, per_element)
    target, named, out_x, launch = resolve_target(func, target, named, out_x, stream)
    arrays = [as_input(func, name, value) for name, value in named]
    rdt, cdt = result_dtype(arrays, named)
    check_param_range(func, spec, pvals, cdt)
    x, w = arrays[-2], arrays[-1]
    if per_element:
        if not _broadcasts_to(w.shape, x.shape):
            raise ValueError(f"{func}(): slopes must have x's shape {x.shape} (one per element), got {w.shape}")
        layout = None
    else:
        layout = weight_layout(func, w.shape, x.shape, axis)
    if op in ("backward_x", "backward_xw") and not _broadcasts_to(arrays[0].shape, x.shape):
        raise ValueError(f"{func}(): dy must have x's shape {x.shape}, or broadcast to it; got {arrays[0].shape}")
    shape = x.shape
    if out_x is not None:
        dest = check_out(func, out_x, shape, rdt, distinct=launch is None or launch.device_out is None)
    if out_w is not None:
        if launch is not None and _cuda.is_device_array(out_w):
            raise TypeError(f"{func}(): out's dweight must be a host array (the weight's gradient is copied back)")
        dest_w = check_out(func, out_w, w.shape, rdt)
        if out_x is not None and np.may_share_memory(dest_w, dest):
            raise ValueError(f"{func}(): the two arrays of out share memory")
    if launch is not None:
        with np.errstate(all="ignore"):
            result = launch.weighted(spec.name, op, arrays, layout, rdt, cdt, pvals, finish)
        if not two:
            return result
        dx, dw = result
        if out_w is None:  # in the result's dtype already, on the device where an operand is
            return dx, (finish(dw, None) if isinstance(dw, np.ndarray) else dw)
        if not isinstance(dw, np.ndarray):
            dw = dw.copy_to_host()
    else:
        dx = dest if out_x is not None else _new_result(arrays[-2:-1], shape, rdt)
        dw = np.zeros(w.shape, np.float64) if two else None
        if dx.size:
            _run_weighted(spec, op, arrays, layout, dx, dw, cdt, pvals, target)
        dx = finish(dx, out_x)
        if not two:
            return dx
    if out_w is None:  # a sum beyond the result dtype's range is inf, silently
        return dx, finish(_quiet(np.asarray(dw).astype, rdt, copy=False), None)
    _quiet(np.copyto, dest_w, dw, casting="unsafe")
    return dx, out_w


def _run_weighted(spec, op, arrays, layout, result, dw, cdt, pvals, target):
    """The kernels of :func:`_codegen._weighted` on the host, into ``result`` (non-empty)
    and, for ``backward_xw``, the float64 ``dw`` (the weight's shape), through scratch
    memory where ``result`` is not a C-contiguous array of ``cdt`` or overlaps an input
    other than by being it."""
    x, w = arrays[-2], arrays[-1]
    n = x.size
    if layout is None:  # one weight per element
        outer, channels, inner = 1, n, 1
        wk = np.ascontiguousarray(broadcast_to(w, x.shape), cdt).reshape(n)
    else:
        outer, channels, inner = layout
        wk = np.ascontiguousarray(w, cdt).reshape(channels)
    chan = channels == 1 or inner >= _CHANNEL_RUN
    kshape = (outer, channels, inner) if chan else (outer, channels * inner)
    if not chan and inner > 1:
        wk = np.repeat(wk, inner)
    inputs = [np.ascontiguousarray(x, cdt).reshape(kshape)]
    if len(arrays) == 3:
        inputs.insert(0, np.ascontiguousarray(broadcast_to(arrays[0], x.shape), cdt).reshape(kshape))
    view = result.reshape(kshape) if result.dtype == cdt and result.flags.c_contiguous else None
    if view is not None and _needs_scratch(view, inputs, cdt):
        view = None
    dest = view if view is not None else _memory.empty(kshape, cdt)
    if np.may_share_memory(wk, dest):  # a weight inside the result: read from a copy
        wk = wk.copy()
    params = tuple(cdt.type(p) for p in pvals)
    kernel = _cpu.weighted(spec.name, op, "chan" if chan else "pos", use_parallel(target, n, spec, cdt.itemsize))
    if chan and op != "backward_xw":
        kernel(dest, *inputs, wk, *params)
    elif chan:
        nb = -(-inner // WEIGHT_BLOCK)
        part = np.empty((outer, channels, nb))
        kernel(dest, *inputs, wk, *params, part)
        _cpu.sum_parts(part, dw.reshape(-1))
    else:
        # Short rows of positions: ``m`` of them side by side as one row (the weight
        # repeated m times), so that each loop is long enough to vectorise and pays its
        # overhead once per m rows; the rows left over, as they are.
        k = channels * inner
        m = max(1, _SUPER_ROW // k)
        main = outer // m * m
        for lo, rows, period in ((0, main, m * k), (main, outer - main, k)):
            if rows == 0:
                continue
            shape2 = (rows * k // period, period)
            ins = [a[lo:lo + rows].reshape(shape2) for a in inputs]
            wp = np.tile(wk, period // k)
            if op != "backward_xw":
                kernel(dest[lo:lo + rows].reshape(shape2), *ins, wp, *params)
                continue
            nq = -(-period // WEIGHT_BLOCK)
            nr = min(shape2[0], max(1, -(-WEIGHT_TASKS // nq)))
            cols, comp = np.zeros((nr, period)), np.zeros((nr, period))
            kernel(dest[lo:lo + rows].reshape(shape2), *ins, wp, *params, cols, comp)
            part = np.empty(channels)
            _cpu.sum_columns(cols, comp, inner, k, part)
            with np.errstate(all="ignore"):  # inf + -inf: NaN, silently, as in the kernels
                dw.reshape(-1)[...] += part  # the rows side by side, then the rows left over
    if view is None:
        _quiet(np.copyto, result, dest.reshape(result.shape), casting="unsafe")
