"""The benchmark report's tooling on small synthetic runs: reading pytest-benchmark JSON,
the summary's ratios with spread and ties, CSV, and ``--compare`` as a regression gate."""

import csv
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import cli, report, results  # noqa: E402

MACHINE = {"cpu": "Test CPU", "usable_cpus": 2, "logical_cpus": 2, "numba_threads": 2, "threading_layer": "tbb",
           "os": "Linux", "python": "3.11", "numpy": "2.4", "numba": "0.68", "caches": {"L1": 32768, "L2": 1 << 20,
                                                                                       "L3": 32 << 20}}


def _bench(function, op, impl, median, *, spread=0.02, rounds=20, dtype="float32", size=16_000_000,
           label="16M", mode="new"):
    q = median * spread / 2
    return {
        "fullname": f"bench/test_kernels.py::test_kernel[{function}-{op}-{dtype}-{label}-{mode}-{impl}]",
        "stats": {"min": median - 2 * q, "q1": median - q, "median": median, "q3": median + q, "max": median + 3 * q,
                  "mean": median, "rounds": rounds},
        "extra_info": {"kind": "kernel", "function": function, "op": op, "dtype": dtype, "size": size,
                       "size_label": label, "mode": mode, "impl": impl, "bytes": 8 * size},
    }


def _write(path, benchmarks, machine=MACHINE):
    path.write_text(json.dumps({"machine_info": {"fastact_bench": {"grid": "default", **machine}},
                                "commit_info": {"id": "abc"}, "datetime": "2026-11-25T10:00:00",
                                "benchmarks": benchmarks}))
    return path


def _run(tmp_path, name="run.json", **over):
    b = [
        _bench("relu", "forward", "fastact.cpu", 10e-3),
        _bench("relu", "forward", "numpy", 20e-3),
        _bench("relu", "forward", "torch.1", 10.2e-3, spread=0.2),  # a tie: spreads overlap 1.0
        _bench("sigmoid", "forward", "fastact.cpu", over.get("sigmoid", 5e-3)),
        _bench("sigmoid", "forward", "numpy", 40e-3),
    ]
    return _write(tmp_path / name, b)


def test_summary_gives_ratios_with_spread_rounds_and_ties(tmp_path):
    run = results.load(_run(tmp_path))
    text = report.summary(run)
    assert "| `relu` | 2.00x (1.96–2.04, 20 r) |" in text  # NumPy: 20 ms over 10 ms, each ±1%
    assert "≈ 1.02x" in text  # the noisy PyTorch measurement overlaps 1.0: a tie
    assert "8.00x" in text  # sigmoid
    assert run.find(impl="torch.1").noisy and not run.find(impl="numpy").noisy


def test_csv_has_every_result(tmp_path):
    run = results.load(_run(tmp_path))
    path = results.write_csv(run, tmp_path / "r.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5
    assert set(rows[0]) == set(results.CSV_COLUMNS)
    numpy_relu = next(r for r in rows if r["impl"] == "numpy" and r["function"] == "relu")
    assert float(numpy_relu["median_s"]) == 20e-3 and numpy_relu["rounds"] == "20" and numpy_relu["noisy"] == "0"


def test_compare_flags_and_fails_on_regressions(tmp_path, capsys):
    old = _run(tmp_path, "old.json")
    new = _run(tmp_path, "new.json", sigmoid=6e-3)  # 20% slower, spreads apart
    out = tmp_path / "out"
    assert cli.main(["--compare", str(old), str(new), "--out", str(out)]) == 0
    text = (out / "compare.md").read_text()
    assert "1 changed by more than 10%" in text and "| 1.200 | slower |" in text
    assert "different machines" not in text
    assert cli.main(["--compare", str(old), str(new), "--out", str(out), "--fail-above", "10%"]) == 1
    assert "1 results slower by more than 10%" in capsys.readouterr().err
    assert cli.main(["--compare", str(old), str(new), "--out", str(out), "--fail-above", "25%"]) == 0
    # Faster is not a failure.
    assert cli.main(["--compare", str(new), str(old), "--out", str(out), "--fail-above", "10%"]) == 0


def test_compare_says_when_machines_differ(tmp_path):
    old = _run(tmp_path, "old.json")
    other = _write(tmp_path / "other.json", json.loads(old.read_text())["benchmarks"],
                   {**MACHINE, "cpu": "Other CPU", "numba_threads": 16})
    cmp = results.compare(results.load(old), results.load(other))
    text = report.compare_report(cmp, 0.1, "old", "other")
    assert "different machines" in text and "cpu: Test CPU -> Other CPU" in text and "numba_threads: 2 -> 16" in text


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(results.ReportError, match="not a pytest-benchmark JSON file"):
        results.load(bad)
    with pytest.raises(SystemExit):
        cli.main(["--compare", str(bad), str(bad)])
    assert "--compare:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--fail-above", "10%"])
    assert "--fail-above is for --compare" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--compare", "a", "b", "c"])


def test_report_renders_from_json(tmp_path):
    pytest.importorskip("matplotlib")
    run = results.load(_run(tmp_path))
    path = report.render(run, tmp_path / "report")
    text = path.read_text()
    for section in ("## Machine", "## What each column is", "## Summary", "## Noisy measurements",
                    "## All results"):
        assert section in text
    assert "L1 32 KiB, L2 1024 KiB, L3 32768 KiB" in text
    assert (tmp_path / "report" / "plots" / "throughput_relu_float32.png").exists()


def test_peer_default_threads_are_read_before_a_one_thread_case_sets_them(monkeypatch):
    """PyTorch's default pool is what the "all threads" columns run on: it must be read
    before a ``torch.1`` case sets the count to 1, whichever case is built first."""
    import types

    import numpy as np

    from bench import cases, peers

    class FakeTorch(types.SimpleNamespace):
        threads = 8

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.threads = n

    fake = FakeTorch(__version__="0", from_numpy=lambda v: v, tensor=lambda v, dtype=None: v,
                     nn=types.SimpleNamespace(functional=types.SimpleNamespace(relu=lambda v: v)))
    monkeypatch.setattr(peers, "module", lambda impl: fake)
    monkeypatch.setattr(peers, "_TORCH_DEFAULT", None)
    x = np.ones(4, np.float32)
    arrays = types.SimpleNamespace(x=x, dy=x, y=x, out=np.empty_like(x))
    for impl, expected in (("torch.1", 1), ("torch", 8)):
        case = cases.Case("relu", "forward", "float32", "1e3", "new", impl)
        peers.build(case, types.SimpleNamespace(**vars(arrays)))
        assert fake.threads == expected, impl
