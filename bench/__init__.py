"""fastact's benchmark suite (pytest-benchmark) and its report, ``python -m bench``.

:mod:`bench.cases` defines what is measured, ``conftest.py`` how, :mod:`bench.report` and
:mod:`bench.plots` render a run's JSON, :mod:`bench.cli` ties them together.
"""
