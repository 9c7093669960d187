"""fastact: Numba-compiled activation functions with derivatives and fused backward passes.

Every function runs on one core (``target="cpu"``, a NumPy ufunc), on all cores
(``"parallel"``), or picks by size (``"auto"``, the default), with bitwise-identical
results::

    >>> import numpy as np, fastact as fa
    >>> x = np.array([-2.0, 0.0, 3.0])
    >>> fa.relu(x)
    array([0., 0., 3.])
    >>> fa.relu.backward(np.ones(3), x=x)
    array([0., 0., 1.])

``fastact.REGISTRY`` maps every function's name to its declaration
(:mod:`fastact.declarations`).
"""

from fastact import declarations as _declarations  # noqa: F401  (fills the registry)
from fastact._config import config, get_config, set_config
from fastact._dispatch import (
    TARGETS,
    CudaUnavailableError,
    Elementwise,
    Gated,
    Reduction,
    Rowwise,
    Sampled,
    Weighted,
)
from fastact._memory import memory_stats, release_memory
from fastact._spec import REGISTRY, ElementwiseSpec, GatedSpec, ReductionSpec, RowwiseSpec, WeightedSpec
from fastact._warmup import warmup

__version__ = "0.1.0"


def _build():
    kinds = {ElementwiseSpec: Elementwise, RowwiseSpec: Rowwise, ReductionSpec: Reduction, GatedSpec: Gated,
             WeightedSpec: Weighted}
    def kind(spec):
        return next(cls for base, cls in kinds.items() if isinstance(spec, base))  # a projection is row-wise

    return {name: (Sampled if getattr(spec, "sampled", "") else kind(spec))(spec) for name, spec in REGISTRY.items()}


FUNCTIONS = _build()
globals().update(FUNCTIONS)
#: Other names of some functions (``swish`` is ``silu``): the same objects.
ALIASES = {alias: name for name, spec in REGISTRY.items() for alias in getattr(spec, "aliases", ())}
globals().update({alias: FUNCTIONS[name] for alias, name in ALIASES.items()})

#: Names of the elementwise activations, of the row-wise functions, of the reductions, of
#: the gated units and of the activations with a weight array, in declaration order.
ELEMENTWISE = tuple(n for n, s in REGISTRY.items() if isinstance(s, ElementwiseSpec))
ROWWISE = tuple(n for n, s in REGISTRY.items() if isinstance(s, RowwiseSpec))
REDUCTIONS = tuple(n for n, s in REGISTRY.items() if isinstance(s, ReductionSpec))
GATED = tuple(n for n, s in REGISTRY.items() if isinstance(s, GatedSpec))
WEIGHTED = tuple(n for n, s in REGISTRY.items() if isinstance(s, WeightedSpec))


def cuda_available() -> bool:
    """Whether ``target="cuda"`` can run here: numba-cuda is installed and finds a GPU and
    driver (or runs under its simulator, ``NUMBA_ENABLE_CUDASIM=1``).  The first call
    imports Numba's CUDA support; where it returns False, ``target="cuda"`` raises
    :class:`CudaUnavailableError` saying why."""
    from fastact import _cuda

    return _cuda.available()


__all__ = [
    *FUNCTIONS,
    *ALIASES,
    "FUNCTIONS",
    "ALIASES",
    "ELEMENTWISE",
    "ROWWISE",
    "REDUCTIONS",
    "GATED",
    "WEIGHTED",
    "REGISTRY",
    "TARGETS",
    "CudaUnavailableError",
    "Elementwise",
    "Rowwise",
    "Reduction",
    "Gated",
    "Weighted",
    "cuda_available",
    "config",
    "set_config",
    "get_config",
    "warmup",
    "release_memory",
    "memory_stats",
    "layers",
    "plot",
]


def __getattr__(name):
    # Submodules that import more than the core does, loaded on first use.
    if name in ("layers", "plot"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
