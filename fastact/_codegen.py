"""Generate the CPU kernel module from the declarations.

Numba's disk cache cannot hold kernels that a factory builds around a captured scalar
function, nor kernels that take the scalar function as an argument: both recompile in
every new process (numba#6264, numba#2065).  A kernel that calls a module-level jitted
function by its global name is cached.  So instead of building kernels in closures at run
time, this script writes them out as ordinary module-level source, one per activation and
operation, in ``fastact/_kernels_cpu.py``; the tests fail when that file is not current.

The generated module records the SHA-256 of ``declarations.py``: Numba keys its cache on
the kernel module's own file, so a change to the math must change that file too, or
stale machine code would be loaded.  Regenerate with::

    python -m fastact._codegen          # rewrite the generated module(s)
    python -m fastact._codegen --check  # exit 1 if they are out of date
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from fastact import declarations  # noqa: F401  (fills the registry)
from fastact._spec import DTYPES, REGISTRY, ElementwiseSpec, RowwiseSpec

PACKAGE = Path(__file__).resolve().parent
DECLARATIONS = PACKAGE / "declarations.py"

#: Elementwise operations: name -> (input names, scalar expression template).
ELEMENTWISE_OPS = {
    "forward": (("x",), "{f}({x}{p})"),
    "grad": (("x",), "{dfdx}({x}{p})"),
    "backward_x": (("dy", "x"), "{dy} * {dfdx}({x}{p})"),
    "backward_y": (("dy", "y"), "{dy} * {dfdy}({y}{p})"),
}

#: Row-wise operations: name -> input names (each a row; the output row comes last).
ROWWISE_OPS = {
    "forward": ("x",),
    "backward_x": ("dy", "x"),
    "backward_y": ("dy", "y"),
}


def declarations_digest() -> str:
    return hashlib.sha256(DECLARATIONS.read_bytes()).hexdigest()


def elementwise_ops(spec: ElementwiseSpec) -> list[str]:
    return [op for op in ELEMENTWISE_OPS if op != "backward_y" or spec.dfdy is not None]


def _elementwise(spec: ElementwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    for fn in ("f", "dfdx", "dfdy"):
        if getattr(spec, fn) is not None:
            lines.append(f"{n}__{fn} = njit(_d.{n}.{fn})")
    p = "".join(", " + name for name in spec.param_names)
    for op in elementwise_ops(spec):
        args, template = ELEMENTWISE_OPS[op]
        fns = {fn: f"{n}__{fn}" for fn in ("f", "dfdx", "dfdy")}
        scalar = template.format(p=p, **fns, **{a: a for a in args})
        indexed = template.format(p=p, **fns, **{a: f"{a}[i]" for a in args})
        arglist = ", ".join(args) + p
        lines += [
            "",
            "",
            f"def {n}__{op}({arglist}):",
            f"    return {scalar}",
        ]
        if spec.params:
            # The same kernel with the default parameters as constants of the input's
            # dtype (the values the general kernel receives): a ufunc with a scalar
            # operand costs twice as much per call at n=1000 as a unary one.
            args_only = ", ".join(args)
            for t in DTYPES:
                consts = "".join(f", np.{t}({p.default!r})" for p in spec.params)
                baked = template.format(p=consts, **fns, **{a: a for a in args})
                lines += ["", "", f"def {n}__{op}__{t}({args_only}):", f"    return {baked}"]
        lines += [
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True)",
            f"def {n}__{op}__parallel(out, {arglist}):",
            "    for i in prange(out.shape[0]):",
            f"        out[i] = {indexed}",
        ]
    return lines


def _rowwise(spec: RowwiseSpec) -> list[str]:
    n = spec.name
    lines = [f"# --- {n} " + "-" * (84 - len(n))]
    for fn in ("key", "term", "out", "bterm", "bout"):
        lines.append(f"{n}__{fn} = njit(_d.{n}.{fn})")
    stats = [
        "    n = out.shape[0]",
        "    m = -math.inf",
        "    for j in range(n):",
        f"        k = {n}__key(x[j])",
        "        if k > m or k != k:  # a NaN anywhere makes the row NaN",
        "            m = k",
        "    s = 0.0",
        "    for j in range(n):",
        f"        s += {n}__term(x[j], m)",
    ]
    bodies = {
        "forward": stats + ["    for j in range(n):", f"        out[j] = {n}__out(x[j], m, s)"],
        "backward_y": [
            "    n = out.shape[0]",
            "    d = 0.0",
            "    for j in range(n):",
            f"        d += {n}__bterm(dy[j], y[j])",
            "    for j in range(n):",
            f"        out[j] = {n}__bout(dy[j], y[j], d)",
        ],
        "backward_x": stats
        + [
            "    d = 0.0",
            "    for j in range(n):",
            f"        d += {n}__bterm(dy[j], {n}__out(x[j], m, s))",
            "    for j in range(n):",
            f"        out[j] = {n}__bout(dy[j], {n}__out(x[j], m, s), d)",
        ],
    }
    for op, args in ROWWISE_OPS.items():
        arglist = ", ".join(args)
        lines += [
            "",
            "",
            "@njit(nogil=True)",
            f"def {n}__{op}__row({arglist}, out):",
            *bodies[op],
            "",
            "",
            f"def {n}__{op}({arglist}, out):",
            f"    {n}__{op}__row({arglist}, out)",
            "",
            "",
            "@njit(parallel=True, cache=True, nogil=True)",
            f"def {n}__{op}__parallel(out, {arglist}):",
            "    for i in prange(out.shape[0]):",
            f"        {n}__{op}__row({', '.join(a + '[i]' for a in args)}, out[i])",
        ]
    return lines


HEADER = '''\
# Generated by `python -m fastact._codegen` from fastact/declarations.py: do not edit.
"""Compiled CPU kernels, one set per declaration.

For each activation and operation ``op``:

* ``<name>__<op>`` is the scalar kernel of the single-threaded ufunc (elementwise) or
  gufunc (row-wise); :mod:`fastact._cpu` wraps it with ``numba.vectorize`` or
  ``numba.guvectorize`` on first use;
* ``<name>__<op>__<dtype>`` (activations with parameters) is the same scalar kernel with
  the default parameters baked in as constants of that dtype;
* ``<name>__<op>__parallel(out, *inputs, *params)`` is the multi-threaded loop over
  1-d (elementwise) or 2-d row-major (row-wise) arrays.

Both call the same scalar functions, so the two targets agree bit for bit.
"""

import math

import numpy as np
from numba import njit, prange

from fastact import declarations as _d

DECLARATIONS_SHA256 = "{digest}"
'''


def render() -> str:
    lines = [HEADER.format(digest=declarations_digest())]
    for spec in REGISTRY.values():
        lines += ["", ""]
        lines += _rowwise(spec) if isinstance(spec, RowwiseSpec) else _elementwise(spec)
    return "\n".join(lines) + "\n"


TARGETS = {PACKAGE / "_kernels_cpu.py": render}


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
