"""Turn a pytest-benchmark JSON file of this suite into a markdown report and PNG plots.

Only the JSON is read, so a saved run can be re-rendered anywhere
(``python -m bench --from-json FILE``).  Each benchmark's coordinates come from its
``extra_info`` (:meth:`bench.cases.Case.extra_info`); results of other kinds are ignored.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from bench.cases import IMPL_LABELS, MODE_LABELS, op_label

OP_ORDER = ("forward", "grad", "backward", "backward_y")
MODE_ORDER = ("new", "out", "inplace")
IMPL_ORDER = (
    "fastact.cpu",
    "fastact.parallel",
    "fastact.auto",
    "fastact.cuda",
    "numpy",
    "numpy.ufunc",
    "torch",
    "numexpr",
    "scipy",
)
# Peers in the summary, after NumPy: the table says how fastact compares with each.
BASELINES = ("numpy", "numpy.ufunc", "torch", "numexpr", "scipy")
STATS = ("min", "median", "mean")


class ReportError(Exception):
    """The JSON cannot be rendered (not a benchmark file of this suite)."""


@dataclass(frozen=True)
class Result:
    function: str
    op: str
    dtype: str
    size: int
    size_label: str
    mode: str
    impl: str
    nbytes: int
    seconds: float

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9


@dataclass
class Run:
    machine: dict
    commit: dict
    datetime: str
    grid: str
    stat: str
    kernels: list[Result]
    copies: dict  # (dtype, size) -> Result
    compile: list[dict]

    def time(self, **coords) -> float | None:
        for r in self.kernels:
            if all(getattr(r, k) == v for k, v in coords.items()):
                return r.seconds
        return None


def load(path: Path, stat: str = "min") -> Run:
    """Read a pytest-benchmark JSON file written by this suite."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    if stat not in STATS:
        raise ReportError(f"unknown statistic {stat!r}; use one of {', '.join(STATS)}")

    kernels, copies, compile_ = [], {}, []
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        stats = b.get("stats") or {}
        kind = info.get("kind")
        try:
            if kind == "kernel":
                kernels.append(
                    Result(
                        info["function"],
                        info["op"],
                        info["dtype"],
                        int(info["size"]),
                        info.get("size_label") or _size_label(int(info["size"])),
                        info["mode"],
                        info["impl"],
                        int(info["bytes"]),
                        float(stats[stat]),
                    )
                )
            elif kind == "roofline":
                r = Result(
                    "copy",
                    "forward",
                    info["dtype"],
                    int(info["size"]),
                    info.get("size_label") or _size_label(int(info["size"])),
                    "out",
                    "copy",
                    int(info["bytes"]),
                    float(stats[stat]),
                )
                copies[(r.dtype, r.size)] = r
            elif kind == "compile":
                compile_.append({**info, "process": float(stats[stat])})
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"{path}: benchmark {b.get('fullname', '?')} lacks {e}") from None
    if not kernels and not copies and not compile_:
        raise ReportError(f"{path} holds no results of the fastact benchmark suite")
    machine = (data.get("machine_info") or {}).get("fastact_bench") or {}
    return Run(
        machine=machine,
        commit=data.get("commit_info") or {},
        datetime=data.get("datetime", ""),
        grid=machine.get("grid", "?"),
        stat=stat,
        kernels=kernels,
        copies=copies,
        compile=compile_,
    )


# --- formatting ---------------------------------------------------------------------------------


def _size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0 and n // 1_000_000 >= 2:
        return f"{n // 1_000_000}M"
    exp = round(math.log10(n)) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else str(n)


def fmt_time(s: float | None) -> str:
    if s is None:
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9)):
        if s >= scale:
            v = s / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{s * 1e9:.2g} ns"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    return f"{r:.2f}x" if r < 10 else f"{r:.1f}x" if r < 100 else f"{r:.0f}x"


def md_table(headers, rows, align=None) -> str:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_label(run: Run) -> str:
    m = run.machine
    if not m:
        return "unknown machine"
    cores = m.get("usable_cpus") or m.get("logical_cpus")
    return (
        f"{m.get('cpu', '?')} ({cores} cores), {m.get('os', '?')}, Python {m.get('python', '?')}, "
        f"NumPy {m.get('numpy', '?')}, Numba {m.get('numba', '?')} "
        f"({m.get('threading_layer', '?')} threading layer, {m.get('numba_threads', '?')} threads)"
    )


def _ordered(values, order):
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


# --- the summary (numbagg's README style) ---------------------------------------------------------


def _summary_choice(run: Run):
    """The slice the summary shows: float32 if measured, the largest size, a new array each
    call (the one mode every library has) if measured."""
    dtypes = {r.dtype for r in run.kernels}
    dtype = "float32" if "float32" in dtypes else sorted(dtypes)[0]
    # The largest size the CPU targets ran at (another target may have run larger arrays).
    cpu = [r.size for r in run.kernels if r.dtype == dtype and r.impl in ("fastact.cpu", "fastact.parallel")]
    size = max(cpu or [r.size for r in run.kernels if r.dtype == dtype])
    modes = {r.mode for r in run.kernels if r.dtype == dtype and r.size == size}
    mode = next(m for m in MODE_ORDER + tuple(sorted(modes)) if m in modes)
    return dtype, size, mode


def summary(run: Run) -> str:
    """Two tables, one thread and all cores: fastact's speed as a multiple of each other
    implementation's at the largest size (above 1: fastact is faster)."""
    if not run.kernels:
        return "_No kernel results._"
    dtype, size, mode = _summary_choice(run)
    sel = [r for r in run.kernels if r.dtype == dtype and r.size == size and r.mode == mode]
    by = {(r.function, r.op, r.impl): r.seconds for r in sel}
    rows_keys = []
    for r in sel:
        k = (r.function, r.op)
        if k not in rows_keys:
            rows_keys.append(k)
    rows_keys.sort(key=lambda k: (_first_index(run, k[0]), OP_ORDER.index(k[1]) if k[1] in OP_ORDER else 99))
    baselines = [b for b in BASELINES if any(r.impl == b for r in sel)]
    size_label = next(r.size_label for r in sel)
    out = [
        f"{dtype}, n = {size_label} ({size:,} elements), {MODE_LABELS.get(mode, mode)} each call; "
        "each cell is the other library's time divided by fastact's (above 1: fastact is faster; "
        f"{run.stat} of the timed rounds)."
    ]
    for target, title in (
        ("fastact.cpu", 'One thread, `target="cpu"`'),
        ("fastact.parallel", 'All cores, `target="parallel"`'),
    ):
        if not any(r.impl == target for r in sel):
            continue
        rows = []
        for f, op in rows_keys:
            mine = by.get((f, op, target))
            cells = []
            for b in baselines:
                theirs = by.get((f, op, b))
                cells.append(fmt_ratio(theirs / mine) if mine and theirs else "n/a")
            if any(c != "n/a" for c in cells):
                rows.append([f"`{op_label(f, op)}`", *cells])
        out.append(f"\n**{title}**\n")
        out.append(md_table(["function", *(IMPL_LABELS.get(b, b) for b in baselines)], rows))
    peers = run.machine.get("peers") or {}
    threaded = [f"{IMPL_LABELS[k]} {v['threads']} threads" for k, v in peers.items() if "threads" in v]
    if threaded:
        out.append(f"\nPeers run with their default thread pools in both tables ({', '.join(threaded)}).")
    return "\n".join(out)


def _first_index(run: Run, function: str) -> int:
    for i, r in enumerate(run.kernels):
        if r.function == function:
            return i
    return 1 << 30


# --- the full report ------------------------------------------------------------------------------


def _case_rows(run: Run):
    """Every (function, op, dtype, size, mode) measured, in suite order."""
    seen = {}
    for r in run.kernels:
        seen.setdefault((r.function, r.op, r.dtype, r.size, r.mode), r)
    return list(seen.values())


def full_tables(run: Run) -> str:
    impls = _ordered({r.impl for r in run.kernels}, IMPL_ORDER)
    by = {(r.function, r.op, r.dtype, r.size, r.mode, r.impl): r for r in run.kernels}
    times, rates = [], []
    for c in _case_rows(run):
        key = (c.function, c.op, c.dtype, c.size, c.mode)
        cells = {i: by.get((*key, i)) for i in impls}
        fastest = min((r.seconds for r in cells.values() if r), default=None)
        copy = run.copies.get((c.dtype, c.size))
        head = [f"`{op_label(c.function, c.op)}`", c.dtype, c.size_label, MODE_LABELS.get(c.mode, c.mode)]
        trow, grow = list(head), list(head)
        for i in impls:
            r = cells[i]
            if r is None:
                trow.append("")
                grow.append("")
                continue
            t = fmt_time(r.seconds)
            trow.append(f"**{t}**" if r.seconds == fastest else t)
            g = f"{r.gbps:.1f}"
            if copy is not None:
                g += f" ({100 * r.gbps / copy.gbps:.0f}%)"
            grow.append(g)
        times.append(trow)
        rates.append(grow)
    headers = ["function", "dtype", "n", "result", *(IMPL_LABELS.get(i, i) for i in impls)]
    align = ["l", "l", "r", "l", *["r"] * len(impls)]
    return (
        "### Time per call\n\n"
        f"{run.stat.capitalize()} over the timed rounds; the fastest of each row in bold.\n\n"
        + md_table(headers, times, align)
        + "\n\n### Throughput\n\n"
        "GB/s: bytes of every operand (inputs read once, result written once) per second; in "
        "parentheses, the fraction of the parallel copy's GB/s at the same dtype and size.\n\n"
        + md_table(headers, rates, align)
    )


def roofline_section(run: Run) -> str:
    if not run.copies:
        return "_No roofline measured._"
    rows = [
        [c.dtype, c.size_label, fmt_time(c.seconds), f"{c.gbps:.1f}"]
        for c in sorted(run.copies.values(), key=lambda c: (c.dtype, c.size))
    ]
    out = [
        "A multi-threaded Numba copy of the same array into a preallocated one: the most an "
        "elementwise kernel that reads one array and writes another can achieve.\n",
        md_table(["dtype", "n", "time", "GB/s"], rows),
    ]
    # fastact at the largest size, into a preallocated out: how close to the copy.
    for dtype in sorted({c.dtype for c in run.copies.values()}):
        big = max((c for c in run.copies.values() if c.dtype == dtype), key=lambda c: c.size)
        sel = [
            r
            for r in run.kernels
            if r.dtype == dtype and r.size == big.size and r.mode == "out" and r.impl.startswith("fastact.")
        ]
        if not sel:
            continue
        impls = _ordered({r.impl for r in sel}, IMPL_ORDER)
        by = {(r.function, r.op, r.impl): r for r in sel}
        keys = list(dict.fromkeys((r.function, r.op) for r in sel))
        rows = []
        for f, op in keys:
            cells = []
            for i in impls:
                r = by.get((f, op, i))
                cells.append(
                    ""
                    if r is None
                    else f"{fmt_ratio(r.seconds / big.seconds)} ({100 * r.gbps / big.gbps:.0f}%)"
                )
            rows.append([f"`{op_label(f, op)}`", *cells])
        out.append(
            f"\nfastact into a preallocated `out`, {dtype}, n = {big.size_label}: time as a multiple of the "
            "copy's (1.00x is the copy), and in parentheses GB/s as a fraction of the copy's. An "
            "operation that moves three arrays (backward: dy, x and the result) needs at least 1.5x "
            "the copy's time.\n"
        )
        out.append(md_table(["function", *(IMPL_LABELS.get(i, i) for i in impls)], rows))
    return "\n".join(out)


def compile_section(run: Run) -> str:
    if not run.compile:
        return "_Not measured in this run._"
    rows = []
    for c in run.compile:
        if c.get("what") == "import":
            rows.append(
                [
                    "`import numpy`",
                    "",
                    fmt_time(c["import_numpy"]["median"]),
                    fmt_time(c["process"]),
                ]
            )
            rows.append(
                [
                    "`import fastact` (after NumPy)",
                    "Numba imported" if c.get("numba_imported") else "Numba not imported",
                    fmt_time(c["import_fastact"]["median"]),
                    fmt_time(c["process"]),
                ]
            )
            if "import_numba" in c:
                rows.append(
                    [
                        "`import numba` (after fastact)",
                        "part of every first call below",
                        fmt_time(c["import_numba"]["median"]),
                        "",
                    ]
                )
    for c in run.compile:
        if c.get("what") in ("cold", "warm"):
            what = "empty cache: compiles" if c["what"] == "cold" else "warm disk cache: loads"
            rows.append(
                [
                    f'first `{c["function"]}(x, target="{c["target"]}")`',
                    what,
                    fmt_time(c["first_call"]["median"]),
                    fmt_time(c["process"]),
                ]
            )
            rows.append(
                [
                    "&nbsp;&nbsp;then the second call",
                    "",
                    fmt_time(c["second_call"]["median"]),
                    "",
                ]
            )
    return (
        "Each measured in a fresh Python process (median over the rounds); the first call "
        "includes importing Numba. Kernel timings elsewhere in this report exclude compilation "
        "(every benchmark is warmed up first).\n\n"
        + md_table(["step", "", "time in the process", "whole process"], rows, ["l", "l", "r", "r"])
    )


def render(run: Run, out_dir: Path, source: str = "") -> Path:
    """Write ``report.md`` and the plots into ``out_dir``; return the report's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    from bench import plots

    images = plots.render(run, out_dir / "plots")
    commit = run.commit
    rev = commit.get("id", "")[:10] + (" (with uncommitted changes)" if commit.get("dirty") else "")
    parts = [
        "# fastact benchmarks\n",
        f"Run {run.datetime[:19].replace('T', ' ')} UTC"
        + (f", commit {rev}" if rev.strip() else "")
        + f", `{run.grid}` selection"
        + (f", from `{source}`" if source else "")
        + ". Re-render with `python -m bench --from-json FILE`.\n",
        "## Machine\n",
        _machine_table(run),
        "\n## Summary\n",
        summary(run),
        "\n## Memory roofline\n",
        roofline_section(run),
        "\n## Compilation\n",
        compile_section(run),
        "\n## Plots\n",
        "Throughput against array size (with the parallel copy as the roofline) and speedup over "
        "the NumPy reference, per function; log-scaled sizes.\n",
        *(f"![{p.stem}](plots/{p.name})\n" for p in images),
        "\n## All results\n",
        full_tables(run) if run.kernels else "_No kernel results._",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def _thresholds(m: dict) -> str:
    """``auto``'s thresholds in float32 elements, grouped: "131072 (relu, step), 43690 (sigmoid)"."""
    per = m.get("parallel_thresholds")
    if not per:  # a run saved before thresholds were per function
        return str(m.get("parallel_threshold", "?"))
    groups: dict[int, list[str]] = {}
    for name, n in per.items():
        groups.setdefault(n, []).append(name)
    return ", ".join(f"{n} ({', '.join(names)})" for n, names in sorted(groups.items(), reverse=True))


def _machine_table(run: Run) -> str:
    m = run.machine
    if not m:
        return "_The JSON does not describe the machine._"
    rows = [
        ["CPU", m.get("cpu", "?")],
        ["cores", f"{m.get('usable_cpus')} usable of {m.get('logical_cpus')}"],
        ["OS", m.get("os", "?")],
        ["Python", m.get("python", "?")],
        ["NumPy", m.get("numpy", "?")],
        [
            "Numba",
            f"{m.get('numba', '?')}, {m.get('numba_threads', '?')} threads, "
            f"{m.get('threading_layer', '?')} threading layer",
        ],
        [
            "fastact",
            f"{m.get('fastact', '?')}, `auto` goes parallel from n = {_thresholds(m)}",
        ],
    ]
    for k, v in (m.get("peers") or {}).items():
        rows.append(
            [
                IMPL_LABELS.get(k, k),
                v.get("version", "?") + (f", {v['threads']} threads" if "threads" in v else ""),
            ]
        )
    return md_table(["", ""], rows, ["l", "l"])


def readme_block(run: Run) -> str:
    """The summary as the README shows it, labelled with the machine."""
    return f"Measured with `python -m bench` on {machine_label(run)}.\n\n" + summary(run)
