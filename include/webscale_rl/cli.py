"""Command line helpers.

python -m webscale_rl.cli summary [--run-id ID]   # a run's funnel (default: the latest run)
python -m webscale_rl.cli audit-load FILE         # load a filled-in audit.csv, rewrite the cards
python -m webscale_rl.cli card [--run-id ID]      # rewrite a run's card.md / report.html
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from webscale_rl import audit, card, warehouse
from webscale_rl.config import load_settings
from webscale_rl.stages import registry


def summary(run_id: str | None) -> int:
    settings = load_settings()
    with warehouse.read(settings.db_path) as con:
        query = (
            "SELECT run_id, status, failed_stage, message, counts, started_at, ended_at FROM runs"
        )
        row = (
            warehouse.one(con, query + " WHERE run_id = ?", [run_id])
            if run_id
            else warehouse.one(con, query + " ORDER BY started_at DESC LIMIT 1")
        )
        if row is None:
            print(f"no run found in {settings.db_path}", file=sys.stderr)
            return 1
        run_id, status, failed_stage, message, counts, started, ended = row
        totals = warehouse.one(
            con, "SELECT (SELECT count(*) FROM documents), (SELECT count(*) FROM ingest_errors)"
        )
        outcomes_all = con.execute(
            "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    print(f"run {run_id}: {status}" + (f" at {failed_stage}: {message}" if failed_stage else ""))
    if started and ended:
        print(f"  wall time: {(ended - started).total_seconds():.1f} s")
    counts = json.loads(counts) if counts else {}
    ing = counts.get("ingest", {})
    if ing:
        print(
            f"  ingest: {ing['records_read']} records read from {ing['files']} file(s): "
            f"{ing['new_docs']} new, {ing['already_ingested']} already in the warehouse, "
            f"{ing['errors']} errors {ing['errors_by_reason']}"
        )
    print(f"  work set: {counts.get('work_set', 0)} documents")
    for stage in registry.stages():
        s = counts.get(stage.name, {})
        print(
            f"  {stage.name} ({'docs' if stage.unit == 'doc' else 'pairs'}): {s.get('by_status', {})}"
        )
        for reason, n in sorted(s.get("by_reason", {}).items(), key=lambda kv: -kv[1]):
            print(f"      {reason}: {n}")
    print(f"  outcomes of this run's documents: {counts.get('outcomes', {})}")
    calls = counts.get("llm_calls", {})
    for stage, c in calls.items():
        print(
            f"  llm {stage}: {c['calls']} calls ({c['failed']} failed, {c['attempts']} attempts), "
            f"{c['prompt_tokens']:,} prompt + {c['completion_tokens']:,} completion tokens"
        )
    server = counts.get("llm_server")
    if server:
        rate = server["prefix_cache_hit_rate"]
        print(
            f"  llm server (vLLM {server['version']}): {server['requests']} requests served, "
            f"prefix-cache hit rate {'n/a' if rate is None else f'{100 * rate:.1f}%'}, "
            f"{server['prompt_tokens']:,} prompt + {server['generation_tokens']:,} generated tokens, "
            f"{server['mean_running_requests']} requests running on average, "
            f"{server['mean_tokens_per_step']} tokens per engine step"
        )
    export = counts.get("export")
    if export:
        total = sum(c["prompt_tokens"] + c["completion_tokens"] for c in calls.values())
        per_pair = (
            f", {total / export['pairs']:,.0f} LLM tokens per accepted pair"
            if export["pairs"]
            else ""
        )
        print(
            f"  accepted pairs: {export['pairs']} ({export['train']} train / {export['val']} val){per_pair}"
        )
        print(f"  export: {export['path']}")
        if (Path(export["path"]) / "card.md").exists():
            print(
                f"  dataset card: {export['path']}/card.md and report.html; audit sheet audit.csv "
                "(fill it in, then `python -m webscale_rl.cli audit-load FILE`)"
            )
    print(
        f"warehouse {settings.db_path}: {totals[0]} documents, {totals[1]} ingest errors; "
        f"all outcomes {dict(outcomes_all)}"
    )
    print(f"data docs: {settings.data_docs_dir / 'index.html'}")
    return 0


def _latest_run(settings) -> str | None:
    with warehouse.read(settings.db_path) as con:
        row = warehouse.one(con, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1")
    return row[0] if row else None


def write_card(run_id: str | None) -> int:
    settings = load_settings()
    run_id = run_id or _latest_run(settings)
    if run_id is None:
        print(f"no run found in {settings.db_path}", file=sys.stderr)
        return 1
    result = card.write_card(settings.db_path, settings.exports_dir, run_id)
    print(f"card for run {run_id}: {result['path']}/card.md and report.html")
    return 0


def audit_load(path: Path) -> int:
    """Load a filled-in audit sheet, then rewrite the card of each run it covers."""
    settings = load_settings()
    try:
        loaded = audit.load_labels(settings.db_path, path)
    except audit.AuditFileError as exc:
        print(f"audit-load: {exc}", file=sys.stderr)
        return 2
    print(f"loaded {loaded['labelled']} labelled pair(s) from {path}")
    for run_id in loaded["runs"]:
        card.write_card(settings.db_path, settings.exports_dir, run_id)
        with warehouse.read(settings.db_path) as con:
            m = audit.metrics(con, run_id)
        print(f"run {run_id}:")
        for line in audit.describe(m):
            print(f"  {line}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="webscale_rl.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("summary", help="print the funnel of a run (default: the latest)")
    s.add_argument("--run-id")
    a = sub.add_parser(
        "audit-load", help="load a filled-in audit.csv into audit_labels and rewrite the card"
    )
    a.add_argument("file", type=Path)
    c = sub.add_parser(
        "card", help="rewrite a run's card.md and report.html (default: the latest run)"
    )
    c.add_argument("--run-id")
    args = parser.parse_args(argv)
    if args.command == "audit-load":
        return audit_load(args.file)
    if args.command == "card":
        return write_card(args.run_id)
    return summary(args.run_id)


if __name__ == "__main__":
    sys.exit(main())
