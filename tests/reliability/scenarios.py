"""Reliability scenarios, each run by tests/test_reliability.py in its own process.

``python scenarios.py NAME`` exits 0 when the scenario passed, 77 when it cannot run here
(the reason on stdout's last line), and anything else (an exception, a signal, a timeout
enforced by the caller) when it failed.  A crash or a hang therefore fails one test
instead of the test run.

Every scenario is driven by ``fastact.REGISTRY``: each function and each of its
operations is exercised, so a new declaration is covered with no edit here.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

import fastact as fa
from fastact import _dispatch, _threads
from fastact._spec import ElementwiseSpec, dfdy_allowed
from fastact.reference import REFERENCE

SKIP = 77


# --- the work: every operation of every function ------------------------------------------


def cases(n: int, seed: int = 0, only=None):
    """(label, callable(target) -> result, float64 reference) for every operation of every
    function of :func:`names` (or of ``only``) on ``n`` elements (rows of 64 for row-wise functions)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, name in enumerate(only or names()):
        fn, spec, ref = fa.FUNCTIONS[name], fa.REGISTRY[name], REFERENCE[name]
        dtype = (np.float32, np.float64)[i % 2]
        x = (rng.standard_normal(n) * 3).astype(dtype)
        dy = rng.standard_normal(n).astype(dtype)
        x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
        if isinstance(spec, ElementwiseSpec):
            y = fn(x, target="cpu")
            out += [
                (f"{name}", lambda t, fn=fn, x=x: fn(x, target=t), ref.forward(x64)),
                (f"{name}.grad", lambda t, fn=fn, x=x: fn.grad(x, target=t), ref.grad(x64)),
                (f"{name}.backward(x)", lambda t, fn=fn, x=x, dy=dy: fn.backward(dy, x=x, target=t),
                 ref.backward(dy64, x=x64)),
            ]
            if spec.dfdy is not None and dfdy_allowed(spec, spec.defaults):
                out.append((f"{name}.backward(y=)", lambda t, fn=fn, y=y, dy=dy: fn.backward(dy, y=y, target=t),
                            ref.backward(dy64, y=y.astype(np.float64))))
        else:
            x, dy = x.reshape(-1, 64), dy.reshape(-1, 64)
            x64, dy64 = x64.reshape(-1, 64), dy64.reshape(-1, 64)
            y = fn(x, target="cpu")
            out += [
                (f"{name}", lambda t, fn=fn, x=x: fn(x, target=t), ref.forward(x64)),
                (f"{name}.backward(x)", lambda t, fn=fn, x=x, dy=dy: fn.backward(dy, x=x, target=t),
                 ref.backward(dy64, x=x64)),
                (f"{name}.backward(y=)", lambda t, fn=fn, y=y, dy=dy: fn.backward(dy, y=y, target=t),
                 ref.backward(dy64, y=y.astype(np.float64))),
            ]
    return out


def names():
    """Every function with FASTACT_RELIABILITY_ALL=1 (the slow run); otherwise the first
    elementwise and the first row-wise one, all operations: loading each kernel from the
    cache costs a process a fraction of a second, and the threading behaviour under test
    is the same for every kernel."""
    if os.environ.get("FASTACT_RELIABILITY_ALL") == "1":
        return list(fa.FUNCTIONS)
    return list(fa.ELEMENTWISE[:1]) + list(fa.ROWWISE[:1])


def size() -> int:
    """Large enough that ``auto`` picks the multi-threaded kernels."""
    return _dispatch.PARALLEL_BYTES  # elements: twice the threshold of float16


def check_against_reference(results, table):
    for res, (label, _, ref) in zip(results, table):
        tol = 1e-5 if res.dtype == np.float32 else 1e-12
        if not np.allclose(res, ref, rtol=tol, atol=tol, equal_nan=True):
            raise AssertionError(f"{label}: result differs from the reference")


def compute(table, target):
    return [f(target) for _, f, _ in table]


def same(a, b) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=True)


def settle(expected_layer: str | None):
    """Start the threading layer as fastact does; exit with SKIP if the one asked for
    (via NUMBA_THREADING_LAYER) could not load."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _threads.parallel_allowed("parallel")
    status = _threads.status()
    if expected_layer and status["layer"] != expected_layer:
        msgs = "; ".join(str(w.message) for w in caught)
        print(f"threading layer {expected_layer!r} cannot load here ({status['reason'] or msgs or status})")
        sys.exit(SKIP)
    return status


# --- scenarios -----------------------------------------------------------------------------


def scenario_threads(layer: str = ""):
    """Many Python threads calling every operation at once, with ``parallel`` and ``auto``;
    every result bitwise equal to the single-threaded one computed up front."""
    status = settle(layer or None)
    table = cases(size())
    expected = compute(table, "cpu")
    check_against_reference(expected, table)
    errors = []
    nthreads, rounds = 8, 3
    barrier = threading.Barrier(nthreads + 1)

    def work(k):
        try:
            barrier.wait(timeout=60)
            for r in range(rounds):
                for j in np.random.default_rng(k * 100 + r).permutation(len(table)):
                    target = ("parallel", "auto")[(j + r + k) % 2]
                    got = table[j][1](target)
                    if not same(got, expected[j]):
                        errors.append(f"thread {k}: {table[j][0]} target={target} differs")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"thread {k}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=work, args=(k,), name=f"worker-{k}") for k in range(nthreads)]
    for t in threads:
        t.start()
    work(nthreads)  # the main thread takes part too
    for t in threads:
        t.join(timeout=120)
        if t.is_alive():
            errors.append(f"{t.name} did not finish")
    # The same through a thread pool, whose threads are not the main thread.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        for j, got in enumerate(pool.map(lambda j: table[j][1]("parallel"), range(len(table)))):
            if not same(got, expected[j]):
                errors.append(f"pool: {table[j][0]} differs")
    if status["layer"] == "workqueue" and status["policy"] != "main-thread":
        errors.append(f"workqueue must be restricted to the main thread, status {status}")
    if errors:
        raise AssertionError("\n".join(errors[:20]))
    print(json.dumps(_threads.status()))


_FORK_TABLE = None
_FORK_EXPECTED = None


def _fork_worker(k):
    """Recompute every operation with the multi-threaded targets in a forked child; the
    table and the expected results are inherited from the parent."""
    bad = []
    for j, (label, f, _) in enumerate(_FORK_TABLE):
        for target in ("parallel", "auto"):
            if not same(f(target), _FORK_EXPECTED[j]):
                bad.append(f"{label} target={target}")
    return os.getpid(), bad, _threads.status()


def _grandchild_worker(k):
    """A forked child that forks again: the grandchild must work too."""
    pid = os.fork()
    if pid == 0:
        try:
            _, bad, _ = _fork_worker(k)
            os._exit(0 if not bad else 3)
        except BaseException:  # noqa: BLE001
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def scenario_fork(layer: str = ""):
    """Forked children (multiprocessing's fork context, ProcessPoolExecutor with fork, a
    fork of a fork) calling every operation after the parent used the parallel kernels."""
    global _FORK_TABLE, _FORK_EXPECTED
    settle(layer or None)
    _FORK_TABLE = cases(size())
    _FORK_EXPECTED = compute(_FORK_TABLE, "parallel")  # the parent uses the thread pool
    cpu = compute(_FORK_TABLE, "cpu")
    assert all(same(a, b) for a, b in zip(_FORK_EXPECTED, cpu)), "parallel differs from cpu in the parent"
    ctx = multiprocessing.get_context("fork")
    errors = []
    with ctx.Pool(2) as pool:
        # map_async with a timeout: a child killed mid-task would otherwise hang map().
        for pid, bad, status in pool.map_async(_fork_worker, range(4)).get(timeout=120):
            errors += [f"Pool child {pid} ({status}): {b}" for b in bad]
        for code in pool.map_async(_grandchild_worker, range(2)).get(timeout=120):
            if code != 0:
                errors.append(f"grandchild exited with {code}")
    with ProcessPoolExecutor(2, mp_context=ctx) as ex:
        for pid, bad, status in ex.map(_fork_worker, range(4), timeout=120):
            errors += [f"ProcessPoolExecutor child {pid} ({status}): {b}" for b in bad]
    # The parent still runs its parallel kernels afterwards.
    again = compute(_FORK_TABLE, "parallel")
    if not all(same(a, b) for a, b in zip(again, _FORK_EXPECTED)):
        errors.append("the parent's results changed after forking")
    if errors:
        raise AssertionError("\n".join(errors[:20]))
    print(json.dumps(_threads.status()))


def _spawn_worker(k):
    table = cases(size())
    return [(label, f("parallel"), f("cpu")) for label, f, _ in table], _threads.status()


def scenario_spawn(layer: str = ""):
    """Spawned children (fresh interpreters) after the parent used the parallel kernels."""
    settle(layer or None)
    table = cases(size())
    expected = compute(table, "parallel")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as ex:
        for results, status in ex.map(_spawn_worker, range(2), timeout=180):
            for (label, par, cpu), exp in zip(results, expected):
                assert same(par, exp) and same(cpu, exp), f"spawned child: {label} differs ({status})"
    print("ok")


_CACHE_NAMES = ("sigmoid", "softmax")


def scenario_cache():
    """A few kernels through ``cpu`` and ``parallel``: equal to each other and to the
    reference.  Prints the warnings raised, as JSON, for the caller to count."""
    names = [n for n in _CACHE_NAMES if n in fa.FUNCTIONS] or list(fa.FUNCTIONS)[:1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rng = np.random.default_rng(1)
        for name in names:
            fn, ref = fa.FUNCTIONS[name], REFERENCE[name]
            x = rng.standard_normal((size() // 64, 64))
            a, b = fn(x, target="cpu"), fn(x, target="parallel")
            assert same(a, b), f"{name}: cpu and parallel differ"
            assert np.allclose(a, ref.forward(x), rtol=1e-12, atol=1e-15), f"{name}: wrong result"
    print(json.dumps({"file": fa.__file__, "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))


def scenario_cache_race(order: str = "0"):
    """Kernels compiled for float32 and float64 in an order that differs between the
    processes started together on one empty cache (``order``: 0 or 1): each multi-threaded
    dispatcher's index gets one entry from each of two processes at about the same time,
    the race that poisons Numba's own numbered cache files.  Every result is checked."""
    dtypes = [np.float32, np.float64][:: 1 if order == "0" else -1]
    rng = np.random.default_rng(int(order))
    for dtype in dtypes:
        for name in ("relu", "sigmoid", "softmax"):
            if name not in fa.FUNCTIONS:
                continue
            fn, ref = fa.FUNCTIONS[name], REFERENCE[name]
            x = (rng.standard_normal((64, 64)) * 3).astype(dtype)
            dy = rng.standard_normal((64, 64)).astype(dtype)
            tol = 1e-5 if dtype == np.float32 else 1e-12
            for target in ("parallel", "cpu"):
                got = fn(x, target=target)
                assert np.allclose(got, ref.forward(x.astype(np.float64)), rtol=tol, atol=tol), f"{name} {target}"
                got = fn.backward(dy, x=x, target=target)
                want = ref.backward(dy.astype(np.float64), x=x.astype(np.float64))
                assert np.allclose(got, want, rtol=tol, atol=tol), f"{name}.backward {target}"
    print("ok")


def scenario_cache_file_saves(directory: str, ident: str):
    """200 entries saved into one shared index through fastact's cache file, as fast as
    possible, while other processes do the same (the test checks every entry after)."""
    from fastact import _cache

    f = _cache._safe_cache_file_class()(directory, "kernel", ("stamp", 1))
    k = int(ident)
    for i in range(200):
        f.save((k, i), {"who": (k, i), "pad": b"x" * (1000 + 37 * i + k)})
    print("ok")


def scenario_fork_while_compiling(delay: str):
    """A thread compiles (a first call, with an empty cache) while the main thread forks
    after ``delay`` seconds; the child's own first calls must finish (no lock inherited
    held), and so must the parent's."""
    import faulthandler
    import time

    x = np.linspace(-3, 3, 4096)
    started = threading.Event()

    def first_calls():
        started.set()
        fa.elu.backward(x, x=x, target="cpu")
        fa.softmax(x.reshape(64, 64), target="parallel")

    t = threading.Thread(target=first_calls)
    t.start()
    started.wait()
    time.sleep(float(delay))
    pid = os.fork()
    if pid == 0:
        faulthandler.dump_traceback_later(60, exit=True)  # a hang: tracebacks, then exit 1
        try:
            ok = np.allclose(fa.sigmoid(x, target="cpu"), REFERENCE["sigmoid"].forward(x))
            ok &= np.allclose(fa.elu.backward(x, x=x, target="cpu"), REFERENCE["elu"].backward(x, x=x))
            os._exit(0 if ok else 3)
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
            os._exit(4)
    t.join(120)
    assert not t.is_alive(), "the parent's compiling thread hung"
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    assert code == 0, f"the forked child failed (exit {code})"
    print("ok")


class _InterruptImport:
    """A meta-path finder that raises KeyboardInterrupt the first time ``module`` is
    imported: Ctrl-C at that point of Numba's import."""

    def __init__(self, module):
        self.module, self.fired = module, False

    def find_spec(self, name, path=None, target=None):
        if name == self.module and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return None


def scenario_interrupt(how: str):
    """KeyboardInterrupt during the first call, then fastact must work: ``how`` is
    ``import:<module>`` (Ctrl-C while Numba imports that module), ``compile`` (while
    Numba lowers a kernel) or ``signal:<seconds>`` (a real SIGINT after that long; the
    outcome is printed, since the first call may finish first)."""
    import signal
    import time

    x = np.linspace(-3, 3, 1000)
    timer = None
    if how.startswith("import:"):
        hook = _InterruptImport(how.split(":", 1)[1])
        sys.meta_path.insert(0, hook)
    elif how == "compile":
        from numba.core import typed_passes

        real = typed_passes.NativeLowering.run_pass
        fired = []

        def run_pass(self, state):
            if not fired:
                fired.append(1)
                raise KeyboardInterrupt
            return real(self, state)

        typed_passes.NativeLowering.run_pass = run_pass
    else:
        # Python's own handler, whatever this process inherited: a shell's background job
        # (`cmd &` without job control) starts with SIGINT ignored, and the signal would
        # then test nothing.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        timer = threading.Timer(float(how.split(":", 1)[1]), os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
    interrupted = False
    try:
        fa.relu(x)
        fa.softmax(x.reshape(10, 100))
    except KeyboardInterrupt:
        interrupted = True
    if timer is not None:
        timer.cancel()
        try:
            time.sleep(0.2)  # a SIGINT that arrives just after the first calls finished
        except KeyboardInterrupt:
            pass
    elif not interrupted:
        raise AssertionError(f"the interrupt ({how}) did not happen")
    for target in ("cpu", "parallel"):
        assert np.array_equal(fa.relu(x, target=target), np.maximum(x, 0)), target
        got = fa.softmax(x.reshape(10, 100), target=target)
        assert np.allclose(got, REFERENCE["softmax"].forward(x.reshape(10, 100)), rtol=1e-12), target
        assert np.allclose(fa.sigmoid(x, target=target), REFERENCE["sigmoid"].forward(x), rtol=1e-12), target
    print(json.dumps({"interrupted": interrupted}))


def scenario_memory(target: str):
    """Under an address-space limit that holds the operands but not a second copy of
    them: every call either raises MemoryError having written nothing, or gives the right
    result (what fails is an allocation, never a half-written ``out``)."""
    import resource

    rows, n = 4096, 1000
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((rows, n)), rng.standard_normal((rows, n))
    out = np.empty((rows, n))
    shifted = np.empty(rows * n + 1)  # out overlapping x by one element: needs scratch
    calls = {
        "softmax.backward(x=) into out": lambda: fa.softmax.backward(dy, x=x, out=out, target=target),
        "softmax into out": lambda: fa.softmax(x, out=out, target=target),
        "softmax.backward(x=) new": lambda: fa.softmax.backward(dy, x=x, target=target),
        "elu.backward new": lambda: fa.elu.backward(dy, x=x, target=target),
        "softmax overlapping out": lambda: fa.softmax(shifted[1:].reshape(rows, n), out=shifted[:-1].reshape(rows, n),
                                                      target=target),
        "elu.backward float16 into out": lambda: fa.elu.backward(dy, x=x.astype(np.float16), out=out, target=target),
    }
    pattern = np.arange(shifted.size) % 7 - 3.0
    expected = {}
    for label, run in calls.items():  # compiled, and the thread pool started, before the limit
        shifted[:] = pattern
        expected[label] = np.array(run(), copy=True)
    fa.release_memory()  # no kept results: the limit below leaves no room for a new one

    def vm_bytes():
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmSize")

    try:
        vm = vm_bytes()
    except (OSError, RuntimeError):
        print("no /proc/self/status here")
        sys.exit(SKIP)
    half = x.nbytes // 2  # room for small allocations, not for a whole operand
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + half, hard))
    outcomes = {}
    try:
        for label, run in calls.items():
            out.fill(12345.0)
            shifted[:] = pattern
            before = pattern if "overlapping" in label else None
            try:
                r = run()
            except MemoryError:
                if before is not None:
                    assert np.array_equal(shifted, before), f"{label}: written before MemoryError"
                else:
                    assert np.all(out == 12345.0), f"{label}: written before MemoryError"
                outcomes[label] = "MemoryError"
                continue
            assert np.array_equal(r, expected[label]), f"{label}: wrong result under the memory limit"
            outcomes[label] = "ok"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    print(json.dumps(outcomes))


def scenario_nojit():
    """Under NUMBA_DISABLE_JIT=1 every operation still computes the right values."""
    from numba.core import config

    assert config.DISABLE_JIT, "run with NUMBA_DISABLE_JIT=1"
    table = cases(256)
    for target in ("cpu", "parallel", "auto"):
        check_against_reference(compute(table, target), table)
    print("ok")


def scenario_huge(target: str):
    """More than 2**31 elements, in place (8 GiB of float32): indices past 2**31 are
    computed, with ``target``."""
    n = 2**31 + 1024
    try:
        x = np.empty(n, np.float32)
    except MemoryError:
        print("not enough memory for an array of 2**31 + 1024 float32")
        sys.exit(SKIP)
    probe = np.array([-2.0, -0.5, 0.0, 0.5, 2.0, -3.0], np.float32)
    where = np.array([0, 2**31 - 1, 2**31, 2**31 + 1, n - 2, n - 1])
    x[::4096] = -1.0
    x[where] = probe
    fa.relu(x, out=x, target=target)
    assert np.array_equal(x[where], np.maximum(probe, 0)), f"{target}: wrong values past 2**31"
    assert np.all(x[::4096][:-1] == 0), f"{target}: some elements were not computed"
    print("ok")


def scenario_layer(layer: str = ""):
    """Both of the above under one threading layer, in one process."""
    scenario_threads(layer)
    scenario_fork(layer)


SCENARIOS = {
    "layer": scenario_layer,
    "threads": scenario_threads,
    "fork": scenario_fork,
    "spawn": scenario_spawn,
    "cache": scenario_cache,
    "cache_race": scenario_cache_race,
    "cache_file_saves": scenario_cache_file_saves,
    "fork_while_compiling": scenario_fork_while_compiling,
    "interrupt": scenario_interrupt,
    "memory": scenario_memory,
    "nojit": scenario_nojit,
    "huge": scenario_huge,
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[1]](*sys.argv[2:])
