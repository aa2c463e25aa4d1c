"""A toy document stage that exists only in tests: it proves a stage needs nothing but its
module and one registry entry (tests/test_registry_toy_stage_e2e.py).

It rejects every document whose doc_id starts with 0-3 (about a quarter, deterministically)
and keeps the rest."""

from __future__ import annotations

import pandas as pd

from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext

STAGE = "toy_check"
REASONS = ["toy_rejected"]
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS toy_check (
    doc_id VARCHAR PRIMARY KEY,
    run_id VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    reason VARCHAR
);"""


def rejects(doc_id: str) -> bool:
    return doc_id[0] in "0123"


def input_sql(previous: str) -> str:
    return common.kept_docs_sql(previous)


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "doc_id": d,
                "run_id": ctx.run_id,
                "status": "rejected" if rejects(d) else "kept",
                "reason": "toy_rejected" if rejects(d) else None,
            }
            for d in inputs["doc_id"]
        ],
        columns=["doc_id", "run_id", "status", "reason"],
    )


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    return common.doc_gate_frame(con, run_id, STAGE, previous)


def gate_expectations(params, rows: int) -> list:
    return common.status_expectations(rows, reasons=REASONS)
