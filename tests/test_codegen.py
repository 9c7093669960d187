"""The generated kernel module is current, and a stale one is refused."""

import subprocess
import sys

import pytest

from fastact import _codegen, _cpu


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
