"""How a declaration's scalar functions become source in the generated kernel modules.

The declarations are plain scalar Python: ``return x if x > 0.0 else alpha * math.expm1(x)``.
Compiled as written, a Python float literal is a float64, so a float32 kernel would widen
every value that meets one and compute in double precision: half the vector lanes, and
on GPUs a fraction of the float32 rate.  The code generator therefore rewrites each
function's source before it writes it into a generated module:

* every numeric literal ``c`` becomes ``lit(c, x)``, ``c`` in the type of the function's
  first argument (the element), so float32 kernels do float32 arithmetic and float64
  kernels float64 (``lit`` folds to a constant; integer exponents of ``**`` stay
  integers, which Numba turns into multiplications);
* ``double(e)`` becomes ``np.float64(e)``: a declaration's explicit request for double
  precision, with its reason written beside it in the declaration (a ``math`` call of
  such an argument is wrapped in ``np.float64`` too, for the CUDA simulator);
* the function is renamed to its place in the generated module, and calls of the
  declarations' helpers (functions decorated with :func:`fastact._spec.helper`) to the
  helpers' generated names.

The result is ordinary source (``ast.unparse``), readable in ``_kernels_cpu.py`` and
``_kernels_cuda.py``.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

#: The name, in the generated modules, of the helper that types a literal.
LIT = "lit"


class _Rewriter(ast.NodeTransformer):
    def __init__(self, element: str, helpers: dict[str, str]):
        self.element = element
        self.helpers = helpers

    def visit_BinOp(self, node):
        if isinstance(node.op, ast.Pow) and isinstance(node.right, ast.Constant) and type(node.right.value) is int:
            node.left = self.visit(node.left)
            return node  # x ** 2: an integer power, computed by multiplication
        return self.generic_visit(node)

    def visit_Constant(self, node):
        if type(node.value) in (int, float):
            return ast.Call(ast.Name(LIT, ast.Load()), [node, ast.Name(self.element, ast.Load())], [])
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if isinstance(node.func, ast.Name):
            if node.func.id == "double":
                if len(node.args) != 1 or node.keywords:
                    raise SyntaxError("double() takes exactly one argument")
                node.func = ast.Attribute(ast.Name("np", ast.Load()), "float64", ast.Load())
            elif node.func.id in self.helpers:
                node.func = ast.Name(self.helpers[node.func.id], ast.Load())
        elif _is_math_call(node) and any(_is_double(n) for arg in node.args for n in ast.walk(arg)):
            # math.exp(double(x)) stays a float64 where Python evaluates it (the CUDA
            # simulator: math returns a Python float, which NumPy 2 takes as weak, so
            # alpha * math.exp(...) would round to alpha's float32); compiled, a no-op.
            return ast.Call(ast.Attribute(ast.Name("np", ast.Load()), "float64", ast.Load()), [node], [])
        return node


def _is_math_call(node) -> bool:
    f = node.func
    return isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "math"


def _is_double(node) -> bool:
    """``np.float64(...)``: what ``double(...)`` has become by the time its caller is seen."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "float64"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "np")


def function_source(fn, name: str, helpers: dict[str, str]) -> str:
    """The source of the scalar function ``fn`` as the generated modules hold it, named
    ``name``; ``helpers`` maps the declarations' helper names to their generated names."""
    source = textwrap.dedent(inspect.getsource(fn))
    tree = ast.parse(source)
    node = tree.body[0]
    if not isinstance(node, ast.FunctionDef):
        raise TypeError(f"{fn.__qualname__}: a declared scalar function must be a plain def")
    args = node.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or not args.args:
        raise TypeError(f"{fn.__qualname__}: scalar functions take positional arguments only, the element first")
    node.name = name
    node.decorator_list = []
    node.returns = None
    # Docstrings are the declarations' to keep; the generated copy needs only the code.
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:] or [ast.Pass()]
    node.body = body
    node = _Rewriter(args.args[0].arg, helpers).visit(node)
    ast.fix_missing_locations(node)
    return ast.unparse(node)


def shape_of(fn) -> tuple:
    """What a one-line scalar function is, where the code generator can use that:
    ``("arg", k)`` for ``return <argument k>``, ``("neg", k)`` for ``return -<argument k>``,
    ``("product", i, j)`` for
    ``return <argument i> * <argument j>``, else ``("other",)``."""
    node = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
    names = [a.arg for a in node.args.args]
    body = [b for b in node.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Return):
        v = body[0].value
        if isinstance(v, ast.Name) and v.id in names:
            return ("arg", names.index(v.id))
        if isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.USub) and isinstance(v.operand, ast.Name) \
                and v.operand.id in names:
            return ("neg", names.index(v.operand.id))
        if (isinstance(v, ast.BinOp) and isinstance(v.op, ast.Mult) and isinstance(v.left, ast.Name)
                and isinstance(v.right, ast.Name) and v.left.id in names and v.right.id in names):
            return ("product", names.index(v.left.id), names.index(v.right.id))
    return ("other",)
