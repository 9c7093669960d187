"""The math of every fastact function, declared once.

Each declaration is a class body of plain scalar Python functions; nothing here knows
about targets, arrays or dtypes.  :mod:`fastact._codegen` compiles the same functions into
the single-threaded ufuncs, the multi-threaded loops and the CUDA kernels, so a change
here changes every target at once (and ``python -m fastact._codegen`` must be re-run:
the test suite fails until it is).

Conventions every declaration follows:

* NaN in gives NaN out, for ``f``, ``dfdx`` and ``dfdy`` alike.  Comparisons with NaN are
  false, so each function ends in a branch that returns the NaN input itself.
* Infinities give the exact limits, and no expression overflows for finite input
  (sigmoid takes ``exp`` of ``-|x|`` only, a non-positive argument).
* A literal takes the type of the function's first argument (the code generator
  rewrites ``0.5`` into the element's dtype, :mod:`fastact._rewrite`), so float32 kernels
  compute in float32: twice the vector lanes of double precision.  Where float32 would
  lose what matters, ``double(e)`` computes ``e`` in float64, with the reason written
  beside it.
* Prefer straight-line code: on the CPU, ``math.exp``, ``expm1``, ``log``, ``log1p``,
  ``tanh``, ``erf`` and ``erfc`` compile to :mod:`fastact._vmath`'s branch-free
  versions, and a function without calls or data-dependent work in its branches is
  compiled into vector instructions.
* A scalar function that several declarations share is declared once with ``@helper``.
* A derivative at a kink follows PyTorch unless a parameter says otherwise.
* ``work=`` says how much one element costs next to relu's (``exp`` makes it about 3 on
  2 cores, measured as the sizes where the threads start to pay): ``target="auto"``
  starts the threads that many times sooner.
* ``dfdy(y)`` is declared only where it equals ``dfdx(x)`` for ``y = f(x)``; when that
  holds only for some parameters, ``dfdy_requires`` says for which.

The declarations are grouped by family, one module each; the order of the imports below
is the order of :data:`fastact.REGISTRY` (and of the README's table).  To add an
activation, add one declaration to its family's module (with its docstring) and a
reference implementation to :mod:`fastact.reference`, and re-run
``python -m fastact._codegen``: it is then exported, tested and benchmarked.
"""

# Each docstring is the public documentation of ``fastact.<name>``; its examples run as
# tests.
from fastact.declarations import (  # noqa: F401, E402
    helpers, rectifiers, sigmoids, shrinkage, elementary, weighted, gated, rowwise, reductions,
)
