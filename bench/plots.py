"""PNG plots of a run: throughput and speedup over NumPy against array size, per function."""

from __future__ import annotations

from pathlib import Path

from bench.cases import IMPL_LABELS, MODE_LABELS, op_label

_COLORS = {
    "fastact.cpu": "#1f77b4",
    "fastact.parallel": "#ff7f0e",
    "fastact.auto": "#2ca02c",
    "fastact.cuda": "#17becf",
    "numpy": "#d62728",
    "numpy.ufunc": "#8c564b",
    "torch": "#9467bd",
    "numexpr": "#e377c2",
    "scipy": "#bcbd22",
}
_STYLES = {"new": "-", "out": "--", "inplace": ":"}
_OPS = ("forward", "grad", "backward", "backward_y")
# Figure geometry, inches.
_LEFT, _PANEL, _GAP, _LEGEND, _HEIGHT = 0.75, 3.9, 0.75, 2.9, 4.4


def _series(results, base_mode):
    """(impl, mode) lines of a panel: every implementation in the base mode, and fastact's
    auto target in the other modes measured."""
    from bench.report import IMPL_ORDER, MODE_ORDER, _ordered

    impls = _ordered({r.impl for r in results if r.mode == base_mode}, IMPL_ORDER)
    lines = [(i, base_mode) for i in impls]
    for m in MODE_ORDER:
        if m != base_mode and any(r.impl == "fastact.auto" and r.mode == m for r in results):
            lines.append(("fastact.auto", m))
    return lines


def _plain(v, _pos):
    return f"{v:g}"


def _times(v, _pos):
    return f"{v:g}x"


def render(run, out_dir: Path) -> list[Path]:
    """Write the plots; return their paths (none if matplotlib is missing or nothing ran)."""
    if not run.kernels:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

    from bench.report import MODE_ORDER, _summary_choice, machine_label

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dtype, _, base_mode = _summary_choice(run)
    sel = [r for r in run.kernels if r.dtype == dtype]
    modes = {r.mode for r in sel}
    base_mode = next(m for m in MODE_ORDER + tuple(sorted(modes)) if m in modes)
    functions = list(dict.fromkeys(r.function for r in sel))
    copies = sorted((c for c in run.copies.values() if c.dtype == dtype), key=lambda c: c.size)
    sizes = sorted({r.size for r in sel})
    labels = {r.size: r.size_label for r in sel}
    paths = []
    footer = machine_label(run)

    for function in functions:
        mine = [r for r in sel if r.function == function]
        ops = [op for op in _OPS if any(r.op == op for r in mine)]
        numpy_t = {(r.op, r.size): r.seconds for r in mine if r.impl == "numpy"}
        for what in ("throughput", "speedup"):
            if what == "speedup" and not numpy_t:
                continue
            # Fixed geometry in inches (tight_layout would cost a second a figure).
            width = _LEFT + len(ops) * _PANEL + (len(ops) - 1) * _GAP + _LEGEND
            fig, axes = plt.subplots(1, len(ops), figsize=(width, _HEIGHT), squeeze=False)
            fig.subplots_adjust(
                left=_LEFT / width,
                right=1 - _LEGEND / width,
                wspace=_GAP / _PANEL,
                bottom=0.62 / _HEIGHT,
                top=1 - 0.75 / _HEIGHT,
            )
            axes = axes[0]
            handles = {}
            for ax, op in zip(axes, ops, strict=True):
                panel = [r for r in mine if r.op == op]
                for impl, mode in _series(panel, base_mode):
                    pts = sorted((r.size, r) for r in panel if r.impl == impl and r.mode == mode)
                    if what == "throughput":
                        xy = [(n, r.gbps) for n, r in pts]
                    else:
                        if impl == "numpy":
                            continue
                        xy = [(n, numpy_t[(op, n)] / r.seconds) for n, r in pts if (op, n) in numpy_t]
                    if not xy:
                        continue
                    label = IMPL_LABELS.get(impl, impl)
                    if mode != base_mode:
                        label += f", {MODE_LABELS.get(mode, mode)}"
                    fast = impl.startswith("fastact.")
                    (h,) = ax.plot(
                        *zip(*xy),
                        _STYLES.get(mode, "-."),
                        marker="o" if fast else "s",
                        ms=5 if fast else 4,
                        lw=2.2 if fast else 1.4,
                        color=_COLORS.get(impl),
                        label=label,
                    )
                    handles.setdefault(label, h)
                if what == "throughput" and copies:
                    (h,) = ax.plot(
                        [c.size for c in copies],
                        [c.gbps for c in copies],
                        "k--",
                        lw=1.6,
                        marker="^",
                        ms=5,
                        label="parallel copy (roofline)",
                    )
                    handles.setdefault(h.get_label(), h)
                # Log scales with 1-2-5 ticks and plain labels (matplotlib's default 10^k labels
                # go through mathtext, which is slow, and leave a short range unlabelled).
                ax.set_yscale("log")
                ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
                ax.yaxis.set_major_formatter(FuncFormatter(_times if what == "speedup" else _plain))
                ax.yaxis.set_minor_formatter(NullFormatter())
                if what == "speedup":
                    h = ax.axhline(1.0, color="#d62728", lw=1.2, ls="-", label="NumPy reference (1x)")
                    handles.setdefault(h.get_label(), h)
                ax.set_xscale("log")
                ax.set_xticks(sizes)
                ax.set_xticklabels([labels[n] for n in sizes])
                ax.xaxis.set_minor_locator(NullLocator())
                ax.set_xlabel("array size (elements)")
                ax.set_ylabel("throughput (GB/s)" if what == "throughput" else "speedup over NumPy (x)")
                ax.set_title(f"{op_label(function, op)}")
                ax.grid(True, which="major", alpha=0.3)
            title = (
                f"{function}: throughput, {dtype}, higher is better"
                if what == "throughput"
                else f"{function}: speedup over the NumPy reference, {dtype}, higher is better"
            )
            fig.suptitle(title, fontsize=12)
            fig.legend(
                handles.values(),
                handles.keys(),
                loc="center left",
                bbox_to_anchor=(1 - (_LEGEND - 0.15) / width, 0.5),
                title=f"{MODE_LABELS.get(base_mode, base_mode)} unless noted",
                fontsize=9,
                title_fontsize=9,
                frameon=False,
            )
            fig.text(0.01, 0.01, footer, fontsize=7, color="#555555")
            path = out_dir / f"{what}_{function}.png"
            fig.savefig(path, dpi=110)
            plt.close(fig)
            paths.append(path)
    return paths
