"""PNG plots of a run: throughput and speedup over NumPy against array size, per function
and dtype, with the interquartile range as error bars.

Each implementation has one colour in every plot, and each way of storing the result one
line style (solid: a new array, dashed: a preallocated ``out``, dotted: in place).
``auto`` is drawn only where it is measured in a mode ``cpu`` and ``parallel`` are not
(it coincides with one of them otherwise).
"""

from __future__ import annotations

from pathlib import Path

from bench import machine
from bench.cases import IMPL_LABELS, MODE_LABELS, ROW_SHAPES, op_label
from bench.results import IMPL_ORDER, MODE_ORDER, OP_ORDER, Run, ordered

COLORS = {
    "fastact.cpu": "#1f77b4",
    "fastact.parallel": "#ff7f0e",
    "fastact.auto": "#2ca02c",
    "fastact.cuda": "#17becf",
    "numpy": "#d62728",
    "numpy.nansafe": "#8c564b",
    "torch.1": "#c5b0d5",
    "torch": "#9467bd",
    "jax": "#7f7f7f",
    "onnxruntime.1": "#bcbd22",
    "onnxruntime": "#dbdb8d",
    "numexpr.1": "#f7b6d2",
    "numexpr": "#e377c2",
    "scipy": "#17becf",
}
STYLES = {"new": "-", "out": "--", "inplace": ":"}
# Figure geometry, inches.
_LEFT, _PANEL, _GAP, _LEGEND, _HEIGHT = 0.75, 3.9, 0.75, 2.9, 4.4


def _series(results):
    """(impl, mode) lines of a panel: every implementation in each mode it was measured in,
    auto only where cpu and parallel were not measured in that mode."""
    out = []
    for mode in MODE_ORDER:
        impls = ordered({r.impl for r in results if r.mode == mode}, IMPL_ORDER)
        for i in impls:
            if i == "fastact.auto" and {"fastact.cpu", "fastact.parallel"} <= set(impls):
                continue
            out.append((i, mode))
    return out


def _plain(v, _pos):
    return f"{v:g}"


def _times(v, _pos):
    return f"{v:g}x"


def render(run: Run, out_dir: Path) -> list[Path]:
    """Write the plots; return their paths (none if matplotlib is missing or nothing ran)."""
    kernels = [r for r in run.kernels if r.size_label not in ROW_SHAPES]
    if not kernels:
        return []
    try:
        import matplotlib
    except ImportError:
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    footer = machine.label(run.machine)
    for dtype in ordered({r.dtype for r in kernels}, ("float32", "float64")):
        sel = [r for r in kernels if r.dtype == dtype]
        copies = sorted((c for c in run.copies.values() if c.dtype == dtype), key=lambda c: c.size)
        sizes = sorted({r.size for r in sel})
        labels = {r.size: r.size_label for r in sel}
        for function in dict.fromkeys(r.function for r in sel):
            mine = [r for r in sel if r.function == function]
            ops = [op for op in OP_ORDER if any(r.op == op for r in mine)]
            numpy_t = {(r.op, r.size): r for r in mine if r.impl == "numpy" and r.mode == "new"}
            for what in ("throughput", "speedup"):
                if what == "speedup" and not numpy_t:
                    continue
                width = _LEFT + len(ops) * _PANEL + (len(ops) - 1) * _GAP + _LEGEND
                fig, axes = plt.subplots(1, len(ops), figsize=(width, _HEIGHT), squeeze=False)
                fig.subplots_adjust(left=_LEFT / width, right=1 - _LEGEND / width, wspace=_GAP / _PANEL,
                                    bottom=0.62 / _HEIGHT, top=1 - 0.75 / _HEIGHT)
                handles = {}
                for ax, op in zip(axes[0], ops, strict=True):
                    panel = [r for r in mine if r.op == op]
                    for impl, mode in _series(panel):
                        pts = sorted((r.size, r) for r in panel if r.impl == impl and r.mode == mode)
                        if what == "throughput":
                            xs = [n for n, _ in pts]
                            ys = [r.gbps for _, r in pts]
                            lo = [y - r.nbytes / r.high / 1e9 for y, (_, r) in zip(ys, pts)]
                            hi = [r.nbytes / r.low / 1e9 - y for y, (_, r) in zip(ys, pts)]
                        else:
                            if impl == "numpy":
                                continue
                            pts = [(n, r) for n, r in pts if (op, n) in numpy_t]
                            xs = [n for n, _ in pts]
                            ys = [numpy_t[(op, n)].seconds / r.seconds for n, r in pts]
                            lo = [y - numpy_t[(op, n)].low / r.high for y, (n, r) in zip(ys, pts)]
                            hi = [numpy_t[(op, n)].high / r.low - y for y, (n, r) in zip(ys, pts)]
                        if not xs:
                            continue
                        label = IMPL_LABELS.get(impl, impl)
                        if mode != "new":
                            label += f", {MODE_LABELS.get(mode, mode)}"
                        fast = impl.startswith("fastact.")
                        h = ax.errorbar(xs, ys, yerr=[[max(v, 0) for v in lo], [max(v, 0) for v in hi]],
                                        fmt=STYLES.get(mode, "-."), marker="o" if fast else "s",
                                        ms=5 if fast else 4, lw=2.2 if fast else 1.4, capsize=2,
                                        color=COLORS.get(impl), label=label)
                        handles.setdefault(label, h)
                    if what == "throughput" and copies:
                        (h,) = ax.plot([c.size for c in copies], [c.gbps for c in copies], "k--", lw=1.6,
                                       marker="^", ms=5, label="parallel copy (roofline)")
                        handles.setdefault(h.get_label(), h)
                    # Log scales with 1-2-5 ticks and plain labels (matplotlib's default 10^k
                    # labels go through mathtext, which is slow).
                    ax.set_yscale("log")
                    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                    ax.yaxis.set_major_formatter(FuncFormatter(_times if what == "speedup" else _plain))
                    ax.yaxis.set_minor_formatter(NullFormatter())
                    if what == "speedup":
                        h = ax.axhline(1.0, color=COLORS["numpy"], lw=1.2, ls="-", label="NumPy (1x)")
                        handles.setdefault(h.get_label(), h)
                    ax.set_xscale("log")
                    ax.set_xticks(sizes)
                    ax.set_xticklabels([labels[n] for n in sizes])
                    ax.xaxis.set_minor_locator(NullLocator())
                    ax.set_xlabel("array size (elements)")
                    ax.set_ylabel("throughput (GB/s)" if what == "throughput" else "speedup over NumPy (x)")
                    ax.set_title(op_label(function, op))
                    ax.grid(True, which="major", alpha=0.3)
                title = (f"{function}: throughput, {dtype}, higher is better" if what == "throughput"
                         else f"{function}: speedup over NumPy, {dtype}, higher is better")
                fig.suptitle(title, fontsize=12)
                fig.legend(handles.values(), handles.keys(), loc="center left",
                           bbox_to_anchor=(1 - (_LEGEND - 0.15) / width, 0.5), fontsize=9, frameon=False,
                           title="solid: new array\ndashed: preallocated out", title_fontsize=8)
                fig.text(0.01, 0.01, footer, fontsize=7, color="#555555")
                path = out_dir / f"{what}_{function}_{dtype}.png"
                fig.savefig(path, dpi=110)
                plt.close(fig)
                paths.append(path)
    return paths
