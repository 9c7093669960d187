"""Reliability: threads, forked and spawned workers, threading layers, memory, the compile
cache and hostile input.

Scenarios that can crash or hang a process (threading layers, fork, the compile cache)
run ``tests/reliability/scenarios.py`` in a subprocess with a timeout, so a crash or a
hang fails one test instead of the test run.  The rest run here.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
from _helpers import (
    MAX_ULP,
    SHAPED,
    assert_bitwise,
    assert_ulp,
    call,
    elementwise_cases,
    make_layout,
    reference,
    values,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastact as fa
from fastact import _codegen, _dispatch, _threads

SCRIPT = Path(__file__).resolve().parent / "reliability" / "scenarios.py"
SKIP = 77

#: Numba settings that would change what a scenario tests, removed from its environment.
_NUMBA_VARS = ("NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY", "NUMBA_DISABLE_JIT",
               "NUMBA_CACHE_DIR", "NUMBA_NUM_THREADS")


def run_scenario(*args, env=None, timeout=240, prefix=(), cwd=None):
    """Run a scenario in a fresh interpreter; skip on exit 77, fail on anything but 0."""
    full_env = {k: v for k, v in os.environ.items() if k not in _NUMBA_VARS}
    full_env.update(env or {})
    cmd = [*prefix, sys.executable, str(SCRIPT), *args]
    try:
        proc = subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"scenario {args} hung (no exit within {timeout} s)\n{_tail(e.stdout)}\n{_tail(e.stderr)}")
    if proc.returncode == SKIP:
        pytest.skip(proc.stdout.strip().splitlines()[-1])
    if proc.returncode != 0:
        how = f"was killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exited with {proc.returncode}"
        pytest.fail(f"scenario {args} {how}\n--- stdout\n{_tail(proc.stdout)}\n--- stderr\n{_tail(proc.stderr)}")
    return proc


def _tail(text, n=4000):
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return (text or "")[-n:]


# --- threads and worker processes, under every threading layer ----------------------------


@pytest.mark.parametrize("layer", ["default", "omp", "workqueue", "tbb"])
def test_threads_and_forked_children_under_threading_layer(layer):
    """Many Python threads at once, then forked children (multiprocessing's fork context,
    ProcessPoolExecutor with fork, a fork of a fork) after the parent used the thread pool:
    every result bitwise equal to the single-threaded one, no abort, no deadlock.  A layer
    that cannot load here is skipped, with the reason."""
    args = ("layer",) if layer == "default" else ("layer", layer)
    run_scenario(*args, env={"NUMBA_THREADING_LAYER": layer})


def test_no_loadable_layer_falls_back_with_one_warning():
    """A layer that cannot load: the parallel target runs single-threaded, same bits, one
    RuntimeWarning that says why."""
    code = ("import warnings, numpy as np, fastact as fa\n"
            "x = np.linspace(-3, 3, 1 << 18)\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    a = [fa.sigmoid(x, target='parallel') for _ in range(3)]\n"
            "assert all(np.array_equal(r, fa.sigmoid(x, target='cpu')) for r in a)\n"
            "assert len(w) == 1 and 'threading layer' in str(w[0].message), [str(m.message) for m in w]\n")
    env = {k: v for k, v in os.environ.items() if k not in _NUMBA_VARS} | {"NUMBA_THREADING_LAYER": "no-such-layer"}
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]


def test_spawned_children():
    run_scenario("spawn")


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["default", "omp", "workqueue", "tbb"])
def test_threads_and_forked_children_every_function(layer):
    """The same for every function of the registry (the default run takes two)."""
    args = ("layer",) if layer == "default" else ("layer", layer)
    run_scenario(*args, env={"NUMBA_THREADING_LAYER": layer, "FASTACT_RELIABILITY_ALL": "1"}, timeout=600)


def test_forked_child_policy_follows_the_layer():
    """What the fork handler decides, checked directly: the policy in a child forked
    after the parent settled it is the parent's, except under GNU OpenMP."""
    _threads.parallel_allowed("parallel")
    parent = _threads.status()
    r, w = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process that has threads; that is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            os.write(w, json.dumps(_threads.status()).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        child = json.loads(f.read())
    os.waitpid(pid, 0)
    from numba.np.ufunc import parallel

    gnu_omp = parent["layer"] == "omp" and getattr(sys.modules.get("numba.np.ufunc.omppool"), "openmp_vendor", "") == "GNU"
    if gnu_omp and parallel._is_initialized:
        assert child["policy"] == "never" and "fork" in child["reason"]
    else:
        assert child["policy"] == parent["policy"]


# --- memory --------------------------------------------------------------------------------

_N = 1 << 18  # above the parallel threshold, so "auto" would pick the threads
_SLACK = 64 * 1024  # Python objects, views, ufunc buffers: nothing proportional to the input


def _operations():
    """(label, call(x, dy, out, target), result is the input's shape) for every operation
    of every function with default parameters."""
    ops = []
    for name, op, params in elementwise_cases():
        if params:
            continue
        ops.append((f"{name}.{op}", name, op))
    for name in fa.ROWWISE:
        for op in ("forward", "backward_x", "backward_y"):
            ops.append((f"{name}.{op}", name, op))
    return ops


def _traced_peak(fn):
    fn()  # compile or load the kernel, start the thread pool, fill caches
    fa.release_memory()  # the result above would serve the next (tests/test_memory.py)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        result = fn()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    return peak, result


def _operands(name, op, dtype, n=_N):
    rng = np.random.default_rng(0)
    shape = (n // 64, 64) if name in fa.ROWWISE else (n,)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, dy


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("target", ["cpu", "parallel"])
@pytest.mark.parametrize("label,name,op", _operations(), ids=[o[0] for o in _operations()])
def test_out_of_place_allocates_only_the_result(label, name, op, target, dtype):
    x, dy = _operands(name, op, dtype)
    y = call(name, "forward", x, target="cpu") if op == "backward_y" else None

    def run():
        if op == "backward_y":
            return fa.FUNCTIONS[name].backward(dy, y=y, target=target)
        return call(name, op, x, dy, target=target)

    peak, result = _traced_peak(run)
    assert result.nbytes <= peak <= result.nbytes + _SLACK, f"{label}: {peak} bytes for a {result.nbytes}-byte result"


def _in_place(fn, op, x, dy, y, target):
    """``op`` of ``fn`` written over its input: ``out=x``, or ``out=dy`` for backward."""
    if op == "forward":
        return fn(x, out=x, target=target)
    if op == "grad":
        return fn.grad(x, out=x, target=target)
    if op == "grad2":
        return fn.grad2(x, out=x, target=target)
    if op == "backward_x":
        return fn.backward(dy, x=x, out=dy, target=target)
    return fn.backward(dy, y=y, out=dy, target=target)


def _cast_bound(nin, target):
    """What casting operands block by block may allocate besides the result: a float32
    buffer per operand (the result's included) and the iterator's own."""
    block = _dispatch._CONVERT_BLOCK_PARALLEL if target == "parallel" else _dispatch._CONVERT_BLOCK
    return (nin + 1) * block * 4 + _SLACK


_ELEMENTWISE_OPERATIONS = [o for o in _operations() if o[1] in fa.ELEMENTWISE]


@pytest.mark.parametrize("target", ["cpu", "parallel"])
@pytest.mark.parametrize("label,name,op", _ELEMENTWISE_OPERATIONS, ids=[o[0] for o in _ELEMENTWISE_OPERATIONS])
def test_float16_is_cast_in_blocks(label, name, op, target):
    # float16 is computed in float32.  Casting whole operands would allocate 4 bytes an
    # element per operand; block by block it is a constant, here a fraction of that.
    n = 1 << 21
    x, dy = (a.astype(np.float16) for a in _operands(name, op, np.float32, n))
    y = call(name, "forward", x, target="cpu") if op == "backward_y" else None
    fn = fa.FUNCTIONS[name]
    nin = len(_codegen.ELEMENTWISE_OPS[op][0])
    bound = _cast_bound(nin, target)
    assert bound < n * 4

    def new():
        if op == "backward_y":
            return fn.backward(dy, y=y, target=target)
        return call(name, op, x, dy, target=target)

    expected = call(name, op, x.astype(np.float32), dy.astype(np.float32), target="cpu") if op != "backward_y" else None
    peak, result = _traced_peak(new)
    assert result.dtype == np.float16
    assert result.nbytes <= peak <= result.nbytes + bound, f"{label}: {peak} bytes for a {result.nbytes}-byte result"
    if expected is not None:
        np.testing.assert_array_equal(result, expected.astype(np.float16))
    peak, _ = _traced_peak(lambda: _in_place(fn, op, x, dy, y, target))
    assert peak <= bound, f"{label}: {peak} bytes allocated in place"


@pytest.mark.parametrize("target", ["cpu", "parallel"])
@pytest.mark.parametrize("label,name,op", _operations(), ids=[o[0] for o in _operations()])
def test_in_place_allocates_nothing_proportional(label, name, op, target):
    x, dy = _operands(name, op, np.float32)
    y = call(name, "forward", x, target="cpu") if op == "backward_y" else None
    fn = fa.FUNCTIONS[name]
    peak, _ = _traced_peak(lambda: _in_place(fn, op, x, dy, y, target))
    assert peak <= _SLACK, f"{label}: {peak} bytes allocated in place (input {x.nbytes} bytes)"


# --- the compile cache ---------------------------------------------------------------------


def _cache_run(env, **kw):
    proc = run_scenario("cache", env=env, **kw)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cache_populated_concurrently_then_corrupted_and_stale(tmp_path):
    """Processes started together populate one cache; then truncated, garbage and stale
    entries are recompiled, not fatal, and repaired for the next process."""
    cache = tmp_path / "cache"
    env = {"NUMBA_CACHE_DIR": str(cache)}
    full_env = {k: v for k, v in os.environ.items() if k not in _NUMBA_VARS} | env
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), "cache"], env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        try:
            out, err = p.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("a process populating the cache hung")
        assert p.returncode == 0, f"concurrent population failed ({p.returncode})\n{_tail(out)}\n{_tail(err)}"
        assert json.loads(out.strip().splitlines()[-1])["warnings"] == []
    index = sorted(cache.rglob("*.nbi"))
    data = sorted(cache.rglob("*.nbc"))
    assert index and data, "nothing was cached"
    # Garbage in half the index files, truncated data files, stale stamps in the rest.
    import pickle

    for k, f in enumerate(index):
        if k % 2:
            f.write_bytes(os.urandom(64))
        else:
            with open(f, "rb") as fh:
                version = pickle.load(fh)
                stamp, overloads = pickle.loads(fh.read())
            with open(f, "wb") as fh:
                pickle.dump(version, fh, protocol=-1)
                fh.write(pickle.dumps(((0.0, 0), overloads), protocol=-1))
    for f in data[::2]:
        f.write_bytes(f.read_bytes()[:10])
    assert _cache_run(env)["warnings"] == []
    # Repaired: every index is readable again and the next process just loads.
    for f in cache.rglob("*.nbi"):
        with open(f, "rb") as fh:
            pickle.load(fh)
            pickle.loads(fh.read())
    assert _cache_run(env)["warnings"] == []


def _run_together(args_list, env, timeout=300):
    """Start a scenario once per argument tuple, all at once; fail on a crash or a hang."""
    full_env = {k: v for k, v in os.environ.items() if k not in _NUMBA_VARS} | env
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), *args], env=full_env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for args in args_list]
    failures = []
    for args, p in zip(args_list, procs):
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail(f"scenario {args} hung")
        if p.returncode != 0:
            how = f"killed by signal {-p.returncode}" if p.returncode < 0 else f"exit {p.returncode}"
            failures.append(f"{args}: {how}\n{_tail(out)}\n{_tail(err)}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("round_", range(2))
def test_first_runs_started_together_share_an_empty_cache(tmp_path, round_):
    """Four processes start at once on an empty cache directory, compiling the same
    multi-threaded kernels for float32 and float64 in opposite orders (two entries of one
    index saved at about the same time); then two more processes load what they left.
    None crashes, and every result is right."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    _run_together([("cache_race", str(k % 2)) for k in range(4)], env)
    _run_together([("cache_race", str(k)) for k in range(2)], env)
    assert list((tmp_path / "cache").rglob("*.nbi")), "nothing was cached"


def test_cache_index_keeps_every_concurrent_save(tmp_path):
    """Four processes save 200 entries each into one index, as fast as they can: every
    entry is there afterwards and loads its own data.  (Numba's own cache file loses
    about half of them and gives some keys another entry's data: numba#4807.)"""
    from fastact import _cache

    _run_together([("cache_file_saves", str(tmp_path), str(k)) for k in range(4)], {})
    f = _cache._safe_cache_file_class()(str(tmp_path), "kernel", ("stamp", 1))
    lost, wrong = [], []
    for k in range(4):
        for i in range(200):
            v = f.load((k, i))
            (lost if v is None else wrong if v["who"] != (k, i) else []).append((k, i))
    assert not lost and not wrong, f"{len(lost)} entries lost, {len(wrong)} with another entry's data"


# --- faults during a first call --------------------------------------------------------------


@pytest.mark.parametrize("delay", ["0.0", "0.4", "1.5"])
def test_fork_while_another_thread_compiles(tmp_path, delay):
    """A thread of the parent is importing Numba or compiling (empty cache) when the main
    thread forks: the child's first calls finish, and so does the parent's thread."""
    run_scenario("fork_while_compiling", delay, env={"NUMBA_CACHE_DIR": str(tmp_path)}, timeout=180)


@pytest.mark.parametrize("how", ["import:numba.core.typing.templates", "import:numba.np.ufunc.parallel",
                                 "import:fastact._kernels_cpu", "compile"])
def test_keyboard_interrupt_during_the_first_call(tmp_path, how):
    """Ctrl-C while Numba is imported or a kernel compiled: the next call works."""
    proc = run_scenario("interrupt", how, env={"NUMBA_CACHE_DIR": str(tmp_path)})
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"interrupted": True}


def test_sigint_at_any_moment_of_the_first_call(tmp_path):
    """A real SIGINT at several moments of the first call (empty cache): whatever it
    interrupted, later calls work; at least one of the runs was interrupted."""
    interrupted = []
    for delay in ("0.05", "0.2", "0.3", "0.4", "0.6", "0.9", "1.3", "1.8"):
        proc = run_scenario("interrupt", f"signal:{delay}", env={"NUMBA_CACHE_DIR": str(tmp_path / delay)})
        interrupted.append(json.loads(proc.stdout.strip().splitlines()[-1])["interrupted"])
    assert any(interrupted), "no run was interrupted: the scenario tested nothing"


def test_interrupt_waits_for_the_step_in_progress():
    """A SIGINT inside :func:`fastact._interrupts.deferred` raises KeyboardInterrupt when
    the block ends, not inside it; the handler installed before is back afterwards."""
    import signal

    from fastact._interrupts import deferred

    # Python's own handler, whatever the process inherited (a shell's background job
    # starts with SIGINT ignored, and deferred() leaves an ignored signal alone).
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        before = signal.getsignal(signal.SIGINT)
        finished = []
        with pytest.raises(KeyboardInterrupt):
            with deferred():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # the handler runs here, between bytecodes
                finished.append(True)
        assert finished == [True]
        assert signal.getsignal(signal.SIGINT) is before
        with deferred():  # no signal: nothing raised
            pass
    finally:
        signal.signal(signal.SIGINT, inherited)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_memory_error_leaves_nothing_written(target):
    """Under an address-space limit with room for the operands but not for a copy: a
    call raises MemoryError before writing anything, or gives the right result."""
    proc = run_scenario("memory", target)
    outcomes = json.loads(proc.stdout.strip().splitlines()[-1])
    # A new result does not fit: those calls must have raised (the limit was really hit).
    assert outcomes["softmax.backward(x=) new"] == "MemoryError", outcomes
    assert outcomes["elu.backward new"] == "MemoryError", outcomes


def _read_only_prefix(tmp_path):
    """A command prefix under which ``tmp_path / "ro"`` is really read-only: as root,
    without the capabilities that override file permissions; skip where that is not
    possible."""
    probe = tmp_path / "ro" / "probe"
    prefix = ()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # PR_CAPBSET_DROP of CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH, then exec: root then
        # obeys permission bits like any user.
        code = ("import ctypes, os, sys; libc = ctypes.CDLL(None, use_errno=True); "
                "ok = all(libc.prctl(24, c, 0, 0, 0) == 0 for c in (1, 2)); "
                "sys.exit(99) if not ok else os.execv(sys.argv[1], sys.argv[1:])")
        prefix = (sys.executable, "-c", code)
    r = subprocess.run([*prefix, sys.executable, "-c", f"open({str(probe)!r}, 'w')"], capture_output=True)
    if r.returncode == 0 or b"PermissionError" not in r.stderr:
        pytest.skip("cannot make a directory read-only for this user here")
    return prefix


def test_read_only_install_location(tmp_path):
    """fastact installed in a read-only directory, with NUMBA_CACHE_DIR, HOME and the user
    cache directory read-only too: it works, with at most one warning, and caches its
    kernels in a private directory under TMPDIR."""
    site = tmp_path / "site"
    shutil.copytree(Path(fa.__file__).parent, site / "fastact", ignore=shutil.ignore_patterns("__pycache__"))
    ro = tmp_path / "ro"
    ro.mkdir()
    writable_tmp = tmp_path / "tmp"
    writable_tmp.mkdir()
    for d in (site, ro):
        for p in [d, *d.rglob("*")]:
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        prefix = _read_only_prefix(tmp_path)
        env = {"PYTHONPATH": str(site), "NUMBA_CACHE_DIR": str(ro), "HOME": str(ro),
               "XDG_CACHE_HOME": str(ro), "TMPDIR": str(writable_tmp), "PYTHONDONTWRITEBYTECODE": "1"}
        first = _cache_run(env, prefix=prefix, cwd=str(tmp_path))
        assert first["file"].startswith(str(site)), first
        assert len(first["warnings"]) <= 1, first["warnings"]
        assert list(writable_tmp.rglob("*.nbi")), "the kernels were not cached in TMPDIR"
        second = _cache_run(env, prefix=prefix, cwd=str(tmp_path))
        assert len(second["warnings"]) <= 1, second["warnings"]
    finally:
        for p in [site, *site.rglob("*"), ro]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_disable_jit_gives_correct_results():
    """NUMBA_DISABLE_JIT=1, for debugging: every operation still right (slowly)."""
    run_scenario("nojit", env={"NUMBA_DISABLE_JIT": "1"})


# --- hostile input -------------------------------------------------------------------------

TARGETS = ("cpu", "parallel", "auto")
#: Explicit targets: ``parallel`` runs the multi-threaded kernels at any size, so small
#: arrays test both code paths cheaply.
BOTH = ("cpu", "parallel")


def _check(name, op, x, dy=None, *, target, out=None, axis=None):
    """Run one operation and compare it with the reference on a float64 copy."""
    x64 = np.asarray(x, np.float64)
    dy64 = None if dy is None else np.asarray(dy, np.float64)
    y = y64 = None
    kw = {} if axis is None else {"axis": axis}
    fn = fa.FUNCTIONS[name]
    if op == "backward_y":
        y = fn(x, target="cpu", **kw)
        y64 = np.asarray(y, np.float64)
        got = fn.backward(dy, y=y, out=out, target=target, **kw)
    else:
        got = call(name, op, x, dy, target=target, out=out, axis=axis)
    got = np.asarray(got)
    if got.size == 0:
        return got
    exp = reference(name, op, x64, dy64, y64=y64, axis=axis)
    # Relative to the largest magnitude: this catches garbage, not rounding (the ULP
    # accuracy of every operation is tested elsewhere).
    tol = {2: 4e-3, 4: 1e-5, 8: 1e-12}[got.dtype.itemsize]
    scale = max(1.0, float(np.nanmax(np.abs(exp), initial=0.0)))
    np.testing.assert_allclose(got, exp, rtol=tol, atol=tol * scale, equal_nan=True)
    return got


def _all_ops():
    out = [(n, op) for n, op, p in elementwise_cases() if not p]
    out += [(n, op) for n in fa.ROWWISE for op in ("forward", "backward_x", "backward_y")]
    return out


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4)])
@pytest.mark.parametrize("name,op", _all_ops())
def test_zero_size(name, op, shape, target):
    x = np.empty(shape)
    got = _check(name, op, x, np.empty(shape), target=target)
    assert got.shape == shape


@pytest.mark.parametrize("ndim", [32, 40, 64])
@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("name,op", _all_ops())
def test_many_dimensions(name, op, target, ndim):
    """Up to NumPy's 64 dimensions (NumPy's iterator stops at 32; fastact does not use it
    for row-wise functions)."""
    if ndim > np.empty(()).__array_interface__.get("maxdims", 64):
        pytest.skip("this NumPy has fewer dimensions")
    rng = np.random.default_rng(3)
    shape = (1,) * (ndim - 12) + (2,) * 12
    base = rng.standard_normal(shape)
    x = base.transpose(list(range(ndim - 1, -1, -1)))  # every stride reversed: not C-contiguous
    dy = rng.standard_normal(x.shape)
    got = _check(name, op, x, dy, target=target)
    assert got.shape == x.shape
    assert_bitwise(got, call(name, op, np.ascontiguousarray(x), np.ascontiguousarray(dy), target="cpu"))


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("shape", [(1,), (1, 1), (1 << 18, 1), (1, 1 << 18), (3, 1, 1 << 16)])
@pytest.mark.parametrize("name", SHAPED)
def test_extreme_shapes(name, shape, target):
    """Tiny and lopsided shapes: one element, rows of one element, one very long row."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape)
    _check(name, "forward", x, target=target)
    _check(name, "backward_x", x, rng.standard_normal(shape), target=target)


class _ArrayLike:
    def __init__(self, a):
        self._a = a

    def __array__(self, dtype=None, copy=None):
        return self._a if dtype is None else self._a.astype(dtype)


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("name,op", _all_ops())
def test_objects_with_array_protocol(name, op, target):
    rng = np.random.default_rng(5)
    x, dy = rng.standard_normal((30, 64)), rng.standard_normal((30, 64))
    if op == "backward_y":
        y = fa.FUNCTIONS[name](x)
        got = fa.FUNCTIONS[name].backward(_ArrayLike(dy), y=_ArrayLike(y), target=target)
        assert_bitwise(got, fa.FUNCTIONS[name].backward(dy, y=y, target="cpu"))
    else:
        got = call(name, op, _ArrayLike(x), _ArrayLike(dy), target=target)
        assert_bitwise(got, call(name, op, x, dy, target="cpu"))
    assert type(got) is np.ndarray


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("name", SHAPED)
def test_memmap_in_place_writes_the_file(name, target, tmp_path):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 64))
    path = tmp_path / "x.bin"
    x.tofile(path)
    mm = np.memmap(path, dtype=np.float64, mode="r+", shape=x.shape)
    got = fa.FUNCTIONS[name](mm, out=mm, target=target)
    assert got is mm
    mm.flush()
    del mm, got
    on_disk = np.fromfile(path, dtype=np.float64).reshape(x.shape)
    assert_bitwise(on_disk, fa.FUNCTIONS[name](x, target="cpu"))
    # Out of place from a read-only memmap: a plain array, the file untouched.
    ro = np.memmap(path, dtype=np.float64, mode="r", shape=x.shape)
    res = fa.FUNCTIONS[name](ro, target=target)
    assert type(res) is np.ndarray
    assert_bitwise(np.fromfile(path, dtype=np.float64).reshape(x.shape), on_disk)


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("name", SHAPED)
def test_matrix_is_read_as_a_plain_array(name, target):
    """np.matrix (like any ndarray subclass but masked arrays) is read through its base
    ndarray; the result is a plain ndarray, as from np.asarray."""
    x = np.random.default_rng(7).standard_normal((4, 700))
    with pytest.warns(PendingDeprecationWarning):
        m = np.matrix(x)
    got = fa.FUNCTIONS[name](m, target=target)
    assert type(got) is np.ndarray and got.shape == x.shape
    assert_bitwise(got, fa.FUNCTIONS[name](x, target="cpu"))


@pytest.mark.parametrize("name", SHAPED)
def test_masked_arrays_are_refused_before_any_write(name):
    m = np.ma.array([1.0, -2.0, 3.0], mask=[False, True, False])
    out = np.zeros(3)
    with pytest.raises(TypeError, match="masked"):
        fa.FUNCTIONS[name](m, out=out)
    assert np.all(out == 0)
    with pytest.raises(TypeError, match="masked"):
        fa.FUNCTIONS[name].backward(m, x=np.ones(3))
    assert np.array_equal(m.data, [1.0, -2.0, 3.0])
    # A masked out is refused too: its mask would no longer describe its data.
    with pytest.raises(TypeError, match="out must be a numpy.ndarray, got MaskedArray"):
        fa.FUNCTIONS[name](np.ones(3), out=m)
    assert np.array_equal(m.data, [1.0, -2.0, 3.0])


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("dtype", [">f2", ">f4", ">f8"] if sys.byteorder == "little" else ["<f2", "<f4", "<f8"])
@pytest.mark.parametrize("name,op", _all_ops())
def test_foreign_byte_order(name, op, dtype, target):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((30, 64)).astype(dtype)
    dy = rng.standard_normal((30, 64)).astype(dtype)
    got = _check(name, op, x, dy, target=target)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    native = np.dtype(dtype).newbyteorder("=")
    assert_bitwise(got, call(name, op, x.astype(native), dy.astype(native), target="cpu"))


@pytest.mark.parametrize("name", SHAPED)
def test_out_in_foreign_byte_order_is_refused(name):
    x = np.ones((4, 8))
    out = np.zeros((4, 8), ">f8" if sys.byteorder == "little" else "<f8")
    with pytest.raises(TypeError, match="dtype"):
        fa.FUNCTIONS[name](x, out=out)
    assert np.all(out == 0)


def _misaligned(shape, dtype, fill):
    """An array of ``fill``'s values whose data starts one byte past an aligned address."""
    n = int(np.prod(shape))
    itemsize = np.dtype(dtype).itemsize
    buf = bytearray(n * itemsize + itemsize)
    a = np.frombuffer(buf, dtype=dtype, count=n, offset=1).reshape(shape)
    assert not a.flags.aligned
    a[...] = fill
    return a


@pytest.mark.parametrize("target", BOTH)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,op", _all_ops())
def test_misaligned_buffers(name, op, dtype, target):
    rng = np.random.default_rng(9)
    shape = (30, 64)
    xv, dyv = rng.standard_normal(shape).astype(dtype), rng.standard_normal(shape).astype(dtype)
    x, dy = _misaligned(shape, dtype, xv), _misaligned(shape, dtype, dyv)
    got = _check(name, op, x, dy, target=target)
    expected = got.copy()
    # A misaligned out, and in place on misaligned memory.
    out = _misaligned(shape, dtype, 0)
    assert_bitwise(_check(name, op, x, dy, target=target, out=out), expected)
    if op == "forward":
        assert_bitwise(fa.FUNCTIONS[name](x, out=x, target=target), expected)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", "parallel"])
def test_more_than_2_31_elements(target):
    """Opt-in (8 GiB of memory): in place on 2**31 + 1024 float32 elements."""
    if os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") < 12 * 2**30:
        pytest.skip("needs 12 GiB of memory")
    run_scenario("huge", target, timeout=600)


# --- fuzzing against the reference ---------------------------------------------------------


def _fuzz_cases():
    out = [(n, op, p) for n, op, p in elementwise_cases()]
    out += [(n, op, {}) for n in fa.ROWWISE for op in ("forward", "backward_x", "backward_y")]
    return out


_LAYOUTS = ("C", "F", "transposed", "step", "negative_step", "both_steps")
_OUT = ("none", "fresh", "in_place", "overlap")


@st.composite
def _fuzz_inputs(draw):
    name, op, params = draw(st.sampled_from(_fuzz_cases()))
    dtype = draw(st.sampled_from([np.float16, np.float32, np.float64]))
    shape = draw(st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple))
    elems = values(dtype)
    layouts = st.sampled_from(_LAYOUTS if shape else ("C",))  # a 0-d array has one layout
    x = make_layout(draw(hnp.arrays(dtype, shape, elements=elems)), draw(layouts))
    dy = make_layout(draw(hnp.arrays(dtype, shape, elements=elems)), draw(layouts))
    axis = None
    if name in fa.ROWWISE:
        axis = draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
    return dict(name=name, op=op, params=params, x=x, dy=dy, axis=axis,
                target=draw(st.sampled_from(TARGETS)), out=draw(st.sampled_from(_OUT)),
                shift=draw(st.integers(1, 3)), threshold=draw(st.sampled_from([1, 1 << 17])))


def _fuzz_one(case):
    """Compute one drawn case with the drawn target and ``out`` aliasing; compare with the
    single-threaded out-of-place result (bitwise) and with the reference (in ULP)."""
    name, op, params, x, dy, axis = (case[k] for k in ("name", "op", "params", "x", "dy", "axis"))
    fn = fa.FUNCTIONS[name]
    kw = dict(params) | ({} if axis is None else {"axis": axis})
    y = fn(x, target="cpu", **kw) if op == "backward_y" else None
    first = dy if op.startswith("backward") else x
    second = (y if op == "backward_y" else x) if op.startswith("backward") else None

    def run(a, b, out, target):
        if op == "forward":
            return fn(a, out=out, target=target, **kw)
        if op == "grad":
            return fn.grad(a, out=out, target=target, **kw)
        if op == "grad2":
            return fn.grad2(a, out=out, target=target, **kw)
        if op == "backward_x":
            return fn.backward(a, x=b, out=out, target=target, **kw)
        return fn.backward(a, y=b, out=out, target=target, **kw)

    expected = np.asarray(run(first.copy(), None if second is None else second.copy(), None, "cpu"))
    mode = case["out"]
    a = first.copy() if mode in ("in_place", "overlap") else first
    out = None
    if mode == "fresh":
        out = np.full(expected.shape, 7, expected.dtype)
    elif mode == "in_place":
        out = a
    elif mode == "overlap" and a.size:
        # ``a`` and ``out`` share one buffer, ``shift`` elements apart.
        buf = np.empty(a.size + case["shift"], a.dtype)
        a = buf[case["shift"]:].reshape(a.shape)
        a[...] = first
        out = buf[: a.size].reshape(a.shape)
    with _threshold(case["threshold"]):
        got = run(a, second, out, case["target"])
    if out is not None:
        assert got is out
    assert_bitwise(got, expected, f"{name}.{op} target={case['target']} out={mode}")
    if expected.size:
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        y64 = None if y is None else y.astype(np.float64)
        ref = reference(name, op, x64, dy64, params=params, y64=y64, axis=axis)
        if name in fa.ELEMENTWISE or op == "forward":
            # 1-d: the ULP helper's unsigned arithmetic warns on 0-d (NumPy scalar) operands.
            assert_ulp(np.atleast_1d(expected), np.atleast_1d(ref), MAX_ULP[expected.dtype] + (2 if op.startswith("backward") else 0),
                       what=f"{name}.{op}")
        elif all(np.isfinite(a).all() for a in (x64, dy64)):
            # A row-wise backward pass subtracts a row sum: where the result cancels to
            # about 0, ULP are meaningless; the error is bounded by the terms' magnitude.
            eps = float(np.finfo(expected.dtype).eps)
            n = expected.shape[axis] if expected.ndim else 1
            scale = 1.0 + float(np.abs(dy64).max()) * n
            if scale > 1e300:  # row sums that overflow float64: no bound to check
                return
            np.testing.assert_allclose(expected, ref, rtol=16 * eps, atol=16 * eps * scale, equal_nan=True)


class _threshold:
    def __init__(self, value):
        self.value = value

    def __enter__(self):
        self.old, _dispatch.PARALLEL_BYTES = _dispatch.PARALLEL_BYTES, self.value

    def __exit__(self, *exc):
        _dispatch.PARALLEL_BYTES = self.old


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(_fuzz_inputs())
def test_fuzz_short(case):
    _fuzz_one(case)


@pytest.mark.slow
@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(_fuzz_inputs())
def test_fuzz_long(case):
    _fuzz_one(case)

