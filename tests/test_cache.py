"""Kernels compile lazily and load from Numba's disk cache in a new process."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

WORK = textwrap.dedent(
    """
    import json, numpy as np, fastact as fa
    from fastact import _cpu
    x = np.linspace(-5, 5, 1000, dtype=np.float32)
    fa.sigmoid(x, target="cpu")
    fa.sigmoid(x, target="parallel")
    fa.softmax(x.reshape(10, 100), target="parallel")
    k = _cpu.kernels()
    stats = {n: getattr(k, n).stats for n in ("sigmoid__forward__parallel", "softmax__forward__parallel")}
    print("STATS", json.dumps({n: [s.cache_hits.get(sig, 0) for sig in s.cache_hits] + [len(s.cache_misses)]
                               for n, s in stats.items()}))
    """
)


def _run(code, **env):
    full = {**os.environ, **env}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=full, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_fresh_process_loads_kernels_from_the_disk_cache():
    _run(WORK)  # warm-up: compiles and saves whatever is not cached yet
    out = _run(WORK, NUMBA_DEBUG_CACHE="1")
    loaded = [line for line in out.splitlines() if "data loaded from" in line]
    saved = [line for line in out.splitlines() if "data saved to" in line]
    assert saved == [], f"compiled instead of loading: {saved}"
    assert any("sigmoid__forward" in line for line in loaded), out
    assert any("sigmoid__forward__parallel" in line for line in loaded), out
    assert any("softmax__forward__parallel" in line for line in loaded), out
    stats = json.loads(next(line for line in out.splitlines() if line.startswith("STATS"))[6:])
    for name, counts in stats.items():
        *hits, misses = counts
        assert misses == 0 and sum(hits) >= 1, (name, counts)


def test_import_compiles_nothing_and_does_not_import_numba():
    code = textwrap.dedent(
        """
        import sys, fastact
        assert "numba" not in sys.modules, "import fastact imported numba"
        assert "fastact._kernels_cpu" not in sys.modules
        print(len(fastact.FUNCTIONS))
        """
    )
    assert int(_run(code)) >= 7


@pytest.mark.parametrize("name", ["relu", "softmax"])
def test_first_call_imports_the_kernels(name):
    code = f"import sys, numpy as np, fastact as fa; fa.{name}(np.ones(3)); print('numba' in sys.modules)"
    assert _run(code).strip() == "True"
