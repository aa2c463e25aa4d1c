"""Generate: one QA pair per (document, persona), conditioned on K demonstrations drawn for
the document from its domain's library, asking for answers within the run's answer-length
policy (prompt wording and schema from `max_answer_words`). The `method` call layout sends
one call per persona; the `fused` layout asks for every persona's pair in one call
(`generate_pairs`), so the document is sent once. Sampled by default (the `sampling`
param), each request seeded from its own content."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from webscale_rl import answer_policy, prompts
from webscale_rl.params import spec as param_spec
from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext

STAGE = "generate"
LAYOUTS = tuple(param_spec("call_layout").schema["enum"])
REASONS = ["empty_question", "empty_answer", *common.LLM_FAILURE_REASONS]
REPLACE_KEY = "doc_id"  # a shard replaces each document's pairs as a whole
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS generate (
    qa_id        VARCHAR PRIMARY KEY,    -- sha256 of doc_id + persona
    doc_id       VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    persona_idx  INTEGER NOT NULL,
    persona      VARCHAR NOT NULL,
    question     VARCHAR,
    answer       VARCHAR,
    status       VARCHAR NOT NULL,       -- kept = generated, rejected = blank question or answer,
    reason       VARCHAR,                -- failed = no valid reply
    request_hash VARCHAR
);"""
COLUMNS = [
    "qa_id",
    "doc_id",
    "run_id",
    "persona_idx",
    "persona",
    "question",
    "answer",
    "status",
    "reason",
    "request_hash",
]


def input_sql(previous: str) -> str:
    """The documents `previous` kept, with the domain and personas classify gave them."""
    return f"""
SELECT d.doc_id, d.text, c.domain, c.personas FROM run_docs r
JOIN documents d USING (doc_id)
JOIN {previous} p ON p.doc_id = d.doc_id AND p.status = 'kept'
JOIN classify c ON c.doc_id = d.doc_id AND c.status = 'kept'
WHERE r.run_id = $run_id AND {common.SHARD_FILTER}
ORDER BY d.doc_id
"""


def qa_id(doc_id: str, persona: str) -> str:
    return hashlib.sha256(f"{doc_id}\n{persona}".encode("utf-8")).hexdigest()


def _per_persona(
    settings, doc_id: str, text: str, personas: list[str], demos: list[dict], policy
) -> list:
    """The method's plans for a document: one generate call per persona."""
    prompt = prompts.load("generate")
    return [
        (
            doc_id,
            i,
            persona,
            common.make_request(
                settings,
                STAGE,
                doc_id,
                prompts.generate_messages(text, persona, demos, policy),
                prompts.generate_schema(policy),
                "generate",
                prompt.prompt_id,
            ),
            None,
        )
        for i, persona in enumerate(personas)
    ]


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    few_shot, layout, settings = ctx.params.few_shot, ctx.params.call_layout, ctx.llm
    policy = answer_policy.from_params(ctx.params)
    per_document = ctx.params.demo_selection == "per_document"
    if layout not in LAYOUTS:
        raise ValueError(f"call layout must be one of {LAYOUTS}, got {layout!r}")
    plans = []  # (doc_id, persona_idx, persona, request, index of the pair in the reply or None)
    material = {}  # doc_id -> (text, demos): to fall back to per-persona calls
    for row in inputs.itertuples(index=False):
        personas = json.loads(row.personas)
        demos = prompts.demos_for(row.domain, few_shot, row.doc_id if per_document else None)
        if layout == "method":
            plans += _per_persona(settings, row.doc_id, row.text, personas, demos, policy)
        else:
            material[row.doc_id] = (row.text, demos)
            prompt = prompts.load("generate_pairs")
            req = common.make_request(
                settings,
                STAGE,
                row.doc_id,
                prompts.generate_pairs_messages(row.text, personas, demos, policy),
                prompts.generate_pairs_schema(len(personas), policy),
                "generate_pairs",
                prompt.prompt_id,
                common.FUSED_INVALID_RETRIES,
            )
            plans += [(row.doc_id, i, persona, req, i) for i, persona in enumerate(personas)]
    results = ctx.call_llm(list({p[3].request_hash: p[3] for p in plans}.values()))
    # A fused reply that is not valid for the schema (one overlong answer, a pair missing)
    # would fail every pair of its document: those documents fall back to the method's
    # per-persona calls, so one bad pair costs one pair, as it does in the method.
    broken = {p[0] for p in plans if common.reply_error(results[p[3].request_hash])}
    if material and broken:
        personas_of: dict[str, list[str]] = {}
        for doc_id, _, persona, _, _ in plans:
            if doc_id in broken:
                personas_of.setdefault(doc_id, []).append(persona)
        fallback = []
        for doc_id, personas in personas_of.items():
            text, demos = material[doc_id]
            fallback += _per_persona(settings, doc_id, text, personas, demos, policy)
        results.update(ctx.call_llm([p[3] for p in fallback]))
        plans = [p for p in plans if p[0] not in broken] + fallback
    rows = []
    for doc_id, i, persona, req, pair_index in plans:
        result = results[req.request_hash]
        row = {
            "qa_id": qa_id(doc_id, persona),
            "doc_id": doc_id,
            "run_id": ctx.run_id,
            "persona_idx": i,
            "persona": persona,
            "question": None,
            "answer": None,
            "request_hash": req.request_hash,
        }
        if result.ok:
            pair = result.parsed if pair_index is None else result.parsed["pairs"][pair_index]
            question, answer = pair["question"].strip(), pair["answer"].strip()
            # The schema's minLength counts spaces: a blank field is a valid reply but no pair.
            reason = "empty_question" if not question else "empty_answer" if not answer else None
            row.update(
                question=question,
                answer=answer,
                status="rejected" if reason else "kept",
                reason=reason,
            )
        else:
            row.update(status="failed", reason=common.failure_reason(result))
        rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    """Every pair generated for the run's documents `previous` kept, profiled; a document
    with no pair at all counts as an item with no qa_id."""
    return common.profile_frame(
        con,
        f"""
        SELECT g.qa_id, g.status, g.reason, g.question IS NOT NULL AS has_question,
               {common.capped_length("g.answer", common.ANSWER_CHARS_CAP)} AS answer_chars
        FROM run_docs r JOIN {previous} c ON c.doc_id = r.doc_id AND c.status = 'kept'
        LEFT JOIN {STAGE} g ON g.doc_id = r.doc_id
        WHERE r.run_id = ?
        """,
        [run_id],
        key="qa_id",
        measures=common.STATUS_MEASURES,
    )


def gate_expectations(params, rows: int) -> list:
    import great_expectations.expectations as gxe

    kept = {"row_condition": 'status=="kept"', "condition_parser": "pandas"}
    return common.status_expectations(
        rows, key="qa_id", reasons=REASONS, max_failed_rate=params.max_llm_failed_rate
    ) + [
        gxe.ExpectColumnValuesToBeInSet(column="has_question", value_set=[True], **kept),
        gxe.ExpectColumnValuesToBeBetween(column="answer_chars", min_value=1, **kept),
    ]
