"""fastact.plot: f, f' and f'' drawn with their kinks marked, and the gallery."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")  # in the test extra: this runs in CI
matplotlib.use("Agg")

import fastact as fa  # noqa: E402

README = Path(__file__).resolve().parents[1] / "README.md"
GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery.png"


def _lines(fig):
    return [line for line in fig.axes[0].get_lines() if line.get_label() and not line.get_label().startswith("_")]


@pytest.mark.parametrize("name", list(fa.FUNCTIONS))
def test_curves_are_the_functions(name):
    fig = fa.plot(fa.FUNCTIONS[name])
    fn = fa.FUNCTIONS[name]
    lines = _lines(fig)
    assert len(lines) == (3 if hasattr(fn, "grad2") else 2)
    x = lines[0].get_xdata()
    assert x.min() <= -4 and x.max() >= 4
    if name in fa.ELEMENTWISE:
        want = [fn(x), fn.grad(x)]
    elif name in fa.WEIGHTED:  # with one weight for all
        want = [fn(x, fa.plot.WEIGHT), fn.grad(x, fa.plot.WEIGHT), fn.grad2(x, fa.plot.WEIGHT)]
    elif name in fa.GATED:  # of [1, x]: the gate
        pair = np.stack([np.ones_like(x), x], -1)
        want = [fn(pair)[:, 0], fn.backward(np.ones((len(x), 1)), x=pair)[:, 1]]
    elif name in fa.REDUCTIONS:  # of [x, 0], with its gradient in x
        pair = np.stack([x, np.zeros_like(x)], -1)
        want = [fn(pair, axis=-1), fn.backward(np.ones_like(x), x=pair, axis=-1)[:, 0]]
    else:
        pair = np.stack([x, np.zeros_like(x)], -1)
        y = fn(pair)
        want = [y[:, 0], fn.backward(np.stack([np.ones_like(x), np.zeros_like(x)], -1), y=y)[:, 0]]
    for line, w in zip(lines, want):
        got = np.asarray(line.get_ydata(), dtype=float)
        shown = ~np.isnan(got)  # a jump is drawn as a gap
        assert shown.mean() > 0.99
        np.testing.assert_array_equal(got[shown], np.asarray(w)[shown])
    matplotlib.pyplot.close(fig)


def _markers(fig):
    """(x, y, filled) of every kink marker."""
    out = []
    for line in fig.axes[0].get_lines():
        if line.get_marker() == "o":
            filled = line.get_markerfacecolor() != "white"
            out += [(float(a), float(b), filled) for a, b in zip(line.get_xdata(), line.get_ydata())]
    return sorted(out)


def test_kinks_are_marked_with_the_convention():
    fig = fa.plot(fa.relu)
    # relu': open circles at the limits 0 and 1, the value used (0, as in PyTorch) filled.
    assert _markers(fig) == [(0.0, 0.0, False), (0.0, 0.0, True), (0.0, 1.0, False)]
    assert any("relu'(0) = 0" in t.get_text() for t in fig.axes[0].texts)
    fig = fa.plot(fa.relu, at_zero=1.0)
    assert (0.0, 1.0, True) in _markers(fig)
    assert fig.axes[0].get_title() == "relu(at_zero=1)"
    fig = fa.plot(fa.step, at_zero=0.5)  # the function itself jumps
    assert (0.0, 0.5, True) in _markers(fig)
    assert _markers(fa.plot(fa.sigmoid)) == []  # smooth: nothing marked
    # alpha = 1: f' is continuous, f'' jumps from 1 to 0, and the value from the left is used.
    got = [(x, round(y, 6), filled) for x, y, filled in _markers(fa.plot(fa.elu))]
    assert got == [(0.0, 0.0, False), (0.0, 1.0, False), (0.0, 1.0, True)]
    assert (0.0, 0.5, True) in _markers(fa.plot(fa.elu, alpha=0.5))
    matplotlib.pyplot.close("all")


def test_options_and_errors():
    fig, ax = matplotlib.pyplot.subplots()
    assert fa.plot("elu", ax=ax, xlim=(-2, 1)) is fig
    assert ax.get_xlim() == (-2.0, 1.0)
    with pytest.raises(ValueError, match=r"plot\(\): unknown function 'gelu2'"):
        fa.plot("gelu2")
    with pytest.raises(TypeError, match=r"plot\(\): expected a fastact function"):
        fa.plot(np.tanh)
    with pytest.raises(TypeError, match=r"plot\(elu\)\(\) got an unexpected keyword argument 'beta'"):
        fa.plot(fa.elu, beta=2.0)
    with pytest.raises(ValueError, match=r"xlim must be \(low, high\)"):
        fa.plot(fa.elu, xlim=(1, -1))
    matplotlib.pyplot.close("all")


def test_module_is_callable_after_import():
    import fastact.plot

    assert callable(fa.plot) and fa.plot is sys.modules["fastact.plot"]
    assert fastact.plot.plot(fa.relu) is not None
    matplotlib.pyplot.close("all")


def _run(*args, **kw):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300, **kw)


def test_command_line(tmp_path):
    r = _run("-m", "fastact.plot", "--all", str(tmp_path / "all.png"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "all.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = _run("-m", "fastact.plot", "elu", "--param", "alpha=0.5", str(tmp_path / "elu.svg"))
    assert r.returncode == 0, r.stderr
    assert "<svg" in (tmp_path / "elu.svg").read_text()
    r = _run("-m", "fastact.plot", "gelu", "--param", "approximate=tanh", str(tmp_path / "gelu.svg"))
    assert r.returncode == 0, r.stderr
    r = _run("-m", "fastact.plot", "gelu", "--param", "approximate=erf", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "approximate must be 'none' or 'tanh', got 'erf'" in r.stderr
    r = _run("-m", "fastact.plot", "elu", "--param", "alpha", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "--param takes NAME=VALUE" in r.stderr
    r = _run("-m", "fastact.plot", "nope", str(tmp_path / "x.png"))
    assert r.returncode == 2 and "unknown function 'nope'" in r.stderr


def test_without_matplotlib_a_clear_error():
    code = ("import sys; sys.modules['matplotlib'] = None\n"
            "import fastact as fa\n"
            "try:\n    fa.plot(fa.relu)\nexcept ImportError as e:\n    print(e)\n")
    r = _run("-c", code)
    assert r.stdout.strip() == "fastact.plot needs matplotlib: pip install matplotlib", r.stderr


def test_import_fastact_does_not_import_matplotlib():
    r = _run("-c", "import sys, fastact; print('matplotlib' in sys.modules)")
    assert r.stdout.strip() == "False", r.stderr


def test_readme_shows_the_gallery():
    assert "docs/gallery.png" in README.read_text()
    assert GALLERY.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert GALLERY.stat().st_size < 200_000
