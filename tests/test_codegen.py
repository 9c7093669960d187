"""The generated kernel module is current, a stale one is refused, and the declarations
keep the promises the generated code relies on."""

import subprocess
import sys

import pytest

import fastact as fa
from fastact import _codegen, _cpu, _spec


@pytest.mark.parametrize("path", list(_codegen.TARGETS), ids=lambda p: p.name)
def test_generated_modules_are_current(path):
    assert path.read_text() == _codegen.TARGETS[path](), (
        f"{path.name} is out of date: run `python -m fastact._codegen`"
    )


def test_check_command_passes():
    r = subprocess.run([sys.executable, "-m", "fastact._codegen", "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_render_embeds_the_declarations_digest():
    text = _codegen.render()
    assert f'DECLARATIONS_SHA256 = "{_codegen.declarations_digest()}"' in text


def test_changed_declarations_are_detected(monkeypatch, capsys):
    """Editing the declarations without regenerating: --check fails and kernels refuse to load."""
    monkeypatch.setattr(_codegen, "declarations_digest", lambda: "0" * 64)
    assert _codegen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    monkeypatch.setattr(_cpu, "_module", None)
    with pytest.raises(_cpu.StaleKernelsError, match=r"python -m fastact._codegen"):
        _cpu.kernels()


def test_every_declaration_has_its_kernels():

    kernels = _cpu.kernels()
    for name in fa.ELEMENTWISE:
        ops = _codegen.elementwise_ops(fa.REGISTRY[name])
        assert ("backward_y" in ops) == (fa.REGISTRY[name].dfdy is not None)
        for op in ops:
            assert callable(getattr(kernels, f"{name}__{op}"))
            assert callable(getattr(kernels, f"{name}__{op}__parallel"))
    for name in fa.ROWWISE:
        for op in _codegen.ROWWISE_OPS:
            assert callable(getattr(kernels, f"{name}__{op}__parallel"))


@pytest.mark.parametrize("work", [0, -4, 2.0, True, None])
def test_work_must_be_a_positive_integer(work):
    body = type("bogus", (), {"f": lambda x: x, "dfdx": lambda x: 1.0})
    with pytest.raises(TypeError, match=r"bogus: work must be a positive integer"):
        _spec.elementwise(formula="x", derivative="1", work=work)(body)
    with pytest.raises(TypeError, match=r"bogus: work must be a positive integer"):
        _spec.rowwise(formula="x", work=work)(body)
    assert "bogus" not in _spec.REGISTRY


def test_a_rowwise_declaration_needs_finish_or_out():
    body = type("bogus", (), {"key": lambda x: x, "term": lambda x, m: x, "bterm": lambda dy, y: dy,
                              "bout": lambda dy, y, d: dy})
    with pytest.raises(TypeError, match=r"declaration 'bogus' lacks finish or out"):
        _spec.rowwise(formula="x")(body)
    assert "bogus" not in _spec.REGISTRY


def test_literals_take_the_element_type_and_double_is_explicit():
    from fastact._rewrite import function_source

    def f(x, a):
        return 2 * x + 0.5 if x > 0.0 else x**2 + double(x) * 1e-3  # noqa: F821

    src = function_source(f, "g", {})
    assert "lit(2, x) * x + lit(0.5, x)" in src and "x > lit(0.0, x)" in src
    assert "x ** 2" in src  # an integer power stays an integer power
    assert "np.float64(x) * lit(0.001, x)" in src
    assert src.startswith("def g(x, a):")
    # The generated kernels compute float32 in float32: no conversion to double in a
    # relu loop over float32.
    kernels = _cpu.kernels()
    from pathlib import Path

    assert "lit(0.0, x)" in Path(kernels.__file__).read_text()
