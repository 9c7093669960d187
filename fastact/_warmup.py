"""``fastact.warmup``: load (or compile) kernels before the first call needs them."""

from __future__ import annotations

import sys
import time

import numpy as np

__all__ = ["warmup"]


def _operations(fn):
    """(label, prepare(x, target), targets or None for all) for every operation of ``fn``;
    with parameters, also the general ufuncs that take them as operands (which calls
    with non-default values use; the parallel kernels take parameters either way)."""
    from fastact._dispatch import methods
    from fastact._spec import RowwiseSpec, dfdy_allowed

    spec = fn.spec
    name = spec.name
    if spec.kind == "gated":
        return [(name, lambda x, t: fn(x, target=t), None),
                (f"{name}.backward", lambda x, t: fn.backward(fn(x, target=t), x=x, target=t), None)]
    if spec.kind == "weighted":  # both layouts of the weight: channel runs, positions
        def call(op, shape):
            def run(x, t):
                x3 = np.resize(x, shape)
                w = np.full(shape[1], 0.25, x.dtype)
                if op == "backward":
                    return fn.backward(x3, x=x3, weight=w, target=t)
                return (fn if op == "forward" else getattr(fn, op))(x3, w, target=t)
            return run

        return [(f"{name}{'' if op == 'forward' else '.' + op} {layout}", call(op, shape), None)
                for op in ("forward", "grad", *(("grad2",) if spec.d2fdx2 is not None else ()), "backward")
                for layout, shape in (("channels", (2, 2, 64)), ("positions", (2, 2, 2)))]
    if getattr(spec, "sampled", ""):
        ops = [(f"{name} training", lambda x, t: fn(x, slopes=x, target=t), None),
               (f"{name}.backward training", lambda x, t: fn.backward(x, x=x, slopes=x, target=t), None)]
    else:
        ops = []
    if spec.kind == "reduction":
        return [(name, lambda x, t: fn(x, axis=-1, target=t), None),
                (f"{name}.backward", lambda x, t: fn.backward(fn(x, axis=-1, target=t), x=x, axis=-1, target=t), None)]
    ops.append((name, lambda x, t: fn(x, target=t), None))
    for method in ("grad", "grad2"):
        if method in methods(spec):
            ops.append((f"{name}.{method}", lambda x, t, m=getattr(fn, method): m(x, target=t), None))
    rowwise = isinstance(spec, RowwiseSpec)
    froms = ("x", "y") if rowwise or dfdy_allowed(spec, spec.kernel_defaults) else ("x",)
    for operand in froms:
        label = f"{name}.backward" + ("(y=)" if operand == "y" else "")
        ops.append((label, lambda x, t, k=operand: fn.backward(x, **{k: x}, target=t), None))
        if not rowwise:  # backward(..., accumulate=True): its own kernels
            ops.append((f"{label} accumulate",
                        lambda x, t, k=operand: fn.backward(x, **{k: x}, out=x.copy(), accumulate=True, target=t),
                        None))
    if spec.params and not isinstance(spec, RowwiseSpec):
        from fastact._codegen import elementwise_ops

        for op in elementwise_ops(spec):
            ops.append((f"{name} {op} with parameters", lambda x, t, op=op: fn._ufunc(op, x.dtype, ()), ("cpu",)))
    return ops


class _Progress:
    def __init__(self, total, enabled, stream=sys.stderr):
        self.total, self.enabled, self.stream, self.done = total, enabled, stream, 0
        self.start = time.perf_counter()

    def step(self, label):
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\rfastact warmup [{bar}] {self.done}/{self.total} {label:<48.48}")
        self.stream.flush()

    def close(self):
        if self.enabled:
            self.stream.write(f"\rfastact warmup: {self.done} kernels in {time.perf_counter() - self.start:.1f} s"
                              + " " * 60 + "\n")
            self.stream.flush()


def warmup(names=None, *, dtypes=("float32", "float64"), targets=("cpu", "parallel"), progress=None) -> int:
    """Load every kernel that the given functions use from the disk cache, compiling the
    ones that are not there yet, so that later calls start at full speed.

    A kernel is otherwise loaded by the first call that needs it (a few milliseconds each
    with a warm cache, about a second to compile into an empty one); calling this at
    start-up moves that cost out of a timed region or a latency-sensitive first request.

    Args:
        names: function names (``["relu", "softmax"]``) or functions; default: all.
        dtypes: the dtypes to prepare, among ``"float32"`` and ``"float64"`` (float16 runs
            the float32 kernels).
        targets: among ``"cpu"``, ``"parallel"`` and ``"cuda"``.
        progress: show a progress bar on standard error; default: when it is a terminal.

    Returns:
        The number of kernels prepared (one per function, operation, dtype and target).

    Example:
        >>> import fastact as fa
        >>> fa.warmup(["relu"], dtypes=["float32"], targets=["cpu"], progress=False)
        14
    """
    import fastact
    from fastact._dispatch import TARGETS

    if names is None:
        fns = list(fastact.FUNCTIONS.values())
    else:
        if isinstance(names, str):
            names = [names]
        fns = []
        for n in names:
            key = getattr(n, "__name__", n)
            if key not in fastact.FUNCTIONS:
                raise ValueError(f"warmup(): unknown function {n!r}; the functions are {', '.join(fastact.FUNCTIONS)}")
            fns.append(fastact.FUNCTIONS[key])
    dts = []
    for d in dtypes:
        dt = np.dtype(d)
        if dt not in (np.float32, np.float64):
            raise ValueError(f"warmup(): dtypes must be float32 or float64 (float16 uses float32's kernels), got {d!r}")
        dts.append(dt)
    for t in targets:
        if t not in TARGETS or t == "auto":
            raise ValueError(f"warmup(): targets must be among 'cpu', 'parallel', 'cuda', got {t!r}")
    work = [(label, call, dt, t) for fn in fns for label, call, only in _operations(fn) for dt in dts for t in targets
            if only is None or t in only]
    bar = _Progress(len(work), sys.stderr.isatty() if progress is None else bool(progress))
    try:
        for label, call, dt, t in work:
            # Two rows of two: every kernel shape (elementwise 1-d, row-wise 2-d) is typed.
            x = np.full((2, 2), 0.5, dt)
            call(x, t)
            bar.step(f"{label} {dt} {t}")
    finally:
        bar.close()
    return len(work)
