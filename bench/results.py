"""Benchmark figures with their targets, printed and collected for bench/results.md.

Each benchmark script calls `emit(figures)`: every figure is printed as one line with its
target and whether it holds, and, when BENCH_RESULTS names a file (make bench sets it),
appended to it as JSON lines. `python bench/results.py write` turns that file into
bench/results.md with the machine's core count, CPU and the date.
"""

from __future__ import annotations

import json
import os
import platform
import sys
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


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write(results_path: Path, out: Path) -> None:
    figures = []
    for line in results_path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "figure" in record:
            figures.append(Figure(**record["figure"]))
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; "
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
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    held = sum(f.holds is True for f in figures)
    judged = sum(f.holds is not None for f in figures)
    print(f"{out}: {len(figures)} figures, {held} of {judged} targets hold")


if __name__ == "__main__":
    if sys.argv[1:2] != ["write"] or len(sys.argv) != 4:
        sys.exit("usage: results.py write RESULTS.jsonl OUT.md")
    write(Path(sys.argv[2]), Path(sys.argv[3]))
