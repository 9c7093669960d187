"""``python -m bench``: run the benchmark suite and write its report.

Runs pytest-benchmark on ``bench/`` (as a child process, with its progress on the
terminal), saves the JSON, and renders ``report.md`` and PNG plots into ``--out``;
``--csv`` adds every result as CSV, ``--compare OLD.json [NEW.json]`` a table of ratios
between two runs (``--fail-above 10%`` makes it a regression gate).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
README = ROOT / "README.md"
MARK_START = "<!-- bench-summary:start -->"
MARK_END = "<!-- bench-summary:end -->"

# pytest-benchmark settings per selection: (--benchmark-max-time, --benchmark-min-rounds):
# the time each case gets (the rounds follow from it), and the fewest rounds a case gets.
# Rounds of at least 20 us, so that the timer's resolution is below 1 %.
_TIMING = {"default": ("0.06", "7"), "full": ("0.5", "15"), "smoke": ("0", "1")}
_MIN_TIME = "0.00002"

_EPILOG = """\
examples:
  python -m bench                       the default selection (about 5 minutes on 2 cores)
  python -m bench --full                every mode and operation, longer timings
  python -m bench --filter "sigmoid and float32"
  python -m bench --from-json bench-report/benchmark.json --out elsewhere/ --csv
  python -m bench --compare old.json new.json --fail-above 10%
  python -m bench --compare old.json    run now, then compare with old.json
  python -m bench --update-readme       ...and write the summary into README.md
  python -m bench -- --benchmark-max-time=1    options after -- go to pytest
"""


def build_parser() -> argparse.ArgumentParser:
    from bench.results import STATS

    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark fastact against NumPy and its peers; write a markdown report and PNG plots.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sel = p.add_mutually_exclusive_group()
    sel.add_argument("--full", action="store_true", help="the whole grid (long: tens of minutes)")
    sel.add_argument(
        "--smoke", action="store_true", help="tiny arrays, one round, results checked against NumPy (for CI)"
    )
    p.add_argument(
        "--filter",
        metavar="EXPR",
        help="run only the benchmarks matching this pytest -k expression over ids such as "
        "'relu-forward-float32-16M-out-fastact.auto' (e.g. 'sigmoid and not torch')",
    )
    p.add_argument(
        "--from-json", metavar="FILE", type=Path, help="re-render a saved run's JSON; runs nothing"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        default=Path("bench-report"),
        help="where the report goes (default: %(default)s)",
    )
    p.add_argument(
        "--stat", choices=STATS, default="median", help="statistic of the timed rounds (default: %(default)s)"
    )
    p.add_argument("--csv", action="store_true", help="also write every result to results.csv in --out")
    p.add_argument(
        "--compare",
        nargs="+",
        metavar="JSON",
        help="OLD.json [NEW.json]: a table of new time over old for every result both runs have "
        "(written to compare.md in --out); without NEW, this run (or --from-json's) is the new one",
    )
    p.add_argument(
        "--threshold",
        type=_percent,
        default=0.10,
        metavar="PCT",
        help="--compare flags changes beyond this (default: 10%%)",
    )
    p.add_argument(
        "--fail-above",
        type=_percent,
        metavar="PCT",
        help="--compare exits with status 1 if a result is slower by more than this (e.g. 10%%), "
        "with interquartile ranges apart: a regression gate",
    )
    p.add_argument(
        "--update-readme",
        nargs="?",
        const=README,
        type=Path,
        metavar="README",
        help=f"write the summary between the {MARK_START} markers of README (default: {README.name})",
    )
    return p


def _percent(text: str) -> float:
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a percentage must not be negative, got {text!r}")
    return value / 100


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    pytest_args = []
    if "--" in argv:
        k = argv.index("--")
        argv, pytest_args = argv[:k], argv[k + 1 :]
    parser = build_parser()
    args = parser.parse_args(argv)

    from bench import report, results

    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: exists and is not a directory")
    if args.compare is not None and len(args.compare) > 2:
        parser.error("--compare takes OLD.json and at most one NEW.json")
    if args.fail_above is not None and args.compare is None:
        parser.error("--fail-above is for --compare")
    if args.compare is not None and len(args.compare) == 2:
        if args.full or args.smoke or args.filter or pytest_args or args.from_json or args.update_readme:
            parser.error("--compare OLD NEW compares two saved runs: it runs nothing")
        return _compare(parser, args, Path(args.compare[0]), Path(args.compare[1]))
    if args.from_json is not None:
        if args.full or args.smoke or args.filter or pytest_args:
            parser.error(
                "--from-json re-renders a saved run: "
                "it cannot be combined with --full, --smoke, --filter or pytest options"
            )
        json_path = args.from_json
        try:
            run = results.load(json_path, args.stat)
        except results.ReportError as e:
            parser.error(f"--from-json: {e}")
    else:
        if args.update_readme and (args.smoke or args.filter):
            parser.error("--update-readme takes the summary of a complete run: not with --smoke or --filter")
        grid = "full" if args.full else "smoke" if args.smoke else "default"
        args.out.mkdir(parents=True, exist_ok=True)
        json_path = args.out / "benchmark.json"
        code = _run_pytest(grid, args.filter, json_path, pytest_args)
        if code != 0:
            return code
        try:
            run = results.load(json_path, args.stat)
        except results.ReportError as e:
            print(f"python -m bench: error: {e}", file=sys.stderr)
            return 1

    path = report.render(run, args.out, source=str(json_path))
    print()
    print(report.summary(run))
    print(f"\nReport: {path}\nPlots:  {args.out / 'plots'}/\nJSON:   {json_path}")
    if args.csv:
        print(f"CSV:    {results.write_csv(run, args.out / 'results.csv')}")
    if args.update_readme:
        try:
            update_readme(args.update_readme, report.readme_block(run))
        except (OSError, ValueError) as e:
            print(f"python -m bench: error: --update-readme: {e}", file=sys.stderr)
            return 1
        print(f"README: summary written into {args.update_readme}")
    if args.compare is not None:
        return _compare(parser, args, Path(args.compare[0]), json_path)
    return 0


def _compare(parser, args, old_path: Path, new_path: Path) -> int:
    from bench import report, results

    runs = []
    for path in (old_path, new_path):
        try:
            runs.append(results.load(path, args.stat))
        except results.ReportError as e:
            parser.error(f"--compare: {e}")
    comparison = results.compare(*runs)
    threshold = args.fail_above if args.fail_above is not None else args.threshold
    text = report.compare_report(comparison, threshold, str(old_path), str(new_path))
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "compare.md"
    out.write_text(text)
    print(text)
    print(f"Comparison: {out}")
    if args.fail_above is not None:
        slower = comparison.slower(args.fail_above)
        if slower:
            print(f"python -m bench: {len(slower)} results slower by more than {args.fail_above:.0%}",
                  file=sys.stderr)
            return 1
    return 0


def _run_pytest(grid: str, filter_expr, json_path: Path, extra) -> int:
    max_time, min_rounds = _TIMING[grid]
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(BENCH_DIR),
        "-p",
        "no:cacheprovider",
        "--benchmark-quiet",
        # An empty selection is reported below, not as pytest-benchmark's warning.
        "-W",
        "ignore:Not saving anything:pytest_benchmark.logger.PytestBenchmarkWarning",
        f"--benchmark-json={json_path}",
        f"--benchmark-max-time={max_time}",
        f"--benchmark-min-rounds={min_rounds}",
        f"--benchmark-min-time={_MIN_TIME}",
    ]
    if grid != "default":
        cmd.append(f"--{grid}")
    if filter_expr:
        cmd += ["-k", filter_expr]
    cmd += extra
    print(
        f"Running the {grid} selection"
        + (f" matching {filter_expr!r}" if filter_expr else "")
        + " with pytest-benchmark:"
    )
    print("  " + " ".join(cmd[2:]), flush=True)
    start = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    print(f"Benchmarks ran for {time.perf_counter() - start:.0f} s.", flush=True)
    if code == 5:
        print(
            "python -m bench: error: no benchmark selected"
            + (f" by --filter {filter_expr!r}" if filter_expr else ""),
            file=sys.stderr,
        )
        return 2
    if code != 0:
        print(
            f"python -m bench: error: the benchmark suite failed (pytest exit status {code})", file=sys.stderr
        )
        return 1
    return 0


def update_readme(path: Path, block: str) -> None:
    """Replace what lies between the summary markers of ``path`` with ``block``."""
    text = Path(path).read_text()
    start, end = text.find(MARK_START), text.find(MARK_END)
    if start < 0 or end < start:
        raise ValueError(f"{path} lacks the markers {MARK_START} ... {MARK_END}")
    new = text[: start + len(MARK_START)] + "\n" + block.strip() + "\n" + text[end:]
    Path(path).write_text(new)
