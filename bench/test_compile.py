"""What compilation costs, measured apart from the kernel timings (which are warmed up).

Each round runs a fresh Python process that imports fastact and calls one function twice:
``import fastact`` (after NumPy), the first call with an empty Numba cache directory
(``cold``: Numba is imported and the kernel compiled) or with one a previous process
filled (``warm``: the kernel is loaded from disk), the second call for contrast, and the
first call of another kernel (``backward``).  The
benchmark's own time is the whole process; the figures measured inside it are in
``extra_info``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import fastact
t2 = time.perf_counter()
res = {"import_numpy": t1 - t0, "import_fastact": t2 - t1, "numba_imported": "numba" in sys.modules}
if len(sys.argv) > 1:
    name, target = sys.argv[1:]
    f = fastact.FUNCTIONS[name]
    x = np.linspace(-3, 3, 1000, dtype=np.float32)
    if f.spec.kind == "rowwise":
        x = x.reshape(10, 100)
    t3 = time.perf_counter()
    f(x, target=target)
    t4 = time.perf_counter()
    f(x, target=target)
    t5 = time.perf_counter()
    f.backward(x, x=x, target=target)  # another kernel: loaded (or compiled) on its own
    t6 = time.perf_counter()
    res.update(first_call=t4 - t3, second_call=t5 - t4, other_kernel=t6 - t5)
else:
    t3 = time.perf_counter()
    import numba
    res["import_numba"] = time.perf_counter() - t3
print(json.dumps(res))
"""


def _child(cache_dir, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise AssertionError(f"child process failed ({done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _summary(results):
    keys = [k for k, v in results[0].items() if isinstance(v, float)]
    return {
        k: {"min": min(r[k] for r in results), "median": statistics.median(r[k] for r in results)}
        for k in keys
    }


def test_import(benchmark, bench_grid, tmp_path):
    results = []
    benchmark.group = "compile: import fastact"
    benchmark.extra_info.update(kind="compile", what="import")
    benchmark.pedantic(lambda: results.append(_child(tmp_path)), rounds=bench_grid.compile_rounds[0])
    benchmark.extra_info.update(numba_imported=any(r["numba_imported"] for r in results), **_summary(results))


def test_first_call(benchmark, bench_grid, tmp_path_factory, first_call_case):
    cache, function, target = first_call_case
    results = []
    benchmark.group = f"compile: first call, {cache} cache"
    benchmark.extra_info.update(kind="compile", what=cache, function=function, target=target)
    if cache == "cold":

        def setup():
            return (tmp_path_factory.mktemp("numba-cold"),), {}

        rounds = bench_grid.compile_rounds[1]
    else:
        warm = tmp_path_factory.mktemp("numba-warm")
        _child(warm, function, target)  # fills the cache

        def setup():
            return (warm,), {}

        rounds = bench_grid.compile_rounds[2]
    benchmark.pedantic(lambda d: results.append(_child(d, function, target)), setup=setup, rounds=rounds)
    benchmark.extra_info.update(_summary(results))
