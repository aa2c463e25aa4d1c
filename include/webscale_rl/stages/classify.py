"""Classify: the document's domain (exactly one of the method's ten) and up to N personas.

A domain outside the ten is a recorded failure (`domain_out_of_list`), never coerced to
"Other": the schema enumerates the ten, and a reply that names anything else fails
validation, is retried, and is then recorded with the model's raw reply.
"""

from __future__ import annotations

import json

from webscale_rl import prompts
from webscale_rl.llm import LLMRequest, LLMResult, LLMSettings
from webscale_rl.stages import common

STAGE = "classify"
PREVIOUS = "llm_filter"
REASONS = ["domain_out_of_list", *common.LLM_FAILURE_REASONS]

INPUT_SQL = common.kept_docs_sql(PREVIOUS)


def make_requests(settings: LLMSettings, max_personas: int):
    prompt = prompts.load(STAGE)
    schema = prompts.classify_schema(max_personas)

    def build(inputs) -> list[tuple[str, LLMRequest]]:
        return [(row.doc_id, common.make_request(settings, STAGE, row.doc_id,
                                                 prompts.classify_messages(row.text, max_personas),
                                                 schema, STAGE, prompt.prompt_id))
                for row in inputs.itertuples(index=False)]

    return build


def make_row(row: dict, result: LLMResult) -> dict:
    if not result.ok:
        reason = common.failure_reason(result)
        if result.error_kind == "schema_mismatch" and "at domain:" in (result.error or ""):
            reason = "domain_out_of_list"
        return {"status": "failed", "reason": reason, "domain": None, "personas": None}
    personas = [p.strip() for p in result.parsed["personas"] if p.strip()]
    return {"status": "kept", "reason": None, "domain": result.parsed["domain"],
            "personas": json.dumps(personas, ensure_ascii=False)}


def run_shard(db_path, run_id, lo, hi, settings: LLMSettings, max_personas: int = 3) -> dict:
    runner = common.doc_stage_runner(STAGE, STAGE, INPUT_SQL, make_requests(settings, max_personas), make_row)
    return runner(db_path, run_id, lo, hi, settings)


def gate_frame(con, run_id: str):
    return common.doc_gate_frame(con, run_id, STAGE, PREVIOUS,
                                 columns="s.domain, json_array_length(s.personas) AS n_personas")


def gate_expectations(rows: int, max_failed_rate: float, max_personas: int) -> list:
    import great_expectations.expectations as gxe

    kept = {"row_condition": 'status=="kept"', "condition_parser": "pandas"}
    return common.status_expectations(rows, reasons=REASONS, max_failed_rate=max_failed_rate) + [
        gxe.ExpectColumnValuesToBeInSet(column="domain", value_set=list(prompts.DOMAINS), **kept),
        gxe.ExpectColumnValuesToBeBetween(column="n_personas", min_value=1, max_value=max_personas, **kept),
    ]
