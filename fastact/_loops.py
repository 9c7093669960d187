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
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.extending import intrinsic

__all__ = ["SIGNATURE", "loop", "ufunc", "load", "store", "contiguous"]

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
