"""Generate the CPU kernel module (and the README's table of functions) from the declarations.

Numba's disk cache cannot hold kernels that a factory builds around a captured scalar
function, nor kernels that take the scalar function as an argument: both recompile in
every new process (numba#6264, numba#2065).  A kernel that calls a module-level jitted
function by its global name is cached.  So instead of building kernels in closures at run
time, this script writes them out as ordinary module-level source, one per activation and
operation, in ``fastact/_kernels_cpu.py``; the tests fail when that file is not current.

The generated module records the SHA-256 of the declarations: Numba keys its cache on
the kernel module's own file, so a change to the math must change that file too, or
stale machine code would be loaded.  Regenerate with::

    python -m fastact._codegen          # rewrite the generated module(s)
    python -m fastact._codegen --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np

from fastact import declarations  # noqa: F401  (fills the registry)
from fastact._dispatch import WEIGHT_BLOCK, WEIGHT_TASKS
from fastact._lanes import BLOCK as _LANES_BLOCK
from fastact._rewrite import function_source, shape_of
from fastact._spec import (
    DTYPES,
    HELPERS,
    REGISTRY,
    ElementwiseSpec,
    GatedSpec,
    ProjectionSpec,
    ReductionSpec,
    RowwiseSpec,
    WeightedSpec,
)

PACKAGE = Path(__file__).resolve().parent
DECLARATIONS = PACKAGE / "declarations"

#: Elementwise operations: name -> (input names, scalar expression template).
#: ``*_acc`` add the product into their last operand (``backward(..., accumulate=True)``,
#: where that operand is ``out`` itself).
ELEMENTWISE_OPS = {
    "forward": (("x",), "{f}({x}{p})"),
    "grad": (("x",), "{dfdx}({x}{p})"),
    "grad2": (("x",), "{d2fdx2}({x}{p})"),
    "backward_x": (("dy", "x"), "{dy} * {dfdx}({x}{p})"),
    "backward_y": (("dy", "y"), "{dy} * {dfdy}({y}{p})"),
    "backward_x_acc": (("dy", "x", "acc"), "{acc} + {dy} * {dfdx}({x}{p})"),
    "backward_y_acc": (("dy", "y", "acc"), "{acc} + {dy} * {dfdy}({y}{p})"),
}

#: The scalar functions of an elementwise declaration (``dfdy`` and ``d2fdx2`` optional).
ELEMENTWISE_FUNCTIONS = ("f", "dfdx", "dfdy", "d2fdx2")

#: The scalar functions of a row-wise declaration (``norm``, ``finish`` and ``out`` are
#: optional; ``finish`` or ``out`` must be declared).
ROW_FUNCTIONS = ("key", "term", "norm", "finish", "out", "bterm", "bout")

#: The scalar functions of a projection onto the simplex (all required), and the passes
#: of Michelot's iteration before the kernels sort the remaining candidates.
PROJECTION_FUNCTIONS = ("g", "tau", "support")
PROJECTION_PASSES = 16
#: Rows up to this long take plain loops (the lane sums' fixed cost would dominate), and
#: up to n + 1 passes.
PROJECTION_SHORT = 64

#: Elements per block of a row's sums: a row is summed block by block, in order, each
#: block by :mod:`fastact._lanes` (in 16 interleaved partial sums, combined pairwise).
#: Fixed, so that every target, thread count and row split sums in the same order
#: (bitwise-equal results).
ROW_BLOCK = _LANES_BLOCK

#: The scalar functions of a reduction (all required).
REDUCTION_FUNCTIONS = ("key", "term", "norm", "finish", "value")

#: Reductions' operations: name -> input names.  ``forward`` gives one value per row of
#: ``x``; ``backward_x`` a row per row of ``x``, from one ``dy`` per row.
REDUCTION_OPS = {
    "forward": ("x",),
    "backward_x": ("dy", "x"),
}

#: The scalar functions of a gated unit (all required), and its operations: name ->
#: input names.  ``x`` is an (outer, 2, m) array (its two halves); ``dy`` and the forward
#: result are (outer, m), the gradient (outer, 2, m).
GATED_FUNCTIONS = ("f", "dfda", "dfdb")
GATED_OPS = {
    "forward": ("x",),
    "backward_x": ("dy", "x"),
}
#: Elements of a half per task of a gated unit's multi-threaded loop.
GATED_BLOCK = 1 << 14

#: The scalar functions of an activation with a weight array (``d2fdx2`` optional), and
#: its operations: name -> input names besides the weight.  ``backward_x`` gives ``dx``
#: only (``rrelu``'s slopes, which are not learned); ``backward_xw`` ``dx`` and the
#: partial sums of the weight's gradient.
WEIGHTED_FUNCTIONS = ("f", "dfdx", "dfdw", "d2fdx2")
WEIGHTED_OPS = {
    "forward": ("x",),
    "grad": ("x",),
    "grad2": ("x",),
    "backward_x": ("dy", "x"),
    "backward_xw": ("dy", "x"),
}
#: Elements per task, and per partial sum of the weight's gradient, of the weighted
#: kernels; tasks of the per-position layout, at most (see :func:`_weighted`): the
#: dispatch's, which sizes the kernels' scratch by them.
WEIGHTED_BLOCK, WEIGHTED_TASKS = WEIGHT_BLOCK, WEIGHT_TASKS
assert WEIGHTED_BLOCK <= _LANES_BLOCK, "a block's terms must fit the kernels' stack block"

#: Row-wise operations: name -> input names (each a row; the output row comes last).
ROWWISE_OPS = {
    "forward": ("x",),
    "backward_x": ("dy", "x"),
    "backward_y": ("dy", "y"),
}


#: The sources of the math the generated kernels compile: a change to either must change
#: the generated modules, whose own files are what Numba's disk cache keys on.
MATH_SOURCES = (*sorted(DECLARATIONS.glob("*.py")),
                *(PACKAGE / f for f in ("_vmath.py", "_cudamath.py", "_loops.py", "_literal.py", "_lanes.py")))


def declarations_digest() -> str:
    """SHA-256 of the declarations and of the CPU's vectorisable math, together."""
    h = hashlib.sha256()
    for path in MATH_SOURCES:
        h.update(path.read_bytes())
    return h.hexdigest()


#: The generated name of each declared helper.
HELPER_NAMES = {name: f"helper__{name}" for name in HELPERS}


def scalar_functions(name: str, fns: dict, compile_as: str) -> list[str]:
    """The rewritten source of each declared scalar function ``fns[k]`` (see
    :mod:`fastact._rewrite`) as ``<name>__<k>``, compiled by ``compile_as(...)``."""
    lines = []
    for key, fn in fns.items():
        if fn is None:
            continue
        gen = f"{name}__{key}" if name else HELPER_NAMES[key]
        lines += ["", "", function_source(fn, gen, HELPER_NAMES), f"{gen} = {compile_as}({gen})"]
    return lines


def helpers_source(compile_as: str) -> list[str]:
    if not HELPERS:
        return []
    return ["", "", "# --- helpers " + "-" * 78, *scalar_functions("", HELPERS, compile_as)]


def elementwise_ops(spec: ElementwiseSpec) -> list[str]:
    """The operations generated for ``spec``: those whose scalar functions it declares."""
    needs = {"grad2": spec.d2fdx2, "backward_y": spec.dfdy, "backward_y_acc": spec.dfdy}
    return [op for op in ELEMENTWISE_OPS if needs.get(op, True) is not None]


def _assign(indent: str, loop: str, target: str, expr: str, sources, index: str = "j") -> list[str]:
    """``loop`` (a ``for`` line) assigning ``target[index] = expr``; and where ``target``
    may be one of the arrays ``sources`` whose elements ``expr`` reads (a kernel called in
    place: ``sources`` are the inputs it is usually called in place on, each variant is
    one more loop to compile), the same loop reading ``target`` instead, chosen by
    :func:`fastact._loops.same`.

    LLVM checks at run time that two arrays of a loop do not overlap before it runs the
    vectorised loop, and one array under two names fails that check: the in-place loop then
    ran one element at a time (sigmoid on 64K float32, in place: 177 us, against 14 us into
    another array)."""
    def reads(s):
        return re.compile(rf"(?<![\w.]){re.escape(s)}\[{re.escape(index)}\]")

    plain = [f"{indent}{loop}", f"{indent}    {target}[{index}] = {expr}"]
    aliased = [s for s in sources if s != target and reads(s).search(expr)]
    if not aliased:
        return plain
    lines = []
    for k, s in enumerate(aliased):
        body = reads(s).sub(f"{target}[{index}]", expr)
        lines += [f"{indent}{'if' if k == 0 else 'elif'} _loops.same({target}, {s}):",
                  f"{indent}    {loop}", f"{indent}        {target}[{index}] = {body}"]
    return [*lines, f"{indent}else:", *(f"    {line}" for line in plain)]


def in_place_input(op: str) -> int:
    """The position among an elementwise operation's inputs of the one a call is usually
    in place on (``fastact._cpu.parallel`` picks the in-place kernel by it)."""
    return _in_place_input(ELEMENTWISE_OPS[op][0])


def _in_place_input(args) -> int:
    """The position among ``args`` of the input an elementwise operation is called in
    place on: ``x`` (or ``y``) for one input, ``dy`` for a backward pass (``out=dy``), the
    accumulator for ``accumulate=True`` (which is ``out`` itself).  In place on another
    input (``backward(dy, x=x, out=x)``) is correct too, element by element."""
    return 0 if len(args) == 2 else len(args) - 1


def _ufunc_loop(fname: str, template: str, fns: dict, args, params, consts, t: str) -> list[str]:
    """A NumPy ufunc inner loop (see :mod:`fastact._loops`) applying ``template`` to operands
    ``args`` and then ``params`` (each a ufunc operand; ``consts`` instead bakes the
    parameters in as constants), all of dtype ``t``: a contiguous path LLVM vectorises
    and a strided one."""
    size = np.dtype(t).itemsize
    nops = len(args) + len(params)
    k_out = nops
    contiguous = [f"steps[{k}] == {size}" for k in range(len(args))] + [f"steps[{k_out}] == {size}"]
    contiguous += [f"steps[{len(args) + j}] == 0" for j in range(len(params))]
    fast = {a: f"{a}[i]" for a in args}
    slow = {a: f"_loops.load(args[{k}], i * steps[{k}], np.{t})" for k, a in enumerate(args)}
    if consts is not None:
        p_fast = p_slow = consts
    else:
        p_fast = "".join(f", {name}" for name in params)
        p_slow = "".join(f", _loops.load(args[{len(args) + j}], i * steps[{len(args) + j}], np.{t})"
                         for j in range(len(params)))
    lines = [
        "",
        "",
        f"def {fname}(args, dims, steps, data):",
        "    n = dims[0]",
        f"    if {' and '.join(contiguous)}:",
    ]
    lines += [f"        {a} = _loops.contiguous(args[{k}], n, np.{t})" for k, a in enumerate(args)]
    if consts is None:
        lines += [f"        {name} = _loops.load(args[{len(args) + j}], 0, np.{t})" for j, name in enumerate(params)]
    lines += [
        f"        out = _loops.contiguous(args[{k_out}], n, np.{t})",
        *_assign("        ", "for i in range(n):", "out", template.format(p=p_fast, **fns, **fast),
                 [args[_in_place_input(args)]], "i"),
        "    else:",
        "        for i in range(n):",
        f"            _loops.store(args[{k_out}], i * steps[{k_out}], np.{t}, {template.format(p=p_slow, **fns, **slow)})",
    ]
    return lines


def _elementwise(spec: ElementwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in ELEMENTWISE_FUNCTIONS}, "_scalar")
    p = "".join(", " + name for name in spec.param_names)
    for op in elementwise_ops(spec):
        args, template = ELEMENTWISE_OPS[op]
        fns = {fn: f"{n}__{fn}" for fn in ELEMENTWISE_FUNCTIONS}
        scalar = template.format(p=p, **fns, **{a: a for a in args})
        arglist = ", ".join(args) + p
        lines += [
            "",
            "",
            f"def {n}__{op}({arglist}):",
            f"    return {scalar}",
        ]
        for t in DTYPES:
            lines += _ufunc_loop(f"{n}__{op}__loop_{t}", template, fns, args, spec.param_names, None, t)
        if spec.params:
            # The same kernel with the default parameters as constants of the input's
            # dtype (the values the general kernel receives): a ufunc with a scalar
            # operand costs twice as much per call at n=1000 as a unary one.
            args_only = ", ".join(args)
            for t in DTYPES:
                consts = "".join(f", np.{t}({p.encode(p.default)!r})" for p in spec.params)
                baked = template.format(p=consts, **fns, **{a: a for a in args})
                lines += ["", "", f"def {n}__{op}__{t}({args_only}):", f"    return {baked}"]
                lines += _ufunc_loop(f"{n}__{op}__{t}__loop_{t}", template, fns, args, (), consts, t)
        # In place on the input a call usually overwrites (see _in_place_input), its own
        # kernel, which reads that input through out's name (so that LLVM vectorises it)
        # and is compiled only where a program calls it: a variant inside this kernel
        # would double its compile time.  Same arguments; the overwritten input unused.
        over = args[_in_place_input(args)]
        in_place = template.format(p=p, **fns, **{a: "out[i]" if a == over else f"{a}[i]" for a in args})
        lines += [
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True)",
            f"def {n}__{op}__parallel(out, {arglist}):",
            "    for i in prange(out.shape[0]):",
            f"        out[i] = {template.format(p=p, **fns, **{a: f'{a}[i]' for a in args})}",
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True)",
            f"def {n}__{op}__parallel_inplace(out, {arglist}):",
            "    for i in prange(out.shape[0]):",
            f"        out[i] = {in_place}",
        ]
    return lines


def _rowmax_expr(spec) -> str:
    key = shape_of(spec.key)
    if key == ("arg", 0):
        return "_lane_max(x, start, stop)"
    if key == ("neg", 0):  # max(-x) = -min(x)
        return "-_lane_min(x, start, stop)"
    raise NotImplementedError(f"{spec.name}: the CPU kernels need key(x) = x or -x")


def _row_reductions(spec: RowwiseSpec) -> list[str]:
    """Per declaration: the row maximum of ``key`` and the sum of ``bterm`` over
    ``[start, stop)``, as the lane-blocked reductions of :mod:`fastact._lanes`."""
    n = spec.name
    rowmax = _rowmax_expr(spec)
    bterm = shape_of(spec.bterm)
    if bterm == ("product", 0, 1):
        bsum = "_lane_dot(dy, y, start, stop)"
    elif bterm in (("arg", 0), ("arg", 1)):
        bsum = f"_lane_sum({('dy', 'y')[bterm[1]]}, start, stop)"
    else:
        raise NotImplementedError(f"{n}: the CPU kernels need bterm(dy, y) = dy * y, dy or y")
    return [
        "",
        "",
        "@njit(nogil=True, error_model='numpy', forceinline=True)",
        f"def {n}__rowmax(x, start, stop):",
        f"    return {rowmax}",
        "",
        "",
        "@njit(nogil=True, error_model='numpy', forceinline=True)",
        f"def {n}__bsum(dy, y, start, stop):",
        f"    return {bsum}",
    ]


def _out_expr(spec: RowwiseSpec, x: str, t: str | None = None, r: str = "r") -> str:
    """The output element from ``x`` (or from its stored term ``t``), the row's ``m`` and
    the row's factor ``r``."""
    n = spec.name
    if spec.finish is not None:
        return f"{n}__finish({t or f'{n}__term({x}, m)'}, {r})"
    return f"{n}__out({x}, m, {r})"


def _norm_expr(spec: RowwiseSpec) -> str:
    return f"{spec.name}__norm(s, m)" if spec.norm is not None else "s"


def _block_sums(n: str, store: str) -> list[str]:
    """A row's terms block by block into ``store`` (out's row, or a block on the stack),
    each block summed while in cache, the blocks' sums added with compensation in block
    order: ``s`` after these lines.  Slices, so that LLVM sees each block's loop from 0 (it
    vectorises those and not a range(b0, b1))."""
    return [
        "    s = c = 0.0",
        "    b0 = 0",
        "    while b0 < n:",
        f"        b1 = min(b0 + {ROW_BLOCK}, n)",
        f"        xb, ob = _loops.window(x, b0, b1), {store}",
        *_assign("        ", "for j in range(b1 - b0):", "ob", f"{n}__term(xb[j], m)", ["xb"] if store != "tb" else []),
        "        s, c = _add(s, c, _lane_sum(ob, 0, b1 - b0))",
        "        b0 = b1",
        "    s = _total(s, c)",
    ]


def _row_functions(spec: RowwiseSpec) -> list[str]:
    """The row operations on one 1-d row, and a block-parallel version of each for rows
    long enough to split between threads; both sum in ``ROW_BLOCK`` order."""
    n = spec.name
    # With finish, the terms go into out and are finished in place; with out(x, m, r),
    # which reads x again, into a block on the stack (out may be x).
    store = "_loops.window(out, b0, b1)" if spec.finish is not None else "tb"
    sums = _block_sums(n, store)
    terms_then_sum = [
        sums[0],
        *(["    tb = _stack_block(x)"] if spec.finish is None else []),
        *sums[1:],
        f"    r = {_norm_expr(spec)}",
        *_assign("    ", "for j in range(n):", "out", _out_expr(spec, "x[j]", "out[j]"), ["x"]),
    ]
    # Terms stored in out, summed block by block while in cache, finished in place; out
    # may be x (element j of x is read before element j of out is written).
    forward = ["    n = out.shape[0]", f"    m = {n}__rowmax(x, 0, n)", *terms_then_sum]
    backward_y = [
        "    n = out.shape[0]",
        "    d = c = 0.0",
        f"    for b0 in range(0, n, {ROW_BLOCK}):",
        f"        d, c = _add(d, c, {n}__bsum(dy, y, b0, min(b0 + {ROW_BLOCK}, n)))",
        "    d = _total(d, c)",
        *_assign("    ", "for j in range(n):", "out", f"{n}__bout(dy[j], y[j], d)", ["dy"]),
    ]
    return _row_function_defs(n, forward, backward_y)


def _row_function_defs(n: str, forward: list[str], backward_y: list[str]) -> list[str]:
    """The row functions ``<n>__forward__row(x, out)``, ``<n>__backward_y__row(dy, y,
    out)`` with these bodies, and ``<n>__backward_x__row(dy, x, out, scratch)``: y computed
    once into scratch (out may be dy or x, so it cannot hold y), by the same operations as
    forward and backward_y, so the same bits."""
    rows = {
        "forward": (["x", "out"], forward),
        "backward_y": (["dy", "y", "out"], backward_y),
        "backward_x": (["dy", "x", "out", "scratch"], [
            f"    {n}__forward__row(x, scratch)",
            f"    {n}__backward_y__row(dy, scratch, out)",
        ]),
    }
    lines = []
    for op, (args, body) in rows.items():
        lines += ["", "", "@njit(nogil=True, error_model='numpy')", f"def {n}__{op}__row({', '.join(args)}):", *body]
    return lines


def _block_kernels(spec: RowwiseSpec) -> list[str]:
    """Kernels that run each row's blocks on all threads: for a few long rows.  Every
    block reduces as in the row functions, and the blocks' results combine in order, so
    the bits are the row functions'."""
    n = spec.name
    # Scratch memory is allocated before anything is written.
    blocks = [
        f"    nb = (n + {ROW_BLOCK} - 1) // {ROW_BLOCK}",
        "    partial = np.empty(nb, np.float64)",
        "    peak = np.empty(nb, x.dtype)",
    ]
    each = ["        for b in prange(nb):", f"            b0 = b * {ROW_BLOCK}", f"            b1 = min(b0 + {ROW_BLOCK}, n)"]
    forward_row = [
        *each,
        f"            peak[b] = {n}__rowmax(xi, b0, b1)",
        "        m = peak[0]",
        "        for b in range(1, nb):",
        "            m = _max2(m, peak[b])",
        *each,
        "            xb, ob = _loops.window(xi, b0, b1), "
        + ("_loops.window(oi, b0, b1)" if spec.finish is not None else "_stack_block(xi)"),
        *_assign("            ", "for j in range(b1 - b0):", "ob", f"{n}__term(xb[j], m)",
                 ["xb"] if spec.finish is not None else []),
        "            partial[b] = _lane_sum(ob, 0, b1 - b0)",
        "        s = c = 0.0",
        "        for b in range(nb):",
        "            s, c = _add(s, c, partial[b])",
        "        s = _total(s, c)",
        f"        r = {_norm_expr(spec)}",
        *each,
        "            xb, ob = _loops.window(xi, b0, b1), _loops.window(oi, b0, b1)",
        *_assign("            ", "for j in range(b1 - b0):", "ob", _out_expr(spec, "xb[j]", "ob[j]"), ["xb"]),
    ]
    backward_row = [
        *each,
        f"            partial[b] = {n}__bsum(dyi, yi, b0, b1)",
        "        d = c = 0.0",
        "        for b in range(nb):",
        "            d, c = _add(d, c, partial[b])",
        "        d = _total(d, c)",
        *each,
        "            dyb, yb, ob = _loops.window(dyi, b0, b1), _loops.window(yi, b0, b1), _loops.window(oi, b0, b1)",
        *_assign("            ", "for j in range(b1 - b0):", "ob", f"{n}__bout(dyb[j], yb[j], d)", ["dyb"]),
    ]
    kernels = {
        "forward": ("x", ["        xi, oi = _loops.row(x, i), _loops.row(out, i)", *forward_row]),
        "backward_y": ("dy, y", ["        dyi, yi, oi = _loops.row(dy, i), _loops.row(y, i), _loops.row(out, i)",
                                 *backward_row]),
        # y into a scratch row first, by the forward pass above.
        "backward_x": ("dy, x", [
            "        xi, oi = _loops.row(x, i), scratch",
            *forward_row,
            "        dyi, yi, oi = _loops.row(dy, i), scratch, _loops.row(out, i)",
            *backward_row,
        ]),
    }
    lines = []
    for op, (args, body) in kernels.items():
        peak = blocks if op != "backward_y" else blocks[:2]
        alloc = ["    scratch = np.empty(n, x.dtype)"] if op == "backward_x" else []
        lines += [
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            f"def {n}__{op}__blocks(out, {args}):",
            "    n = out.shape[1]",
            *peak,
            *alloc,
            "    for i in range(out.shape[0]):",
            *body,
        ]
    return lines


def _projection_row_functions(spec: ProjectionSpec) -> list[str]:
    """A projection's row functions (see :class:`fastact._spec.ProjectionSpec`): the
    support's sums by ``_support_sums`` (block by block, the order of the row sums; plain
    loops for rows up to ``PROJECTION_SHORT``), at most ``PROJECTION_PASSES`` passes of
    Michelot's iteration (``n + 1`` for short rows), then, where it has not settled, a
    sort of the candidates; the same operations on every CPU target."""
    n = spec.name
    fill = ["        for j in range(n):", "            out[j] = math.nan", "        return"]
    forward = [
        "    n = x.shape[0]",
        "    if n == 0:",
        "        return",
        "    m = _lane_max(x, 0, n)",
        "    if m != m or m == -math.inf:  # NaN only, or -inf only: no limit",
        *fill,
        "    if m == math.inf:  # one +inf: 1 there, 0 elsewhere; several, or a NaN: no limit",
        "        infs = nans = 0",
        "        for j in range(n):",
        "            infs += x[j] == math.inf",
        "            nans += x[j] != x[j]",
        "        if infs != 1 or nans:",
        *("    " + f for f in fill),
        "        for j in range(n):",
        "            out[j] = 1.0 if x[j] == math.inf else 0.0",
        "        return",
        # Michelot's passes: the support is within 1 of the maximum, and each pass's
        # threshold is at most the final one, so the support only shrinks, and settles in
        # at most n passes in exact arithmetic; a rounding that flips an entry at the
        # support's edge back and forth (a tie within an ULP) cannot loop either: after the
        # passes, the candidates are sorted.  Short rows: plain loops (the lane sums'
        # fixed cost would dominate), and passes to the end.
        f"    short = n <= {PROJECTION_SHORT}",
        "    tb = _stack_block(x)",
        "    if short:",
        "        s, k, nans = _support_sums_short(x, m, -1.0)",
        "    else:",
        "        s, k, nans = _support_sums(x, m, -1.0, tb)",
        "    if nans:",
        *fill,
        f"    tau = {n}__tau(s, np.float64(k))",
        "    settled = False",
        f"    for _ in range(n + 1 if short else {PROJECTION_PASSES}):",
        "        if short:",
        "            s, k2, _ = _support_sums_short(x, m, tau)",
        "        else:",
        "            s, k2, _ = _support_sums(x, m, tau, tb)",
        "        if k2 == k:",
        "            settled = True",
        "            break",
        "        k = k2",
        f"        tau = {n}__tau(s, np.float64(k))",
        "    if not settled:  # the entries within 1 of the maximum, sorted: the largest prefix in the support",
        "        c = np.empty(n, np.float64)",
        "        i = 0",
        "        for j in range(n):",
        "            z = x[j] - m",
        "            if z > -1.0:",
        "                c[i] = z",
        "                i += 1",
        "        c = np.sort(c[:i])[::-1]",
        "        cum = 0.0",
        "        for i in range(c.shape[0]):",
        "            cum += c[i]",
        f"            t = {n}__tau(cum, np.float64(i + 1))",
        "            if c[i] > t:",
        "                tau = t",
        "    for j in range(n):",
        f"        out[j] = {n}__g((x[j] - m) - tau)",
    ]
    backward_y = [
        "    n = out.shape[0]",
        f"    if n <= {PROJECTION_SHORT}:  # a short row: plain loops",
        "        d = c1 = k = 0.0",
        "        for j in range(n):",
        f"            sj = {n}__support(y[j])",
        "            d, c1 = _add(d, c1, sj * dy[j])",
        "            k += sj",
        "        d = _total(d, c1) / k",
        "        for j in range(n):",
        f"            out[j] = {n}__support(y[j]) * (dy[j] - d) + 0.0",
        "        return",
        "    ta = _stack_block(dy)",
        "    tk = _stack_block(dy)",
        "    d = c1 = k = c2 = 0.0",
        f"    for b0 in range(0, n, {ROW_BLOCK}):",
        f"        b1 = min(b0 + {ROW_BLOCK}, n)",
        "        dyb, yb = _loops.window(dy, b0, b1), _loops.window(y, b0, b1)",
        "        for j in range(b1 - b0):",
        f"            sj = {n}__support(yb[j])",
        "            ta[j] = sj * dyb[j]",
        "            tk[j] = sj",
        "        d, c1 = _add(d, c1, _lane_sum(ta, 0, b1 - b0))",
        "        k, c2 = _add(k, c2, _lane_sum(tk, 0, b1 - b0))",
        "    d = _total(d, c1) / _total(k, c2)",
        "    for j in range(n):  # + 0.0: +0 off the support (not -0), NaN kept",
        f"        out[j] = {n}__support(y[j]) * (dy[j] - d) + 0.0",
    ]
    return _row_function_defs(n, forward, backward_y)


def _projection_block_kernels(spec: ProjectionSpec) -> list[str]:
    """A projection's ``__blocks`` kernels (a few long rows): the rows on all threads, each
    row on one (Michelot's passes depend on each other), so the row functions' bits."""
    n = spec.name
    lines = []
    for op, args in ROWWISE_OPS.items():
        rows = ", ".join(f"_loops.row({a}, i)" for a in args)
        scratch = ", np.empty(out.shape[1], out.dtype)" if op == "backward_x" else ""
        lines += ["", "", "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
                  f"def {n}__{op}__blocks(out, {', '.join(args)}):", "    for i in prange(out.shape[0]):",
                  f"        {n}__{op}__row({rows}, _loops.row(out, i){scratch})"]
    return lines


def _rowwise(spec: RowwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    if isinstance(spec, ProjectionSpec):
        lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in PROJECTION_FUNCTIONS}, "_scalar")
        lines += _projection_row_functions(spec)
    else:
        lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in ROW_FUNCTIONS}, "_scalar")
        lines += _row_reductions(spec)
        lines += _row_functions(spec)
    for op, args in ROWWISE_OPS.items():
        arglist = ", ".join(args)
        rows = rows_args = ", ".join(f"_loops.row({a}, i)" for a in args)
        scratch = op == "backward_x"
        lines += [
            "",
            "",
            "@njit(cache=True, nogil=True, error_model='numpy')",
            # backward_x: the caller's scratch row, allocated before anything is written.
            f"def {n}__{op}__rows(out, {arglist}{', scratch' if scratch else ''}):",
            "    for i in range(out.shape[0]):",
            f"        {n}__{op}__row({rows}, _loops.row(out, i){', scratch' if scratch else ''})",
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            *([f"def {n}__{op}__parallel(out, {arglist}, scratch):",
               # The rows in as many chunks as the caller gave scratch rows (a few per
               # thread), each chunk with its own.
               "    chunks = scratch.shape[0]",
               "    rows = out.shape[0]",
               "    for c in prange(chunks):",
               "        for i in range(c * rows // chunks, (c + 1) * rows // chunks):",
               f"            {n}__{op}__row({rows_args}, _loops.row(out, i), _loops.row(scratch, c))"] if scratch else
              [f"def {n}__{op}__parallel(out, {arglist}):",
               "    for i in prange(out.shape[0]):",
               f"        {n}__{op}__row({rows_args}, _loops.row(out, i))"]),
        ]
    lines += _projection_block_kernels(spec) if isinstance(spec, ProjectionSpec) else _block_kernels(spec)
    return lines


def _reduction(spec: ReductionSpec) -> list[str]:
    """A reduction's kernels: the row functions (the value of one row; the gradient row
    from one ``dy``), the loops over rows on one thread and on all, and the block-parallel
    loops for a few long rows.  Sums block by block as :func:`_row_functions` does, so
    every loop gives the same bits, and ``backward_x`` gives softmax's bits times ``dy``."""
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in REDUCTION_FUNCTIONS}, "_scalar")
    lines += ["", "", "@njit(nogil=True, error_model='numpy', forceinline=True)",
              f"def {n}__rowmax(x, start, stop):", f"    return {_rowmax_expr(spec)}"]

    def sums(store):
        return [f"    m = {n}__rowmax(x, 0, n)", *_block_sums(n, store)]

    lines += ["", "", "@njit(nogil=True, error_model='numpy')", f"def {n}__forward__row(x):", "    n = x.shape[0]",
              "    tb = _stack_block(x)", *sums("tb"), f"    return {n}__value(s, m)"]
    # out may be x: element j of x is read (into the block's term) before out[j] is written.
    lines += ["", "", "@njit(nogil=True, error_model='numpy')", f"def {n}__backward_x__row(dy, x, out):",
              "    n = x.shape[0]", *sums("_loops.window(out, b0, b1)"), f"    r = {n}__norm(s, m)",
              "    for j in range(n):",
              f"        out[j] = dy * {n}__finish(out[j], r)"]
    loops = {
        "forward": ("x", "out[i] = {n}__forward__row(_loops.row(x, i))"),
        "backward_x": ("dy, x", "{n}__backward_x__row(dy[i], _loops.row(x, i), _loops.row(out, i))"),
    }
    for op, (args, body) in loops.items():
        lines += [
            "", "", "@njit(cache=True, nogil=True, error_model='numpy')", f"def {n}__{op}__rows(out, {args}):",
            "    for i in range(x.shape[0]):", "        " + body.format(n=n),
            "", "", "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            f"def {n}__{op}__parallel(out, {args}):",
            "    for i in prange(x.shape[0]):", "        " + body.format(n=n),
        ]
    # A few long rows: each row's blocks on all threads, combined in block order.
    each = ["        for b in prange(nb):", f"            b0 = b * {ROW_BLOCK}", f"            b1 = min(b0 + {ROW_BLOCK}, n)"]
    stats = [
        *each,
        f"            peak[b] = {n}__rowmax(xi, b0, b1)",
        "        m = peak[0]",
        "        for b in range(1, nb):",
        "            m = _max2(m, peak[b])",
        *each,
        "            xb, tb = _loops.window(xi, b0, b1), {store}",
        "            for j in range(b1 - b0):",
        f"                tb[j] = {n}__term(xb[j], m)",
        "            partial[b] = _lane_sum(tb, 0, b1 - b0)",
        "        s = c = 0.0",
        "        for b in range(nb):",
        "            s, c = _add(s, c, partial[b])",
        "        s = _total(s, c)",
    ]
    blocks = {
        "forward": ("x", [line.format(store="_stack_block(xi)") for line in stats]
                    + [f"        out[i] = {n}__value(s, m)"]),
        "backward_x": ("dy, x", [line.format(store="_loops.window(oi, b0, b1)") for line in stats] + [
            f"        r = {n}__norm(s, m)",
            "        d = dy[i]",
            *each,
            "            ob = _loops.window(oi, b0, b1)",
            "            for j in range(b1 - b0):",
            f"                ob[j] = d * {n}__finish(ob[j], r)",
        ]),
    }
    for op, (args, body) in blocks.items():
        lines += [
            "", "", "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            f"def {n}__{op}__blocks(out, {args}):",
            "    n = x.shape[1]",
            f"    nb = (n + {ROW_BLOCK} - 1) // {ROW_BLOCK}",
            "    partial = np.empty(nb, np.float64)",
            "    peak = np.empty(nb, x.dtype)",
            "    for i in range(x.shape[0]):",
            "        xi = _loops.row(x, i)",
            *(["        oi = _loops.row(out, i)"] if op == "backward_x" else []),
            *body,
        ]
    return lines


HEADER = '''\
# Generated by `python -m fastact._codegen` from fastact/declarations/: do not edit.
"""Compiled CPU kernels, one set per declaration.

The declared scalar functions are copied here rewritten (:mod:`fastact._rewrite`: their
literals in the element's dtype) and compiled by ``_scalar``, with :mod:`fastact._vmath`
standing in for :mod:`math` (``exp``, ``log``, ``tanh``, ... that LLVM vectorises), and
with NumPy's error model (a division by zero gives inf or NaN, as in NumPy, instead of
raising, so no branch keeps a loop from being vectorised).

For each activation and operation ``op``:

* ``<name>__<op>`` (elementwise) is the scalar kernel, and ``<name>__<op>__row``
  (row-wise) the operation on one row;
* ``<name>__<op>__loop_<dtype>`` is the inner loop of the single-threaded ufunc over
  operands of that dtype, parameters included (see :mod:`fastact._loops`), and
  ``<name>__<op>__<dtype>__loop_<dtype>`` (activations with parameters) the same loop
  with the default parameters baked in as constants of that dtype, for a unary ufunc
  (``<name>__<op>__<dtype>`` is its scalar kernel);
* ``<name>__<op>__parallel(out, *inputs, *params)`` is the multi-threaded loop over
  1-d (elementwise) or 2-d row-major (row-wise) arrays; for elementwise operations,
  ``<name>__<op>__parallel_inplace`` (same arguments) is that loop where ``out`` is the
  input the call overwrites, read through ``out``'s name (``fastact._cpu.parallel``
  picks it), and each ufunc loop has such a version inside (``_loops.same``);
* ``<name>__<op>__rows(out, *inputs)`` (row-wise) is the same loop over the rows of 2-d
  arrays on one thread, and ``<name>__<op>__blocks(out, *inputs)`` the multi-threaded
  loop over the blocks of each row, for a few long rows (``backward_x`` takes a scratch
  row, or one per chunk of rows, from the caller as a last argument).

Both call the same scalar functions, so the two targets agree bit for bit.
"""

import numpy as np
from numba import njit, prange

from fastact import _loops
from fastact import _vmath as math
from fastact._lanes import lane_dot as _lane_dot
from fastact._lanes import lane_max as _lane_max
from fastact._lanes import lane_min as _lane_min
from fastact._lanes import stack_block as _stack_block
from fastact._lanes import lane_sum as _lane_sum
from fastact._literal import lit

DECLARATIONS_SHA256 = "{digest}"


def _scalar(fn):
    return njit(fn, error_model="numpy", nogil=True, forceinline=True)


@njit(nogil=True, error_model="numpy")
def _max2(a, b):
    return b if b > a else a


@njit(nogil=True, error_model="numpy", forceinline=True)
def _add(s, c, v):
    """(s + v, c plus its rounding error): the blocks' sums of a row added with
    compensation (TwoSum), so that a row of millions is as accurate as a row of thousands."""
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


@njit(nogil=True, error_model="numpy", forceinline=True)
def _total(s, c):
    """The compensated sum: s + c, or s where c is not finite (a sum that is inf or NaN)."""
    return s + c if abs(c) < np.inf else s


@njit(nogil=True, error_model="numpy")
def _support_sums(x, m, tau, tb):
    """A projection's support (see ``fastact._spec.ProjectionSpec``): the sum of
    ``x_j - m`` over the j where it exceeds ``tau``, their count, and the count of NaN in
    ``x`` (``m`` finite).  Block by block into ``tb`` (0 outside the support), each block
    lane-summed, the blocks added with compensation: a fixed order."""
    n = x.shape[0]
    s = c = 0.0
    k = nans = 0
    for b0 in range(0, n, tb.shape[0]):
        b1 = min(b0 + tb.shape[0], n)
        xb = _loops.window(x, b0, b1)
        for j in range(b1 - b0):
            z = xb[j] - m
            inside = z > tau
            tb[j] = z if inside else 0.0
            k += inside
            nans += z != z
        s, c = _add(s, c, _lane_sum(tb, 0, b1 - b0))
    return _total(s, c), k, nans


@njit(nogil=True, error_model="numpy", forceinline=True)
def _support_sums_short(x, m, tau):
    """``_support_sums`` of a short row: plain loops, in index order."""
    s = c = 0.0
    k = nans = 0
    for j in range(x.shape[0]):
        z = x[j] - m
        nans += z != z
        if z > tau:
            s, c = _add(s, c, z)
            k += 1
    return _total(s, c), k, nans


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_parts(part, out):
    """The weight gradient of a ``__chan`` kernel: ``out[c]`` is the sum of ``part[:, c, :]``
    (its blocks' sums), in order, with compensation."""
    outer, channels, nb = part.shape
    for c in range(channels):
        s = e = 0.0
        for i in range(outer):
            for b in range(nb):
                s, e = _add(s, e, part[i, c, b])
        out[c] = _total(s, e)


@njit(cache=True, nogil=True, error_model="numpy")
def _sum_columns(cols, comp, inner, period, out):
    """The weight gradient of a ``__pos`` kernel: ``out[c]`` is the sum of the compensated
    column sums ``cols + comp`` of channel ``c``'s positions (``inner`` of them from
    ``c * inner`` on, in every ``period`` of a row), chunk by chunk, in order, with
    compensation."""
    for c in range(out.shape[0]):
        s = e = 0.0
        for rep in range(cols.shape[1] // period):
            for k in range(rep * period + c * inner, rep * period + (c + 1) * inner):
                for r in range(cols.shape[0]):
                    s, e = _add(s, e, _total(cols[r, k], comp[r, k]))
        out[c] = _total(s, e)
'''


def render() -> str:
    lines = [HEADER.format(digest=declarations_digest())]
    lines += helpers_source("_scalar")
    for spec in REGISTRY.values():
        lines += ["", ""]
        lines += _KINDS[spec.kind](spec)
    return "\n".join(lines) + "\n"


README = PACKAGE.parent / "README.md"
TABLE_START, TABLE_END = "<!-- functions-table:start -->", "<!-- functions-table:end -->"


def _gated(spec: GatedSpec) -> list[str]:
    """A gated unit's kernels over the (outer, 2, m) view of ``x``: one thread, the rows
    in turn; all threads, each taking blocks of ``GATED_BLOCK`` positions (so that one
    long row, ``outer == 1``, is split too).  Each loop runs over 1-d slices from 0, which
    LLVM vectorises."""
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in GATED_FUNCTIONS}, "_scalar")
    p = "".join(", " + name for name in spec.param_names)
    for op, args in GATED_OPS.items():
        arglist = ", ".join(args) + p
        body = {
            "forward": [f"o[j] = {n}__f(a[j], b[j]{p})"],
            "backward_x": [
                "av, bv, d = a[j], b[j], g[j]",  # read before out (which may be x) is written
                f"oa[j] = d * {n}__dfda(av, bv{p})",
                f"ob[j] = d * {n}__dfdb(av, bv{p})",
            ],
        }[op]
        # Rows first, then slices of them: LLVM vectorises loops over 1-d slices of 1-d
        # rows, but one over x[i, 0, j0:j1] ran 2.6x slower (measured: 8M float32 glu on
        # one thread, 6.0 ms against 2.3 ms).
        views = {
            "forward": ("xa, xb, xo = x[i, 0], x[i, 1], out[i]\n"
                        "        a, b, o = xa[j0:j1], xb[j0:j1], xo[j0:j1]"),
            "backward_x": ("xa, xb, xg, xoa, xob = x[i, 0], x[i, 1], dy[i], out[i, 0], out[i, 1]\n"
                           "        a, b, g, oa, ob = xa[j0:j1], xb[j0:j1], xg[j0:j1], xoa[j0:j1], xob[j0:j1]"),
        }[op]
        lines += [
            "", "", "@njit(cache=True, nogil=True, error_model='numpy')", f"def {n}__{op}__rows(out, {arglist}):",
            "    m = x.shape[2]",
            "    for i in range(x.shape[0]):",
            "        j0, j1 = 0, m",
            f"        {views}",
            "        for j in range(j1 - j0):",
            *("            " + s for s in body),
            "", "", "@njit(parallel=True, cache=True, nogil=True, error_model='numpy')",
            f"def {n}__{op}__parallel(out, {arglist}):",
            "    m = x.shape[2]",
            f"    nb = (m + {GATED_BLOCK} - 1) // {GATED_BLOCK}",
            "    for t in prange(x.shape[0] * nb):",
            "        i = t // nb",
            f"        j0 = (t - i * nb) * {GATED_BLOCK}",
            f"        j1 = min(j0 + {GATED_BLOCK}, m)",
            f"        {views}",
            "        for j in range(j1 - j0):",
            *("            " + s for s in body),
        ]
    return lines


def weighted_ops(spec: WeightedSpec) -> list[str]:
    """The operations generated for ``spec``: those whose scalar functions it declares."""
    return [op for op in WEIGHTED_OPS if op != "grad2" or spec.d2fdx2 is not None]


def _weighted(spec: WeightedSpec) -> list[str]:
    """An activation with a weight array: its kernels over two layouts of a C-contiguous
    input, each on one thread (``__chan``, ``__pos``) and on all (``__chan_parallel``,
    ``__pos_parallel``), the same tasks in the same order, so the same bits:

    * ``chan``: ``x`` as (outer, C, inner), one weight per channel ``c``; a task is a
      block of up to ``WEIGHTED_BLOCK`` elements of one (outer, channel) run, and
      ``backward_xw`` writes its block's sum to ``part[i, c, b]`` (combined by
      ``_sum_parts``; the caller chooses the blocks per run, ``part.shape[2]``).  For
      runs long enough to vectorise (and one weight for all).
    * ``pos``: ``x`` as (outer, K), one weight per position ``k`` (a channel's weight
      repeated over its run, or one weight per element); a task is a block of columns
      over a chunk of rows, chunks and blocks fixed by the shape (``WEIGHTED_TASKS``), and
      ``backward_xw`` adds each column's terms, row by row, into ``cols[r, k]`` with
      compensation ``comp[r, k]`` (combined by ``_sum_columns``; the caller chooses the
      chunks of rows, ``cols.shape[0]``).
    """
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in WEIGHTED_FUNCTIONS}, "_scalar")
    p = "".join(", " + name for name in spec.param_names)
    B = WEIGHTED_BLOCK
    for op in weighted_ops(spec):
        args = WEIGHTED_OPS[op]
        # Every operand of element j is read before out (which may be x or dy) is written.
        if op in ("forward", "grad", "grad2"):
            fn = {"forward": "f", "grad": "dfdx", "grad2": "d2fdx2"}[op]
            body = [f"o[j] = {n}__{fn}(xv[j], {{w}}{p})"]
        elif op == "backward_x":
            body = ["xj, gj = xv[j], g[j]", f"o[j] = gj * {n}__dfdx(xj, {{w}}{p})"]
        else:
            body = ["xj, gj = xv[j], g[j]", f"o[j] = gj * {n}__dfdx(xj, {{w}}{p})", "{acc}"]
        dy = "dy" in args
        chan_extra = ", part" if op == "backward_xw" else ""
        pos_extra = ", cols, comp" if op == "backward_xw" else ""
        # The weight's terms in double precision (exact for float32 operands: prelu's
        # dfdw is x), summed in double precision.
        chan_acc = f"tb[j] = np.float64(gj) * np.float64({n}__dfdw(xj, wv{p}))"
        pos_acc = f"cs[j], cc[j] = _add(cs[j], cc[j], np.float64(gj) * np.float64({n}__dfdw(xj, wv[j]{p})))"
        for parallel in (False, True):
            loop = "prange" if parallel else "range"
            suffix = "_parallel" if parallel else ""
            deco = ("@njit(parallel=True, cache=True, nogil=True, error_model='numpy')" if parallel
                    else "@njit(cache=True, nogil=True, error_model='numpy')")
            chan_views = ["        xv, o = x[i, c][j0:j1], out[i, c][j0:j1]"]
            if dy:
                chan_views.append("        g = dy[i, c][j0:j1]")
            if op == "backward_xw":
                chan_views.append("        tb = _stack_block(part)")
            lines += [
                "", "", deco, f"def {n}__{op}__chan{suffix}(out, {', '.join(args)}, w{p}{chan_extra}):",
                "    outer, C, inner = x.shape",
                *(["    nb = part.shape[2]", "    bs = (inner + nb - 1) // nb"] if op == "backward_xw" else
                  [f"    nb = (inner + {B - 1}) // {B}", f"    bs = {B}"]),
                f"    for t in {loop}(outer * C * nb):",
                "        i = t // (C * nb)",
                "        r = t - i * (C * nb)",
                "        c = r // nb",
                "        j0 = (r - c * nb) * bs",
                "        j1 = min(j0 + bs, inner)",
                "        wv = w[c]",
                *chan_views,
                "        for j in range(j1 - j0):",
                *("            " + b.format(w="wv", acc=chan_acc) for b in body),
                *(["        part[i, c, r - c * nb] = _lane_sum(tb, 0, j1 - j0)"] if op == "backward_xw" else []),
            ]
            pos_views = ["            xv, o = x[i][k0:k1], out[i][k0:k1]"]
            if dy:
                pos_views.append("            g = dy[i][k0:k1]")
            lines += [
                "", "", deco, f"def {n}__{op}__pos{suffix}(out, {', '.join(args)}, w{p}{pos_extra}):",
                "    outer, K = x.shape",
                f"    nq = (K + {B - 1}) // {B}",
                *(["    nr = cols.shape[0]"] if op == "backward_xw" else
                  [f"    nr = min(outer, max(1, ({WEIGHTED_TASKS} + nq - 1) // nq))"]),
                f"    for t in {loop}(nr * nq):",
                "        r = t // nq",
                f"        k0 = (t - r * nq) * {B}",
                f"        k1 = min(k0 + {B}, K)",
                "        wv = w[k0:k1]",
                *(["        cs, cc = cols[r][k0:k1], comp[r][k0:k1]"] if op == "backward_xw" else []),
                "        for i in range(r * outer // nr, (r + 1) * outer // nr):",
                *pos_views,
                "            for j in range(k1 - k0):",
                *("                " + b.format(w="wv[j]", acc=pos_acc) for b in body),
            ]
    return lines


_KINDS = {"elementwise": _elementwise, "rowwise": _rowwise, "reduction": _reduction, "gated": _gated,
          "weighted": _weighted}


def functions_table() -> str:
    """The README's table of functions, rendered from the declarations."""
    rows = [
        "| function | f(x) | f'(x), with the convention at kinks | f''(x) (`grad2`) | parameters (defaults) "
        "| `backward(dy, y=)` |",
        "|---|---|---|---|---|---|",
    ]
    for spec in REGISTRY.values():
        params = ", ".join(f"`{p.name}={p.default!r}`" for p in spec.params) or "none"
        if isinstance(spec, RowwiseSpec):
            rows.append(f"| `{spec.name}(x, axis=-1)` | `{spec.formula}` | Jacobian: use `backward` | | {params} | yes |")
            continue
        if isinstance(spec, GatedSpec):
            rows.append(f"| `{spec.name}(x, axis=-1)` | {_cell(spec.formula)} | {_cell(spec.derivative)}: "
                        f"use `backward(dy, x=)` | | {params} | no |")
            continue
        if isinstance(spec, ReductionSpec):
            rows.append(f"| `{spec.name}(x, axis, keepdims=False)` | `{spec.formula}` | gradient `softmax(x)`: "
                        f"use `backward(dy, x=)` | | {params} | no |")
            continue
        if isinstance(spec, WeightedSpec):
            rows.append(f"| `{spec.name}(x, weight, axis=1)` | {_cell(spec.formula)} | {_cell(spec.derivative)}; "
                        f"weight: {_cell(spec.weight_derivative)} | {_cell(spec.second_derivative)} | "
                        f"`weight`: one per channel along `axis`, or one | no |")
            continue
        second = _cell(spec.second_derivative) if spec.second_derivative else ("yes" if spec.d2fdx2 else "no")
        if spec.dfdy is None:
            from_y = "no"
        elif spec.dfdy_requires:
            from_y = f"if {_cell(spec.dfdy_requires)}"
        else:
            from_y = "yes"
        name = f"`{spec.name}`" + "".join(f" (`{a}`)" for a in spec.aliases)
        rows.append(f"| {name} | {_cell(spec.formula)} | {_cell(spec.derivative)} | {second} | {params} | {from_y} |")
    return "\n".join(rows)


def _cell(text: str) -> str:
    """``text`` as code in a Markdown table cell (whose ``|`` must be escaped)."""
    return "`" + text.replace("|", "\\|") + "`"


def render_readme() -> str:
    text = README.read_text()
    start, end = text.index(TABLE_START) + len(TABLE_START), text.index(TABLE_END)
    return text[:start] + "\n" + functions_table() + "\n" + text[end:]


# --- CUDA ---------------------------------------------------------------------------------

#: Threads of a row-wise block kernel at most (the size of its shared-memory scratch).
CUDA_ROW_THREADS = 256


def _cuda_elementwise(spec: ElementwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in ELEMENTWISE_FUNCTIONS}, "_device")
    p = "".join(", " + name for name in spec.param_names)
    fns = {fn: f"{n}__{fn}" for fn in ELEMENTWISE_FUNCTIONS}
    for op in elementwise_ops(spec):
        args, template = ELEMENTWISE_OPS[op]
        indexed = template.format(p=p, **fns, **{a: f"{a}[i]" for a in args})
        lines += [
            "",
            "",
            "@cuda.jit(cache=True)",
            f"def {n}__{op}__cuda(out, {', '.join(args)}{p}):",
            "    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):",
            f"        out[i] = {indexed}",
        ]
    return lines


#: A CUDA block's threads stride over row ``r`` by this loop.
_CUDA_EACH = "        for j in range(t, n, nt):"


def _cuda_serial_stats(n: str) -> list[str]:
    """One thread's row statistics (``n``, its maximum key ``m`` and sum of terms ``s``)
    of the 1-d row ``x``, which has at least one element (empty rows never launch)."""
    return [
        "    n = x.shape[0]",
        f"    m = {n}__key(x[0])",
        "    for j in range(1, n):",
        f"        m = _max2(m, {n}__key(x[j]))",
        "    s = c = 0.0",
        "    for j in range(n):",
        f"        s, c = _add(s, c, {n}__term(x[j], m))",
        "    s = _total(s, c)",
    ]


def _cuda_block_stats(n: str) -> list[str]:
    """A block's row statistics of ``x[r]``: each thread's partial maximum and sum,
    combined by ``_block_max``/``_block_sum``."""
    return [
        f"        m = {n}__key(x[r, 0])",
        _CUDA_EACH,
        f"            m = _max2(m, {n}__key(x[r, j]))",
        "        m = _block_max(sh, m)",
        "        s = c = 0.0",
        _CUDA_EACH,
        f"            s, c = _add(s, c, {n}__term(x[r, j], m))",
        "        s = _block_sum(sh, _total(s, c))",
    ]


def _cuda_serial_bodies(spec: RowwiseSpec) -> dict[str, list[str]]:
    """Row loops of the one-thread-per-row kernels, over 1-d rows named by ``ROWWISE_OPS``
    and ``out`` (a CUDA thread has no scratch row: y is recomputed where needed)."""
    n = spec.name
    stats = [*_cuda_serial_stats(n), f"    r = {_norm_expr(spec)}"]
    y_of_x = _out_expr(spec, "x[j]")
    return {
        "forward": stats + ["    for j in range(n):", f"        out[j] = {y_of_x}"],
        "backward_y": [
            "    n = out.shape[0]",
            "    d = c = 0.0",
            "    for j in range(n):",
            f"        d, c = _add(d, c, {n}__bterm(dy[j], y[j]))",
            "    d = _total(d, c)",
            "    for j in range(n):",
            f"        out[j] = {n}__bout(dy[j], y[j], d)",
        ],
        "backward_x": stats + [
            "    d = c = 0.0",
            "    for j in range(n):",
            f"        d, c = _add(d, c, {n}__bterm(dy[j], {y_of_x}))",
            "    d = _total(d, c)",
            "    for j in range(n):",
            f"        out[j] = {n}__bout(dy[j], {y_of_x}, d)",
        ],
    }


def _cuda_block_bodies(spec: RowwiseSpec) -> dict[str, list[str]]:
    """Row loops of the block kernels: the threads of a block stride over the row, each
    keeps a partial result, and ``_block_max``/``_block_sum`` combine the partials."""
    n = spec.name
    each = _CUDA_EACH
    stats = [*_cuda_block_stats(n), f"        rr = {_norm_expr(spec)}"]
    y_of_x = _out_expr(spec, "x[r, j]", r="rr")
    return {
        "forward": stats + [each, f"            out[r, j] = {y_of_x}"],
        "backward_y": [
            "        d = c = 0.0",
            each,
            f"            d, c = _add(d, c, {n}__bterm(dy[r, j], y[r, j]))",
            "        d = _block_sum(sh, _total(d, c))",
            each,
            f"            out[r, j] = {n}__bout(dy[r, j], y[r, j], d)",
        ],
        "backward_x": stats
        + [
            "        d = c = 0.0",
            each,
            f"            d, c = _add(d, c, {n}__bterm(dy[r, j], {y_of_x}))",
            "        d = _block_sum(sh, _total(d, c))",
            each,
            f"            out[r, j] = {n}__bout(dy[r, j], {y_of_x}, d)",
        ],
    }


def _cuda_projection_bodies(spec: ProjectionSpec) -> tuple[dict, dict]:
    """A projection's row loops for the CUDA kernels (one thread per row; one block per
    row): the row's maximum and special values, then Michelot's iteration until the
    support settles or for ``n + 1`` passes (no sort on the device: where a tie within an
    ULP keeps it from settling, the last threshold stands, right within rounding), with
    each pass's sums of one thread or of the block; the output of an element ``v`` as
    ``y(v)``."""
    n = spec.name

    def stats(x, pre, each, reduce):
        """``x``: how to read element j; ``reduce(name)``: the lines that combine a
        thread's partial ``name`` across the block (none for one thread per row)."""
        return [
            f"{pre}m = -math.inf",
            f"{pre}nans = infs = 0.0",
            each,
            f"{pre}    v = {x}",
            f"{pre}    if v > m:",
            f"{pre}        m = v",
            f"{pre}    nans += 1.0 if v != v else 0.0",
            f"{pre}    infs += 1.0 if v == math.inf else 0.0",
            *reduce("m", "_block_max"), *reduce("nans"), *reduce("infs"),
            f"{pre}tau = -1.0",
            f"{pre}state = 1 if nans > 0.0 or m == -math.inf or infs > 1.0 else (2 if infs == 1.0 else 0)",
            f"{pre}kp = -1.0",
            f"{pre}passes = 0",
            # n + 1 passes at most: a tie at the support's edge within an ULP can flip an
            # entry in and out for ever; the threshold is then right within rounding.
            f"{pre}while state == 0 and passes <= n:",
            f"{pre}    passes += 1",
            f"{pre}    s = c = k = 0.0",
            "    " + each,
            f"{pre}        z = {x} - m",
            f"{pre}        if z > tau:",
            f"{pre}            s, c = _add(s, c, z)",
            f"{pre}            k += 1.0",
            f"{pre}    s = _total(s, c)",
            *("    " + line for line in reduce("s")), *("    " + line for line in reduce("k")),
            f"{pre}    if k == kp:",
            f"{pre}        break",
            f"{pre}    kp = k",
            f"{pre}    tau = {n}__tau(s, k)",
        ]

    def y(v):
        return f"(math.nan if state == 1 else ((1.0 if {v} == math.inf else 0.0) if state == 2 else {n}__g(({v} - m) - tau)))"

    def grad(pre, each, dy, yv, out, reduce):
        return [
            f"{pre}d = c = k = ck = 0.0",
            each,
            f"{pre}    sj = {n}__support({yv})",
            f"{pre}    d, c = _add(d, c, sj * {dy})",
            f"{pre}    k, ck = _add(k, ck, sj)",
            f"{pre}d = _total(d, c)",
            f"{pre}k = _total(k, ck)",
            *reduce("d"), *reduce("k"),
            f"{pre}d = d / k",
            each,
            f"{pre}    {out} = {n}__support({yv}) * ({dy} - d) + 0.0",
        ]

    def one(*_):
        return []

    def block(name, combine="_block_sum"):
        return [f"        {name} = {combine}(sh, {name})"]

    s_each, b_each = "    for j in range(n):", _CUDA_EACH
    serial = {
        "forward": ["    n = x.shape[0]", *stats("x[j]", "    ", s_each, one),
                    s_each, f"        out[j] = {y('x[j]')}"],
        "backward_y": ["    n = out.shape[0]", *grad("    ", s_each, "dy[j]", "y[j]", "out[j]", one)],
        "backward_x": ["    n = x.shape[0]", *stats("x[j]", "    ", s_each, one),
                       *grad("    ", s_each, "dy[j]", y("x[j]"), "out[j]", one)],
    }
    blocks = {
        "forward": [*stats("x[r, j]", "        ", b_each, block), b_each, f"            out[r, j] = {y('x[r, j]')}"],
        "backward_y": grad("        ", b_each, "dy[r, j]", "y[r, j]", "out[r, j]", block),
        "backward_x": [*stats("x[r, j]", "        ", b_each, block),
                       *grad("        ", b_each, "dy[r, j]", y("x[r, j]"), "out[r, j]", block)],
    }
    return serial, blocks


def _cuda_rowwise(spec: RowwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    if isinstance(spec, ProjectionSpec):
        lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in PROJECTION_FUNCTIONS}, "_device")
        serial, block = _cuda_projection_bodies(spec)
    else:
        lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in ROW_FUNCTIONS}, "_device")
        serial = _cuda_serial_bodies(spec)
        block = _cuda_block_bodies(spec)
    for op, args in ROWWISE_OPS.items():
        arglist = ", ".join(args)
        lines += [
            "",
            "",
            "@cuda.jit(device=True)",
            f"def {n}__{op}__row({arglist}, out):",
            *serial[op],
            "",
            "",
            "@cuda.jit(cache=True)",
            f"def {n}__{op}__cuda_serial(out, {arglist}):",
            "    inner = out.shape[2]",
            "    for r in range(cuda.grid(1), out.shape[0] * inner, cuda.gridsize(1)):",
            "        o = r // inner",
            "        i = r - o * inner",
            f"        {n}__{op}__row({', '.join(a + '[o, :, i]' for a in args)}, out[o, :, i])",
            "",
            "",
            "@cuda.jit(cache=True)",
            f"def {n}__{op}__cuda_block(out, {arglist}):",
            "    sh = cuda.shared.array(ROW_THREADS, float64)",
            "    t = cuda.threadIdx.x",
            "    nt = cuda.blockDim.x",
            "    n = out.shape[1]",
            "    for r in range(cuda.blockIdx.x, out.shape[0], cuda.gridDim.x):",
            *block[op],
        ]
    return lines


def _cuda_reduction(spec: ReductionSpec) -> list[str]:
    """A reduction's CUDA kernels: one block per row for rows along the contiguous axis,
    one thread per row across it (as :func:`_cuda_rowwise`), with its row statistics."""
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in REDUCTION_FUNCTIONS}, "_device")
    serial_stats = _cuda_serial_stats(n)
    each = _CUDA_EACH
    block_stats = _cuda_block_stats(n)
    serial = {
        "forward": ("x", [*serial_stats, f"    return {n}__value(s, m)"], "out[o, i] = {n}__forward__row(x[o, :, i])"),
        "backward_x": ("dy, x, out", [*serial_stats, f"    r = {n}__norm(s, m)", "    for j in range(n):",
                                      f"        out[j] = dy * {n}__finish({n}__term(x[j], m), r)"],
                       "{n}__backward_x__row(dy[o, i], x[o, :, i], out[o, :, i])"),
    }
    block = {
        "forward": ("x", ["        if t == 0:", f"            out[r] = {n}__value(s, m)"]),
        "backward_x": ("dy, x", [f"        rr = {n}__norm(s, m)", "        d = dy[r]", each,
                                 f"            out[r, j] = d * {n}__finish({n}__term(x[r, j], m), rr)"]),
    }
    for op, (args, body, call) in serial.items():
        inputs = ", ".join(a for a in args.split(", ") if a != "out")
        lines += [
            "", "", "@cuda.jit(device=True)", f"def {n}__{op}__row({args}):", *body,
            "", "", "@cuda.jit(cache=True)", f"def {n}__{op}__cuda_serial(out, {inputs}):",
            "    inner = x.shape[2]",
            "    for r in range(cuda.grid(1), x.shape[0] * inner, cuda.gridsize(1)):",
            "        o = r // inner",
            "        i = r - o * inner",
            "        " + call.format(n=n),
        ]
    for op, (args, body) in block.items():
        lines += [
            "", "", "@cuda.jit(cache=True)", f"def {n}__{op}__cuda_block(out, {args}):",
            "    sh = cuda.shared.array(ROW_THREADS, float64)",
            "    t = cuda.threadIdx.x",
            "    nt = cuda.blockDim.x",
            "    n = x.shape[1]",
            "    for r in range(cuda.blockIdx.x, x.shape[0], cuda.gridDim.x):",
            *block_stats,
            *body,
        ]
    return lines


CUDA_HEADER = '''\
# Generated by `python -m fastact._codegen` from fastact/declarations/: do not edit.
"""Compiled CUDA kernels, one set per declaration (imported only by :mod:`fastact._cuda`).

The scalar functions of each declaration are compiled as CUDA device functions: the same
source that :mod:`fastact._kernels_cpu` compiles for the CPU.  For each activation and
operation ``op``:

* ``<name>__<op>__cuda(out, *inputs, *params)`` (elementwise) is a grid-stride loop over
  1-d arrays;
* ``<name>__<op>__cuda_block(out, *inputs)`` (row-wise) runs one block per row of 2-d
  row-major arrays, the threads striding over the row in chunks of the block size and
  combining their partial maximum and sums in shared memory: for rows along the
  contiguous axis;
* ``<name>__<op>__cuda_serial(out, *inputs)`` (row-wise) runs one thread per row of
  (outer, n, inner) arrays, with the row loop of the CPU kernels: for rows across the
  contiguous axis, where neighbouring threads then read neighbouring elements.

Every kernel is cached on disk (``cache=True``).
"""

import numpy as np
from numba import cuda, float64

from fastact import _cudamath as math
from fastact._literal import lit

DECLARATIONS_SHA256 = "{digest}"

_device = cuda.jit(device=True)

#: Threads of a ``__cuda_block`` kernel at most: a launch uses a power of two up to this.
ROW_THREADS = {row_threads}
#: Blocks per channel of a weight's gradient at most (``<name>__backward_xw__cuda``).
WEIGHT_PARTS = {weight_parts}


@cuda.jit(device=True)
def _max2(a, b):
    return b if b > a else a


@cuda.jit(device=True)
def _add(s, c, v):
    """(s + v, c plus its rounding error): a row's terms added with compensation (TwoSum)."""
    t = s + v
    bp = t - s
    return t, c + ((s - (t - bp)) + (v - bp))


@cuda.jit(device=True)
def _total(s, c):
    """The compensated sum: s + c, or s where c is not finite (a sum that is inf or NaN)."""
    return s + c if abs(c) < math.inf else s


@cuda.jit(device=True)
def _block_max(sh, v):
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    h = cuda.blockDim.x // 2
    while h > 0:
        if t < h:
            w = sh[t + h]
            if w > sh[t] or w != w:
                sh[t] = w
        cuda.syncthreads()
        h //= 2
    v = sh[0]
    cuda.syncthreads()  # every thread has read the result before the scratch is reused
    return v


@cuda.jit(device=True)
def _block_sum(sh, v):
    t = cuda.threadIdx.x
    sh[t] = v
    cuda.syncthreads()
    h = cuda.blockDim.x // 2
    while h > 0:
        if t < h:
            sh[t] += sh[t + h]
        cuda.syncthreads()
        h //= 2
    v = sh[0]
    cuda.syncthreads()
    return v


@cuda.jit(cache=True)
def _sum_parts__cuda(part, out):
    """A weight's gradient from the blocks' sums ``part[c, :]``, one thread per channel,
    in order, with compensation."""
    for c in range(cuda.grid(1), part.shape[0], cuda.gridsize(1)):
        s = float64(0.0)
        e = float64(0.0)
        for b in range(part.shape[1]):
            s, e = _add(s, e, part[c, b])
        out[c] = _total(s, e)


@cuda.jit(cache=True)
def cast__cuda(out, x):
    # Elementwise copy with conversion: float16 or integer input to the compute dtype, the
    # compute dtype to a float16 out, or a plain copy out of scratch memory.
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = x[i]
'''


def _cuda_gated(spec: GatedSpec) -> list[str]:
    """A gated unit's CUDA kernels: a grid-stride loop over the (outer, m) positions."""
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in GATED_FUNCTIONS}, "_device")
    p = "".join(", " + name for name in spec.param_names)
    bodies = {
        "forward": [f"out[i, j] = {n}__f(x[i, 0, j], x[i, 1, j]{p})"],
        "backward_x": [
            "av, bv, d = x[i, 0, j], x[i, 1, j], dy[i, j]",
            f"out[i, 0, j] = d * {n}__dfda(av, bv{p})",
            f"out[i, 1, j] = d * {n}__dfdb(av, bv{p})",
        ],
    }
    for op, args in GATED_OPS.items():
        lines += [
            "", "", "@cuda.jit(cache=True)", f"def {n}__{op}__cuda(out, {', '.join(args)}{p}):",
            "    m = x.shape[2]",
            "    for t in range(cuda.grid(1), x.shape[0] * m, cuda.gridsize(1)):",
            "        i = t // m",
            "        j = t - i * m",
            *("        " + s for s in bodies[op]),
        ]
    return lines


#: Blocks per channel of the CUDA weight-gradient kernel at most (its partial sums).
CUDA_WEIGHT_PARTS = 64


def _cuda_weighted(spec: WeightedSpec) -> list[str]:
    """An activation with a weight array on CUDA, over the (outer, C, inner) view of ``x``
    with one weight per channel: a grid-stride loop over the elements; for
    ``backward_xw``, blocks (c, p) over channel ``c``'s elements, writing ``dx`` and the
    block's sum of the weight's terms into ``part[c, p]`` (a fixed order: the launch
    fixes the block size and the parts), which ``_sum_parts__cuda`` adds in order."""
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    lines += scalar_functions(n, {fn: getattr(spec, fn) for fn in WEIGHTED_FUNCTIONS}, "_device")
    p = "".join(", " + name for name in spec.param_names)
    for op in weighted_ops(spec):
        args = ", ".join(WEIGHTED_OPS[op])
        if op == "backward_xw":
            lines += [
                "", "", "@cuda.jit(cache=True)", f"def {n}__{op}__cuda(out, {args}, w{p}, part):",
                "    sh = cuda.shared.array(ROW_THREADS, float64)",
                "    outer, C, inner = x.shape",
                "    c = cuda.blockIdx.x",
                "    parts = cuda.gridDim.y",
                "    nt = cuda.blockDim.x",
                "    wv = w[c]",
                "    acc = float64(0.0)",
                "    for q in range(cuda.blockIdx.y * nt + cuda.threadIdx.x, outer * inner, parts * nt):",
                "        i = q // inner",
                "        j = q - i * inner",
                "        xj, gj = x[i, c, j], dy[i, c, j]",
                f"        out[i, c, j] = gj * {n}__dfdx(xj, wv{p})",
                f"        acc += float64(gj) * float64({n}__dfdw(xj, wv{p}))",
                "    acc = _block_sum(sh, acc)",
                "    if cuda.threadIdx.x == 0:",
                "        part[c, cuda.blockIdx.y] = acc",
            ]
            continue
        fn = {"forward": "f", "grad": "dfdx", "grad2": "d2fdx2", "backward_x": "dfdx"}[op]
        value = f"{n}__{fn}(x[i, c, j], w[c]{p})"
        if op == "backward_x":
            value = f"dy[i, c, j] * {value}"
        lines += [
            "", "", "@cuda.jit(cache=True)", f"def {n}__{op}__cuda(out, {args}, w{p}):",
            "    outer, C, inner = x.shape",
            "    for t in range(cuda.grid(1), outer * C * inner, cuda.gridsize(1)):",
            "        i = t // (C * inner)",
            "        r = t - i * (C * inner)",
            "        c = r // inner",
            "        j = r - c * inner",
            f"        out[i, c, j] = {value}",
        ]
    return lines


_CUDA_KINDS = {"elementwise": _cuda_elementwise, "rowwise": _cuda_rowwise, "reduction": _cuda_reduction,
               "gated": _cuda_gated, "weighted": _cuda_weighted}


def render_cuda() -> str:
    lines = [CUDA_HEADER.format(digest=declarations_digest(), row_threads=CUDA_ROW_THREADS,
                                weight_parts=CUDA_WEIGHT_PARTS)]
    lines += helpers_source("_device")
    for spec in REGISTRY.values():
        lines += ["", ""]
        lines += _CUDA_KINDS[spec.kind](spec)
    return "\n".join(lines) + "\n"


TARGETS = {PACKAGE / "_kernels_cpu.py": render, PACKAGE / "_kernels_cuda.py": render_cuda}
if README.exists():  # a source checkout, not an installed wheel
    TARGETS[README] = render_readme


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastact._codegen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated module is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path, make in TARGETS.items():
        text = make()
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
            print(f"wrote {path}")
    if args.check and stale:
        print("out of date (run `python -m fastact._codegen`): " + ", ".join(str(p) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
