"""Where a small CUDA call's time goes: the host's launch path, profiled (needs a GPU).

    python -m bench.cuda_profile [--calls 2000] [--out profile.txt]

Times back-to-back calls of ``relu`` (into ``out=`` and into a new array), ``sigmoid.backward``
and ``softmax`` on 1000 float32 elements already on the device, beside the same kernel
launched directly through Numba (``kernel[blocks, threads](...)``), and a bare PyTorch
``relu`` where PyTorch has CUDA; then profiles ``relu`` with cProfile and prints the
functions that take the most time.  The difference between fastact's call and the direct
launch is fastact's own share; the direct launch is Numba's.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import warnings

import numpy as np


def _per_call(fn, calls):
    from numba import cuda

    fn()
    cuda.synchronize()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    cuda.synchronize()
    return (time.perf_counter() - t) / calls


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=2000)
    p.add_argument("--out", default=None, help="also write the report to this file")
    a = p.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*Grid size")  # the direct launch's small grid

    from numba import cuda

    import fastact as fa
    from fastact import _kernels_cuda as K

    x = cuda.to_device(np.linspace(-3, 3, 1000, dtype=np.float32))
    out = cuda.device_array_like(x)
    kernel = K.relu__forward__cuda
    zero = np.float32(0.0)
    cases = {
        "fastact relu(x, out=o)": lambda: fa.relu(x, out=out),
        "fastact relu(x)": lambda: fa.relu(x),
        "fastact sigmoid.backward(dy, x=x, out=o)": lambda: fa.sigmoid.backward(x, x=x, out=out),
        "fastact softmax(x, out=o)": lambda: fa.softmax(x, out=out),
        "numba kernel[4, 256](o, x, 0.0)": lambda: kernel[4, 256](out, x, zero),
    }
    try:
        import torch

        if torch.cuda.is_available():
            t = torch.as_tensor(x, device="cuda")
            cases["torch relu(t)"] = lambda: torch.relu(t)
    except ImportError:
        pass
    lines = [f"{'call':45} µs per call"]
    for name, fn in cases.items():
        lines.append(f"{name:45} {_per_call(fn, a.calls) * 1e6:8.1f}")
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(a.calls):
        fa.relu(x, out=out)
    cuda.synchronize()
    prof.disable()
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
    text = "\n".join(lines) + "\n\n" + s.getvalue()
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
