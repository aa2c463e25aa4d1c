"""Property tests: any reply valid against a stage's schema is used or recorded with a reason.

For each LLM stage, hypothesis-jsonschema draws lists of replies valid against the
stage's own output schema (repeated list items, blank-after-strip strings, every length
limit, any unicode); the test server serves them (one per request, picked by a hash of
the request) while the other stages answer as usual; and the real stage code runs the
whole chain, llm_filter → classify → generate → verify → decontaminate, on three sample
documents in a fresh copy of a warehouse. After each stage its real gate expectations
must hold, except the policy bounds on failure and kept rates (those stop a run on
purpose, with a message); at the end the dataset gate's expectations and the
conservation check must hold: one final outcome per document, every pair decided with a
reason, no key twice.

`make test` runs a fixed, derandomised set of examples per stage (PROPERTY_EXAMPLES,
default 6); `HYPOTHESIS_PROFILE=explore` draws new random ones (PROPERTY_EXAMPLES=300 for
a long search).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from conftest import SAMPLE_DIR
from support import gx_check, stages
from webscale_rl import conservation, gates, prompts, warehouse
from webscale_rl.answer_policy import AnswerPolicy
from webscale_rl.llm import LLMSettings
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages import classify, export, registry
from webscale_rl.stages.ingest import ingest_files

pytestmark = pytest.mark.e2e
RUN = "any-reply"
CORPUS = SAMPLE_DIR / "docs_stem.jsonl"
DOCS = 3
MAX_PERSONAS = 3
MAX_ANSWER_WORDS = 8
EXAMPLES = int(os.environ.get("PROPERTY_EXAMPLES", "6"))

settings.register_profile(
    "ci",
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile(
    "explore",
    max_examples=EXAMPLES,
    deadline=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
PROFILE = settings.get_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

SERVED: Counter = Counter()  # replies drawn per stage, reported at the end of the module


def replies(schema: dict):
    return st.lists(from_schema(schema), min_size=1, max_size=3)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A warehouse with three sample documents through ingest, heuristic filter and near-dedup."""
    db = tmp_path_factory.mktemp("template") / "w.duckdb"
    ingest_files(
        [CORPUS],
        db_path=db,
        run_id=RUN,
        ingested_at=datetime(2026, 11, 1, tzinfo=UTC),
        max_docs=DOCS,
    )
    for name in registry.names("doc")[: registry.names().index("llm_filter")]:
        stages.run(db, RUN, name)
    with warehouse.read(db) as con:
        assert warehouse.one(con, "SELECT count(*) FROM near_dedup WHERE status = 'kept'") == (
            DOCS,
        )
    return db


@pytest.fixture(scope="module")
def server():
    with FakeLLM() as fake:
        yield fake
    print("\nschema-valid replies drawn per stage:", dict(SERVED))


def check_gate(db: Path, name: str, **params) -> None:
    with warehouse.read(db) as con:
        frame, expectations = stages.gate_inputs(con, RUN, name, **params)
    assert gx_check.failures(frame, expectations) == []


# The gates' policy bounds off: a run stopped by a failure or kept rate is stopped on purpose.
NO_RATE_BOUNDS = {
    "max_llm_failed_rate": 1.0,
    "min_llm_filter_kept_rate": 0.0,
    "min_accepted_rate": 0.0,
}


def run_chain(
    template: Path, server: FakeLLM, stage: str, scripted: list, layout: str = "method"
) -> Path:
    """Every stage from the LLM filter on, on a fresh copy of the template, `stage` answering
    with `scripted`; each stage's gate (no rate bounds) is checked as it finishes."""
    SERVED[stage] += len(scripted)
    db = Path(tempfile.mkdtemp(prefix="any-reply-")) / "w.duckdb"
    shutil.copy(template, db)
    llm = LLMSettings(
        base_url=server.base_url,
        model=server.model,
        max_concurrency=8,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    params = dict(
        NO_RATE_BOUNDS,
        max_personas=MAX_PERSONAS,
        max_answer_words=MAX_ANSWER_WORDS,
        few_shot=2,
        call_layout=layout,
        builtin_benchmarks=[],
    )
    server.script(stage, scripted)
    try:
        for name in registry.names()[registry.names().index("llm_filter") :]:
            stages.run(db, RUN, name, llm, **params)
            check_gate(db, name, **params)
    finally:
        server.script(stage, None)
    with warehouse.read(db) as con:
        frame = export.dataset_frame(con, RUN)
        assert (
            gx_check.failures(
                frame,
                export.dataset_expectations(
                    gates.rows_of(frame),
                    min_pairs=0,
                    policy=AnswerPolicy(MAX_ANSWER_WORDS),
                    work_set=DOCS,
                ),
            )
            == []
        )
        assert conservation.check(con, RUN, [str(CORPUS)]) == []
    return db


def rows(db: Path, sql: str) -> list[tuple]:
    with warehouse.read(db) as con:
        return con.execute(sql).fetchall()


def cleanup(db: Path) -> None:
    shutil.rmtree(db.parent, ignore_errors=True)


@PROFILE
@given(scripted=replies(prompts.load("llm_filter").schema))
@example(
    scripted=[
        {"reason": " ", "qualified": "Y"},
        {"reason": "\x00\u202e" + "x" * 598, "qualified": "N"},
    ]
)
def test_any_llm_filter_reply(template, server, scripted):
    db = run_chain(template, server, "llm_filter", scripted)
    qualified = {r["qualified"] for r in scripted}
    statuses = {s for (s,) in rows(db, "SELECT DISTINCT status FROM llm_filter")}
    assert statuses <= {"kept" if q == "Y" else "rejected" for q in qualified}
    cleanup(db)


@PROFILE
@given(scripted=replies(prompts.classify_schema(MAX_PERSONAS)))
@example(
    scripted=[
        {"domain": "Education", "personas": ["a teacher", "a teacher", "a curious journalist"]}
    ]
)
@example(scripted=[{"domain": "Math", "personas": ["A Teacher.", " a  teacher ", "a TEACHER!"]}])
@example(
    scripted=[
        {"domain": "Other", "personas": ["   ", "...", "a teacher"]},
        {"domain": "Other", "personas": ["?!?"]},
    ]
)
@example(
    scripted=[
        {"domain": "Coding", "personas": ["\u00e9l\u00e8ve", "e\u0301le\u0300ve", "ｅｌｅｖｅ"]}
    ]
)
def test_any_classify_reply(template, server, scripted):
    db = run_chain(template, server, "classify", scripted)
    for doc_id, status, reason, personas, dropped in rows(
        db, "SELECT doc_id, status, reason, personas, personas_dropped FROM classify"
    ):
        personas = json.loads(personas)
        keys = [classify.persona_key(p) for p in personas]
        assert all(keys) and len(set(keys)) == len(keys), (
            "kept personas are distinct and have words"
        )
        assert 0 <= dropped <= MAX_PERSONAS and len(personas) + dropped <= MAX_PERSONAS
        assert (status, reason) == (("kept", None) if personas else ("failed", "no_usable_persona"))
        pairs = rows(
            db, f"SELECT persona FROM generate WHERE doc_id = '{doc_id}' ORDER BY persona_idx"
        )
        assert [p for (p,) in pairs] == personas, "one pair per distinct persona"
    cleanup(db)


@PROFILE
@given(scripted=replies(prompts.generate_schema(AnswerPolicy(MAX_ANSWER_WORDS))))
@example(
    scripted=[{"question": "  ", "answer": "Paris"}, {"question": "Which city?", "answer": " \t"}]
)
@example(scripted=[{"question": "Paris", "answer": "Paris"}])  # the same pair for every persona
@example(scripted=[{"question": "?" * 600, "answer": "!" * 60}])
def test_any_generate_reply(template, server, scripted):
    db = run_chain(template, server, "generate", scripted)
    for status, reason, question, answer in rows(
        db, "SELECT status, reason, question, answer FROM generate"
    ):
        if status == "kept":
            assert question == question.strip() and answer == answer.strip() and question and answer
        else:
            assert (status, reason) in {
                ("rejected", "empty_question"),
                ("rejected", "empty_answer"),
            }
    cleanup(db)


@PROFILE
@given(scripted=replies(prompts.filter_classify_schema(MAX_PERSONAS)))
@example(
    scripted=[
        {
            "reason": " ",
            "qualified": "Y",
            "domain": "Math",
            "personas": ["A Teacher.", "a teacher"],
        },
        {"reason": "x", "qualified": "Y", "domain": "Other", "personas": []},
        {"reason": "x", "qualified": "N", "domain": "Coding", "personas": ["a coder"]},
    ]
)
def test_any_fused_filter_classify_reply(template, server, scripted):
    db = run_chain(template, server, "filter_classify", scripted, layout="fused")
    # One call per document answers both stages: classify reads it from the ledger.
    assert rows(db, "SELECT count(*) FROM llm_calls WHERE prompt_id = 'filter_classify.v1'") == [
        (DOCS,)
    ]
    assert rows(
        db,
        "SELECT count(*) FROM classify c JOIN llm_filter f USING (doc_id) "
        "WHERE f.status = 'kept' AND c.request_hash <> f.request_hash",
    ) == [(0,)]
    for status, reason, personas in rows(db, "SELECT status, reason, personas FROM classify"):
        assert (status, reason) == (
            ("kept", None) if json.loads(personas) else ("failed", "no_usable_persona")
        )
    cleanup(db)


@PROFILE
@given(
    scripted=replies(prompts.generate_pairs_schema(MAX_PERSONAS, AnswerPolicy(MAX_ANSWER_WORDS)))
)
@example(scripted=[{"pairs": [{"question": "Same?", "answer": "yes"}] * MAX_PERSONAS}])
def test_any_fused_generate_reply(template, server, scripted):
    db = run_chain(template, server, "generate_pairs", scripted, layout="fused")
    assert rows(db, "SELECT count(*) = count(DISTINCT qa_id) FROM generate") == [(True,)]
    cleanup(db)


def _verdicts_schema() -> dict:
    """verify_pairs' schema with 1 to MAX_PERSONAS verdicts: a reply may hold more or fewer
    verdicts than the request has pairs (recorded as a schema mismatch, not mis-assigned)."""
    schema = prompts.verify_pairs_schema(MAX_PERSONAS)
    schema["properties"]["verdicts"]["minItems"] = 1
    return schema


@PROFILE
@given(scripted=replies(_verdicts_schema()))
@example(
    scripted=[
        {
            "verdicts": [
                {"reason": " ", "context": "Y", "correct": "Y", "leakage": "N"},
                {"reason": "no", "context": "Y", "correct": "N", "leakage": "N"},
            ]
        }
    ]
)
def test_any_fused_verify_reply(template, server, scripted):
    db = run_chain(template, server, "verify_pairs", scripted, layout="fused")
    judged = rows(
        db,
        "SELECT v.status, v.reason, c.result FROM verify v JOIN llm_calls c USING (request_hash) "
        "WHERE v.rationale IS DISTINCT FROM 'rule check'",
    )
    for status, reason, result in judged:
        if status == "failed":
            assert reason.startswith("llm_")
        else:  # a verdict from the fused reply, or from the per-pair fallback call
            reply = json.loads(result)
            verdicts = reply.get("verdicts", [reply])
            assert status in ("kept", "rejected") and verdicts
    cleanup(db)


@PROFILE
@given(scripted=replies(prompts.load("verify").schema))
@example(scripted=[{"reason": " ", "context": "Y", "correct": "Y", "leakage": "N"}])
def test_any_verify_reply(template, server, scripted):
    db = run_chain(template, server, "verify", scripted)
    accepting = any(
        r["context"] == "Y" and r["correct"] == "Y" and r["leakage"] == "N" for r in scripted
    )
    if not accepting:
        assert rows(db, "SELECT count(*) FROM verify WHERE status = 'kept'") == [(0,)]
    cleanup(db)
