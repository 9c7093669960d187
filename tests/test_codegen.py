"""The generated kernel module is current, a stale one is refused, and the declarations
keep the promises the generated code relies on."""

import subprocess
import sys

import numpy as np
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
    """Editing declarations.py without regenerating: --check fails and kernels refuse to load."""
    monkeypatch.setattr(_codegen, "declarations_digest", lambda: "0" * 64)
    assert _codegen.main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
    monkeypatch.setattr(_cpu, "_module", None)
    with pytest.raises(_cpu.StaleKernelsError, match=r"python -m fastact._codegen"):
        _cpu.kernels()


def test_every_declaration_has_its_kernels():
    import fastact as fa

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


@pytest.mark.parametrize("name", [n for n, s in fa.REGISTRY.items() if s.kind == "rowwise" and s.finish is not None])
def test_finish_of_the_term_is_the_output(name):
    # The forward kernels store term(x, m) and finish it; the declaration promises that
    # this is out(x, m, s), operation for operation.
    spec = fa.REGISTRY[name]
    rng = np.random.default_rng(0)
    for x, m, s in zip(rng.normal(0, 10, 200), rng.normal(5, 10, 200), rng.uniform(1, 1e3, 200)):
        m = max(m, x)
        assert spec.finish(spec.term(x, m), s) == spec.out(x, m, s)
