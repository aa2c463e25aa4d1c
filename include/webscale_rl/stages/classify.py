"""Classify: the document's domain (exactly one of the method's ten) and up to N personas.

A domain outside the ten is a recorded failure (`domain_out_of_list`), never coerced to
"Other": the schema enumerates the ten, and a reply that names anything else fails
validation, is retried, and is then recorded with the model's raw reply.

Personas are de-duplicated here, ignoring case, spacing and punctuation: a pair's key is
(document, persona), and models, small ones often, repeat list items. The schema cannot
ask for unique items: no structured-output engine enforces `uniqueItems` (vLLM's xgrammar
and llguidance back-ends and llama.cpp's grammars do not, OpenAI's strict mode refuses the
keyword), and it would not catch "A teacher." beside "a teacher" anyway. How many were
dropped is kept in `personas_dropped`; a reply with no usable persona is a recorded
failure (`no_usable_persona`).

In the `fused` call layout the domain and personas come from llm_filter's filter+classify
call: classify builds the same request and is answered from the call ledger.
"""

from __future__ import annotations

import json
import unicodedata

import pandas as pd

from webscale_rl import prompts
from webscale_rl.llm import LLMResult
from webscale_rl.stages import common, llm_filter
from webscale_rl.stages.common import StageContext
from webscale_rl.text import folded_words

STAGE = "classify"
REASONS = ["domain_out_of_list", "no_usable_persona", *common.LLM_FAILURE_REASONS]
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS classify (
    doc_id       VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,
    domain       VARCHAR,
    personas     JSON,                   -- distinct (case, spacing, punctuation ignored)
    request_hash VARCHAR,
    personas_dropped INTEGER             -- repeated or wordless personas in the reply
);
ALTER TABLE classify ADD COLUMN IF NOT EXISTS personas_dropped INTEGER;"""


def input_sql(previous: str) -> str:
    return common.kept_docs_sql(previous)


def persona_key(persona: str) -> str:
    """What makes two personas the same: their words, compatibility-normalised and casefolded."""
    return " ".join(folded_words(unicodedata.normalize("NFKC", persona)))


def distinct_personas(personas: list[str]) -> tuple[list[str], int]:
    """The personas in the model's order, spacing collapsed, each kept once (the first
    spelling wins); those without a word (blank, punctuation only) are dropped. Returns
    (personas, how many were dropped)."""
    kept: dict[str, str] = {}
    for persona in personas:
        key = persona_key(persona)
        if key and key not in kept:
            kept[key] = " ".join(persona.split())
    return list(kept.values()), len(personas) - len(kept)


def make_row(row: dict, result: LLMResult) -> dict:
    if not result.ok:
        return {
            "status": "failed",
            "reason": common.failure_reason(result, domain_field=True),
            "domain": None,
            "personas": None,
            "personas_dropped": None,
        }
    personas, dropped = distinct_personas(result.parsed["personas"])
    return {
        "status": "kept" if personas else "failed",
        "reason": None if personas else "no_usable_persona",
        "domain": result.parsed["domain"],
        "personas": json.dumps(personas, ensure_ascii=False),
        "personas_dropped": dropped,
    }


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    if ctx.params.call_layout == "fused":
        return common.llm_doc_rows(
            inputs, ctx, lambda row: llm_filter.fused_request(ctx, row.doc_id, row.text), make_row
        )
    prompt = prompts.load(STAGE)
    max_personas = ctx.params.max_personas
    schema = prompts.classify_schema(max_personas)
    return common.llm_doc_rows(
        inputs,
        ctx,
        lambda row: common.make_request(
            ctx.llm,
            STAGE,
            row.doc_id,
            prompts.classify_messages(row.text, max_personas),
            schema,
            STAGE,
            prompt.prompt_id,
        ),
        make_row,
    )


def gate_frame(con, run_id: str, previous: str | None):
    return common.doc_gate_frame(
        con,
        run_id,
        STAGE,
        previous,
        columns="s.domain, json_array_length(s.personas) AS n_personas",
    )


def gate_expectations(params, rows: int) -> list:
    import great_expectations.expectations as gxe

    kept = {"row_condition": 'status=="kept"', "condition_parser": "pandas"}
    return common.status_expectations(
        rows, reasons=REASONS, max_failed_rate=params.max_llm_failed_rate
    ) + [
        gxe.ExpectColumnValuesToBeInSet(column="domain", value_set=list(prompts.DOMAINS), **kept),
        gxe.ExpectColumnValuesToBeBetween(
            column="n_personas", min_value=1, max_value=params.max_personas, **kept
        ),
    ]
