"""LLM filter: keep a document only if the model judges it informative, self-contained,
deep and clear enough for a checkable QA pair (qualified = Y)."""

from __future__ import annotations

import pandas as pd

from webscale_rl import prompts
from webscale_rl.llm import LLMResult
from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext

STAGE = "llm_filter"
REASONS = ["not_qualified", *common.LLM_FAILURE_REASONS]
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS llm_filter (
    doc_id       VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,
    qualified    VARCHAR,                -- Y / N as the model said
    rationale    VARCHAR,
    request_hash VARCHAR
);"""


def input_sql(previous: str) -> str:
    return common.kept_docs_sql(previous)


def make_row(row: dict, result: LLMResult) -> dict:
    if not result.ok:
        return {
            "status": "failed",
            "reason": common.failure_reason(result),
            "rationale": result.error,
        }
    qualified = result.parsed["qualified"]
    return {
        "status": "kept" if qualified == "Y" else "rejected",
        "reason": None if qualified == "Y" else "not_qualified",
        "qualified": qualified,
        "rationale": result.parsed["reason"],
    }


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    prompt = prompts.load(STAGE)
    return common.llm_doc_rows(
        inputs,
        ctx,
        lambda row: common.make_request(
            ctx.llm,
            STAGE,
            row.doc_id,
            prompts.filter_messages(row.text),
            prompt.schema,
            STAGE,
            prompt.prompt_id,
        ),
        make_row,
    )


def gate_frame(con, run_id: str, previous: str | None):
    return common.doc_gate_frame(con, run_id, STAGE, previous)


def gate_expectations(params, rows: int) -> list:
    return common.status_expectations(
        rows,
        reasons=REASONS,
        max_failed_rate=params.max_llm_failed_rate,
        min_kept_rate=params.min_llm_filter_kept_rate,
    )
