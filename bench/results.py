"""A run of the benchmark suite as data: read from pytest-benchmark's JSON, written as CSV,
compared with another run.

Only the JSON is read, so a saved run can be re-rendered or compared anywhere.  Each
benchmark's coordinates come from its ``extra_info`` (:meth:`bench.cases.Case.extra_info`);
results of other kinds are ignored.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.cases import IMPLEMENTATIONS, MODES

OP_ORDER = ("forward", "grad", "backward", "backward_y")
MODE_ORDER = MODES
IMPL_ORDER = (*IMPLEMENTATIONS[:3], "fastact.cuda", *IMPLEMENTATIONS[3:])
STATS = ("median", "min", "mean")
#: A case whose interquartile range exceeds this fraction of its median is flagged noisy.
NOISY = 0.05


class ReportError(Exception):
    """The JSON cannot be read (not a benchmark file of this suite)."""


@dataclass(frozen=True)
class Result:
    kind: str  # "kernel", "roofline" or "scaling"
    function: str
    op: str
    dtype: str
    size: int
    size_label: str
    mode: str
    impl: str
    nbytes: int
    stats: dict = field(hash=False, compare=False)  # seconds: min, q1, median, q3, max, mean; rounds
    stat: str = "median"
    threads: int | None = None

    @property
    def seconds(self) -> float:
        return self.stats[self.stat]

    @property
    def low(self) -> float:
        """The lower end of the spread: the first quartile (the minimum for ``min``)."""
        return self.stats["min"] if self.stat == "min" else self.stats["q1"]

    @property
    def high(self) -> float:
        return self.stats["q3"]

    @property
    def rounds(self) -> int:
        return int(self.stats.get("rounds", 0))

    @property
    def spread(self) -> float:
        """The interquartile range as a fraction of the median."""
        return (self.stats["q3"] - self.stats["q1"]) / self.stats["median"]

    @property
    def noisy(self) -> bool:
        return self.rounds >= 4 and self.spread > NOISY

    @property
    def gbps(self) -> float:
        return self.nbytes / self.seconds / 1e9

    @property
    def key(self) -> tuple:
        return (self.kind, self.function, self.op, self.dtype, self.size_label, self.mode, self.impl, self.threads)


@dataclass
class Run:
    machine: dict
    commit: dict
    datetime: str
    grid: str
    stat: str
    kernels: list[Result]
    copies: dict  # (dtype, size) -> Result
    scaling: list[Result]
    compile: list[dict]

    def find(self, **coords) -> Result | None:
        for r in self.kernels:
            if all(getattr(r, k) == v for k, v in coords.items()):
                return r
        return None

    @property
    def results(self) -> list[Result]:
        return [*self.kernels, *self.copies.values(), *self.scaling]


def _stats(stats: dict) -> dict:
    out = {k: float(stats[k]) for k in ("min", "max", "mean", "median")}
    # Runs saved before quartiles were recorded, or of one round: no spread.
    out["q1"] = float(stats.get("q1", stats["median"]))
    out["q3"] = float(stats.get("q3", stats["median"]))
    out["rounds"] = int(stats.get("rounds", 1))
    return out


def load(path: Path, stat: str = "median") -> Run:
    """Read a pytest-benchmark JSON file written by this suite."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ReportError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise ReportError(f"{path} is not a pytest-benchmark JSON file (no 'benchmarks' list)")
    if stat not in STATS:
        raise ReportError(f"unknown statistic {stat!r}; use one of {', '.join(STATS)}")

    kernels, copies, scaling, compile_ = [], {}, [], []
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        kind = info.get("kind")
        try:
            stats = _stats(b.get("stats") or {}) if kind in ("kernel", "roofline", "scaling") else {}
            if kind == "kernel":
                kernels.append(Result(
                    "kernel", info["function"], info["op"], info["dtype"], int(info["size"]),
                    info.get("size_label") or size_label(int(info["size"])), info["mode"], info["impl"],
                    int(info["bytes"]), stats, stat,
                ))
            elif kind == "roofline":
                r = Result("roofline", "copy", "forward", info["dtype"], int(info["size"]),
                           info.get("size_label") or size_label(int(info["size"])), "out", "copy",
                           int(info["bytes"]), stats, stat)
                copies[(r.dtype, r.size)] = r
            elif kind == "scaling":
                scaling.append(Result(
                    "scaling", info["function"], "forward", info["dtype"], int(info["size"]),
                    info.get("size_label") or size_label(int(info["size"])), "out",
                    "copy" if info["function"] == "copy" else "fastact.parallel", int(info["bytes"]), stats, stat,
                    int(info["threads"]),
                ))
            elif kind == "compile":
                compile_.append({**info, "process": float((b.get("stats") or {})[stat])})
        except (KeyError, TypeError, ValueError) as e:
            raise ReportError(f"{path}: benchmark {b.get('fullname', '?')} lacks {e}") from None
    if not kernels and not copies and not compile_ and not scaling:
        raise ReportError(f"{path} holds no results of the fastact benchmark suite")
    machine = (data.get("machine_info") or {}).get("fastact_bench") or {}
    return Run(
        machine=machine,
        commit=data.get("commit_info") or {},
        datetime=data.get("datetime", ""),
        grid=machine.get("grid", "?"),
        stat=stat,
        kernels=kernels,
        copies=copies,
        scaling=scaling,
        compile=compile_,
    )


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0 and n // 1_000_000 >= 2:
        return f"{n // 1_000_000}M"
    exp = round(math.log10(n)) if n > 0 else 0
    return f"1e{exp}" if 10**exp == n else str(n)


def ordered(values, order):
    known = [v for v in order if v in values]
    return known + sorted(v for v in values if v not in order)


# --- CSV ------------------------------------------------------------------------------------------

CSV_COLUMNS = ("kind", "function", "op", "dtype", "size", "size_label", "mode", "impl", "threads", "bytes",
               "rounds", "min_s", "q1_s", "median_s", "q3_s", "max_s", "mean_s", "gbps", "noisy")


def write_csv(run: Run, path: Path) -> Path:
    """Every result of ``run``, one row each, with its statistics in seconds."""
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in run.results:
            s = r.stats
            w.writerow([r.kind, r.function, r.op, r.dtype, r.size, r.size_label, r.mode, r.impl,
                        "" if r.threads is None else r.threads, r.nbytes, r.rounds, s["min"], s["q1"], s["median"],
                        s["q3"], s["max"], s["mean"], f"{r.gbps:.6g}", int(r.noisy)])
    return path


# --- comparing two runs ---------------------------------------------------------------------------


@dataclass
class Change:
    old: Result
    new: Result

    @property
    def ratio(self) -> float:
        """New time over old time (above 1: slower now)."""
        return self.new.seconds / self.old.seconds

    @property
    def significant(self) -> bool:
        """The two spreads do not overlap."""
        return self.new.low > self.old.high or self.new.high < self.old.low


@dataclass
class Comparison:
    changes: list[Change]
    only_old: list[Result]
    only_new: list[Result]
    machine_differences: list[str]

    def beyond(self, threshold: float) -> list[Change]:
        """Changes slower or faster by more than ``threshold`` (0.1: 10%) with spreads
        that do not overlap."""
        return [c for c in self.changes if c.significant and abs(c.ratio - 1) > threshold]

    def slower(self, threshold: float) -> list[Change]:
        return [c for c in self.beyond(threshold) if c.ratio > 1]


#: What must match for two runs' timings to be comparable as the same machine.
MACHINE_KEYS = ("cpu", "usable_cpus", "numba_threads", "threading_layer", "os", "python", "numpy", "numba")


def compare(old: Run, new: Run) -> Comparison:
    olds = {r.key: r for r in old.results}
    news = {r.key: r for r in new.results}
    changes = [Change(olds[k], news[k]) for k in news if k in olds]
    diffs = []
    for k in MACHINE_KEYS:
        a, b = old.machine.get(k), new.machine.get(k)
        if a != b:
            diffs.append(f"{k}: {a} -> {b}")
    return Comparison(
        changes=changes,
        only_old=[r for k, r in olds.items() if k not in news],
        only_new=[r for k, r in news.items() if k not in olds],
        machine_differences=diffs,
    )
