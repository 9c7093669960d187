"""The ``cuda`` target: device arrays, launch configuration and streams.

Nothing here imports Numba's CUDA support until a call asks for the CUDA target or passes
a device array, so ``import fastact`` works (and costs nothing) where CUDA is missing.

The dispatch layer (:mod:`fastact._dispatch`) validates every call the same way for every
target: for a device operand it sees a NumPy *shadow* of the operand's shape and dtype
(:class:`Launch`), so dtype, broadcasting and ``out`` checks and their messages are the
CPU's own.  :class:`Launch` then maps the shadows back to the device arrays and runs the
kernels of the generated module :mod:`fastact._kernels_cuda`.

Layout.  Kernels see contiguous views: elementwise kernels a 1-d view of every operand,
row-wise kernels a (rows, n) view when the rows lie along the contiguous axis (one block per
row) and an (outer, n, inner) view otherwise (one thread per row, so that neighbouring
threads read neighbouring elements).  Host operands are broadcast and laid out to match on
the host before the copy; device operands must already be contiguous, C or Fortran order,
all in the same order, and of the result's shape: anything else raises ``ValueError``
rather than computing on a hidden copy.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import warnings

import numpy as np

from fastact._locks import ForkSafeLock


class CudaUnavailableError(RuntimeError):
    """``target="cuda"`` was asked for where the CUDA target cannot run."""


INSTALL_HINT = (
    "install it with `pip install numba-cuda` (or `pip install -e \".[cuda]\"` in a clone of fastact) "
    "on a machine with an NVIDIA GPU and driver"
)
GPU_HINT = (
    "the CUDA target needs an NVIDIA GPU with its driver, and the CUDA libraries: a system-wide "
    "toolkit or `pip install \"numba-cuda[cu13]\"` (`[cu12]` for a CUDA 12 driver)"
)

_lock = ForkSafeLock(reentrant=True)
_loaded = None  # (numba.cuda, generated kernel module) once loaded
_reason = None  # why the CUDA target cannot run, once known


def _load():
    """(numba.cuda, kernels) or raise :class:`CudaUnavailableError`."""
    global _loaded, _reason
    if _loaded is not None:
        return _loaded
    with _lock:
        if _loaded is None and _reason is None:
            _reason = _probe()
        if _reason is not None:
            raise CudaUnavailableError(_reason)
    return _loaded


def _probe() -> str | None:
    global _loaded
    # The CUDA target built into numba itself is deprecated and unmaintained; fastact
    # uses NVIDIA's numba-cuda package, which takes over the ``numba.cuda`` name.
    if importlib.util.find_spec("numba_cuda") is None:
        return f"the numba-cuda package is not installed ({INSTALL_HINT})"
    try:
        from numba import cuda
    except Exception as e:  # a broken CUDA toolkit shows here, not at import fastact
        return f"numba.cuda could not be imported ({type(e).__name__}: {e}; {INSTALL_HINT})"
    try:
        usable = cuda.is_available()
    except Exception as e:  # pragma: no cover - driver errors vary
        usable, detail = False, f" ({type(e).__name__}: {e})"
    else:
        detail = ""
    if not usable:
        return (
            f"no usable CUDA GPU or driver was found{detail}: numba.cuda.is_available() is False "
            f"(numba.cuda.detect() says why; {GPU_HINT})"
        )
    try:  # loaded at the first compile: fails there, for every kernel, where it is broken
        importlib.import_module("numba.cuda.np.arrayobj")
    except ImportError:
        pass  # another layout of numba-cuda: nothing to check
    except AttributeError as e:  # numba-cuda 0.30.4 under NumPy 2.5: np.row_stack is gone
        return (
            f"numba-cuda {_version('numba-cuda')} does not work with NumPy {np.__version__} ({e}); "
            "install a NumPy it supports (`pip install \"numpy<2.5\"`) or a numba-cuda that supports "
            "this NumPy"
        )
    mod = importlib.import_module("fastact._kernels_cuda")
    from fastact._cpu import check_current

    check_current(mod)
    _loaded = (cuda, mod)
    return None


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def available() -> bool:
    """Whether the CUDA target can run here (a GPU and numba-cuda, or the simulator)."""
    try:
        _load()
    except CudaUnavailableError:
        return False
    return True


def require(func: str) -> None:
    """Raise :class:`CudaUnavailableError`, naming ``func``, unless the CUDA target can run."""
    try:
        _load()
    except CudaUnavailableError as e:
        raise CudaUnavailableError(f"{func}(target='cuda'): the CUDA target is not available: {e}") from None


def is_device_array(obj) -> bool:
    """True for objects whose memory is on a CUDA device: anything that exposes
    ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors, Numba device arrays)
    and the device arrays of Numba's CUDA simulator.  Imports nothing."""
    return type(obj) is not np.ndarray and (
        hasattr(obj, "__cuda_array_interface__") or bool(getattr(obj, "__cuda_ndarray__", False))
    )


# --- launch configuration ------------------------------------------------------------------

#: Threads per block of the grid-stride kernels.
THREADS = 256
WARP = 32
#: Under the simulator every CUDA thread is a Python thread and blocks run one after the
#: other: few, small blocks keep the tests fast and still exercise the grid-stride loops
#: and the tree reductions over several rounds.
SIM_THREADS, SIM_BLOCKS = 8, 3

_configs: dict = {}


def _grid_limit(cuda, threads: int) -> int:
    """The most blocks worth launching: enough to fill every multiprocessor; a grid-stride
    loop covers the rest."""
    dev = cuda.get_current_device()
    key = (getattr(dev, "id", 0), threads)
    limit = _configs.get(key)
    if limit is None:
        sms = getattr(dev, "MULTIPROCESSOR_COUNT", None)
        if sms is None:  # the simulator's device has no properties
            limit = SIM_BLOCKS
        else:
            per_sm = max(1, dev.MAX_THREADS_PER_MULTIPROCESSOR // threads)
            limit = sms * per_sm
        _configs[key] = limit
    return limit


_SIMULATED = None


def _simulated(cuda) -> bool:
    """Whether this is Numba's CUDA simulator (fixed for the life of the process)."""
    global _SIMULATED
    if _SIMULATED is None:
        _SIMULATED = getattr(cuda.get_current_device(), "MULTIPROCESSOR_COUNT", None) is None
    return _SIMULATED


def _flat_config(cuda, n: int) -> tuple[int, int]:
    threads = SIM_THREADS if _simulated(cuda) else THREADS
    return max(1, min(-(-n // threads), _grid_limit(cuda, threads))), threads


def _block_config(cuda, mod, rows: int, n: int) -> tuple[int, int]:
    """One block per row; a power of two of threads (the tree reduction halves it), no
    more than the row needs rounded up to a warp, at most the kernels' scratch size."""
    cap = SIM_THREADS if _simulated(cuda) else mod.ROW_THREADS
    threads = min(WARP, cap)
    while threads < cap and threads < n:
        threads *= 2
    return max(1, min(rows, _grid_limit(cuda, threads))), threads


#: Numba warns of "low occupancy" for grids under this many blocks: a hint for kernels
#: launched with a fixed, too small grid.  fastact sizes its grids to the array, so a small
#: array gets a small grid by design, and the warning would only be noise to its users.
_LOW_OCCUPANCY_GRID = 128


def _launch(kernel, blocks: int, threads: int, stream):
    """``kernel[blocks, threads, stream]``, without Numba's low-occupancy warning
    (``blocks``: a count, or a tuple of them)."""
    if (math.prod(blocks) if isinstance(blocks, tuple) else blocks) >= _LOW_OCCUPANCY_GRID:
        return kernel[blocks, threads, stream]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*Grid size \d+ will likely result in GPU under-utilization")
        return kernel[blocks, threads, stream]


# --- streams -------------------------------------------------------------------------------


def _as_stream(cuda, func: str, stream):
    """A Numba stream from ``stream``: None (the default stream), a Numba stream, a raw
    ``cudaStream_t`` handle (int), or a CuPy/PyTorch stream object."""
    if stream is None:
        return 0
    if isinstance(stream, type(cuda.default_stream())):
        return stream
    handle = stream
    if not isinstance(stream, int) or isinstance(stream, bool):
        handle = getattr(stream, "cuda_stream", None)  # torch.cuda.Stream
        if handle is None:
            handle = getattr(stream, "ptr", None)  # cupy.cuda.Stream
    if not isinstance(handle, int) or isinstance(handle, bool):
        raise TypeError(
            f"{func}(): stream must be a numba.cuda stream, a CuPy or PyTorch stream or an integer "
            f"cudaStream_t handle, got {type(stream).__name__}"
        )
    return cuda.external_stream(handle) if handle else 0


# --- device arrays -------------------------------------------------------------------------


def _shadow(shape, dtype, writeable=True) -> np.ndarray:
    """An ndarray of the given shape and dtype backed by one element: what the shared
    validation inspects in place of a device array.  Never read or written."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), tuple(shape), (0,) * len(shape), writeable=writeable)


def _address(d) -> int:
    cai = getattr(d, "__cuda_array_interface__", None)
    if cai is None:  # the simulator's arrays are NumPy arrays underneath
        cai = d.__array_interface__
    return cai["data"][0]


class Launch:
    """One call on the CUDA target, from validation to result.

    ``named`` and ``out`` are what the dispatch validates: the caller's values with each
    device array replaced by a shadow (:func:`_shadow`) of its shape and dtype.
    """

    def __init__(self, func: str, named, out, stream, input_dtype):
        self.func = func
        self.cuda, self.mod = _load_for(func)
        self.stream = _as_stream(self.cuda, func, stream)
        self.device = {}  # id(shadow) -> (name, device array)
        self.named = []
        for name, value in named:
            if is_device_array(value):
                d = self._device_array(value)
                shadow = _shadow(d.shape, input_dtype(func, name, np.dtype(d.dtype)))
                self.device[id(shadow)] = (name, d)
                value = shadow
            self.named.append((name, value))
        self.out = out
        self.device_out = None
        if is_device_array(out):
            self.device_out = self._device_array(out)
            readonly = bool(getattr(out, "__cuda_array_interface__", {}).get("data", (0, False))[1])
            self.out = _shadow(self.device_out.shape, np.dtype(self.device_out.dtype), writeable=not readonly)
        self.returned_out = out

    def _device_array(self, value):
        if getattr(value, "__cuda_ndarray__", False):
            return value
        return self.cuda.as_cuda_array(value)

    # -- layout -------------------------------------------------------------------------

    def _operands(self, arrays, shape, shapes=None):
        """[(device array or None, host array or None)] for the validated ``arrays``, and the
        common memory order of the device operands ('C' when none has one).  Device
        operands must have ``shape`` (the result's), or their own in ``shapes``."""
        ops, orders = [], set()
        for k, a in enumerate(arrays):
            named = self.device.get(id(a))
            if named is None:
                ops.append((None, a))
                continue
            name, d = named
            orders.add(self._check_device(name, d, shape if shapes is None else shapes[k]))
            ops.append((d, None))
        if self.device_out is not None:
            orders.add(self._check_device("out", self.device_out, shape))
        orders.discard(None)
        if len(orders) > 1:
            raise ValueError(
                f"{self.func}(): the device arrays mix C and Fortran order; the CUDA target needs "
                "them in one memory order (copy one of them to the other's order)"
            )
        return ops, (orders.pop() if orders else "C")

    def _check_device(self, name, d, shape) -> str | None:
        """The memory order that device array ``d`` imposes: 'C', 'F', or None where it is
        both (at most one axis longer than 1)."""
        if tuple(d.shape) != tuple(shape):
            raise ValueError(
                f"{self.func}(): device array {name} has shape {tuple(d.shape)}, but the result has "
                f"shape {tuple(shape)}: the CUDA target does not broadcast device arrays "
                "(broadcast on the device first, or pass a host array)"
            )
        c, f = d.is_c_contiguous(), d.is_f_contiguous()
        if not (c or f):
            raise ValueError(
                f"{self.func}(): device array {name} is not contiguous (shape {tuple(d.shape)}, "
                f"strides {tuple(d.strides)}); the CUDA target needs C- or Fortran-contiguous "
                "device arrays: pass a contiguous copy (e.g. cupy.ascontiguousarray)"
            )
        return None if c and f else ("C" if c else "F")

    def _to_device(self, host: np.ndarray):
        return self.cuda.to_device(np.ascontiguousarray(host), stream=self.stream)

    def _cast(self, dst, src):
        """``dst[:] = src`` on the device (1-d, with dtype conversion)."""
        blocks, threads = _flat_config(self.cuda, dst.shape[0])
        _launch(self.mod.cast__cuda, blocks, threads, self.stream)(dst, src)

    def _compute_view(self, d, cdt, view):
        """``view(d)`` in the compute dtype: ``d`` itself, or a converted device copy."""
        v = view(d)
        if np.dtype(d.dtype) == cdt:
            return v
        flat = v.reshape(v.size) if v.ndim != 1 else v
        conv = self.cuda.device_array(flat.shape[0], cdt, stream=self.stream)
        self._cast(conv, flat)
        return conv.reshape(v.shape)

    def _overlaps(self, d, inputs) -> bool:
        """True when device ``d`` shares memory with an input without being that input."""
        lo = _address(d)
        hi = lo + d.size * d.dtype.itemsize
        for a in inputs:
            if a is None:
                continue
            alo = _address(a)
            ahi = alo + a.size * a.dtype.itemsize
            if alo < hi and lo < ahi:
                same = alo == lo and a.shape == d.shape and a.strides == d.strides and a.dtype == d.dtype
                if not same:
                    return True
        return False

    def _result(self, shape, rdt, cdt, order, view, any_device):
        """(kernel output view, finisher) for the call's result.

        The finisher copies out of scratch memory where the kernel could not write the
        result directly, and returns what the call returns."""
        cuda, stream = self.cuda, self.stream
        inputs = [d for _, d in self.device.values()]
        target = self.device_out
        if target is None and any_device and self.returned_out is None:  # a host out: copied back
            target = cuda.device_array(shape, rdt, order=order, stream=stream)
        if target is not None:
            tv = view(target)
            if np.dtype(target.dtype) == cdt and not self._overlaps(target, inputs):
                return tv, lambda: self.returned_out if self.device_out is not None else target
            scratch = cuda.device_array(tv.shape, cdt, stream=stream)

            def finish_device():
                self._cast(tv.reshape(tv.size), scratch.reshape(scratch.size))
                return self.returned_out if self.device_out is not None else target

            return scratch, finish_device
        return None, None

    # -- the two kinds of call ----------------------------------------------------------

    def elementwise(self, name, op, arrays, shape, rdt, cdt, pvals, finish):
        cuda, stream = self.cuda, self.stream
        size = math.prod(shape)
        ops, order = self._operands(arrays, shape)
        any_device = any(d is not None for d, _ in ops)
        if size == 0:
            return self._empty(shape, rdt, order, any_device, finish)

        def view(d):
            return d if d.ndim == 1 else d.ravel(order=order)  # a 1-d device array as it is

        flats = []
        for d, h in ops:
            if d is None:
                h = np.broadcast_to(h if h.dtype == cdt else h.astype(cdt), shape)
                flats.append(self._to_device(h.ravel(order=order)))
            else:
                flats.append(self._compute_view(d, cdt, view))
        out_view, finisher = self._result(shape, rdt, cdt, order, view, any_device)
        if out_view is None:
            out_view = cuda.device_array(size, cdt, stream=stream)
        kernel = getattr(self.mod, f"{name}__{op}__cuda")
        blocks, threads = _flat_config(cuda, size)
        _launch(kernel, blocks, threads, stream)(out_view, *flats, *(cdt.type(p) for p in pvals))
        if finisher is not None:
            return finisher()
        host = out_view.copy_to_host(stream=stream)
        _sync(stream)
        return self._to_host_result(host.reshape(shape, order=order), rdt, finish)

    def rowwise(self, name, op, arrays, shape, axis, rdt, cdt, finish):
        cuda, stream = self.cuda, self.stream
        ops, order = self._operands(arrays, shape)
        any_device = any(d is not None for d, _ in ops) or self.device_out is not None
        size = math.prod(shape)
        if size == 0:
            return self._empty(shape, rdt, order, any_device, finish)
        # Every operand is handled as a C-contiguous array of shape ``s`` with the rows
        # along axis ``k``: a Fortran-ordered array is its C-ordered transpose.  Host
        # operands alone keep their logical layout where the rows are at least a warp
        # apart (the one-thread-per-row kernel then reads whole lines), and are otherwise
        # transposed on the host so that the rows lie along the contiguous axis.
        nd = max(len(shape), 1)
        full = tuple(shape) or (1,)
        if any_device:
            perm = tuple(range(nd))[::-1] if order == "F" else tuple(range(nd))
        elif math.prod(full[axis + 1 :]) >= WARP:
            perm = tuple(range(nd))
        else:
            perm = tuple(k for k in range(nd) if k != axis) + (axis,)
        s = tuple(full[k] for k in perm)
        k = perm.index(axis)
        outer, n, inner = math.prod(s[:k]), s[k], math.prod(s[k + 1 :])
        kshape = (outer, n) if inner == 1 else (outer, n, inner)

        def view(d):
            flat = d.reshape(size) if d.ndim <= 1 else d.ravel(order=order)
            return flat.reshape(kshape)

        rows = []
        for d, h in ops:
            if d is None:
                h = np.broadcast_to(h if h.dtype == cdt else h.astype(cdt), shape).reshape(full)
                rows.append(self._to_device(np.transpose(h, perm).reshape(kshape)))
            else:
                rows.append(self._compute_view(d, cdt, view))
        out_view, finisher = self._result(shape, rdt, cdt, order, view, any_device)
        if out_view is None:
            out_view = cuda.device_array(kshape, cdt, stream=stream)
        if inner == 1:
            blocks, threads = _block_config(cuda, self.mod, outer, n)
            _launch(getattr(self.mod, f"{name}__{op}__cuda_block"), blocks, threads, stream)(out_view, *rows)
        else:
            blocks, threads = _flat_config(cuda, outer * inner)
            _launch(getattr(self.mod, f"{name}__{op}__cuda_serial"), blocks, threads, stream)(out_view, *rows)
        if finisher is not None:
            return finisher()
        host = out_view.copy_to_host(stream=stream)
        _sync(stream)
        host = np.transpose(host.reshape(s), np.argsort(perm)).reshape(shape)
        return self._to_host_result(host, rdt, finish)

    def reduction(self, name, op, arrays, axes, kept, rshape, shape, rdt, cdt, finish):
        """A reduction's ``op`` (``rshape``: the forward result's shape; ``shape``: this
        call's).  The reduced axes become the middle of an (outer, n, inner) layout: host
        operands are transposed so that they come last (one block per row), device ones
        keep their memory order, so their reduced axes must be adjacent in it."""
        cuda, stream = self.cuda, self.stream
        x = arrays[-1]
        ops, order = self._operands(arrays, shape, [rshape, x.shape] if op == "backward_x" else [x.shape])
        any_device = any(d is not None for d, _ in ops) or self.device_out is not None
        full = tuple(x.shape) or (1,)
        nd = len(full)
        if any_device:
            perm = tuple(range(nd))[::-1] if order == "F" else tuple(range(nd))
        else:
            perm = tuple(k for k in range(nd) if k not in axes) + tuple(axes)
        at = sorted(perm.index(a) for a in axes)
        if at != list(range(at[0], at[0] + len(at))):
            raise ValueError(
                f"{self.func}(): the CUDA target reduces device arrays over axes adjacent in memory; axes "
                f"{tuple(axes)} of a {order}-ordered array of shape {tuple(x.shape)} are not (transpose it on "
                "the device first, or pass a host array)"
            )
        s = tuple(full[k] for k in perm)
        outer, n, inner = math.prod(s[: at[0]]), math.prod(s[at[0] : at[-1] + 1]), math.prod(s[at[-1] + 1 :])
        rows_shape = (outer, n) if inner == 1 else (outer, n, inner)
        row_values = (outer,) if inner == 1 else (outer, inner)
        if x.size == 0:  # rows of no elements give log(0); no rows give nothing
            host = np.full(shape, -np.inf, rdt) if op == "forward" else np.empty(shape, rdt)
            if self.device_out is not None or any_device:
                target = self.device_out if self.device_out is not None else \
                    cuda.device_array(shape, rdt, order=order, stream=stream)
                if host.size:
                    target.copy_to_device(np.asarray(host, order=order), stream=stream)
                return self.returned_out if self.device_out is not None else target
            return self._to_host_result(host, rdt, finish)

        def flat(d):
            return d.reshape(d.size) if d.ndim <= 1 else d.ravel(order=order)

        def as_rows(d):
            return flat(d).reshape(rows_shape)

        def as_values(d):
            return flat(d).reshape(row_values)

        inputs = []
        for (d, h), role in zip(ops, ("dy", "x") if op == "backward_x" else ("x",)):
            if d is not None:
                inputs.append(self._compute_view(d, cdt, as_values if role == "dy" else as_rows))
                continue
            h = h if h.dtype == cdt else h.astype(cdt)
            if role == "dy":
                h = np.reshape(np.broadcast_to(h, rshape), kept or (1,))
            h = np.transpose(h.reshape(full) if role == "x" else h.reshape(tuple(kept) or (1,)), perm)
            inputs.append(self._to_device(h.reshape(rows_shape if role == "x" else row_values)))
        view = as_values if op == "forward" else as_rows
        out_view, finisher = self._result(shape, rdt, cdt, order, view, any_device)
        if out_view is None:
            out_view = cuda.device_array(row_values if op == "forward" else rows_shape, cdt, stream=stream)
        if inner == 1:
            blocks, threads = _block_config(cuda, self.mod, outer, n)
            kernel = getattr(self.mod, f"{name}__{op}__cuda_block")
        else:
            blocks, threads = _flat_config(cuda, outer * inner)
            kernel = getattr(self.mod, f"{name}__{op}__cuda_serial")
        _launch(kernel, blocks, threads, stream)(out_view, *inputs)
        if finisher is not None:
            return finisher()
        host = out_view.copy_to_host(stream=stream)
        _sync(stream)
        if op == "forward":
            host = host.reshape(shape)
        else:
            host = np.transpose(host.reshape(s), np.argsort(perm)).reshape(shape)
        return self._to_host_result(host, rdt, finish)

    def gated(self, name, op, arrays, axis, half, shape, rdt, cdt, pvals, finish):
        """A gated unit's ``op`` (``half``: the forward result's shape; ``shape``: this
        call's) on the (outer, 2, m) view of ``x``: C-ordered device arrays as they are,
        Fortran-ordered ones as the C-ordered arrays of their transposes."""
        cuda, stream = self.cuda, self.stream
        x = arrays[-1]
        roles = ("dy", "x") if op == "backward_x" else ("x",)
        expected = {"dy": half, "x": x.shape}
        ops, order = self._operands(arrays, shape, [expected[role] for role in roles])
        any_device = any(d is not None for d, _ in ops) or self.device_out is not None
        nd = len(x.shape)
        # A Fortran-ordered array is the C-ordered array of the reversed shape.
        k = nd - 1 - axis if order == "F" else axis
        full = tuple(x.shape)[::-1] if order == "F" else tuple(x.shape)
        outer, m = math.prod(full[:k]), full[k] // 2 * math.prod(full[k + 1:])
        if math.prod(shape) == 0:
            return self._empty(shape, rdt, order, any_device, finish)

        def flat(d):
            return d.reshape(d.size) if d.ndim <= 1 else d.ravel(order=order)

        views = {"x": lambda d: flat(d).reshape(outer, 2, m), "dy": lambda d: flat(d).reshape(outer, m)}
        inputs = []
        for (d, h), role in zip(ops, roles):
            if d is not None:
                inputs.append(self._compute_view(d, cdt, views[role]))
                continue
            h = np.broadcast_to(h if h.dtype == cdt else h.astype(cdt), expected[role])
            inputs.append(self._to_device(h.ravel(order=order).reshape((outer, 2, m) if role == "x" else (outer, m))))
        view = views["dy"] if op == "forward" else views["x"]
        out_view, finisher = self._result(shape, rdt, cdt, order, view, any_device)
        if out_view is None:
            out_view = cuda.device_array((outer, m) if op == "forward" else (outer, 2, m), cdt, stream=stream)
        blocks, threads = _flat_config(cuda, outer * m)
        kernel = getattr(self.mod, f"{name}__{op}__cuda")
        _launch(kernel, blocks, threads, stream)(out_view, *inputs, *(cdt.type(p) for p in pvals))
        if finisher is not None:
            return finisher()
        host = out_view.copy_to_host(stream=stream)
        _sync(stream)
        return self._to_host_result(host.reshape(-1).reshape(shape, order=order), rdt, finish)

    def weighted(self, name, op, arrays, layout, rdt, cdt, pvals, finish):
        """An activation with a weight array: ``op`` on the (outer, C, inner) view of ``x``
        (``layout``; None: one weight per element), C-ordered device arrays as they are,
        Fortran-ordered ones as the C-ordered arrays of their transposes.  ``backward_xw``
        gives ``(dx, dweight)``, dweight on the device where an operand is."""
        cuda, stream = self.cuda, self.stream
        x, w = arrays[-2], arrays[-1]
        shape = tuple(x.shape)
        n = math.prod(shape)
        roles = ("dy", "x", "w") if len(arrays) == 3 else ("x", "w")
        expected = {"dy": shape, "x": shape, "w": shape if layout is None else tuple(w.shape)}
        ops, order = self._operands(arrays, shape, [expected[r] for r in roles])
        any_device = any(d is not None for d, _ in ops) or self.device_out is not None
        if layout is None:
            outer, channels, inner = 1, n, 1
        elif order == "F" and layout[1] > 1:  # the channel axis, counted in the reversed shape
            outer, channels, inner = layout[2], layout[1], layout[0]
        else:
            outer, channels, inner = layout
        two = op == "backward_xw"
        if n == 0:
            dx = self._empty(shape, rdt, order, any_device, finish)
            dw = np.zeros(w.shape, rdt)
            return (dx, cuda.to_device(dw, stream=stream) if any_device else dw) if two else dx

        def flat(d):
            return d.reshape(d.size) if d.ndim <= 1 else d.ravel(order=order)

        def view(d):
            return flat(d).reshape(outer, channels, inner)

        inputs = []
        for (d, h), role in zip(ops, roles):
            if role == "w":
                if d is not None:
                    inputs.append(self._compute_view(d, cdt, lambda a: flat(a)))
                else:
                    wh = np.broadcast_to(h, shape).ravel(order=order) if layout is None else h.reshape(-1)
                    inputs.append(self._to_device(wh.astype(cdt, copy=False)))
            elif d is not None:
                inputs.append(self._compute_view(d, cdt, view))
            else:
                h = np.broadcast_to(h if h.dtype == cdt else h.astype(cdt), shape)
                inputs.append(self._to_device(h.ravel(order=order).reshape(outer, channels, inner)))
        out_view, finisher = self._result(shape, rdt, cdt, order, view, any_device)
        if out_view is None:
            out_view = cuda.device_array((outer, channels, inner), cdt, stream=stream)
        params = tuple(cdt.type(p) for p in pvals)
        kernel = getattr(self.mod, f"{name}__{op}__cuda")
        if not two:
            blocks, threads = _flat_config(cuda, n)
            _launch(kernel, blocks, threads, stream)(out_view, *inputs, *params)
        else:
            threads = SIM_THREADS if _simulated(cuda) else self.mod.ROW_THREADS
            parts = max(1, min(self.mod.WEIGHT_PARTS, -(-(outer * inner) // threads)))
            part = cuda.device_array((channels, parts), np.float64, stream=stream)
            _launch(kernel, (channels, parts), threads, stream)(out_view, *inputs, *params, part)
            dw64 = cuda.device_array(channels, np.float64, stream=stream)
            blocks, t = _flat_config(cuda, channels)
            _launch(self.mod._sum_parts__cuda, blocks, t, stream)(part, dw64)
            if any_device:
                dw = cuda.device_array(channels, rdt, stream=stream)
                self._cast(dw, dw64)
                dw = dw.reshape(w.shape) if w.ndim != 1 else dw
            else:
                dw = dw64.copy_to_host(stream=stream)
                _sync(stream)
                dw = dw.astype(rdt).reshape(w.shape)
        if finisher is not None:
            dx = finisher()
        else:
            host = out_view.copy_to_host(stream=stream)
            _sync(stream)
            dx = self._to_host_result(host.reshape(-1).reshape(shape, order=order), rdt, finish)
        return (dx, dw) if two else dx

    def _empty(self, shape, rdt, order, any_device, finish):
        if self.returned_out is not None:
            return self.returned_out
        if any_device:
            return self.cuda.device_array(shape, rdt, order=order, stream=self.stream)
        return finish(np.empty(shape, rdt), None)

    def _to_host_result(self, host, rdt, finish):
        out = self.returned_out
        if out is not None:  # a host out: the device out was handled by _result
            np.copyto(out, host, casting="unsafe")  # the caller silences float16 overflow
            return out
        return finish(host if host.dtype == rdt else host.astype(rdt), None)


def _load_for(func):
    try:
        return _load()
    except CudaUnavailableError:
        require(func)
        raise  # pragma: no cover - require raised


def _sync(stream):
    # A host result must be complete when the call returns, whatever the stream.
    if not isinstance(stream, int):
        stream.synchronize()
