"""The README's examples run, and its table of functions is the one the declarations give."""

import doctest
from pathlib import Path

import fastact._codegen as codegen

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run():
    # Exactly what Python prints: no option flags, so that a reader can paste it.
    result = doctest.testfile(str(README), module_relative=False)
    assert result.attempted > 0
    assert result.failed == 0


def test_readme_table_is_generated_from_the_declarations():
    text = README.read_text()
    assert codegen.functions_table() in text, "run `python -m fastact._codegen`"
    for name in codegen.REGISTRY:
        assert f"`{name}" in codegen.functions_table()
