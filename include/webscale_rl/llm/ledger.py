"""The call ledger `llm_calls`: one row per distinct request (model + messages + params).

A request whose hash already succeeded is answered from here and never sent again: this
is the cache that makes re-runs and resumes free. Failed requests are retried by the
next run and their row replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from webscale_rl import staging, warehouse

COLUMNS = ["request_hash", "stage", "item_id", "model", "prompt_id", "status", "error_kind", "error",
           "attempts", "prompt_tokens", "completion_tokens", "latency_s", "raw", "result", "run_id"]


def successes(db_path: Path, hashes: list[str], run_id: str | None = None, stage: str | None = None) -> dict[str, dict]:
    """{request_hash: row} of the given hashes that already succeeded: in the warehouse, or
    staged by an earlier attempt of this run's stage (remote workers)."""
    if not hashes:
        return {}
    staged = staging.staged_successes(run_id, stage, hashes) if run_id and stage else {}
    with warehouse.read(db_path) as con:
        con.register("_hashes", pd.DataFrame({"request_hash": hashes}))
        rows = con.execute(
            "SELECT request_hash, result, raw, prompt_tokens, completion_tokens FROM llm_calls "
            "WHERE status = 'success' AND request_hash IN (SELECT request_hash FROM _hashes)"
        ).fetchall()
        con.unregister("_hashes")
    found = {h: {"result": json.loads(r), "raw": raw, "prompt_tokens": p, "completion_tokens": c}
             for h, r, raw, p, c in rows}
    return {**staged, **found}


def record(db_path: Path, rows: list[dict], run_id: str, stage: str, part: str = "all") -> None:
    """Upsert finished calls (a short locked write, or a staged file; called in batches)."""
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=COLUMNS)
    staging.write_shard(db_path, "llm_calls", frame, run_id=run_id, stage=stage, part=part, unique_part=True)


def per_stage(con, run_id: str) -> dict[str, dict]:
    """A run's ledger by stage: calls, failed calls, attempts, prompt / completion tokens (as the
    server reported, over every attempt) and the models that answered."""
    return {
        stage: {"calls": calls, "failed": failed, "attempts": attempts, "prompt_tokens": pt,
                "completion_tokens": ct, "models": sorted(models)}
        for stage, calls, failed, attempts, pt, ct, models in con.execute(
            """SELECT stage, count(*), count(*) FILTER (WHERE status <> 'success'),
                      coalesce(sum(attempts), 0)::BIGINT, coalesce(sum(prompt_tokens), 0)::BIGINT,
                      coalesce(sum(completion_tokens), 0)::BIGINT, list(DISTINCT model)
               FROM llm_calls WHERE run_id = ? GROUP BY ALL ORDER BY ALL""", [run_id]).fetchall()
    }
