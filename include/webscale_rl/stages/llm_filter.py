"""LLM filter: keep a document only if the model judges it informative, self-contained,
deep and clear enough for a checkable QA pair (qualified = Y)."""

from __future__ import annotations

from webscale_rl import prompts
from webscale_rl.llm import LLMRequest, LLMResult, LLMSettings
from webscale_rl.stages import common

STAGE = "llm_filter"
PREVIOUS = "near_dedup"
REASONS = ["not_qualified", *common.LLM_FAILURE_REASONS]

INPUT_SQL = common.kept_docs_sql(PREVIOUS)


def make_requests(settings: LLMSettings):
    prompt = prompts.load(STAGE)

    def build(inputs) -> list[tuple[str, LLMRequest]]:
        return [(row.doc_id, common.make_request(settings, STAGE, row.doc_id, prompts.filter_messages(row.text),
                                                 prompt.schema, STAGE, prompt.prompt_id))
                for row in inputs.itertuples(index=False)]

    return build


def make_row(row: dict, result: LLMResult) -> dict:
    if not result.ok:
        return {"status": "failed", "reason": common.failure_reason(result), "rationale": result.error}
    qualified = result.parsed["qualified"]
    return {"status": "kept" if qualified == "Y" else "rejected",
            "reason": None if qualified == "Y" else "not_qualified",
            "qualified": qualified, "rationale": result.parsed["reason"]}


def run_shard(db_path, run_id, lo, hi, settings: LLMSettings) -> dict:
    runner = common.doc_stage_runner(STAGE, STAGE, INPUT_SQL, make_requests(settings), make_row)
    return runner(db_path, run_id, lo, hi, settings)


def gate_frame(con, run_id: str):
    return common.doc_gate_frame(con, run_id, STAGE, PREVIOUS)


def gate_expectations(rows: int, max_failed_rate: float, min_kept_rate: float) -> list:
    return common.status_expectations(rows, reasons=REASONS, max_failed_rate=max_failed_rate,
                                      min_kept_rate=min_kept_rate)
