"""The learnability stage against the test server: k policy samples per pair scored by the
training reward, the pass band, failures recorded, a re-run that buys nothing, its gate."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import SAMPLE_DIR
from support import gx_check, stages
from support.db import query
from webscale_rl import warehouse
from webscale_rl.config import ConfigError
from webscale_rl.llm import LLMResult, LLMSettings
from webscale_rl.params import RunParams
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages import learnability
from webscale_rl.stages.export import ANSWER_INSTRUCTION
from webscale_rl.stages.ingest import ingest_files

RUN = "r"
K = 4


@pytest.mark.unit
@pytest.mark.parametrize(
    ("passes", "band", "reason"),
    [
        (4, "not_always_solved", "always_solved"),
        (3, "not_always_solved", None),
        (0, "not_always_solved", None),  # may be hard rather than wrong: kept, and counted
        (0, "sometimes_solved", "never_solved"),
        (4, "sometimes_solved", "always_solved"),
        (1, "sometimes_solved", None),
        (4, "all", None),
        (0, "all", None),
    ],
)
def test_band_reason(passes, band, reason):
    assert learnability.band_reason(passes, K, band) == reason


@pytest.mark.unit
def test_a_band_that_can_keep_nothing_is_refused():
    with pytest.raises(ConfigError, match="pass_samples >= 2"):
        RunParams.from_params({"pass_band": "sometimes_solved", "pass_samples": 1})


def _result(ok: bool, text: str | None = None, error_kind: str | None = None) -> LLMResult:
    return LLMResult(
        request=None,
        status="success" if ok else "failed",
        parsed={"text": text} if ok else None,
        error_kind=error_kind,
    )


@pytest.mark.unit
@pytest.mark.parametrize(
    ("result", "score"),
    [
        (_result(True, "Thinking.\nAnswer: 1,864 metres"), 1.0),
        (_result(True, "Answer: 1864 feet"), 0.0),
        (_result(True, "no final answer given here at all, only a long ramble of words"), 0.0),
        (_result(True, ""), 0.0),  # an empty or refused sample: no answer
        (_result(True, "Let me think. The length is 1,864 metres, so Ans"), 0.0),  # cut short
        (_result(False, error_kind="timeout"), None),  # not measured: the pair fails
        (_result(False, error_kind="http_5xx"), None),
    ],
)
def test_sample_score(result, score):
    assert learnability.sample_score(result, "1864 m") == score


@pytest.fixture
def decontaminated(tmp_path):
    """A warehouse whose pairs went through every stage before learnability."""
    db = tmp_path / "w.duckdb"
    ingest_files(
        [SAMPLE_DIR / "docs_stem.jsonl"],
        db_path=db,
        run_id=RUN,
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
        max_docs=6,
    )
    stages.run(db, RUN, "heuristic_filter")
    stages.run(db, RUN, "near_dedup")
    with FakeLLM() as server:
        s = LLMSettings(base_url=server.base_url, model="fake-model")
        for name in ("llm_filter", "classify", "generate", "verify"):
            stages.run(db, RUN, name, s, max_personas=2)
    stages.run(db, RUN, "decontaminate")
    pairs = query(
        db,
        """SELECT g.question, g.answer FROM generate g JOIN decontaminate d USING (qa_id)
           WHERE d.status = 'kept' ORDER BY g.qa_id""",
    )
    assert len(pairs) >= 5, pairs
    return db, dict(pairs)


def policy(truths: dict[str, str], base_seed: int = 1234):
    """A scripted policy: the i-th question (in qa_id order) is solved by the samples whose
    seed offset is below i % (K + 1), so the pairs cover 0/K .. K/K."""
    targets = {q: i % (K + 1) for i, q in enumerate(truths)}

    def reply(default, request):
        question = request["messages"][-1]["content"].removesuffix(f"\n\n{ANSWER_INSTRUCTION}")
        solved = request["seed"] - base_seed < targets[question]
        return f"Let me think.\nAnswer: {truths[question] if solved else 'something else'}"

    return reply, targets


@pytest.mark.e2e
def test_pass_rates_are_measured_banded_and_not_bought_twice(decontaminated):
    db, truths = decontaminated
    reply, targets = policy(truths)
    with FakeLLM() as server:
        server.script("answer", reply)
        s = LLMSettings(base_url=server.base_url, model="fake-model", stage_models={})
        s = s.with_overrides({"learnability": "policy-model"})
        out = stages.run(db, RUN, "learnability", s)
        assert server.stats["completions_ok"] == K * len(truths)
        sent = server.stats["requests"]
        # Every sample is its own call (one seed each), with the training prompt.
        prompts = {r["messages"][-1]["content"] for r in server.requests_log}
        assert prompts == {f"{q}\n\n{ANSWER_INSTRUCTION}" for q in truths}
        assert {r["seed"] for r in server.requests_log} == {1234, 1235, 1236, 1237}
        assert {r["model"] for r in server.requests_log} == {"policy-model"}
        again = stages.run(db, RUN, "learnability", s)
        assert server.stats["requests"] == sent  # the ledger answers the re-run
    assert again == out
    rows = query(
        db,
        """SELECT g.question, l.passes, l.samples, l.pass_rate, l.status, l.reason, l.model
           FROM learnability l JOIN generate g USING (qa_id)""",
    )
    assert len(rows) == len(truths)
    for question, passes, samples, rate, status, reason, model in rows:
        assert (passes, samples, rate) == (targets[question], K, targets[question] / K)
        assert model == "policy-model"
        assert (status, reason) == (
            ("rejected", "always_solved") if passes == K else ("kept", None)
        )
    with warehouse.read(db) as con:
        frame, expectations = stages.gate_inputs(con, RUN, "learnability")
    assert gx_check.failures(frame, expectations) == []
    # The accepted pairs (what export writes) carry the pass rate of the kept ones.
    accepted = query(db, "SELECT pass_rate, pass_samples FROM accepted_pairs")
    assert sorted(accepted) == sorted((t / K, K) for t in targets.values() if t < K)


@pytest.mark.e2e
def test_the_gate_catches_a_kept_pair_outside_the_band(decontaminated):
    db, truths = decontaminated
    reply, _ = policy(truths)
    with FakeLLM() as server:
        server.script("answer", reply)
        stages.run(db, RUN, "learnability", LLMSettings(base_url=server.base_url, model="m"))
    with warehouse.write(db) as con:
        con.execute("UPDATE learnability SET status = 'kept', reason = NULL WHERE passes = 4")
    with warehouse.read(db) as con:
        frame, expectations = stages.gate_inputs(con, RUN, "learnability")
    failures = gx_check.failures(frame, expectations)
    assert len(failures) == 1 and "passes" in failures[0], failures


def _measured(db) -> dict[str, tuple]:
    return {
        q: (passes, status, reason)
        for q, passes, status, reason in query(
            db,
            """SELECT g.question, l.passes, l.status, l.reason
               FROM learnability l JOIN generate g USING (qa_id)""",
        )
    }


def _marker(question: str, others) -> str:
    """A piece of `question` in no other question, that the server's fault matching finds
    in the JSON request as it is (nothing escaped)."""
    for start in range(len(question) - 30):
        piece = question[start : start + 30]
        if json.dumps(piece)[1:-1] == piece and not any(
            piece in q for q in others if q != question
        ):
            return piece
    raise AssertionError(f"no unique piece in {question!r}")


@pytest.mark.e2e
def test_an_answer_cut_at_max_tokens_is_a_sample_that_scored_zero(decontaminated):
    db, truths = decontaminated
    questions = list(truths)
    reply, targets = policy(truths)
    assert targets[questions[4]] == K  # solved by every sample, when it gets to finish
    with FakeLLM() as server:
        server.script("answer", reply)
        server.set_faults(
            {"permanent": {"kind": "truncated", "match": _marker(questions[4], questions)}}
        )
        stages.run(db, RUN, "learnability", LLMSettings(base_url=server.base_url, model="m"))
        # Scored as it came back: not retried with a new seed (that would be another sample).
        assert server.stats["requests"] == K * len(truths)
        assert server.stats["faults"] == {"truncated": K}
    # A sample, not a failed call: in the ledger as a success, never bought again.
    assert query(db, "SELECT DISTINCT status FROM llm_calls WHERE stage = 'learnability'") == [
        ("success",)
    ]
    rows = _measured(db)
    assert rows[questions[4]] == (0, "kept", None)
    assert rows[questions[3]] == (3, "kept", None)


@pytest.mark.e2e
def test_a_sample_whose_call_failed_fails_its_pair_and_only_it_is_sent_again(decontaminated):
    db, truths = decontaminated
    questions = list(truths)
    reply, _ = policy(truths)
    with FakeLLM() as server:
        server.script("answer", reply)
        server.set_faults(
            {"permanent": {"kind": "http_503", "match": _marker(questions[3], questions)}}
        )
        s = LLMSettings(base_url=server.base_url, model="m", max_retries=0)
        out = stages.run(db, RUN, "learnability", s)
        assert out["failed"] == 1
        assert _measured(db)[questions[3]] == (None, "failed", "llm_http_5xx")
        server.set_faults({})
        sent = server.stats["requests"]
        stages.run(db, RUN, "learnability", s)  # the task's retry
        assert server.stats["requests"] - sent == K  # the failed pair's samples, nothing else
    assert _measured(db)[questions[3]] == (3, "kept", None)


@pytest.mark.e2e
def test_zero_samples_keeps_every_pair_unmeasured(decontaminated):
    db, truths = decontaminated
    with FakeLLM() as server:
        out = stages.run(
            db,
            RUN,
            "learnability",
            LLMSettings(base_url=server.base_url, model="m"),
            pass_samples=0,
        )
        assert server.stats["requests"] == 0
    assert out["kept"] == len(truths)
    assert query(db, "SELECT DISTINCT samples, passes, pass_rate FROM learnability") == [
        (0, None, None)
    ]
    with warehouse.read(db) as con:
        frame, expectations = stages.gate_inputs(con, RUN, "learnability", pass_samples=0)
    assert gx_check.failures(frame, expectations) == []
    assert query(db, "SELECT DISTINCT pass_rate, pass_samples FROM accepted_pairs") == [
        (None, None)
    ]


@pytest.mark.e2e
def test_a_warehouse_from_before_the_stage_keeps_its_accepted_pairs(decontaminated):
    db, truths = decontaminated
    with warehouse.write(db) as con:
        con.execute("DROP TABLE learnability")
    with warehouse.write(db):  # the next writer creates the table and backfills it once
        pass
    assert query(db, "SELECT count(*) FROM accepted_pairs") == [(len(truths),)]
    assert query(db, "SELECT DISTINCT status, samples FROM learnability") == [("kept", 0)]
    assert query(db, "SELECT count(*) FROM doc_outcomes WHERE outcome = 'pending'") == [(0,)]
