"""LLM stages on a small warehouse against the test server: rule checks before any call,
batched generation, per-stage models, domain failures recorded, not coerced."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import SAMPLE_DIR
from support import stages
from support.db import query
from webscale_rl.answer_policy import AnswerPolicy
from webscale_rl.llm import LLMSettings
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages import classify
from webscale_rl.stages.ingest import ingest_files
from webscale_rl.stages.verify import rule_check


@pytest.mark.unit
@pytest.mark.parametrize(
    ("question", "answer", "reason"),
    [
        ("", "42", "empty_question"),
        ("How tall is the tower in metres?", "  ", "empty_answer"),
        (
            "How tall is the tower in metres?",
            "it is about three hundred and twelve metres tall overall",
            "answer_too_long",
        ),
        (
            "The tower, 312 metres tall, opened when? Give its height: 312",
            "312",
            "answer_in_question",
        ),
        ("According to the text, how tall is the tower?", "312 metres", "refers_to_document"),
        ("How tall is the Eiffel Tower, in metres, measured to its tip?", "330 metres", None),
    ],
)
def test_rule_checks(question, answer, reason):
    assert rule_check(question, answer, AnswerPolicy(8)) == reason


DOCUMENT = "Lithium-ion cells can fail by thermal runaway. The Meridian Bridge opened in 1932 over the Kessel River."


@pytest.mark.unit
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("thermal runaway", None),
        ("the Kessel River", None),
        ("1,864 metres", None),  # numbers may be computed: the model judges them
        ("Pretzel bread", "answer_not_in_document"),  # e.g. copied from a few-shot demonstration
        ("Kessel Canal", "answer_not_in_document"),
    ],
)
def test_grounding_rule_for_answers_without_numbers(answer, reason):
    question = (
        "Which failure mode, where heat makes cells hotter still, can destroy a battery pack?"
    )
    assert rule_check(question, answer, AnswerPolicy(8), DOCUMENT) == reason


@pytest.fixture
def warehouse_with_docs(tmp_path):
    db = tmp_path / "w.duckdb"
    ingest_files(
        [SAMPLE_DIR / "docs_stem.jsonl"],
        db_path=db,
        run_id="r",
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
        max_docs=4,
    )
    stages.run(db, "r", "heuristic_filter")
    stages.run(db, "r", "near_dedup")
    return db


@pytest.mark.e2e
def test_stages_in_order_with_batched_generation_and_per_stage_models(warehouse_with_docs):
    db = warehouse_with_docs
    with FakeLLM() as server:
        s = LLMSettings(
            base_url=server.base_url,
            model="big",
            stage_models={"classify": "small", "verify": "small"},
        )
        assert stages.run(db, "r", "llm_filter", s, call_layout="method")["kept"] == 4
        assert stages.run(db, "r", "classify", s, max_personas=2, call_layout="method")["kept"] == 4
        out = stages.run(db, "r", "generate", s, few_shot=1, call_layout="fused")
        assert out["kept"] == 8
        assert server.stats["by_stage"]["generate_pairs"] == 4  # one call per document
        stages.run(db, "r", "verify", s, call_layout="method")
        models = dict(query(db, "SELECT stage, any_value(model) FROM llm_calls GROUP BY ALL"))
    assert models == {
        "llm_filter": "big",
        "classify": "small",
        "generate": "big",
        "verify": "small",
    }
    assert query(db, "SELECT count(*), count(DISTINCT qa_id) FROM generate") == [(8, 8)]
    assert query(db, "SELECT count(*) FROM verify") == [(8,)]
    personas = query(db, "SELECT personas FROM classify")
    assert all(len(json.loads(p)) == 2 for (p,) in personas)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("layout", "stage"),
    # The fused layout asks for the domain in the filter's call: the document fails there.
    [("method", "classify"), ("fused", "llm_filter")],
)
def test_out_of_list_domain_is_a_recorded_failure_not_other(
    warehouse_with_docs, monkeypatch, layout, stage
):
    db = warehouse_with_docs
    import webscale_rl.scripted_llm.server as fake_module

    original = fake_module.answer_classify
    monkeypatch.setattr(
        fake_module, "answer_classify", lambda doc, n: {**original(doc, n), "domain": "Sports"}
    )
    with FakeLLM() as server:
        s = LLMSettings(base_url=server.base_url, structured_output="none", backoff_base_s=0.01)
        for name in ("llm_filter", "classify")[: 2 if stage == "classify" else 1]:
            out = stages.run(db, "r", name, s, call_layout=layout)
    assert out == {"stage": stage, "shard": ["00000000", None], "rows": 4, "failed": 4}
    assert query(db, f"SELECT DISTINCT status, reason FROM {stage}") == [
        ("failed", "domain_out_of_list")
    ]
    if stage == "classify":
        assert query(db, "SELECT DISTINCT domain FROM classify") == [(None,)]
    [(raw,)] = query(
        db,
        f"SELECT DISTINCT json_extract_string(raw, '$.domain') FROM llm_calls WHERE stage = '{stage}'",
    )
    assert raw == "Sports"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("personas", "kept", "dropped"),
    [
        (
            ["a teacher", "a teacher", "a curious journalist"],
            ["a teacher", "a curious journalist"],
            1,
        ),
        (["A Teacher.", "  a   teacher ", "a TEACHER!", "a nurse"], ["A Teacher.", "a nurse"], 2),
        (["   ", "...", "a teacher"], ["a teacher"], 2),
        (["?!?"], [], 1),
        (["ｅｌｅｖｅ", "eleve"], ["ｅｌｅｖｅ"], 1),  # full-width letters are the same word
        (["a\nmulti-line\tpersona"], ["a multi-line persona"], 0),
    ],
)
def test_personas_are_distinct_ignoring_case_spacing_and_punctuation(personas, kept, dropped):
    assert classify.distinct_personas(personas) == (kept, dropped)


@pytest.mark.e2e
def test_fused_reply_invalid_for_its_schema_falls_back_to_one_call_per_item(warehouse_with_docs):
    """A fused generate reply with one overlong answer, and a fused verify reply with a
    verdict missing, are invalid for their schemas: their documents fall back to the
    method's per-persona and per-pair calls instead of failing every pair they hold."""
    db = warehouse_with_docs

    def one_overlong_answer(default: dict, request: dict) -> dict:
        pairs = [dict(p) for p in default["pairs"]]
        pairs[0]["answer"] = "x" * 61  # the schema's maxLength is 60
        return {"pairs": pairs}

    def one_verdict_missing(default: dict, request: dict) -> dict:
        return {"verdicts": default["verdicts"][:-1]}

    with FakeLLM() as server:
        server.script("generate_pairs", one_overlong_answer)
        server.script("verify_pairs", one_verdict_missing)
        s = LLMSettings(base_url=server.base_url, backoff_base_s=0.01)
        for name in ("llm_filter", "classify", "generate", "verify"):
            stages.run(db, "r", name, s, max_personas=2, call_layout="fused")
        by_stage = dict(server.stats["by_stage"])
    # 4 documents, 2 personas each: every fused reply was invalid (tried twice, then the
    # fallback), each per-persona reply valid.
    assert by_stage["generate_pairs"] == 4 * 2 and by_stage["generate"] == 8
    assert query(db, "SELECT status, count(*) FROM generate GROUP BY ALL") == [("kept", 8)]
    assert query(
        db,
        "SELECT DISTINCT c.prompt_id FROM generate g JOIN llm_calls c USING (request_hash)",
    ) == [("generate.v2",)]
    assert query(
        db,
        "SELECT prompt_id, status, error_kind, count(*) FROM llm_calls "
        "WHERE prompt_id LIKE '%_pairs.v_' GROUP BY ALL ORDER BY ALL",
    ) == [
        ("generate_pairs.v2", "failed", "schema_mismatch", 4),
        (
            "verify_pairs.v1",
            "failed",
            "schema_mismatch",
            query(db, "SELECT count(DISTINCT doc_id) FROM verify WHERE rationale <> 'rule check'")[
                0
            ][0],
        ),
    ]
    judged = query(
        db,
        "SELECT v.status, c.prompt_id FROM verify v JOIN llm_calls c USING (request_hash)",
    )
    assert judged and {p for _, p in judged} == {"verify.v1"}
    assert {st for st, _ in judged} <= {"kept", "rejected"}
