"""pytest-benchmark configuration of the benchmark suite.

Options (``pytest bench --help``):

``--smoke``
    every implementation, operation, dtype and mode once, on 1000 elements, one round,
    each result checked against the NumPy reference (what CI runs);
``--full``
    the whole grid (both dtypes, every size, operation and mode); without either option,
    the default selection of :data:`bench.cases.GRIDS`.

Fixtures other benchmark modules can use (a module for another target reuses them and
reports through the same ``extra_info`` schema, :meth:`bench.cases.Case.extra_info`, with
its own ``impl`` name, e.g. ``"fastact.cuda"``, so the report picks it up):

``bench_grid``
    the selected :class:`bench.cases.Grid`;
``bench_data(dtype, size_label)``
    the shared :class:`bench.cases.Data` arrays;
``bench_measure(benchmark, fn, setup=None)``
    warm up (compile, fault pages in), then time ``fn``: as many rounds as fit in
    ``--benchmark-max-time`` seconds (a time per case, not a fixed count), at least
    ``--benchmark-min-rounds``, each of enough iterations to last
    ``--benchmark-min-time``; one round under ``--smoke``.

NumPy's floating-point warnings are silenced for the whole run (``np.seterr``), once:
NumPy's own baselines are timed as users run them, without a per-call ``np.errstate``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest

from bench import cases, machine

_HERE = Path(__file__).resolve().parent


def pytest_addoption(parser):
    group = parser.getgroup("fastact benchmarks")
    group.addoption("--smoke", action="store_true", help="tiny sizes, one round, results checked (CI)")
    group.addoption("--full", action="store_true", help="the whole grid: both dtypes, every size and mode")


def grid_of(config) -> cases.Grid:
    smoke, full = config.getoption("--smoke"), config.getoption("--full")
    if smoke and full:
        raise pytest.UsageError("--smoke and --full exclude each other")
    return cases.GRIDS["smoke" if smoke else "full" if full else "default"]


def pytest_configure(config):
    grid_of(config)  # reject --smoke --full before collecting anything
    import numpy as np

    np.seterr(all="ignore")


def pytest_collection_modifyitems(items):
    # A benchmark that fails before timing is reported once, not again as "fixture unused".
    mark = pytest.mark.filterwarnings("ignore::pytest_benchmark.logger.PytestBenchmarkWarning")
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(mark)
    # Each parallel copy runs just before the kernels of its dtype and size, so that the
    # roofline and the kernels are measured side by side, under the same conditions.
    order = {}
    for i, item in enumerate(items):
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "kernel_case" in params:
            c = params["kernel_case"]
            order[i] = ((c.dtype, c.size), 1)
        elif "copy_case" in params:
            order[i] = (params["copy_case"], 0)
    if order:
        slots = sorted(order)
        moved = sorted(slots, key=lambda i: (_block(order[i][0]), order[i][1], i))
        picked = [items[i] for i in moved]
        for slot, item in zip(slots, picked, strict=True):
            items[slot] = item


def _block(key):
    dtype, size = key
    rowwise = size in cases.ROW_SHAPES
    return (cases.DTYPES.index(dtype) if dtype in cases.DTYPES else 99, rowwise, cases.data_size(dtype, size))


def pytest_generate_tests(metafunc):
    grid = grid_of(metafunc.config)
    if "kernel_case" in metafunc.fixturenames:
        found = cases.kernel_cases(grid)
        metafunc.parametrize("kernel_case", found, ids=[c.id for c in found])
    if "copy_case" in metafunc.fixturenames:
        found = [(d, s) for d in grid.dtypes for s in grid.sizes]
        metafunc.parametrize("copy_case", found, ids=[f"{d}-{s}" for d, s in found])
    if "scaling_case" in metafunc.fixturenames:
        import numba

        found = []
        if grid.scaling is not None:
            functions, size = grid.scaling
            for threads in range(1, numba.config.NUMBA_NUM_THREADS + 1):
                found += [(f, size, threads) for f in ("copy", *functions)]
        metafunc.parametrize("scaling_case", found, ids=[f"{f}-{s}-{t}threads" for f, s, t in found])
    if "first_call_case" in metafunc.fixturenames:
        found = [
            (cache, name, target)
            for cache in ("cold", "warm")
            for name in grid.compile_functions
            for target in grid.compile_targets
        ]
        metafunc.parametrize("first_call_case", found, ids=["-".join(c) for c in found])


@pytest.fixture(scope="session")
def bench_grid(pytestconfig) -> cases.Grid:
    return grid_of(pytestconfig)


@pytest.fixture(scope="session")
def bench_smoke(pytestconfig) -> bool:
    return bool(pytestconfig.getoption("--smoke"))


@pytest.fixture(scope="session")
def bench_data():
    made = {}

    def get(dtype: str, size: str) -> cases.Data:
        key = (dtype, cases.data_size(dtype, size))
        if key not in made:
            made.clear()  # one dtype and size at a time: 16M float64 arrays are 128 MB each
            made[key] = cases.Data(dtype, key[1])
        return made[key]

    return get


@pytest.fixture(scope="session")
def bench_measure(bench_smoke):
    def measure(benchmark, fn, setup=None):
        return _measure(benchmark, fn, setup, bench_smoke)

    return measure


def _measure(benchmark, fn, setup, smoke):
    # Warm-up, outside the timing: the first call compiles (or loads) the kernel and faults
    # the output's pages in.  Rounds and iterations follow from an estimate of one call.
    if setup is not None:
        setup()
    t0 = time.perf_counter()
    fn()
    best = time.perf_counter() - t0
    if benchmark.disabled:
        return
    # A slow first call is its own estimate (a compile only makes it an overestimate,
    # which costs rounds, not accuracy); a fast one is measured again, warm.
    if best < 1e-2 and not smoke:
        best = math.inf
        for _ in range(3):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - t0)
            if best > 1e-3:
                break
    best = max(best, 1e-8)
    if smoke:
        rounds, iterations = 1, 1
    else:
        # A time per case (--benchmark-max-time), at least --benchmark-min-rounds rounds,
        # each of enough iterations to last --benchmark-min-time (the timer's resolution).
        min_rounds, max_time, min_time = benchmark._min_rounds, benchmark._max_time, benchmark._min_time
        iterations = 1 if setup is not None else max(1, math.ceil(min_time / best))
        rounds = max(min_rounds, min(100_000, math.floor(max_time / (best * iterations))))
    benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=iterations, warmup_rounds=0)


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastact_bench"] = machine.describe(grid_of(config).name)
