"""Vectorised row reductions in a fixed, documented order: ``lane_sum``, ``lane_dot``,
``lane_max`` and ``lane_min``; and ``stack_block``, a row block's scratch on the stack.

A sum in IEEE arithmetic depends on its order, and LLVM keeps a loop's order unless told
it may reassociate (``fastmath``), in which case the order becomes whatever vector width
and interleave its cost model picks.  fastact's row reductions (softmax's row sum and its
backward's) must vectorise *and* give the same bits on every target and thread count, so
the order is written out here, as LLVM IR:

* element ``j`` of ``a[start:stop]`` goes into lane ``(j - start) % 64`` of 64 partial
  results, in increasing ``j`` (a sum in float64, a maximum in the element type); the 64
  are four vectors of 16 lanes, four independent chains of additions, so that the loop
  runs at the rate of the loads rather than of one addition's latency;
* the four vectors are then combined lane by lane, ``(v0 + v1) + (v2 + v3)``, and their
  16 lanes pairwise: ``((l0 + l1) + (l2 + l3)) + ...``;
* sums of float64 elements (``lane_sum`` of a float64 array, ``lane_dot`` of two) carry
  a compensation term in each lane: every addition is a TwoSum whose rounding error goes
  into the lane's term, the pairwise steps add the terms and the new rounding error, and
  the result is the sum plus its term.  A float64 row of ``n`` elements would otherwise
  keep up to ``n / 64`` roundings per lane (11 ULP at rows of 1000, in softmax, with 16
  lanes); float32 elements are summed in float64 already, with room to spare.

Contiguous arrays are read 64 elements at a time (four vector loads and operations), and
the last ``(stop - start) % 64`` by masked vector loads into the lanes they belong to (the
other lanes take the reduction's identity, 0 or -inf, which changes nothing): short rows
cost a few vector operations, not an element at a time.  Any other stride goes into the
lanes one element at a time, which gives the same result.  The maximum ignores NaN (a
NaN element makes its row NaN through the row's other reductions); its order changes at
most the sign of a zero maximum, and lanes only let it vectorise.
"""

from __future__ import annotations

import math

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from fastact._loops import jit_disabled

__all__ = ["lane_sum", "lane_dot", "lane_max", "lane_min", "stack_block", "LANES", "BLOCK"]

#: The width of a partial result's vector, and how many such vectors a reduction keeps.
LANES, ACCUMULATORS = 16, 4
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


class _Sum:
    """A reduction's arithmetic on its state (a tuple of floats, or of vectors of them):
    ``fold`` an element in, ``merge`` two states, the ``result`` of the final state."""

    def __init__(self, builder):
        self.b = builder

    initial = (0.0,)

    def fold(self, state, v):
        return (self.b.fadd(state[0], v),)

    def merge(self, a, b):
        return self.fold(a, b[0])

    def result(self, state):
        return state[0]


class _CompensatedSum(_Sum):
    """The sum with a compensation term (TwoSum per element and per merge); the result is
    ``sum + compensation``, or the plain sum where the compensation is not finite (an inf
    or NaN term).  For float64 rows, whose sum an uncompensated order would leave ``n/16``
    ULP off at worst."""

    initial = (0.0, 0.0)

    def fold(self, state, v):
        return _two_sum(self.b, state[0], state[1], v)

    def merge(self, a, b):
        return _two_sum(self.b, a[0], self.b.fadd(a[1], b[1]), b[0])

    def result(self, state):
        s, c = state
        inf = ir.Constant(ir.DoubleType(), float("inf"))
        finite = self.b.and_(self.b.fcmp_ordered("<", c, inf), self.b.fcmp_ordered(">", c, self.b.fneg(inf)))
        return self.b.select(finite, self.b.fadd(s, c), s)


class _Extreme(_Sum):
    """The maximum (``comparison`` ``">"``) or minimum (``"<"``), NaN ignored."""

    def __init__(self, builder, comparison):
        super().__init__(builder)
        self.comparison = comparison
        self.initial = (float("-inf") if comparison == ">" else float("inf"),)

    def fold(self, state, v):
        return (self.b.select(self.b.fcmp_ordered(self.comparison, v, state[0]), v, state[0]),)


def _reduction(context, builder, arrays, start, stop, acc_type, kind, element):
    """LLVM IR for the lane-blocked reduction over ``[start, stop)`` of 1-d ``arrays``
    (``(type, value)`` pairs) in the order of the module's description: ``element(vals,
    ty)`` maps the arrays' elements (or vectors of them) to the accumulator's type ``ty``,
    ``kind`` (a :class:`_Sum` or kin) folds them into the lanes and combines those."""
    i64, i32 = ir.IntType(64), ir.IntType(32)
    vec = ir.VectorType(acc_type, LANES)
    span = LANES * ACCUMULATORS
    views = []
    for aty, value in arrays:
        arr = context.make_array(aty)(context, builder, value)
        elem = context.get_data_type(aty.dtype)
        views.append((arr, elem, builder.extract_value(arr.strides, 0), context.get_abi_sizeof(elem)))
    identity = [ir.Constant(vec, [v] * LANES) for v in kind.initial]
    # One alloca per vector of the state: LLVM keeps each in a register.
    accs = [[cgutils.alloca_once_value(builder, v) for v in identity] for _ in range(ACCUMULATORS)]

    def load(q):
        return tuple(builder.load(p) for p in accs[q])

    def store(q, state):
        for p, v in zip(accs[q], state, strict=True):
            builder.store(v, p)

    contiguous = ir.Constant(ir.IntType(1), 1)
    for _, _, stride, size in views:
        contiguous = builder.and_(contiguous, builder.icmp_signed("==", stride, ir.Constant(i64, size)))
    with builder.if_else(contiguous) as (dense, strided):
        with dense:
            # ``span`` elements at a time, one vector load per array and accumulator.
            full = builder.sub(stop, builder.srem(builder.sub(stop, start), ir.Constant(i64, span)))

            def vectors(index, mask=None):
                vals = []
                for arr, elem, _, size in views:
                    ptr = builder.gep(builder.bitcast(arr.data, elem.as_pointer()), [index])
                    if mask is None:
                        vptr = builder.bitcast(ptr, ir.VectorType(elem, LANES).as_pointer())
                        vals.append(builder.load(vptr, align=1))
                    else:
                        vals.append(_masked_load(builder, ptr, elem, mask, size))
                v = element(vals, vec)
                return v if mask is None else builder.select(mask, v, identity[0])

            with cgutils.for_range_slice(builder, start, full, ir.Constant(i64, span)) as (index, _):
                for q in range(ACCUMULATORS):
                    at = builder.add(index, ir.Constant(i64, q * LANES))
                    store(q, kind.fold(load(q), vectors(at)))
            # The last (stop - start) % span elements by masked loads, into the lanes they
            # would go to one at a time (the other lanes fold the identity: no change).
            rest = builder.trunc(builder.sub(stop, full), i32)
            lanes = ir.Constant(ir.VectorType(i32, LANES), list(range(LANES)))
            for q in range(ACCUMULATORS):
                count = builder.sub(rest, ir.Constant(i32, q * LANES))
                with builder.if_then(builder.icmp_signed(">", count, ir.Constant(i32, 0))):
                    splat = builder.insert_element(ir.Constant(ir.VectorType(i32, LANES), None), count,
                                                   ir.Constant(i32, 0))
                    splat = builder.shuffle_vector(splat, splat, ir.Constant(ir.VectorType(i32, LANES), [0] * LANES))
                    mask = builder.icmp_signed("<", lanes, splat)
                    store(q, kind.fold(load(q), vectors(builder.add(full, ir.Constant(i64, q * LANES)), mask)))
        with strided:
            # One element at a time, each into its lane, in memory (a lane's index varies).
            table = [cgutils.alloca_once(builder, ir.ArrayType(vec, ACCUMULATORS)) for _ in identity]
            for t, v in zip(table, identity, strict=True):
                for q in range(ACCUMULATORS):
                    builder.store(v, builder.gep(t, [ir.Constant(i32, 0), ir.Constant(i32, q)]))
            with cgutils.for_range_slice(builder, start, stop, ir.Constant(i64, 1)) as (index, _):
                lane = builder.srem(builder.sub(index, start), ir.Constant(i64, span))
                q, k = builder.sdiv(lane, ir.Constant(i64, LANES)), builder.srem(lane, ir.Constant(i64, LANES))
                vals = []
                for arr, elem, stride, _ in views:
                    base = builder.bitcast(arr.data, ir.IntType(8).as_pointer())
                    ptr = builder.bitcast(builder.gep(base, [builder.mul(index, stride)]), elem.as_pointer())
                    vals.append(builder.load(ptr))
                ptrs = [builder.gep(t, [ir.Constant(i32, 0), q]) for t in table]
                cur = [builder.load(p) for p in ptrs]
                state = kind.fold(tuple(builder.extract_element(c, k) for c in cur), element(vals, acc_type))
                for p, c, v in zip(ptrs, cur, state, strict=True):
                    builder.store(builder.insert_element(c, v, k), p)
            for q in range(ACCUMULATORS):
                store(q, tuple(builder.load(builder.gep(t, [ir.Constant(i32, 0), ir.Constant(i32, q)])) for t in table))

    # The accumulators pairwise, then the lanes pairwise (adjacent lanes first).
    states = [load(q) for q in range(ACCUMULATORS)]
    while len(states) > 1:
        states = [kind.merge(states[k], states[k + 1]) for k in range(0, len(states), 2)]
    state = states[0]
    for width in _WIDTHS:
        state = kind.merge(*zip(*(_halves(builder, v, width) for v in state), strict=True))
    return kind.result(tuple(builder.extract_element(v, ir.Constant(i32, 0)) for v in state))


def _masked_load(builder, ptr, elem, mask, align):
    """The ``LANES`` elements at ``ptr`` where ``mask`` is set (zero elsewhere), reading no
    memory where it is not: ``llvm.masked.load``."""
    vec = ir.VectorType(elem, LANES)
    bits = {ir.HalfType: 16, ir.FloatType: 32, ir.DoubleType: 64}[type(elem)]
    name = f"llvm.masked.load.v{LANES}f{bits}.p0"
    fnty = ir.FunctionType(vec, [ptr.type, ir.IntType(32), mask.type, vec])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), align), mask, ir.Constant(vec, [0.0] * LANES)])


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

        kind = (_CompensatedSum if sig.args[0].dtype == types.float64 else _Sum)(builder)
        return _reduction(context, builder, arrays, *bounds, ir.DoubleType(), kind, element)

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
        compensated = sig.args[0].dtype == types.float64 and sig.args[1].dtype == types.float64
        kind = (_CompensatedSum if compensated else _Sum)(builder)
        return _reduction(context, builder, arrays, *bounds, ir.DoubleType(), kind, product)

    return types.float64(a, b, start, stop), codegen


def _extreme(a, start, stop, comparison):
    """The lane-blocked maximum (``comparison`` ``">"``) or minimum (``"<"``) of
    ``a[start:stop]``, NaN ignored (-inf or inf where there is nothing else)."""
    if not _typed(a, start, stop):
        return None

    def codegen(context, builder, sig, args):
        return _reduction(context, builder, [(sig.args[0], args[0])], *_bounds(context, builder, sig, args),
                          context.get_data_type(sig.args[0].dtype), _Extreme(builder, comparison),
                          lambda vals, ty: vals[0])

    return a.dtype(a, start, stop), codegen


@intrinsic
def lane_max(typingctx, a, start, stop):
    """``max(a[start:stop])`` ignoring NaN (``-inf`` where there is nothing else), in the
    element type."""
    return _extreme(a, start, stop, ">")


@intrinsic
def lane_min(typingctx, a, start, stop):
    """``min(a[start:stop])`` ignoring NaN (``inf`` where there is nothing else)."""
    return _extreme(a, start, stop, "<")


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


def _python_lanes(values, initial, fold, merge):
    """The lane-blocked reduction in plain Python, in :func:`_reduction`'s order: element
    ``k`` folded into lane ``k % (LANES * ACCUMULATORS)``, the accumulators (vectors of
    ``LANES`` lanes) merged pairwise, then the lanes pairwise."""
    lanes = [initial] * (LANES * ACCUMULATORS)
    for k, v in enumerate(values):
        lanes[k % len(lanes)] = fold(lanes[k % len(lanes)], v)
    vectors = [lanes[q * LANES:(q + 1) * LANES] for q in range(ACCUMULATORS)]
    while len(vectors) > 1:
        vectors = [[merge(a, b) for a, b in zip(vectors[k], vectors[k + 1], strict=True)]
                   for k in range(0, len(vectors), 2)]
    lanes = vectors[0]
    while len(lanes) > 1:
        lanes = [merge(lanes[k], lanes[k + 1]) for k in range(0, len(lanes), 2)]
    return lanes[0]


def _python_reduction(values, initial, combine):
    return _python_lanes(values, initial, combine, combine)


def _python_two_sum(s, c, v):
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


def _python_compensated(values):
    """:class:`_CompensatedSum` in plain Python, in the same order."""
    s, c = _python_lanes(values, (0.0, 0.0), lambda st, v: _python_two_sum(st[0], st[1], v),
                         lambda a, b: _python_two_sum(a[0], a[1] + b[1], b[0]))
    return s + c if -math.inf < c < math.inf else s


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


if jit_disabled():
    lane_sum, lane_dot, lane_max, lane_min, stack_block = _python_versions()
