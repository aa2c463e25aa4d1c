"""Generate: one QA pair per (document, persona), conditioned on K demonstrations from the
document's domain. `per_persona` mode (the method) sends one call per persona; `batched`
mode asks for every persona's pair in one call, so the document is sent once."""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from webscale_rl import prompts
from webscale_rl.llm import LLMSettings
from webscale_rl.stages import common

STAGE = "generate"
PREVIOUS = "classify"
MODES = ("per_persona", "batched")
REASONS = ["empty_question", "empty_answer", *common.LLM_FAILURE_REASONS]

INPUT_SQL = common.kept_docs_sql(PREVIOUS, columns="p.domain, p.personas")


def qa_id(doc_id: str, persona: str) -> str:
    return hashlib.sha256(f"{doc_id}\n{persona}".encode("utf-8")).hexdigest()


def run_shard(db_path, run_id, lo, hi, settings: LLMSettings, few_shot: int = 2, mode: str = "per_persona") -> dict:
    if mode not in MODES:
        raise ValueError(f"generate mode must be one of {MODES}, got {mode!r}")
    inputs = common.read_inputs(db_path, INPUT_SQL, run_id, lo, hi)
    plans = []  # (doc_id, persona_idx, persona, request, index of the pair in the reply or None)
    for row in inputs.itertuples(index=False):
        personas = json.loads(row.personas)
        demos = prompts.demos_for(row.domain, few_shot)
        if mode == "per_persona":
            prompt = prompts.load("generate")
            for i, persona in enumerate(personas):
                req = common.make_request(settings, STAGE, row.doc_id,
                                          prompts.generate_messages(row.text, persona, demos),
                                          prompt.schema, "generate", prompt.prompt_id)
                plans.append((row.doc_id, i, persona, req, None))
        else:
            prompt = prompts.load("generate_batch")
            req = common.make_request(settings, STAGE, row.doc_id,
                                      prompts.generate_batch_messages(row.text, personas, demos),
                                      prompts.generate_batch_schema(len(personas)), "generate_batch",
                                      prompt.prompt_id)
            plans += [(row.doc_id, i, persona, req, i) for i, persona in enumerate(personas)]
    results = common.call_llm(settings, db_path, run_id, list({p[3].request_hash: p[3] for p in plans}.values()),
                              shard=lo)
    rows = []
    for doc_id, i, persona, req, pair_index in plans:
        result = results[req.request_hash]
        row = {"qa_id": qa_id(doc_id, persona), "doc_id": doc_id, "run_id": run_id, "persona_idx": i,
               "persona": persona, "question": None, "answer": None, "request_hash": req.request_hash}
        if result.ok:
            pair = result.parsed if pair_index is None else result.parsed["pairs"][pair_index]
            question, answer = pair["question"].strip(), pair["answer"].strip()
            # The schema's minLength counts spaces: a blank field is a valid reply but no pair.
            reason = "empty_question" if not question else "empty_answer" if not answer else None
            row.update(question=question, answer=answer, status="rejected" if reason else "kept", reason=reason)
        else:
            row.update(status="failed", reason=common.failure_reason(result))
        rows.append(row)
    frame = pd.DataFrame(rows, columns=["qa_id", "doc_id", "run_id", "persona_idx", "persona", "question",
                                        "answer", "status", "reason", "request_hash"])
    common.write_rows(db_path, STAGE, frame, run_id=run_id, part=lo)
    return {"stage": STAGE, **common.shard_counts(frame, lo, hi)}


def gate_frame(con, run_id: str) -> pd.DataFrame:
    """Every pair generated for the run's classified documents; a document with no pair at
    all shows as a row with NULL qa_id."""
    return con.execute(
        f"""
        SELECT c.doc_id, g.qa_id, g.status, g.reason, g.question, g.answer,
               CASE WHEN g.status = 'kept' THEN 1 ELSE 0 END AS is_kept
        FROM run_docs r JOIN {PREVIOUS} c ON c.doc_id = r.doc_id AND c.status = 'kept'
        LEFT JOIN {STAGE} g ON g.doc_id = r.doc_id
        WHERE r.run_id = ? ORDER BY c.doc_id, g.persona_idx
        """,
        [run_id],
    ).df()


def gate_expectations(rows: int, max_failed_rate: float) -> list:
    import great_expectations.expectations as gxe

    kept = {"row_condition": 'status=="kept"', "condition_parser": "pandas"}
    return common.status_expectations(rows, key="qa_id", reasons=REASONS, max_failed_rate=max_failed_rate) + [
        gxe.ExpectColumnValuesToNotBeNull(column="question", **kept),
        gxe.ExpectColumnValuesToNotBeNull(column="answer", **kept),
        gxe.ExpectColumnValueLengthsToBeBetween(column="answer", min_value=1, **kept),
    ]
