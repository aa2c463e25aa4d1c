"""LLM filter: keep a document only if the model judges it informative, self-contained,
deep and clear enough for a checkable QA pair (qualified = Y).

In the `fused` call layout this call also asks for classify's domain and personas
(`filter_classify`); classify then builds the very same request and is answered from the
call ledger, so the document is sent once for both. The fused call uses the llm_filter
stage's model."""

from __future__ import annotations

import pandas as pd

from webscale_rl import prompts
from webscale_rl.llm import LLMRequest, LLMResult
from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext

STAGE = "llm_filter"
# domain_out_of_list: the fused filter+classify reply named a domain outside the ten.
REASONS = ["not_qualified", "domain_out_of_list", *common.LLM_FAILURE_REASONS]
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
            "reason": common.failure_reason(result, domain_field=True),
            "rationale": result.error,
        }
    qualified = result.parsed["qualified"]
    return {
        "status": "kept" if qualified == "Y" else "rejected",
        "reason": None if qualified == "Y" else "not_qualified",
        "qualified": qualified,
        "rationale": result.parsed["reason"],
    }


def fused_request(ctx: StageContext, doc_id: str, text: str) -> LLMRequest:
    """The `fused` layout's filter+classify call for a document; llm_filter and classify
    build it alike, so the second is answered from the ledger."""
    max_personas = ctx.params.max_personas
    return common.make_request(
        ctx.llm,
        STAGE,
        doc_id,
        prompts.filter_classify_messages(text, max_personas),
        prompts.filter_classify_schema(max_personas),
        "filter_classify",
        prompts.load("filter_classify").prompt_id,
    )


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    if ctx.params.call_layout == "fused":
        return common.llm_doc_rows(
            inputs, ctx, lambda row: fused_request(ctx, row.doc_id, row.text), make_row
        )
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
