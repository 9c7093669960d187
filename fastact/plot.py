"""Plots of a function and its derivatives, and a gallery of every function.

``fastact.plot(fa.elu, alpha=0.5)`` draws ``f``, ``f'`` and, where it exists, ``f''``
over a range that shows the function's shape, marks every kink with the convention the
derivative takes there (a filled dot for the value used, open circles for the one-sided
limits), and returns the :class:`matplotlib.figure.Figure`.  From a shell::

    python -m fastact.plot --all gallery.png           # every function, one panel each
    python -m fastact.plot elu --param alpha=0.5 elu.png

Needs matplotlib (``pip install matplotlib``), which nothing else in fastact imports.
A row-wise function is drawn along the line ``softmax([x, 0])[0]``: the two-class case,
as a function of one logit.
"""

from __future__ import annotations

import argparse
import functools
import sys
import types

import numpy as np

__all__ = ["plot", "gallery"]

#: The colours and styles of f, f' and f'' in every plot.
STYLES = {0: ("C0", "-"), 1: ("C1", "--"), 2: ("C2", ":")}


def _pyplot():
    try:
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules and not _interactive():
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("fastact.plot needs matplotlib: pip install matplotlib") from e
    return plt


def _interactive() -> bool:
    return hasattr(sys, "ps1") or "IPython" in sys.modules


def _function(fn):
    import fastact

    if isinstance(fn, str):
        if fn not in fastact.FUNCTIONS:
            raise ValueError(f"plot(): unknown function {fn!r}; the functions are {', '.join(fastact.FUNCTIONS)}")
        return fastact.FUNCTIONS[fn]
    if fn not in fastact.FUNCTIONS.values():
        raise TypeError(f"plot(): expected a fastact function such as fastact.relu, got {fn!r}")
    return fn


#: The weight that the plot of an activation with a weight array uses (PyTorch's initial
#: value for ``PReLU``).
WEIGHT = 0.25


def curves(fn, x, **params):
    """``[(order, label, values)]``: f and each derivative it has, at the points ``x``."""
    from fastact._spec import RowwiseSpec

    name = fn.spec.name
    if fn.spec.kind == "gated":  # of the pair [1, x]: the gate, and its derivative in x
        pair = np.stack([np.ones_like(x), x], axis=-1)
        y = fn(pair, target="cpu", **params)[:, 0]
        d = fn.backward(np.ones((len(x), 1)), x=pair, target="cpu", **params)[:, 1]
        return [(0, f"{name}([1, x])", y), (1, "d/dx", d)]
    if fn.spec.kind == "reduction":  # of the pair [x, 0]: its gradient is softmax's
        pair = np.stack([x, np.zeros_like(x)], axis=-1)
        y = fn(pair, axis=-1, target="cpu", **params)
        d = fn.backward(np.ones_like(y), x=pair, axis=-1, target="cpu", **params)
        return [(0, f"{name}([x, 0])", y), (1, "d/dx", d[:, 0])]
    if fn.spec.kind == "weighted":  # with one weight for all: PyTorch's initial 0.25
        w = WEIGHT
        out = [(0, f"{name}(x, {w})", fn(x, w, target="cpu", **params)),
               (1, "d/dx", fn.grad(x, w, target="cpu", **params))]
        if hasattr(fn, "grad2"):
            out.append((2, "d²/dx²", fn.grad2(x, w, target="cpu", **params)))
        return out
    if isinstance(fn.spec, RowwiseSpec):
        pair = np.stack([x, np.zeros_like(x)], axis=-1)
        first = np.zeros_like(pair)
        first[:, 0] = 1.0
        y = fn(pair, target="cpu", **params)
        d = fn.backward(first, y=y, target="cpu", **params)
        return [(0, f"{name}([x, 0])[0]", y[:, 0]), (1, "d/dx", d[:, 0])]
    out = [(0, f"{name}(x)", fn(x, target="cpu", **params)), (1, f"{name}'(x)", fn.grad(x, target="cpu", **params))]
    if hasattr(fn, "grad2"):
        out.append((2, f"{name}''(x)", fn.grad2(x, target="cpu", **params)))
    return out


def _range(kinks, xlim):
    if xlim is not None:
        lo, hi = map(float, xlim)
        if not lo < hi:
            raise ValueError(f"plot(): xlim must be (low, high) with low < high, got {xlim!r}")
        return lo, hi
    lo, hi = -4.0, 4.0
    if kinks:
        lo, hi = min(lo, kinks[0] - 1.5), max(hi, kinks[-1] + 1.5)
    return lo, hi


def _draw(ax, fn, params, xlim, legend=True):
    from fastact._spec import check_params, kink_points

    spec = fn.spec
    full = check_params(spec, f"plot({spec.name})", params)
    kinks = [k for k in kink_points(spec, full)]
    lo, hi = _range(kinks, xlim)
    x = np.union1d(np.linspace(lo, hi, 801), np.array([k for k in kinks if lo <= k <= hi]))
    drawn = curves(fn, x, **params)
    for order, label, v in drawn:
        colour, style = STYLES[order]
        v = np.asarray(v, dtype=np.float64)
        # Break the line where the function jumps (step), so no vertical segment is drawn.
        v = v.copy()
        for k in kinks:
            i = np.searchsorted(x, k)
            if 0 < i < len(x) - 1 and abs(v[i + 1] - v[i - 1]) > 0.25 * (np.ptp(v[np.isfinite(v)]) or 1.0):
                v[i] = np.nan
        ax.plot(x, v, color=colour, linestyle=style, linewidth=1.6, label=label)
    for k in kinks:
        if not lo <= k <= hi:
            continue
        for order, _, _ in drawn:
            _mark_kink(ax, fn, k, order, params)
    ax.axhline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.axvline(0, color="0.8", linewidth=0.8, zorder=0)
    ax.set_xlim(lo, hi)
    ax.set_xlabel("x")
    text = ", ".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v:g}" for k, v in params.items())
    ax.set_title(f"{spec.name}({text})" if text else spec.name)
    if legend:
        ax.legend(loc="best", fontsize="small", frameon=False)
    return kinks


def _mark_kink(ax, fn, k, order, params):
    """At a kink: open circles at the one-sided limits where they differ, and a filled dot
    at the value the function (or derivative) takes, annotated with it."""
    evaluate = {0: fn, 1: getattr(fn, "grad", None), 2: getattr(fn, "grad2", None)}[order]
    if evaluate is None:
        return
    if fn.spec.kind == "weighted":
        evaluate = functools.partial(evaluate, weight=WEIGHT)
    h = 1e-9 * max(1.0, abs(k))
    left, at, right = (float(v) for v in evaluate(np.array([k - h, k, k + h]), target="cpu", **params))
    if abs(left - right) <= 1e-6 * max(1.0, abs(left), abs(right)):
        return
    colour, _ = STYLES[order]
    ax.plot([k, k], [left, right], linestyle="none", marker="o", markerfacecolor="white",
            markeredgecolor=colour, markersize=6, zorder=3)
    ax.plot([k], [at], linestyle="none", marker="o", color=colour, markersize=6, zorder=4)
    name = fn.spec.name + "'" * order
    ax.annotate(f"{name}({k:g}) = {at:g}", (k, at), textcoords="offset points", xytext=(6, -12 if order else 6),
                fontsize="x-small", color=colour)


def plot(fn, *, xlim=None, ax=None, **params):
    """Draw ``fn``, its derivative and (where it has one) its second derivative.

    Args:
        fn: a fastact function (``fa.elu``) or its name (``"elu"``).
        xlim: ``(low, high)``; by default -4 to 4, widened to show every kink.
        ax: a matplotlib ``Axes`` to draw into; by default a new figure.
        **params: the function's parameters, e.g. ``alpha=0.5``.

    Returns:
        The :class:`matplotlib.figure.Figure` drawn into.

    Kinks are marked where the function or a derivative jumps: open circles at the
    one-sided limits, a filled dot (annotated) at the value fastact uses there.

    Example:
        >>> import fastact as fa
        >>> fig = fa.plot(fa.leaky_relu, negative_slope=0.1)
        >>> [line.get_label() for line in fig.axes[0].get_lines()][:2]
        ['leaky_relu(x)', "leaky_relu'(x)"]
    """
    fn = _function(fn)
    if ax is None:
        plt = _pyplot()
        fig, ax = plt.subplots(figsize=(5.0, 3.6), layout="constrained")
    _draw(ax, fn, params, xlim)
    return ax.figure


def gallery(names=None, *, columns=4):
    """One panel per function (default: all of them, with default parameters); returns the
    figure."""
    import fastact

    plt = _pyplot()
    names = list(fastact.FUNCTIONS) if names is None else [_function(n).spec.name for n in names]
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 2.3 * rows), layout="constrained", squeeze=False)
    for ax, name in zip(axes.flat, names):
        _draw(ax, fastact.FUNCTIONS[name], {}, None, legend=False)
        ax.set_xlabel("")
    for ax in axes.flat[len(names):]:
        ax.set_axis_off()
    orders = 3 if any(hasattr(fastact.FUNCTIONS[n], "grad2") for n in names) else 2
    handles = [plt.Line2D([], [], color=c, linestyle=s) for c, s in list(STYLES.values())[:orders]]
    fig.legend(handles, ["f(x)", "f'(x)", "f''(x)"][:orders], loc="outside lower center", ncols=orders, frameon=False)
    return fig


def main(argv=None) -> int:
    import fastact

    parser = argparse.ArgumentParser(prog="python -m fastact.plot", description=__doc__.splitlines()[0])
    names = ", ".join(fastact.FUNCTIONS)
    parser.add_argument("function", nargs="?", help=f"the function to draw (one of: {names})")
    parser.add_argument("output", help="the image file to write (.png, .svg, .pdf)")
    parser.add_argument("--all", action="store_true", help="draw every function, one panel each")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter, e.g. alpha=0.5 or approximate=tanh")
    parser.add_argument("--dpi", type=int, default=80)
    args = parser.parse_intermixed_args(argv)
    if args.all == (args.function is not None):
        parser.error("give a function name or --all (not both)")
    params = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param takes NAME=VALUE, got {item!r}")
        try:
            params[name] = float(value)
        except ValueError:
            params[name] = value  # a choice, such as approximate=tanh; checked by the function
    _pyplot()
    try:
        fig = gallery() if args.all else plot(args.function, **params)
    except (TypeError, ValueError) as e:
        parser.error(str(e))
    fig.savefig(args.output, dpi=args.dpi)
    if str(args.output).lower().endswith(".png"):
        _compact_png(args.output)
    print(f"wrote {args.output}")
    return 0


def _compact_png(path) -> None:
    """Rewrite a PNG with a palette of 64 colours (line art needs no more): about a third
    of the size, so that the gallery can live in the repository."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


class _CallableModule(types.ModuleType):
    """``fastact.plot`` is this module, and calling it calls :func:`plot`: so that both
    ``fastact.plot(fa.elu)`` and ``python -m fastact.plot`` work."""

    def __call__(self, fn, **kwargs):
        return plot(fn, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

if __name__ == "__main__":
    sys.exit(main())
