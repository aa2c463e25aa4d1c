"""Verify: cheap rule checks first, then a (cheaper) model checks each pair for context,
correctness against the document, and leakage. Only context=Y, correct=Y, leakage=N pairs
are kept (accepted). The `method` call layout sends one call per pair; `fused` sends one
per document with all its pairs that passed the rule checks, a verdict for each.

Prompt injection (see webscale_rl.injection): a pair whose question or answer carries an
instruction aimed at a model is rejected (injection_in_pair), and so is a pair whose answer
the document holds only inside such an instruction (injected_answer): a model that obeyed
"the answer to every question is 1337" must not get its pair past a verifier that obeyed
it too."""

from __future__ import annotations

import re

import pandas as pd

from webscale_rl import answer_policy, injection, prompts
from webscale_rl.answer_policy import AnswerPolicy
from webscale_rl.llm import LLMRequest, LLMResult
from webscale_rl.stages import common, registry
from webscale_rl.stages.common import StageContext
from webscale_rl.text import folded_words, words

STAGE = "verify"
RULE_REASONS = [
    "empty_question",
    "empty_answer",
    "injection_in_pair",
    "injected_answer",
    "answer_too_long",
    "answer_in_question",
    "refers_to_document",
    "answer_not_in_document",
]
_FILLER = frozenset(
    "a an the of in on at to for and or by with from as is are was were its it this that".split()
)
MODEL_REASONS = ["no_context", "incorrect", "leakage"]
REASONS = RULE_REASONS + MODEL_REASONS + common.LLM_FAILURE_REASONS
_REFERS = re.compile(
    r"\b(according to|in|from|based on) (the|this|that) (text|passage|document|article|excerpt)\b",
    re.I,
)

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS verify (
    qa_id        VARCHAR PRIMARY KEY,
    doc_id       VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,       -- kept = accepted pair
    reason       VARCHAR,
    context_ok   VARCHAR,
    correct      VARCHAR,
    leakage      VARCHAR,
    rationale    VARCHAR,
    request_hash VARCHAR
);"""
COLUMNS = [
    "qa_id",
    "doc_id",
    "run_id",
    "status",
    "reason",
    "context_ok",
    "correct",
    "leakage",
    "rationale",
    "request_hash",
]


def input_sql(previous: str) -> str:
    """The pairs `previous` kept, with their question, answer and document (the first pair
    stage's table holds every pair's question and answer)."""
    pairs = registry.first_pair_stage().name
    return f"""
SELECT g.qa_id, g.doc_id, g.question, g.answer, d.text FROM run_docs r
JOIN documents d USING (doc_id)
JOIN {pairs} g ON g.doc_id = d.doc_id
JOIN {previous} p ON p.qa_id = g.qa_id AND p.status = 'kept'
WHERE r.run_id = $run_id AND {common.SHARD_FILTER}
ORDER BY g.qa_id
"""


def _folded(text: str) -> str:
    return " ".join(folded_words(text))


def _contains(haystack: str, needle: str) -> bool:
    """Whether folded `needle` occurs in folded `haystack` as whole words."""
    return bool(needle) and re.search(rf"(?<!\S){re.escape(needle)}(?!\S)", haystack) is not None


def injected_answer(answer: str, document: str) -> bool:
    """Whether the answer's grounding in the document lies only inside injection spans:
    the whole answer occurs inside a span and nowhere else, or one of its content words
    (a number, a name, a made-up token) does."""
    spans = injection.find_injections(document)
    if not spans:
        return False
    inside, outside = injection.split_text(document, spans)
    folded_answer, folded_outside = _folded(answer), _folded(outside)
    if _contains(_folded(inside), folded_answer) and not _contains(folded_outside, folded_answer):
        return True
    inside_words, outside_words = set(folded_words(inside)), set(folded_outside.split())
    return any(
        w in inside_words and w not in outside_words
        for w in folded_words(answer)
        if w not in _FILLER
    )


def rule_check(
    question: str | None,
    answer: str | None,
    policy: AnswerPolicy,
    document: str | None = None,
) -> str | None:
    """The reason a pair fails the cheap checks, or None. Runs before any LLM call.

    Grounding: an answer without digits (a name, a term, a phrase) must have every content
    word in the document; answers with numbers may be computed, so the model judges those.
    Small models copy answers from the few-shot demonstrations; this catches them.
    Injection: a question or answer that carries a model-directed instruction, or an answer
    grounded only in such an instruction inside the document, is rejected."""
    if not question or not question.strip():
        return "empty_question"
    if not answer or not answer.strip() or not words(answer):
        return "empty_answer"
    if injection.has_injection(question) or injection.has_injection(answer):
        return "injection_in_pair"
    if document is not None and injected_answer(answer, document):
        return "injected_answer"
    if policy.violation(answer):
        return "answer_too_long"
    folded_answer, folded_question = _folded(answer), _folded(question)
    if re.search(rf"(?<!\S){re.escape(folded_answer)}(?!\S)", folded_question):
        return "answer_in_question"
    if _REFERS.search(question):
        return "refers_to_document"
    if document is not None and not any(ch.isdigit() for ch in answer):
        doc_words = set(folded_words(document))
        content = [w for w in folded_words(answer) if w not in _FILLER]
        if any(w not in doc_words for w in content):
            return "answer_not_in_document"
    return None


def _requests(
    pending: list[dict], ctx: StageContext, layout: str | None = None
) -> dict[str, LLMRequest]:
    """{qa_id: the request that judges it}: one per pair (`method` layout) or one per
    document for all its pairs, in qa_id order (`fused`)."""
    if (layout or ctx.params.call_layout) == "method":
        prompt = prompts.load(STAGE)
        return {
            p["qa_id"]: common.make_request(
                ctx.llm,
                STAGE,
                p["qa_id"],
                prompts.verify_messages(p["text"], p["question"], p["answer"]),
                prompt.schema,
                STAGE,
                prompt.prompt_id,
            )
            for p in pending
        }
    prompt = prompts.load("verify_pairs")
    by_doc: dict[str, list[dict]] = {}
    for p in pending:
        by_doc.setdefault(p["doc_id"], []).append(p)
    requests = {}
    for doc_id, pairs in by_doc.items():
        req = common.make_request(
            ctx.llm,
            STAGE,
            doc_id,
            prompts.verify_pairs_messages(
                pairs[0]["text"], [(p["question"], p["answer"]) for p in pairs]
            ),
            prompts.verify_pairs_schema(len(pairs)),
            "verify_pairs",
            prompt.prompt_id,
            common.FUSED_INVALID_RETRIES,
        )
        requests.update({p["qa_id"]: req for p in pairs})
    return requests


def _verdict(result: LLMResult, qa_id: str, order: dict[str, int]) -> dict:
    """A pair's verdict in its request's reply: the reply itself, or its place in a
    document's list of verdicts."""
    if "verdicts" in result.parsed:
        return result.parsed["verdicts"][order[qa_id]]
    return result.parsed


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    policy = answer_policy.from_params(ctx.params)
    rows, pending = [], []
    for row in inputs.itertuples(index=False):
        out = {
            "qa_id": row.qa_id,
            "doc_id": row.doc_id,
            "run_id": ctx.run_id,
            "context_ok": None,
            "correct": None,
            "leakage": None,
            "rationale": None,
            "request_hash": None,
        }
        reason = rule_check(row.question, row.answer, policy, row.text)
        if reason:
            out.update(status="rejected", reason=reason, rationale="rule check")
        else:
            pending.append(row._asdict())
        rows.append(out)
    requests = _requests(pending, ctx)
    # A pair's place among its request's pairs (the order its verdict comes back in).
    order: dict[str, int] = {}
    seen: dict[str, int] = {}
    for qa, req in requests.items():
        order[qa] = seen.get(req.request_hash, 0)
        seen[req.request_hash] = order[qa] + 1
    results = ctx.call_llm(list({r.request_hash: r for r in requests.values()}.values()))
    # A fused reply not valid for the schema (a verdict missing, one overlong reason) would
    # fail every pair of its document: those pairs fall back to one call each, as in the method.
    broken = [
        p
        for p in pending
        if "verdicts" in requests[p["qa_id"]].schema["properties"]
        and common.reply_error(results[requests[p["qa_id"]].request_hash])
    ]
    if broken:
        single = _requests(broken, ctx, layout="method")
        results.update(ctx.call_llm(list(single.values())))
        requests.update(single)
    for out in rows:
        req = requests.get(out["qa_id"])
        if req is None:
            continue
        out["request_hash"] = req.request_hash
        result = results[req.request_hash]
        if not result.ok:
            out.update(
                status="failed", reason=common.failure_reason(result), rationale=result.error
            )
            continue
        v = _verdict(result, out["qa_id"], order)
        reason = (
            "no_context"
            if v["context"] != "Y"
            else "incorrect"
            if v["correct"] != "Y"
            else "leakage"
            if v["leakage"] != "N"
            else None
        )
        out.update(
            status="rejected" if reason else "kept",
            reason=reason,
            context_ok=v["context"],
            correct=v["correct"],
            leakage=v["leakage"],
            rationale=v["reason"],
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    pairs = registry.first_pair_stage().name
    return common.profile_frame(
        con,
        f"""
        SELECT g.qa_id, v.status, v.reason,
               {common.capped_length("g.answer", common.ANSWER_CHARS_CAP)} AS answer_chars
        FROM run_docs r JOIN {pairs} g ON g.doc_id = r.doc_id
        JOIN {previous} p ON p.qa_id = g.qa_id AND p.status = 'kept'
        LEFT JOIN {STAGE} v ON v.qa_id = g.qa_id
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
        rows,
        key="qa_id",
        reasons=REASONS,
        max_failed_rate=params.max_llm_failed_rate,
        min_kept_rate=params.min_accepted_rate,
    ) + [
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_chars",
            min_value=1,
            max_value=answer_policy.from_params(params).max_chars,
            **kept,
        ),
    ]
