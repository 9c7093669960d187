"""A run of the suite as a markdown report (with the plots of :mod:`bench.plots`), and the
README's summary table.

Every ratio in the summary comes with its spread and round count: the median ratio, and
in parentheses the range from the conservative ends of the two interquartile ranges
(their first quartile over our third, their third over our first).  A ratio whose range
contains 1.0 is a tie, shown as ``≈``.
"""

from __future__ import annotations

from pathlib import Path

from bench import machine as machine_mod
from bench.cases import ALL_THREADS, IMPL_LABELS, IMPL_NOTES, MODE_LABELS, ONE_THREAD, ROW_SHAPES, op_label
from bench.results import IMPL_ORDER, MODE_ORDER, NOISY, OP_ORDER, Result, Run, ordered

# --- formatting ---------------------------------------------------------------------------------


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


def _short(r: float) -> str:
    return f"{r:.2f}" if r < 10 else f"{r:.1f}" if r < 100 else f"{r:.0f}"


def ratio_cell(theirs: Result, mine: Result) -> str:
    """``2.31x (2.24–2.40, 31 r)``: their time over ours, its conservative range and the
    fewer of the two round counts; ``≈`` marks a tie."""
    mid = theirs.seconds / mine.seconds
    lo, hi = theirs.low / mine.high, theirs.high / mine.low
    tie = lo <= 1.0 <= hi
    rounds = min(theirs.rounds, mine.rounds)
    noisy = " †" if theirs.noisy or mine.noisy else ""
    return f"{'≈ ' if tie else ''}{fmt_ratio(mid)} ({_short(lo)}–{_short(hi)}, {rounds} r){noisy}"


def md_table(headers, rows, align=None) -> str:
    align = align or ["l"] + ["r"] * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_label(run: Run) -> str:
    return machine_mod.label(run.machine)


def _level(run: Run, nbytes: int) -> str:
    return machine_mod.level(nbytes, run.machine.get("caches") or {})


# --- the summary (numbagg's README style) ---------------------------------------------------------


def summary_size(run: Run, dtype: str) -> str | None:
    """The size label the summary shows for ``dtype``: the largest elementwise size the
    CPU targets ran at."""
    sizes = [(r.size, r.size_label) for r in run.kernels
             if r.dtype == dtype and r.impl in ("fastact.cpu", "fastact.parallel") and r.size_label not in ROW_SHAPES]
    return max(sizes)[1] if sizes else None


def summary_row_shape(run: Run, dtype: str) -> str | None:
    shapes = [(r.size, r.size_label) for r in run.kernels if r.dtype == dtype and r.size_label in ROW_SHAPES]
    return max(shapes)[1] if shapes else None


def _summary_table(run: Run, dtype: str, target: str, peers, mode="new") -> tuple[list[str], list[list[str]]] | None:
    size, shape = summary_size(run, dtype), summary_row_shape(run, dtype)
    sel = [r for r in run.kernels if r.dtype == dtype and r.mode == mode and r.size_label in (size, shape)]
    if not any(r.impl == target for r in sel):
        return None
    by = {(r.function, r.op, r.impl): r for r in sel}
    keys = list(dict.fromkeys((r.function, r.op) for r in sel))
    keys.sort(key=lambda k: (_first_index(run, k[0]), OP_ORDER.index(k[1]) if k[1] in OP_ORDER else 99))
    columns = [p for p in peers if any(r.impl == p for r in sel)]
    rows = []
    for f, op in keys:
        mine = by.get((f, op, target))
        if mine is None:
            continue
        cells = [ratio_cell(by[(f, op, p)], mine) if (f, op, p) in by else "n/a" for p in columns]
        if any(c != "n/a" for c in cells):
            rows.append([f"`{op_label(f, op)}`", *cells])
    return [IMPL_LABELS.get(p, p) for p in columns], rows


def summary(run: Run, dtypes=None, modes=("new", "out")) -> str:
    """Per dtype and way of storing the result, two tables, one thread and all threads:
    fastact's speed as a multiple of each other implementation's at the largest size
    (above 1: fastact is faster)."""
    if not run.kernels:
        return "_No kernel results._"
    dtypes = dtypes or ordered({r.dtype for r in run.kernels}, ("float32", "float64"))
    out = [
        "Each cell is the other implementation's time divided by fastact's (above 1: fastact is faster), "
        f"{run.stat} of the timed rounds; in parentheses the range that the two interquartile ranges allow "
        "and the rounds behind it. `≈` marks a tie (the range includes 1); † a noisy measurement "
        f"(interquartile range above {NOISY:.0%} of the median)."
    ]
    for dtype in dtypes:
        size, shape = summary_size(run, dtype), summary_row_shape(run, dtype)
        if size is None:
            continue
        n = next(r.size for r in run.kernels if r.dtype == dtype and r.size_label == size)
        where = f"n = {size} ({n:,} elements)" + (f", row-wise functions on {shape}" if shape else "")
        for mode in modes:
            for target, title, peers in (
                ("fastact.cpu", 'one thread, `target="cpu"`', ONE_THREAD),
                ("fastact.parallel", 'all threads, `target="parallel"`', ALL_THREADS),
            ):
                table = _summary_table(run, dtype, target, peers, mode)
                if table is None or not table[1]:
                    continue
                headers, rows = table
                how = "a new array each call" if mode == "new" else "into a preallocated `out`"
                out.append(f"\n**{dtype}, {where}, {how}; {title}**\n")
                out.append(md_table(["function", *headers], rows))
    return "\n".join(out)


def _first_index(run: Run, function: str) -> int:
    for i, r in enumerate(run.kernels):
        if r.function == function:
            return i
    return 1 << 30


# --- sections -------------------------------------------------------------------------------------


def columns_section(run: Run) -> str:
    impls = ordered({r.impl for r in run.kernels}, IMPL_ORDER)
    return "\n".join(f"- **{IMPL_LABELS.get(i, i)}**: {IMPL_NOTES.get(i, '')}" for i in impls)


def peers_section(run: Run) -> str:
    peers = run.machine.get("peers") or {}
    if not peers:
        return "_No peer ran._"
    rows = [[IMPL_LABELS.get(k, k), v.get("version", "?"), str(v.get("threads", "?"))] for k, v in peers.items()]
    return ("The `, 1 thread` columns ran the same peer with its thread count set to 1.\n\n"
            + md_table(["peer", "version", "threads by default"], rows, ["l", "l", "l"]))


def rowwise_section(run: Run) -> str:
    """Row-wise functions on every row shape: fastact and the peers, per dtype."""
    sel = [r for r in run.kernels if r.size_label in ROW_SHAPES and r.mode == "new"]
    if not sel:
        return "_No row-wise results._"
    out = []
    for dtype in ordered({r.dtype for r in sel}, ("float32", "float64")):
        mine = [r for r in sel if r.dtype == dtype]
        impls = ordered({r.impl for r in mine}, IMPL_ORDER)
        by = {(r.function, r.op, r.size_label, r.impl): r for r in mine}
        rows = []
        for f, op, shape in dict.fromkeys((r.function, r.op, r.size_label) for r in mine):
            cells = [fmt_time(by[(f, op, shape, i)].seconds) if (f, op, shape, i) in by else "" for i in impls]
            rows.append([f"`{op_label(f, op)}`", shape, *cells])
        out.append(f"\n**{dtype}**, time per call ({run.stat}):\n")
        out.append(md_table(["function", "shape", *(IMPL_LABELS.get(i, i) for i in impls)], rows))
    return "\n".join(out)


def roofline_section(run: Run) -> str:
    if not run.copies:
        return "_No roofline measured._"
    rows = [
        [c.dtype, c.size_label, _level(run, c.nbytes), fmt_time(c.seconds), f"{c.gbps:.1f}"]
        for c in sorted(run.copies.values(), key=lambda c: (c.dtype, c.size))
    ]
    out = [
        "A multi-threaded Numba copy of the same array into a preallocated one: the most an "
        "elementwise kernel that reads one array and writes another can achieve. *Level*: where the "
        "copy's bytes (source and destination) fit on this machine, so which bandwidth it measures.\n",
        md_table(["dtype", "n", "level", "time", "GB/s"], rows),
    ]
    # fastact at the largest size, into a preallocated out: how close to the copy.
    for dtype in sorted({c.dtype for c in run.copies.values()}):
        big = max((c for c in run.copies.values() if c.dtype == dtype), key=lambda c: c.size)
        sel = [r for r in run.kernels
               if r.dtype == dtype and r.size == big.size and r.mode == "out" and r.impl.startswith("fastact.")
               and r.size_label not in ROW_SHAPES]
        if not sel:
            continue
        impls = ordered({r.impl for r in sel}, IMPL_ORDER)
        by = {(r.function, r.op, r.impl): r for r in sel}
        rows = []
        for f, op in dict.fromkeys((r.function, r.op) for r in sel):
            cells = []
            for i in impls:
                r = by.get((f, op, i))
                # Time over the copy's, scaled by the bytes moved (3 arrays for backward).
                cells.append("" if r is None else
                             f"{fmt_ratio(r.seconds / (big.seconds * r.nbytes / big.nbytes))} "
                             f"({100 * r.gbps / big.gbps:.0f}%)")
            rows.append([f"`{op_label(f, op)}`", *cells])
        out.append(
            f"\nfastact into a preallocated `out`, {dtype}, n = {big.size_label}: time as a multiple of the "
            "copy's, scaled by the bytes moved (1.00x: as fast as the copy moves the same bytes), and in "
            "parentheses GB/s as a fraction of the copy's.\n"
        )
        out.append(md_table(["function", *(IMPL_LABELS.get(i, i) for i in impls)], rows))
    return "\n".join(out)


def scaling_section(run: Run) -> str:
    if not run.scaling:
        return "_Not measured in this run._"
    functions = list(dict.fromkeys(r.function for r in run.scaling))
    threads = sorted({r.threads for r in run.scaling})
    by = {(r.function, r.threads): r for r in run.scaling}
    rows = []
    for t in threads:
        row = [str(t)]
        for f in functions:
            r = by.get((f, t))
            one = by.get((f, 1))
            row.append("" if r is None else
                       f"{fmt_time(r.seconds)}, {r.gbps:.1f} GB/s"
                       + (f", {one.seconds / r.seconds:.2f}x" if one is not None else ""))
        rows.append(row)
    size = run.scaling[0].size_label
    return (
        f"float32, n = {size}, into a preallocated `out`, `target=\"parallel\"` with `numba.set_num_threads(k)`: "
        "time, throughput and speedup over one thread. The copy bounds the memory-bound functions; "
        "a compute-bound one (sigmoid) keeps scaling until it reaches it.\n\n"
        + md_table(["threads", *functions], rows, ["r"] + ["r"] * len(functions))
    )


def noisy_section(run: Run) -> str:
    noisy = [r for r in run.results if r.noisy]
    if not noisy:
        return f"No measurement had an interquartile range above {NOISY:.0%} of its median."
    rows = [[f"`{op_label(r.function, r.op) if r.kind == 'kernel' else r.function}`", r.dtype, r.size_label,
             IMPL_LABELS.get(r.impl, r.impl) + (f", {r.threads} threads" if r.threads else ""),
             f"{100 * r.spread:.0f}%", str(r.rounds)]
            for r in sorted(noisy, key=lambda r: -r.spread)]
    return (f"{len(noisy)} of {len(run.results)} measurements had an interquartile range above {NOISY:.0%} of "
            "their median (another process competing for the cores, frequency changes); their ratios are "
            "marked † above.\n\n"
            + md_table(["function", "dtype", "n", "implementation", "IQR / median", "rounds"], rows[:40])
            + (f"\n\n... and {len(rows) - 40} more (see the CSV)." if len(rows) > 40 else ""))


def compile_section(run: Run) -> str:
    if not run.compile:
        return "_Not measured in this run._"
    rows = []
    for c in run.compile:
        if c.get("what") == "import":
            rows.append(["`import numpy`", "", fmt_time(c["import_numpy"]["median"]), fmt_time(c["process"])])
            rows.append(["`import fastact` (after NumPy)",
                         "Numba imported" if c.get("numba_imported") else "Numba not imported",
                         fmt_time(c["import_fastact"]["median"]), fmt_time(c["process"])])
            if "import_numba" in c:
                rows.append(["`import numba` (after fastact)", "part of every first call below",
                             fmt_time(c["import_numba"]["median"]), ""])
    for c in run.compile:
        if c.get("what") in ("cold", "warm"):
            what = "empty cache: compiles" if c["what"] == "cold" else "warm disk cache: loads"
            rows.append([f'first `{c["function"]}(x, target="{c["target"]}")`', what,
                         fmt_time(c["first_call"]["median"]), fmt_time(c["process"])])
            rows.append(["&nbsp;&nbsp;then the second call", "", fmt_time(c["second_call"]["median"]), ""])
            if "other_kernel" in c:
                rows.append(["&nbsp;&nbsp;then the first call of another kernel (`backward`)", "",
                             fmt_time(c["other_kernel"]["median"]), ""])
    return (
        "Each measured in a fresh Python process (median over the rounds); the first call "
        "includes importing Numba and Numba's set-up. Kernel timings elsewhere in this report exclude "
        "compilation (every benchmark is warmed up first).\n\n"
        + md_table(["step", "", "time in the process", "whole process"], rows, ["l", "l", "r", "r"])
    )


def _case_rows(run: Run):
    """Every (function, op, dtype, size, mode) measured, in suite order."""
    seen = {}
    for r in run.kernels:
        seen.setdefault((r.function, r.op, r.dtype, r.size_label, r.mode), r)
    return list(seen.values())


def full_tables(run: Run) -> str:
    impls = ordered({r.impl for r in run.kernels}, IMPL_ORDER)
    by = {(r.function, r.op, r.dtype, r.size_label, r.mode, r.impl): r for r in run.kernels}
    times, rates = [], []
    for c in _case_rows(run):
        key = (c.function, c.op, c.dtype, c.size_label, c.mode)
        cells = {i: by.get((*key, i)) for i in impls}
        fastest = min((r.seconds for r in cells.values() if r), default=None)
        copy = run.copies.get((c.dtype, c.size))
        head = [f"`{op_label(c.function, c.op)}`", c.dtype, c.size_label, _level(run, c.nbytes),
                MODE_LABELS.get(c.mode, c.mode)]
        trow, grow = list(head), list(head)
        for i in impls:
            r = cells[i]
            if r is None:
                trow.append("")
                grow.append("")
                continue
            t = f"{fmt_time(r.seconds)} ±{100 * r.spread / 2:.0f}% ({r.rounds})"
            trow.append(f"**{t}**" if r.seconds == fastest else t)
            g = f"{r.gbps:.1f}"
            if copy is not None and c.size_label not in ROW_SHAPES:
                g += f" ({100 * r.gbps / copy.gbps:.0f}%)"
            grow.append(g)
        times.append(trow)
        rates.append(grow)
    headers = ["function", "dtype", "n", "level", "result", *(IMPL_LABELS.get(i, i) for i in impls)]
    align = ["l", "l", "r", "l", "l", *["r"] * len(impls)]
    return (
        "### Time per call\n\n"
        f"{run.stat.capitalize()} over the timed rounds, ± half the interquartile range as a percentage, "
        "(rounds); the fastest of each row in bold. *Level*: where the operands fit on this machine.\n\n"
        + md_table(headers, times, align)
        + "\n\n### Throughput\n\n"
        "GB/s: bytes of every operand (inputs read once, result written once) per second; in "
        "parentheses, the fraction of the parallel copy's GB/s at the same dtype and size.\n\n"
        + md_table(headers, rates, align)
    )


def _thresholds(m: dict) -> str:
    """``auto``'s thresholds in float32 elements, grouped: "131072 (relu, step), 43690 (sigmoid)"."""
    per = m.get("parallel_thresholds")
    if not per:
        return str(m.get("parallel_threshold", "?"))
    groups: dict[int, list[str]] = {}
    for name, n in per.items():
        groups.setdefault(n, []).append(name)
    return ", ".join(f"{n} ({', '.join(names)})" for n, names in sorted(groups.items(), reverse=True))


def _machine_table(run: Run) -> str:
    m = run.machine
    if not m:
        return "_The JSON does not describe the machine._"
    caches = m.get("caches") or {}
    rows = [
        ["CPU", m.get("cpu", "?")],
        ["cores", f"{m.get('usable_cpus')} usable of {m.get('logical_cpus')}"],
        ["caches", ", ".join(f"{k} {v >> 10} KiB" for k, v in sorted(caches.items())) or "?"],
        ["OS", m.get("os", "?")],
        ["Python", m.get("python", "?")],
        ["NumPy", m.get("numpy", "?")],
        ["Numba", f"{m.get('numba', '?')}, {m.get('numba_threads', '?')} threads, "
                  f"{m.get('threading_layer', '?')} threading layer"],
        ["fastact", f"{m.get('fastact', '?')}, `auto` goes parallel from n = {_thresholds(m)} float32 elements"],
    ]
    return md_table(["", ""], rows, ["l", "l"])


def render(run: Run, out_dir: Path, source: str = "") -> Path:
    """Write ``report.md`` and the plots into ``out_dir``; return the report's path."""
    from bench import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
        "\n## What each column is\n",
        columns_section(run),
        "\n## Peers\n",
        peers_section(run),
        "\n## Summary\n",
        summary(run),
        "\n## Row-wise functions on every shape\n",
        rowwise_section(run),
        "\n## Memory roofline\n",
        roofline_section(run),
        "\n## Thread scaling\n",
        scaling_section(run),
        "\n## Noisy measurements\n",
        noisy_section(run),
        "\n## Compilation\n",
        compile_section(run),
        "\n## Plots\n",
        "Throughput against array size (with the parallel copy as the roofline; error bars: the "
        "interquartile range) and speedup over NumPy, per function; log-scaled sizes.\n",
        *(f"![{p.stem}](plots/{p.name})\n" for p in images),
        "\n## All results\n",
        full_tables(run) if run.kernels else "_No kernel results._",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(parts))
    return path


def readme_block(run: Run) -> str:
    """The summary as the README shows it, labelled with the machine: a new array each
    call for every dtype, and into a preallocated ``out`` for float32."""
    return (f"Measured with `python -m bench` on {machine_label(run)}.\n\n" + summary(run, modes=("new",))
            + "\n" + summary(run, dtypes=("float32",), modes=("out",)).split("\n", 1)[1])


def compare_report(comparison, threshold: float, old_label: str, new_label: str) -> str:
    """The table of ``python -m bench --compare``: new time over old for every result both
    runs measured, changes beyond ``threshold`` (with spreads apart) marked."""
    out = [f"# Comparison: `{new_label}` against `{old_label}`\n"]
    if comparison.machine_differences:
        out.append("**The runs come from different machines or set-ups**, so timings differ for that reason too:\n")
        out += [f"- {d}" for d in comparison.machine_differences]
        out.append("")
    flagged = {id(c) for c in comparison.beyond(threshold)}
    rows = []
    for c in sorted(comparison.changes, key=lambda c: -abs(c.ratio - 1)):
        r = c.new
        what = f"`{op_label(r.function, r.op)}`" if r.kind == "kernel" else r.function
        mark = ("slower" if c.ratio > 1 else "faster") if id(c) in flagged else ""
        rows.append([what, r.dtype, r.size_label, MODE_LABELS.get(r.mode, r.mode),
                     IMPL_LABELS.get(r.impl, r.impl) + (f", {r.threads} threads" if r.threads else ""),
                     fmt_time(c.old.seconds), fmt_time(c.new.seconds), f"{c.ratio:.3f}", mark])
    out.append(f"{len(comparison.changes)} results in both runs; {len(flagged)} changed by more than "
               f"{threshold:.0%} with interquartile ranges apart (new time over old: above 1 is slower).\n")
    out.append(md_table(["function", "dtype", "n", "result", "implementation", "old", "new", "new / old", ""],
                        rows, ["l", "l", "r", "l", "l", "r", "r", "r", "l"]))
    if comparison.only_old or comparison.only_new:
        out.append(f"\n{len(comparison.only_old)} results only in the old run, "
                   f"{len(comparison.only_new)} only in the new one.")
    return "\n".join(out) + "\n"


__all__ = ["render", "summary", "readme_block", "compare_report", "MODE_ORDER"]
