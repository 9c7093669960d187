"""fastact's benchmark suite (pytest-benchmark) and its report, ``python -m bench``.

:mod:`bench.cases` defines what is measured and :mod:`bench.peers` the other libraries,
``conftest.py`` how it is timed; :mod:`bench.results` reads a run's JSON (and writes CSV,
and compares runs), :mod:`bench.report` and :mod:`bench.plots` render it, :mod:`bench.cli`
ties them together.
"""
