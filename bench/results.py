"""Benchmark figures with their targets, printed and collected for bench/results.md.

Each benchmark script calls `emit(figures)`: every figure is printed as one line with its
target and whether it holds, and, when BENCH_RESULTS names a file (make bench sets it),
appended to it as JSON lines with the time the script ended. `results.py start` begins the
file (the bench's start time); `results.py write` turns it into bench/results.md (or
results-real.md, results-scale.md) with the machine's core count, CPU, the date, the time
each script took and, given a target in minutes, the whole bench's wall time as a figure.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Figure:
    bench: str  # which measurement (P1 ... P7)
    name: str
    value: float
    target: str  # in words, e.g. ">= 0.9"
    holds: bool | None  # None: a figure reported without a target

    def line(self) -> str:
        verdict = {True: "HOLDS", False: "MISSES", None: "(no target)"}[self.holds]
        return f"[{self.bench}] {self.name}: {self.value:,.3g}  target {self.target}  {verdict}"


def emit(figures: list[Figure], details: dict | None = None) -> None:
    print()
    for f in figures:
        print(f.line())
    path = os.environ.get("BENCH_RESULTS")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            for f in figures:
                out.write(json.dumps({"figure": asdict(f)}) + "\n")
            if details:
                out.write(json.dumps({"details": details}) + "\n")
            # When each script ended: `write` turns these into the time each one took.
            out.write(json.dumps({"ended": time.time(), "script": Path(sys.argv[0]).name}) + "\n")


def start(results_path: Path) -> None:
    """A new results file holding only when the whole bench started."""
    results_path.write_text(json.dumps({"started": time.time()}) + "\n", encoding="utf-8")


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write(results_path: Path, out: Path, minutes_target: float | None = None) -> None:
    figures, steps, started, last = [], [], None, None
    for line in results_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "figure" in record:
            figures.append(Figure(**record["figure"]))
        elif "started" in record:
            started = last = record["started"]
        elif "ended" in record and last is not None:
            steps.append((record["script"], record["ended"] - last))
            last = record["ended"]
    if started is not None and last is not None and minutes_target:
        minutes = (last - started) / 60
        figures.append(
            Figure(
                "make bench",
                "wall time of the whole bench, minutes",
                minutes,
                f"< {minutes_target:g}",
                minutes < minutes_target,
            )
        )
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make {out.stem.replace('results', 'bench')}` on "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
        f"{os.cpu_count()} cores ({_cpu()}), Python {platform.python_version()}.",
        "Each figure was measured in that run, as a ratio to its limit or to a baseline "
        "measured beside it.",
        "",
        "| measurement | figure | value | target | holds |",
        "|---|---|---:|---|---|",
    ]
    for f in figures:
        verdict = {True: "yes", False: "**no**", None: "-"}[f.holds]
        lines.append(f"| {f.bench} | {f.name} | {f.value:,.3g} | {f.target} | {verdict} |")
    if steps:
        lines += ["", "Time per script (s): " + ", ".join(f"{n} {s:.0f}" for n, s in steps) + "."]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    held = sum(f.holds is True for f in figures)
    judged = sum(f.holds is not None for f in figures)
    print(f"{out}: {len(figures)} figures, {held} of {judged} targets hold")


if __name__ == "__main__":
    if sys.argv[1:2] == ["start"] and len(sys.argv) == 3:
        start(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["write"] and len(sys.argv) in (4, 5):
        write(Path(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]) if sys.argv[4:] else None)
    else:
        sys.exit(
            "usage: results.py start RESULTS.jsonl | "
            "results.py write RESULTS.jsonl OUT.md [MINUTES_TARGET]"
        )
