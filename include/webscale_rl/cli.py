"""Command line helpers: `python -m webscale_rl.cli summary [--run-id ID]` prints a run's funnel."""

from __future__ import annotations

import argparse
import json
import sys

from webscale_rl import warehouse
from webscale_rl.config import load_settings


def summary(run_id: str | None) -> int:
    settings = load_settings()
    with warehouse.read(settings.db_path) as con:
        query = "SELECT run_id, status, failed_stage, message, counts, started_at, ended_at FROM runs"
        row = (warehouse.one(con, query + " WHERE run_id = ?", [run_id]) if run_id
               else warehouse.one(con, query + " ORDER BY started_at DESC LIMIT 1"))
        if row is None:
            print(f"no run found in {settings.db_path}", file=sys.stderr)
            return 1
        run_id, status, failed_stage, message, counts, started, ended = row
        totals = warehouse.one(
            con, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM ingest_errors)"
        )
        outcomes_all = con.execute("SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL ORDER BY ALL").fetchall()
    print(f"run {run_id}: {status}" + (f" at {failed_stage}: {message}" if failed_stage else ""))
    if started and ended:
        print(f"  wall time: {(ended - started).total_seconds():.1f} s")
    counts = json.loads(counts) if counts else {}
    ing = counts.get("ingest", {})
    if ing:
        print(f"  ingest: {ing['records_read']} records read from {ing['files']} file(s): "
              f"{ing['new_docs']} new, {ing['already_ingested']} already in the warehouse, "
              f"{ing['errors']} errors {ing['errors_by_reason']}")
    print(f"  work set: {counts.get('work_set', 0)} documents")
    for stage in warehouse.DOC_STAGES + warehouse.QA_STAGES:
        s = counts.get(stage, {})
        unit = "pairs" if stage in warehouse.QA_STAGES else "docs"
        print(f"  {stage} ({unit}): {s.get('by_status', {})}")
        for reason, n in sorted(s.get("by_reason", {}).items(), key=lambda kv: -kv[1]):
            print(f"      {reason}: {n}")
    print(f"  outcomes of this run's documents: {counts.get('outcomes', {})}")
    calls = counts.get("llm_calls", {})
    for stage, c in calls.items():
        print(f"  llm {stage}: {c['calls']} calls ({c['failed']} failed, {c['attempts']} attempts), "
              f"{c['prompt_tokens']:,} prompt + {c['completion_tokens']:,} completion tokens")
    export = counts.get("export")
    if export:
        total = sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls.values())
        per_pair = f", {total / export['pairs']:,.0f} LLM tokens per accepted pair" if export["pairs"] else ""
        print(f"  accepted pairs: {export['pairs']} ({export['train']} train / {export['val']} val){per_pair}")
        print(f"  export: {export['path']}")
    print(f"warehouse {settings.db_path}: {totals[0]} documents, {totals[1]} ingest errors; "
          f"all outcomes {dict(outcomes_all)}")
    print(f"data docs: {settings.data_docs_dir / 'index.html'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webscale_rl.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="print the funnel of a run (default: the latest)")
    s.add_argument("--run-id")
    args = parser.parse_args(argv)
    return summary(args.run_id)


if __name__ == "__main__":
    sys.exit(main())
