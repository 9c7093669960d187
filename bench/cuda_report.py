"""Markdown tables of a CUDA benchmark run (``bench/test_bench_cuda.py``'s JSON).

    python -m bench.cuda_report cuda.json [--kind elementwise|rowwise|latency] [--dtype float32]

One row per function, operation, dtype and shape: fastact's bandwidth, its fraction of a
device-to-device copy, and PyTorch's and CuPy's time over fastact's (above 1: fastact is
faster), each time the median per call with its interquartile range in the JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict


def load(path) -> dict:
    with open(path) as f:
        return json.load(f)


def rows(data: dict, kind: str | None = None, dtype: str | None = None):
    """{(kind, function, op, dtype, shape): {impl: extra_info}}, in the run's order."""
    table = defaultdict(dict)
    for b in data["benchmarks"]:
        e = b.get("extra_info") or {}
        if not str(e.get("kind", "")).startswith("cuda-"):
            continue
        k = e["kind"][5:]
        if (kind and k != kind) or (dtype and e["dtype"] != dtype):
            continue
        table[(k, e["function"], e["op"], e["dtype"], "x".join(map(str, e["shape"])))][e["impl"]] = e
    return table


def _ratio(peer, mine) -> str:
    if not peer or not mine:
        return ""
    return f"{peer['seconds'] / mine['seconds']:.2f}x"


def markdown(data: dict, kind: str | None = None, dtype: str | None = None) -> str:
    lines = [
        "| kind | function | op | dtype | shape | fastact GB/s | of copy | µs per call | vs PyTorch | vs CuPy |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for (k, name, op, dt, shape), impls in rows(data, kind, dtype).items():
        me = impls.get("fastact.cuda")
        if me is None:
            continue
        lines.append(
            f"| {k} | {name} | {op} | {dt} | {shape} | {me['gbps']:.0f} | {me['fraction_of_copy']:.0%} | "
            f"{me['seconds'] * 1e6:.1f} | {_ratio(impls.get('torch.cuda'), me)} | {_ratio(impls.get('cupy'), me)} |"
        )
    return "\n".join(lines)


def machine(data: dict) -> str:
    m = data.get("machine_info", {})
    return f"{m.get('node', '?')}: {m.get('cpu', {}).get('brand_raw', '?')}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("json")
    p.add_argument("--kind", choices=("elementwise", "rowwise", "latency"))
    p.add_argument("--dtype")
    a = p.parse_args(argv)
    print(markdown(load(a.json), a.kind, a.dtype))


if __name__ == "__main__":
    main()
