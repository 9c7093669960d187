"""The machine a benchmark ran on, recorded in the pytest-benchmark JSON."""

from __future__ import annotations

import glob
import os
import platform


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def caches() -> dict:
    """Data cache sizes in bytes, per core for L1 and L2 and in all for the last level:
    ``{"L1": ..., "L2": ..., "L3": ...}`` (what Linux reports; empty elsewhere)."""
    out = {}
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            with open(f"{index}/level") as f:
                level = int(f.read())
            with open(f"{index}/type") as f:
                kind = f.read().strip()
            with open(f"{index}/size") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        if kind == "Instruction":
            continue
        scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        out[f"L{level}"] = int(text.rstrip("KMG")) * scale
    return out


def level(nbytes: int, cache_sizes: dict) -> str:
    """The memory level a working set of ``nbytes`` (every operand) fits in: ``"L1"``,
    ``"L2"``, ``"LLC"`` or ``"memory"`` (``"?"`` where the caches are unknown)."""
    if not cache_sizes:
        return "?"
    last = max(cache_sizes)
    for name in sorted(cache_sizes):
        if nbytes <= cache_sizes[name]:
            return "LLC" if name == last else name
    return "memory"


def label(m: dict) -> str:
    """One line naming the machine of a run's ``machine`` record."""
    if not m:
        return "unknown machine"
    cores = m.get("usable_cpus") or m.get("logical_cpus")
    return (
        f"{m.get('cpu', '?')} ({cores} cores), {m.get('os', '?')}, Python {m.get('python', '?')}, "
        f"NumPy {m.get('numpy', '?')}, Numba {m.get('numba', '?')} "
        f"({m.get('threading_layer', '?')} threading layer, {m.get('numba_threads', '?')} threads)"
    )


def describe(grid: str) -> dict:
    import numba
    import numpy as np

    import fastact
    from bench import peers
    from fastact import _dispatch

    return {
        "grid": grid,
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "caches": caches(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "threading_layer": _threading_layer(),
        "fastact": fastact.__version__,
        "parallel_bytes": getattr(_dispatch, "PARALLEL_BYTES", None),
        "parallel_thresholds": {name: _dispatch.threshold(spec, 4) for name, spec in fastact.REGISTRY.items()},
        # Peers are described only when the run imported them (importing PyTorch takes seconds).
        "peers": peers.describe(),
    }


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
