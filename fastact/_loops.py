"""NumPy ufunc inner loops compiled as cached Numba ``cfunc``\\ s, and ufuncs made of them.

``numba.vectorize`` would build the ``cpu`` target's ufuncs for us, but in every new
process it compiles each loop's wrapper again with LLVM (it has no disk cache) and
installs a ``DUFunc`` with typing templates for every ufunc method: about 100 ms for
each kernel's first call even when the kernel itself is cached.  A ``cfunc`` with
``cache=True`` is loaded from the disk cache whole, in 2-3 ms.  So the code generator
writes each kernel's inner loop out as plain Python over NumPy's loop arguments (the
``char **args, npy_intp *dimensions, npy_intp *steps, void *data`` of a
``PyUFuncGenericFunction``), :func:`loop` compiles it on first use, and :func:`ufunc`
assembles a :class:`numpy.ufunc` from the loops' addresses, as ``numba.vectorize`` does
internally.

Each generated loop has two paths: contiguous operands (and scalar parameters), read
through array views so that LLVM vectorises the loop, and any strides, read element by
element with :func:`load` and written with :func:`store`.

The generated kernels' loops also use :func:`same` (whether ``out`` is an input: the
in-place version of a loop, which LLVM vectorises) and :func:`row` and :func:`window`
(rows and blocks of rows as views that hold no reference: no reference counting).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.extending import intrinsic

__all__ = ["SIGNATURE", "loop", "ufunc", "load", "store", "contiguous", "same", "row", "window"]

#: ``void (char **args, npy_intp const *dimensions, npy_intp const *steps, void *data)``
SIGNATURE = types.void(types.CPointer(types.CPointer(types.int8)), types.CPointer(types.intp),
                       types.CPointer(types.intp), types.voidptr)


def _element_type(dtype_ref):
    if isinstance(dtype_ref, types.NumberClass):
        return dtype_ref.instance_type
    if isinstance(dtype_ref, types.DType):
        return dtype_ref.dtype
    return None


@intrinsic
def _at(typingctx, base, offset, dtype_ref):
    """A pointer to the element of type ``dtype_ref`` at ``base + offset`` bytes."""
    dt = _element_type(dtype_ref)
    if dt is None or not isinstance(offset, types.Integer):
        return None
    sig = types.CPointer(dt)(base, offset, dtype_ref)

    def codegen(context, builder, sig, args):
        p = builder.gep(args[0], [args[1]])
        return builder.bitcast(p, ir.PointerType(context.get_data_type(sig.return_type.dtype)))

    return sig, codegen


@njit(inline="always")
def load(base, offset, dtype):
    """The element of ``dtype`` at ``base + offset`` bytes."""
    return _at(base, offset, dtype)[0]


@njit(inline="always")
def store(base, offset, dtype, value):
    """Write ``value`` as an element of ``dtype`` at ``base + offset`` bytes."""
    _at(base, offset, dtype)[0] = value


@njit(inline="always")
def contiguous(base, n, dtype):
    """The ``n`` contiguous elements of ``dtype`` at ``base``, as a 1-d array."""
    return carray(_at(base, 0, dtype), (n,))


@intrinsic
def same(typingctx, a, b):
    """Whether the arrays ``a`` and ``b`` are one (the same first element and strides): a
    kernel called in place.  The generated loops then read the input through the output's
    name: with two names for one array, LLVM's run-time overlap check fails and the loop
    runs one element at a time, 5 to 12 times slower than vectorised.  An intrinsic, so
    that it costs a few instructions: a jitted function taking the arrays would count
    references to them (atomic operations, 20 ns a call)."""
    if not (isinstance(a, types.Array) and isinstance(b, types.Array) and a.ndim == b.ndim):
        return None

    def codegen(context, builder, sig, args):
        x, y = (context.make_array(t)(context, builder, v) for t, v in zip(sig.args, args, strict=True))
        intp = context.get_value_type(types.intp)
        equal = builder.icmp_unsigned("==", builder.ptrtoint(x.data, intp), builder.ptrtoint(y.data, intp))
        for k in range(sig.args[0].ndim):
            sx, sy = builder.extract_value(x.strides, k), builder.extract_value(y.strides, k)
            equal = builder.and_(equal, builder.icmp_signed("==", sx, sy))
        return equal

    return types.boolean(a, b), codegen


def _borrowed(context, builder, aryty, resty, data, shape, strides):
    """An array of type ``resty`` over ``data`` that holds no reference to its memory (no
    meminfo): a view the caller's array keeps alive, which costs no reference counting."""
    out = context.make_array(resty)(context, builder)
    itemsize = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(aryty.dtype)))
    context.populate_array(out, data=data, shape=shape, strides=strides, itemsize=itemsize, meminfo=None)
    return out._getvalue()


@intrinsic
def row(typingctx, a, i):
    """``a[i]`` of a 2-d array ``a`` (``0 <= i < a.shape[0]``, unchecked), as a view that
    holds no reference (see :func:`window`)."""
    if not (isinstance(a, types.Array) and a.ndim == 2 and isinstance(i, types.Integer)):
        return None
    resty = types.Array(a.dtype, 1, "C" if a.layout == "C" else "A")

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        stride0 = builder.extract_value(ary.strides, 0)
        base = builder.bitcast(ary.data, ir.IntType(8).as_pointer())
        data = builder.bitcast(builder.gep(base, [builder.mul(index, stride0)]), ary.data.type)
        return _borrowed(context, builder, aryty, resty, data, [builder.extract_value(ary.shape, 1)],
                         [builder.extract_value(ary.strides, 1)])

    return resty(a, i), codegen


@intrinsic
def window(typingctx, a, start, stop):
    """``a[start:stop]`` of a 1-d array ``a`` (``0 <= start <= stop <= len(a)``,
    unchecked), as a view that holds no reference to ``a``'s memory.  Numba counts the
    references of each view it makes, with atomic operations, and in a row kernel's loops
    it does not always pair them away: 20 to 40 ns a row, as much as the arithmetic of a
    row of 32."""
    if not (isinstance(a, types.Array) and a.ndim == 1 and isinstance(start, types.Integer)
            and isinstance(stop, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        lo = context.cast(builder, args[1], sig.args[1], types.intp)
        hi = context.cast(builder, args[2], sig.args[2], types.intp)
        stride = builder.extract_value(ary.strides, 0)
        base = builder.bitcast(ary.data, ir.IntType(8).as_pointer())
        data = builder.bitcast(builder.gep(base, [builder.mul(lo, stride)]), ary.data.type)
        return _borrowed(context, builder, aryty, aryty, data, [builder.sub(hi, lo)], [stride])

    return a(a, start, stop), codegen


def loop(fn, cache: bool = True, adapt_cache=None):
    """The compiled (or cached) loop ``fn``: a ``numba.cfunc`` of :data:`SIGNATURE`.
    ``adapt_cache(cache)`` may wrap the Numba cache object before it is first used."""
    from numba.core import sigutils
    from numba.core.ccallback import CFunc

    compiled = CFunc(fn, sigutils.normalize_signature(SIGNATURE), locals={},
                     options={"nogil": True, "error_model": "numpy"})
    if cache:
        compiled.enable_caching()
        if adapt_cache is not None:
            adapt_cache(compiled._cache)
    compiled.compile()
    return compiled


def ufunc(name: str, doc: str, loops, dtypes, nin: int) -> np.ufunc:
    """A NumPy ufunc with ``nin`` inputs and one output, whose loop for operands all of
    ``dtypes[k]`` is the compiled ``loops[k]``.  The ufunc keeps the loops alive."""
    from numba.np.ufunc import _internal

    ptrs = [int(lp.address) for lp in loops]
    types_ = [[np.dtype(t).num] * (nin + 1) for t in dtypes]
    return _internal.fromfunc(name, doc, ptrs, types_, nin, 1, [None] * len(ptrs), list(loops), -1)


def _python_versions():
    """``same``, ``row`` and ``window`` in plain Python (under ``NUMBA_DISABLE_JIT=1``,
    where an intrinsic cannot run): NumPy's own views."""
    from fastact._memory import same_view as same

    def row(a, i):
        return a[i]

    def window(a, start, stop):
        return a[start:stop]

    return same, row, window


def jit_disabled() -> bool:
    """Whether Numba runs everything as plain Python (``NUMBA_DISABLE_JIT=1``): the
    intrinsics here and in :mod:`fastact._lanes` then have plain-Python stand-ins."""
    from numba.core import config

    return bool(config.DISABLE_JIT)


if jit_disabled():
    same, row, window = _python_versions()
