"""The machine a benchmark ran on, recorded in the pytest-benchmark JSON."""

from __future__ import annotations

import os
import platform
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe(grid: str) -> dict:
    import numba
    import numpy as np

    import fastact
    from fastact import _dispatch

    info = {
        "grid": grid,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threading_layer": _threading_layer(),
        "fastact": fastact.__version__,
        "parallel_bytes": getattr(_dispatch, "PARALLEL_BYTES", None),
        "parallel_thresholds": {name: _dispatch.threshold(spec, 4) for name, spec in fastact.REGISTRY.items()},
        "peers": {},
    }
    # Peers are described only when the run imported them (importing PyTorch takes seconds).
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["peers"]["torch"] = {"version": torch.__version__, "threads": torch.get_num_threads()}
    if "numexpr" in sys.modules:
        ne = sys.modules["numexpr"]
        info["peers"]["numexpr"] = {"version": ne.__version__, "threads": ne.get_num_threads()}
    if "scipy.special" in sys.modules:
        info["peers"]["scipy"] = {"version": sys.modules["scipy"].__version__}
    return info


def _threading_layer() -> str:
    import numba
    import numpy as np

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet in this process
        from bench import roofline

        roofline.prepare()
        a = np.zeros(16)
        roofline.parallel_copy(a, a.copy())
        return numba.threading_layer()
