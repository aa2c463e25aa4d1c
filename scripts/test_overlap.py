"""Did the tests of an xdist group run one at a time? Reads the timings file the test suite
writes under WEBSCALE_RL_TEST_TIMINGS (tests/conftest.py) and prints, for the group, each
test's worker, start and end, and every pair of its tests whose runs overlapped in time.
Exits 1 if any did: `make test` runs it after pytest for the `live` group.

    python scripts/test_overlap.py .test-timings.jsonl --group live
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def overlaps(rows: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs of tests whose [start, end] intervals intersect (sorted by start)."""
    rows = sorted(rows, key=lambda r: r["start"])
    found, latest = [], None
    for row in rows:
        if latest is not None and row["start"] < latest["end"]:
            found.append((latest, row))
        if latest is None or row["end"] > latest["end"]:
            latest = row
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timings", type=Path)
    parser.add_argument("--group", default="live")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.timings.read_text().splitlines() if line.strip()]
    group = [r for r in rows if args.group in r["groups"]]
    if not group:
        print(f"no test of group {args.group!r} ran")
        return 0
    t0 = min(r["start"] for r in rows)
    workers = sorted({r["worker"] for r in group})
    span = max(r["end"] for r in group) - min(r["start"] for r in group)
    busy = sum(r["end"] - r["start"] for r in group)
    print(
        f"group {args.group!r}: {len(group)} tests on worker(s) {', '.join(workers)}, "
        f"{busy:.0f} s of tests in a {span:.0f} s span (suite start = 0 s)"
    )
    for r in sorted(group, key=lambda r: r["start"]):
        print(
            f"  {r['start'] - t0:7.1f} -> {r['end'] - t0:7.1f} s  {r['worker']:>5}  {r['nodeid']}"
        )
    found = overlaps(group)
    for a, b in found:
        print(
            f"OVERLAP: {b['nodeid']} started {a['end'] - b['start']:.1f} s before {a['nodeid']} ended"
        )
    print(f"{len(found)} overlapping pair(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
