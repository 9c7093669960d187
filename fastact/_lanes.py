"""Vectorised row reductions in a fixed, documented order: ``lane_sum``, ``lane_dot``,
``lane_max`` and ``lane_min``; and ``stack_block``, a row block's scratch on the stack.

A sum in IEEE arithmetic depends on its order, and LLVM keeps a loop's order unless told
it may reassociate (``fastmath``), in which case the order becomes whatever vector width
and interleave its cost model picks.  fastact's row reductions (softmax's row sum and its
backward's) must vectorise *and* give the same bits on every target and thread count, so
the order is written out here, as LLVM IR:

* element ``j`` of ``a[start:stop]`` goes into lane ``(j - start) % 16`` of a vector of 16
  partial results, in increasing ``j`` (a sum in float64, a maximum in the element type);
* the 16 lanes are then combined pairwise: ``((l0 + l1) + (l2 + l3)) + ...``;
* sums of float64 elements (``lane_sum`` of a float64 array, ``lane_dot`` of two) carry
  a compensation term in each lane: every addition is a TwoSum whose rounding error goes
  into the lane's term, the pairwise steps add the terms and the new rounding error, and
  the result is the sum plus its term.  A float64 row of ``n`` elements would otherwise
  keep up to ``n / 16`` roundings (11 ULP at rows of 1000, in softmax); float32 elements
  are summed in float64 already, with room to spare.

Contiguous arrays are read 16 elements at a time (one vector load and one vector
operation); any other stride, and the last ``(stop - start) % 16`` elements, go into
their lanes one at a time, which gives the same result.  The maximum ignores NaN (a NaN
element makes its row NaN through the row's other reductions); its order cannot change
its value, and lanes only let it vectorise.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["lane_sum", "lane_dot", "lane_max", "lane_min", "stack_block", "LANES", "BLOCK"]

#: The number of partial results.
LANES = 16
#: The elements of a row block: the row kernels reduce a row in blocks of this many, each
#: summed while in cache (``fastact._codegen.ROW_BLOCK``), and ``stack_block`` holds one.
BLOCK = 2048


def _two_sum(builder, s, c, v):
    """``(s + v, c + the rounding error of s + v)``: Knuth's TwoSum, branch-free, on floats
    or vectors of them."""
    t = builder.fadd(s, v)
    bp = builder.fsub(t, s)
    err = builder.fadd(builder.fsub(s, builder.fsub(t, bp)), builder.fsub(v, bp))
    return t, builder.fadd(c, err)


def _compensated_sum(context, builder, arrays, start, stop, element):
    """The lane-blocked sum with a compensation term in each lane (TwoSum per element,
    then per pairwise step): ``sum + compensation`` at the end, the sum's rounding errors
    added back (the plain sum where the compensation is not finite: an inf or NaN term).  For float64 rows, whose sum an uncompensated order would leave ``n/16``
    ULP off at worst."""
    vec = ir.VectorType(ir.DoubleType(), LANES)
    comp = cgutils.alloca_once_value(builder, ir.Constant(vec, [0.0] * LANES))

    def combine(acc, v):
        t, c = _two_sum(builder, acc, builder.load(comp), v)
        builder.store(c, comp)
        return t

    def scalar_combine(acc, v, lane):
        cur = builder.load(comp)
        t, c = _two_sum(builder, acc, builder.extract_element(cur, lane), v)
        builder.store(builder.insert_element(cur, c, lane), comp)
        return t

    s = _reduction(context, builder, arrays, start, stop, ir.DoubleType(), 0.0, combine, element,
                   scalar_combine=scalar_combine, pairwise=False)
    c = builder.load(comp)
    for width in _WIDTHS:
        (s0, s1), (c0, c1) = _halves(builder, s, width), _halves(builder, c, width)
        s, c = _two_sum(builder, s0, builder.fadd(c0, c1), s1)
    zero = ir.Constant(ir.IntType(32), 0)
    s, c = builder.extract_element(s, zero), builder.extract_element(c, zero)
    # An infinite or NaN term makes the compensation NaN: the plain sum is the answer then.
    inf = ir.Constant(ir.DoubleType(), float("inf"))
    finite = builder.and_(builder.fcmp_ordered("<", c, inf), builder.fcmp_ordered(">", c, builder.fneg(inf)))
    return builder.select(finite, builder.fadd(s, c), s)


def _reduction(context, builder, arrays, start, stop, acc_type, initial, combine, element, scalar_combine=None,
               pairwise=True):
    """LLVM IR for the lane-blocked reduction over ``[start, stop)`` of 1-d ``arrays``
    (``(type, value)`` pairs): ``element(vals, ty)`` maps the arrays' elements (or vectors
    of them) to the accumulator's type ``ty``, ``combine(acc, v)`` folds that in (and
    ``scalar_combine(acc, v, lane)`` one element into its lane, where given).  Returns the
    lanes combined pairwise, or with ``pairwise=False`` the vector of lanes."""
    i64 = ir.IntType(64)
    vec = ir.VectorType(acc_type, LANES)
    views = []
    for aty, value in arrays:
        arr = context.make_array(aty)(context, builder, value)
        elem = context.get_data_type(aty.dtype)
        views.append((arr, elem, builder.extract_value(arr.strides, 0), context.get_abi_sizeof(elem)))

    acc = cgutils.alloca_once_value(builder, ir.Constant(vec, [initial] * LANES))
    j = cgutils.alloca_once_value(builder, start)
    full = builder.sub(stop, builder.srem(builder.sub(stop, start), ir.Constant(i64, LANES)))

    # LANES at a time where every array's elements are contiguous.
    contiguous = ir.Constant(ir.IntType(1), 1)
    for _, _, stride, size in views:
        contiguous = builder.and_(contiguous, builder.icmp_signed("==", stride, ir.Constant(i64, size)))
    with builder.if_then(contiguous):
        with cgutils.for_range_slice(builder, start, full, ir.Constant(i64, LANES)) as (index, _):
            vals = []
            for arr, elem, _, _ in views:
                ptr = builder.gep(builder.bitcast(arr.data, elem.as_pointer()), [index])
                vals.append(builder.load(builder.bitcast(ptr, ir.VectorType(elem, LANES).as_pointer()), align=1))
            builder.store(combine(builder.load(acc), element(vals, vec)), acc)
        builder.store(full, j)

    # The rest (all of it where strided) one element at a time, each into its lane.
    with cgutils.for_range_slice(builder, builder.load(j), stop, ir.Constant(i64, 1)) as (index, _):
        lane = builder.srem(builder.sub(index, start), ir.Constant(i64, LANES))
        vals = []
        for arr, elem, stride, _ in views:
            base = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
            ptr = builder.bitcast(builder.gep(base, [builder.mul(index, stride)]), elem.as_pointer())
            vals.append(builder.load(ptr))
        cur = builder.load(acc)
        if scalar_combine is None:
            value = combine(builder.extract_element(cur, lane), element(vals, acc_type))
        else:
            value = scalar_combine(builder.extract_element(cur, lane), element(vals, acc_type), lane)
        builder.store(builder.insert_element(cur, value, lane), acc)

    # Pairwise: adjacent lanes first.
    v = builder.load(acc)
    if not pairwise:
        return v
    for width in _WIDTHS:
        v = combine(*_halves(builder, v, width))
    return builder.extract_element(v, ir.Constant(ir.IntType(32), 0))


#: The widths of the pairwise steps: 16 lanes, then 8, 4, 2.
_WIDTHS = tuple(LANES >> k for k in range(LANES.bit_length() - 1))


def _halves(builder, v, width):
    """(even lanes, odd lanes) of the first ``width`` lanes of ``v``: adjacent lanes paired."""
    pick = [ir.Constant(ir.VectorType(ir.IntType(32), width // 2), list(range(k, width, 2))) for k in (0, 1)]
    return builder.shuffle_vector(v, v, pick[0]), builder.shuffle_vector(v, v, pick[1])


def _typed(*arrays_then_bounds):
    *arrays, start, stop = arrays_then_bounds
    return (all(isinstance(a, types.Array) and a.ndim == 1 and isinstance(a.dtype, types.Float) for a in arrays)
            and isinstance(start, types.Integer) and isinstance(stop, types.Integer))


def _bounds(context, builder, sig, args):
    return (context.cast(builder, args[-2], sig.args[-2], types.int64),
            context.cast(builder, args[-1], sig.args[-1], types.int64))


def _widen(builder, v, ty):
    """``v`` (a float or a vector of them) converted to the float type ``ty``'s element."""
    return v if v.type == ty else builder.fpext(v, ty)


@intrinsic
def lane_sum(typingctx, a, start, stop):
    """``sum(a[start:stop])`` in float64, in the order described in the module."""
    if not _typed(a, start, stop):
        return None

    def codegen(context, builder, sig, args):
        arrays, bounds = [(sig.args[0], args[0])], _bounds(context, builder, sig, args)

        def element(vals, ty):
            return _widen(builder, vals[0], ty)

        if sig.args[0].dtype == types.float64:
            return _compensated_sum(context, builder, arrays, *bounds, element)
        return _reduction(context, builder, arrays, *bounds, ir.DoubleType(), 0.0, builder.fadd, element)

    return types.float64(a, start, stop), codegen


@intrinsic
def lane_dot(typingctx, a, b, start, stop):
    """``sum(a[j] * b[j] for j in range(start, stop))``, each product and the sum in
    float64, in the order described in the module."""
    if not _typed(a, b, start, stop):
        return None

    def codegen(context, builder, sig, args):
        def product(vals, ty):
            return builder.fmul(_widen(builder, vals[0], ty), _widen(builder, vals[1], ty))

        arrays, bounds = [(sig.args[0], args[0]), (sig.args[1], args[1])], _bounds(context, builder, sig, args)
        if sig.args[0].dtype == types.float64 and sig.args[1].dtype == types.float64:
            return _compensated_sum(context, builder, arrays, *bounds, product)
        return _reduction(context, builder, arrays, *bounds, ir.DoubleType(), 0.0, builder.fadd, product)

    return types.float64(a, b, start, stop), codegen


def _extreme(a, start, stop, comparison, initial):
    """The lane-blocked maximum (``comparison`` ``">"``) or minimum (``"<"``) of
    ``a[start:stop]``, NaN ignored (``initial`` where there is nothing else)."""
    if not _typed(a, start, stop):
        return None

    def codegen(context, builder, sig, args):
        def combine(acc, v):
            return builder.select(builder.fcmp_ordered(comparison, v, acc), v, acc)

        return _reduction(context, builder, [(sig.args[0], args[0])], *_bounds(context, builder, sig, args),
                          context.get_data_type(sig.args[0].dtype), initial, combine, lambda vals, ty: vals[0])

    return a.dtype(a, start, stop), codegen


@intrinsic
def lane_max(typingctx, a, start, stop):
    """``max(a[start:stop])`` ignoring NaN (``-inf`` where there is nothing else), in the
    element type."""
    return _extreme(a, start, stop, ">", float("-inf"))


@intrinsic
def lane_min(typingctx, a, start, stop):
    """``min(a[start:stop])`` ignoring NaN (``inf`` where there is nothing else)."""
    return _extreme(a, start, stop, "<", float("inf"))


@intrinsic
def stack_block(typingctx, like):
    """A 1-d array of :data:`BLOCK` elements of ``like``'s dtype, on the stack of the
    calling function (uninitialised): where a row kernel keeps a block's terms when it may
    not write them into ``out`` (``out`` may be ``x``, which it still needs)."""
    if not (isinstance(like, types.Array) and isinstance(like.dtype, types.Float)):
        return None
    arrty = types.Array(like.dtype, 1, "C")

    def codegen(context, builder, sig, args):
        elem = context.get_data_type(like.dtype)
        itemsize = context.get_abi_sizeof(elem)
        i64 = ir.IntType(64)
        ptr = cgutils.alloca_once(builder, elem, size=ir.Constant(i64, BLOCK))
        ary = context.make_array(arrty)(context, builder)
        context.populate_array(ary, data=ptr, shape=[ir.Constant(i64, BLOCK)], strides=[ir.Constant(i64, itemsize)],
                               itemsize=ir.Constant(i64, itemsize), meminfo=None)
        return ary._getvalue()

    return arrty(like), codegen


def _python_reduction(values, initial, combine):
    lanes = [initial] * LANES
    for k, v in enumerate(values):
        lanes[k % LANES] = combine(lanes[k % LANES], v)
    while len(lanes) > 1:
        lanes = [combine(lanes[k], lanes[k + 1]) for k in range(0, len(lanes), 2)]
    return lanes[0]


def _python_two_sum(s, c, v):
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


def _python_compensated(values):
    """:func:`_compensated_sum` in plain Python, in the same order."""
    sums, comps = [0.0] * LANES, [0.0] * LANES
    for k, v in enumerate(values):
        sums[k % LANES], comps[k % LANES] = _python_two_sum(sums[k % LANES], comps[k % LANES], v)
    while len(sums) > 1:
        pairs = [_python_two_sum(sums[k], comps[k] + comps[k + 1], sums[k + 1]) for k in range(0, len(sums), 2)]
        sums, comps = [p[0] for p in pairs], [p[1] for p in pairs]
    return sums[0] + comps[0] if -math.inf < comps[0] < math.inf else sums[0]


def _python_versions():
    """The three in plain Python, in the same order (under ``NUMBA_DISABLE_JIT=1``,
    where an intrinsic cannot run)."""
    import numpy as np

    def lane_sum(a, start, stop):
        values = (float(v) for v in a[start:stop])
        if a.dtype == np.float64:
            return _python_compensated(values)
        return _python_reduction(values, 0.0, lambda s, v: s + v)

    def lane_dot(a, b, start, stop):
        values = (float(u) * float(v) for u, v in zip(a[start:stop], b[start:stop], strict=True))
        if a.dtype == np.float64 and b.dtype == np.float64:
            return _python_compensated(values)
        return _python_reduction(values, 0.0, lambda s, v: s + v)

    def lane_max(a, start, stop):
        m = _python_reduction(a[start:stop], a.dtype.type(-np.inf), lambda s, v: v if v > s else s)
        return a.dtype.type(m)

    def lane_min(a, start, stop):
        m = _python_reduction(a[start:stop], a.dtype.type(np.inf), lambda s, v: v if v < s else s)
        return a.dtype.type(m)

    def stack_block(like):
        return np.empty(BLOCK, like.dtype)

    return lane_sum, lane_dot, lane_max, lane_min, stack_block


def _jit_disabled() -> bool:
    from numba.core import config

    return bool(config.DISABLE_JIT)


if _jit_disabled():
    lane_sum, lane_dot, lane_max, lane_min, stack_block = _python_versions()
