"""The call ledger `llm_calls`: one row per distinct request (model + messages + params).

A request whose hash already succeeded is answered from here and never sent again: this
is the cache that makes re-runs and resumes free. Failed requests are retried by the
next run and their row replaced.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from webscale_rl import warehouse

COLUMNS = ["request_hash", "stage", "item_id", "model", "prompt_id", "status", "error_kind", "error",
           "attempts", "prompt_tokens", "completion_tokens", "latency_s", "raw", "result", "run_id"]


def successes(db_path: Path, hashes: list[str]) -> dict[str, dict]:
    """{request_hash: row} of the given hashes that already succeeded."""
    if not hashes:
        return {}
    with warehouse.read(db_path) as con:
        con.register("_hashes", pd.DataFrame({"request_hash": hashes}))
        rows = con.execute(
            "SELECT request_hash, result, raw, prompt_tokens, completion_tokens FROM llm_calls "
            "WHERE status = 'success' AND request_hash IN (SELECT request_hash FROM _hashes)"
        ).fetchall()
        con.unregister("_hashes")
    return {h: {"result": json.loads(r), "raw": raw, "prompt_tokens": p, "completion_tokens": c}
            for h, r, raw, p, c in rows}


def record(db_path: Path, rows: list[dict]) -> None:
    """Upsert finished calls (a short locked write; called in batches)."""
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=COLUMNS)
    with warehouse.write(db_path) as con:
        warehouse.replace_rows(con, "llm_calls", frame, key="request_hash")
