"""End to end: the webscale_rl DAG under real Airflow (dag.test) on the sample corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from support.db import query
from webscale_rl import diversity
from webscale_rl.answer_policy import AnswerPolicy
from webscale_rl.prompts import DOMAINS

pytestmark = pytest.mark.e2e

SAMPLE_DOCS = 76  # 74 JSONL records + 2 Parquet rows in data/sample


@pytest.fixture(scope="module")
def dag():
    return DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]


def states(dagrun) -> dict[str, str]:
    result: dict[str, str] = {}
    for ti in dagrun.get_task_instances():
        # A mapped task reports the worst state of its instances.
        state = str(ti.state)
        if result.get(ti.task_id) not in (None, "success") and state == "success":
            continue
        result[ti.task_id] = state
    return result


def check_dataset_card(data_dir: Path, export_dir: Path, run_id: str, accepted: int) -> None:
    """The card's funnel equals counts taken straight from the warehouse."""

    def kept(table: str, key: str = "doc_id") -> int:
        return query(
            data_dir,
            f"""SELECT count(DISTINCT s.{key}) FROM {table} s JOIN run_docs r USING (doc_id)
                                   WHERE r.run_id = ? AND s.status = 'kept'""",
            [run_id],
        )[0][0]

    card = json.loads((export_dir / "card.json").read_text())
    expected = [
        query(data_dir, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run_id])[0][0],
        kept("heuristic_filter"),
        kept("near_dedup"),
        kept("llm_filter"),
        kept("classify"),
        kept("generate", "qa_id"),
        kept("verify", "qa_id"),
        kept("decontaminate", "qa_id"),
        kept("learnability", "qa_id"),
        query(
            data_dir,
            """SELECT count(DISTINCT g.doc_id) FROM learnability x JOIN generate g USING (qa_id)
                           JOIN run_docs r ON r.doc_id = g.doc_id WHERE r.run_id = ? AND x.status = 'kept'""",
            [run_id],
        )[0][0],
    ]
    assert [step["count"] for step in card["funnel"]] == expected
    assert card["accepted_pairs"] == accepted == expected[-2]
    assert expected[:3] == [SAMPLE_DOCS, 61, 60]
    md = (export_dir / "card.md").read_text()
    for step in card["funnel"]:
        assert f"| {step['step']} | {step['unit']} | {step['count']} |" in md
    stages = {s["stage"]: s for s in card["stages"]}
    assert stages["near_dedup"]["reasons"][0]["reason"] == "near_duplicate"
    assert stages["decontaminate"]["reasons"][0]["examples"]  # two examples per reason (or fewer)
    calls = query(
        data_dir, "SELECT count(*), sum(prompt_tokens) FROM llm_calls WHERE run_id = ?", [run_id]
    )[0]
    assert sum(s["calls"] for s in card["ledger"]["stages"].values()) == calls[0]
    assert sum(s["prompt_tokens"] for s in card["ledger"]["stages"].values()) == calls[1]
    # The paper-scale projection: this run's tokens per accepted pair times 1.2 M pairs.
    total = card["ledger"]["total_tokens"]
    scale = card["ledger"]["paper_scale"]
    assert scale["tokens"] == round(total / accepted * 1_200_000)
    assert scale["gpu_hours"] == round(
        scale["tokens"] / scale["assumed_tokens_per_gpu_s"] / 3600, 1
    )
    assert f"{scale['gpu_hours']:,.1f} GPU-hours" in md
    assert (
        card["source"]["tokens"]
        == query(
            data_dir,
            """SELECT sum(n_tokens) FROM documents WHERE doc_id IN (
        SELECT doc_id FROM learnability WHERE status = 'kept')""",
        )[0][0]
    )
    assert sum(card["distributions"]["domains"].values()) == accepted
    html = (export_dir / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5
    # The learnability histogram: every pair decontamination kept, by passes out of 4.
    learn = card["learnability"]
    assert learn["samples"] == 4 and learn["measured"] == expected[-3]
    assert {int(k): v for k, v in learn["histogram"].items()} == dict(
        query(
            data_dir,
            """SELECT passes, count(*) FROM learnability s JOIN run_docs r USING (doc_id)
               WHERE r.run_id = ? GROUP BY ALL""",
            [run_id],
        )
    )
    assert learn["dropped"] == {"always_solved": learn["histogram"]["4"]}
    assert "## Learnability (the policy's pass rate)" in md and "| 4/4 |" in md
    # Diversity: recomputed here from the exported questions (the dataset itself), with the
    # near-duplicate share from decontaminate's rows.
    div = card["diversity"]
    exported = [json.loads(line) for line in (export_dir / "qa.jsonl").read_text().splitlines()]
    questions = [r["question"] for r in exported]
    assert div["pairs"] == accepted == len(questions)
    assert div["distinct_2"] == round(diversity.distinct_n(questions, 2), 4)
    collapsed, reached = query(
        data_dir,
        """SELECT count(*) FILTER (WHERE reason = 'duplicate_question'), count(*)
           FROM decontaminate c JOIN run_docs r USING (doc_id) WHERE r.run_id = ?""",
        [run_id],
    )[0]
    assert collapsed > 0 and div["duplicate_question_share"] == round(collapsed / reached, 4)
    assert sum(div["pairs_per_document_hist"].values()) == expected[-1]
    assert abs(sum(div["question_types"].values()) - 1) < 1e-3
    assert "## Diversity of the accepted pairs" in md and f"distinct-2 {div['distinct_2']}" in md
    generated = card["diversity_generated"]
    assert generated["pairs"] == expected[5]  # every pair generate kept, before verify
    assert generated["distinct_questions"] >= div["distinct_questions"]
    assert "## Diversity of every generated pair (before verify)" in md
    assert card["answer_policy"] == {
        "max_words": 5,
        "max_chars": 60,
        "text": AnswerPolicy(5).describe(),
    }
    assert "Answer-length policy (`max_answer_words`): at most 5 words and 60 characters" in md
    header = (export_dir / "audit.csv").open().readline()
    assert '"correct","leaked","self_contained"' in header


def test_sample_run_end_to_end_then_rerun_adds_nothing(dag, sample_data_dir, fake_llm):
    first = dag.test(run_conf={"corpus": "sample", "shard_size": 20, "run_label": "e2e"})
    assert str(first.state) == "success", states(first)
    docs = query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM documents")[0]
    assert docs == (SAMPLE_DOCS, SAMPLE_DOCS)
    # Exactly one outcome per document.
    assert (
        query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM doc_outcomes")[0]
        == docs
    )
    outcomes = dict(
        query(sample_data_dir, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL")
    )
    assert outcomes == {"accepted": 58, "rejected": 18}
    # One document's pairs were all solved by every policy sample: nothing left to learn.
    assert query(
        sample_data_dir,
        "SELECT last_stage, reason FROM doc_outcomes WHERE last_stage = 'learnability'"
        " AND outcome = 'rejected'",
    ) == [("learnability", "always_solved")]
    # 76 docs / shard_size 20 -> 4 mapped shard tasks, each document filtered exactly once.
    assert (
        query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM heuristic_filter")[0]
        == docs
    )
    run_row = query(sample_data_dir, "SELECT run_id, status, run_label, counts FROM runs")
    assert len(run_row) == 1 and run_row[0][1:3] == ("success", "e2e")
    counts = json.loads(run_row[0][3])
    assert counts["conservation"] == {
        "violations": 0,
        "rules": [],
        "files": 5,
        "work_set": SAMPLE_DOCS,
    }
    assert counts["work_set"] == SAMPLE_DOCS and counts["heuristic_filter"]["by_status"] == {
        "kept": 61,
        "rejected": 15,
    }
    assert counts["heuristic_filter"]["by_reason"]["exact_duplicate"] == 1
    # The planted 3 %-edited copy of sample-travel-01 is caught by MinHash and linked to it.
    assert query(
        sample_data_dir,
        """SELECT d.source_id, o.source_id, n.similarity >= 0.7 FROM near_dedup n
        JOIN documents d ON d.doc_id = n.doc_id JOIN documents o ON o.doc_id = n.duplicate_of
        WHERE n.status = 'rejected'""",
    ) == [("bad-neardup-01", "sample-travel-01", True)]
    assert (sample_data_dir / "data_docs" / "index.html").exists()

    # Accepted pairs: short, non-empty answers and one of the method's ten domains.
    accepted = query(
        sample_data_dir,
        """
        SELECT g.qa_id, g.question, g.answer, c.domain FROM learnability x JOIN generate g USING (qa_id)
        JOIN classify c ON c.doc_id = g.doc_id WHERE x.status = 'kept' ORDER BY g.qa_id""",
    )
    assert len(accepted) == counts["export"]["pairs"] > 100
    assert all(a.strip() and len(a.split()) <= 8 for _, _, a, _ in accepted)
    assert {d for *_, d in accepted} <= set(DOMAINS) and len({d for *_, d in accepted}) >= 5
    # Every generated pair is accepted or rejected with a reason.
    assert query(
        sample_data_dir,
        """SELECT count(*) FROM generate g LEFT JOIN verify v USING (qa_id)
        WHERE v.status IS NULL OR (v.status <> 'kept' AND v.reason IS NULL)""",
    ) == [(0,)]
    assert query(
        sample_data_dir,
        """SELECT count(*) FROM verify v LEFT JOIN decontaminate x USING (qa_id)
        WHERE v.status = 'kept' AND (x.status IS NULL OR (x.status <> 'kept' AND x.reason IS NULL))""",
    ) == [(0,)]
    # Persona questions that came out near-identical were collapsed onto one kept pair.
    dup = query(
        sample_data_dir,
        """SELECT x.qa_id, k.status, g1.question, g2.question FROM decontaminate x
        JOIN decontaminate k ON k.qa_id = x.duplicate_of JOIN generate g1 ON g1.qa_id = x.qa_id
        JOIN generate g2 ON g2.qa_id = x.duplicate_of WHERE x.reason = 'duplicate_question'""",
    )
    assert dup and all(status == "kept" for _, status, _, _ in dup)
    assert len({q for _, q, _, _ in accepted}) == len(accepted)

    # The export matches the accepted rows.
    export_dir = Path(counts["export"]["path"])
    assert export_dir.parent == sample_data_dir / "exports"
    jsonl = [json.loads(line) for line in (export_dir / "qa.jsonl").open()]
    assert [r["qa_id"] for r in jsonl] == [q for q, *_ in accepted]
    check_dataset_card(sample_data_dir, export_dir, first.run_id, len(accepted))
    train = pq.read_table(export_dir / "train.parquet").to_pylist()
    val = pq.read_table(export_dir / "val.parquet").to_pylist()
    assert len(train) + len(val) == len(accepted) and val
    assert sorted(r["extra_info"]["qa_id"] for r in train + val) == [q for q, *_ in accepted]
    assert {r["reward_model"]["ground_truth"] for r in train + val} == {
        a for _, _, a, _ in accepted
    }
    assert train[0]["prompt"][0]["role"] == "user" and train[0]["ability"] in DOMAINS
    # The exported pass rates are the warehouse's, in the JSONL and in verl's extra_info.
    rates = dict(query(sample_data_dir, "SELECT qa_id, pass_rate FROM learnability"))
    assert {r["qa_id"]: r["pass_rate"] for r in jsonl} == {q: rates[q] for q, *_ in accepted}
    assert {r["extra_info"]["qa_id"]: r["extra_info"]["pass_rate"] for r in train + val} == {
        q: rates[q] for q, *_ in accepted
    }
    assert {r["extra_info"]["pass_samples"] for r in train + val} == {4}
    assert max(rates[q] for q, *_ in accepted) < 1 and min(rates.values()) == 0

    # The ledger's tokens are what the server reported; nothing was paid twice.
    ledger_tokens = query(
        sample_data_dir, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM llm_calls"
    )[0]
    assert ledger_tokens == (fake_llm.stats["prompt_tokens"], fake_llm.stats["completion_tokens"])
    assert (
        query(sample_data_dir, "SELECT count(*) FROM llm_calls WHERE status = 'success'")[0][0]
        == fake_llm.stats["completions_ok"]
    )

    # The server's own account (the test server serves vLLM-style /metrics) agrees with the
    # ledger, and the card shows both side by side.
    server = counts["llm_server"]
    assert (
        server["version"] == "fake-vllm" and server["requests"] == fake_llm.stats["completions_ok"]
    )
    assert (server["prompt_tokens"], server["generation_tokens"]) == ledger_tokens
    assert 0 < server["prefix_cache_hit_rate"] < 1 and not server["server_restarted"]
    card_md = (export_dir / "card.md").read_text()
    assert "## LLM server" in card_md and "vLLM fake-vllm" in card_md
    assert f"| prompt tokens | {ledger_tokens[0]:,} | {ledger_tokens[0]:,} |" in card_md

    sent = fake_llm.stats["requests"]
    second = dag.test(run_conf={"corpus": "sample"})
    assert str(second.state) == "success", states(second)
    assert fake_llm.stats["requests"] == sent
    assert (
        query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM documents")[0] == docs
    )
    for table in ("heuristic_filter", "llm_filter", "classify", "doc_outcomes"):
        assert query(sample_data_dir, f"SELECT count(*) = count(DISTINCT doc_id) FROM {table}") == [
            (True,)
        ]
    counts2 = json.loads(
        query(sample_data_dir, "SELECT counts FROM runs WHERE run_id = ?", [second.run_id])[0][0]
    )
    assert (
        counts2["ingest"]["new_docs"] == 0 and counts2["ingest"]["already_ingested"] == SAMPLE_DOCS
    )
    assert counts2["work_set"] == 0
    assert counts2["llm_server"]["requests"] == 0  # nothing new: the server did nothing for it


def test_lost_stage_output_is_rebuilt_from_the_ledger_without_new_calls(
    dag, sample_data_dir, fake_llm
):
    """Resume: when stage rows are lost (a crash before they were written), the next run
    takes the unfinished documents on again and every LLM answer comes from the ledger."""
    assert str(dag.test(run_conf={"corpus": "sample/docs_stem.jsonl"}).state) == "success"
    before = query(sample_data_dir, "SELECT qa_id, status, reason FROM verify ORDER BY qa_id")
    sent = fake_llm.stats["requests"]
    con = duckdb.connect(str(sample_data_dir / "warehouse.duckdb"))
    for table in ("llm_filter", "classify", "generate", "verify"):
        con.execute(f"DELETE FROM {table}")
    con.close()
    assert dict(
        query(sample_data_dir, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL")
    ) == {"pending": 18}
    again = dag.test(run_conf={"corpus": "sample/docs_stem.jsonl"})
    assert str(again.state) == "success", states(again)
    counts = json.loads(
        query(sample_data_dir, "SELECT counts FROM runs WHERE run_id = ?", [again.run_id])[0][0]
    )
    assert counts["ingest"]["resumed_pending"] == 18
    assert fake_llm.stats["requests"] == sent and fake_llm.repeated_successes() == 0
    assert (
        query(sample_data_dir, "SELECT qa_id, status, reason FROM verify ORDER BY qa_id") == before
    )


def test_failed_gate_stops_the_next_stage(dag, sample_data_dir):
    run = dag.test(run_conf={"corpus": "sample", "min_heuristic_kept_rate": 0.99})
    assert str(run.state) == "failed"
    s = states(run)
    assert s["heuristic_filter"] == "success"
    assert s["gate_heuristic_filter"] == "failed"
    assert s["finalize_run"] == "upstream_failed"
    status, stage, message = query(
        sample_data_dir, "SELECT status, failed_stage, message FROM runs"
    )[0]
    assert (status, stage) == ("failed", "gate_heuristic_filter")
    assert "expect_column_max_to_be_between(column='kept_rate', min_value=0.99" in message


def test_ingest_gate_stops_the_filter_on_a_mostly_broken_corpus(dag, hostile_data_dir):
    # bad_text_values.jsonl: 1 good record out of 9; the gate allows at most 50 % errors.
    run = dag.test(run_conf={"corpus": "hostile/bad_text_values.jsonl"})
    s = states(run)
    assert (s["ingest"], s["gate_ingest"]) == ("success", "failed")
    assert s["heuristic_filter"] == "upstream_failed" and s["plan_shards"] == "upstream_failed"
    assert query(hostile_data_dir, "SELECT count(*) FROM heuristic_filter") == [(0,)]
    message = query(hostile_data_dir, "SELECT message FROM runs")[0][0]
    assert (
        "expect_column_max_to_be_between(column='error_rate', max_value=0.5): observed 0.8889"
        in message
    )


def test_one_deeply_nested_record_is_recorded_and_the_run_goes_on(dag, hostile_data_dir, fake_llm):
    # A good record, one whose meta nests 100,000 levels deep, another good record: json.loads
    # raised RecursionError, the task was retried into it and the run lost both good records.
    run = dag.test(run_conf={"corpus": "hostile/deeply_nested.jsonl"})
    s = states(run)
    assert (s["ingest"], s["gate_ingest"], s["heuristic_filter"]) == ("success",) * 3
    [ingest] = [ti for ti in run.get_task_instances() if ti.task_id == "ingest"]
    assert ingest.try_number == 1, "a bad record is data, not a fault to retry"
    assert query(hostile_data_dir, "SELECT source_id FROM documents ORDER BY source_line") == [
        ("ok-1",),
        ("ok-2",),
    ]
    assert query(hostile_data_dir, "SELECT line_no, reason FROM ingest_errors") == [
        (2, "too_deeply_nested")
    ]


def test_unusable_file_fails_ingest_with_the_fix(dag, hostile_data_dir):
    run = dag.test(run_conf={"corpus": "hostile/wrong_schema.parquet"})
    s = states(run)
    assert s["ingest"] == "failed" and s["gate_ingest"] == "upstream_failed"
    stage, message = query(hostile_data_dir, "SELECT failed_stage, message FROM runs")[0]
    assert stage == "ingest"
    assert "wrong_schema.parquet" in message and "needs a string column named 'text'" in message


def test_corpus_outside_the_data_dir_is_refused_before_anything_is_read(dag, sample_data_dir):
    run = dag.test(run_conf={"corpus": "../../etc/passwd"})
    s = states(run)
    assert s["start_run"] == "failed" and s["ingest"] == "upstream_failed"
    # Nothing read or ingested; the refusal is the warehouse's only row.
    [(status, stage, message)] = query(
        sample_data_dir, "SELECT status, failed_stage, message FROM runs"
    )
    assert (status, stage) == ("refused", "start_run") and "../../etc/passwd" in message
    assert query(sample_data_dir, "SELECT count(*) FROM documents") == [(0,)]
    assert query(sample_data_dir, "SELECT count(*) FROM ingest_errors") == [(0,)]


def test_airflow_cli_dags_test_runs_the_pipeline(sample_data_dir, fake_llm):
    """The standard CLI path users take outside the Makefile."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("airflow")),
            "dags",
            "test",
            "webscale_rl",
            "-c",
            json.dumps({"corpus": "sample/docs_stem.jsonl"}),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert query(sample_data_dir, "SELECT status FROM runs") == [("success",)]
    assert dict(
        query(sample_data_dir, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL")
    ) == {"accepted": 17, "rejected": 1}
    assert fake_llm.stats["requests"] > 0
