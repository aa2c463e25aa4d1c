"""End to end: the webscale_rl DAG under real Airflow (dag.test) on the sample corpus."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT

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


def query(data_dir: Path, sql: str, params=None) -> list[tuple]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def test_sample_run_then_rerun_adds_nothing(dag, sample_data_dir):
    first = dag.test(run_conf={"corpus": "sample", "shard_size": 20, "run_label": "e2e"})
    assert str(first.state) == "success", states(first)
    docs = query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM documents")[0]
    assert docs == (SAMPLE_DOCS, SAMPLE_DOCS)
    # Exactly one outcome per document.
    assert query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM doc_outcomes")[0] == docs
    outcomes = dict(query(sample_data_dir, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL"))
    assert outcomes == {"accepted": 61, "rejected": 15}
    # 76 docs / shard_size 20 -> 4 mapped shard tasks, each document filtered exactly once.
    assert query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM heuristic_filter")[0] == docs
    run_row = query(sample_data_dir, "SELECT run_id, status, run_label, counts FROM runs")
    assert len(run_row) == 1 and run_row[0][1:3] == ("success", "e2e")
    counts = json.loads(run_row[0][3])
    assert counts["work_set"] == SAMPLE_DOCS and counts["heuristic_filter"]["by_status"] == {"kept": 61, "rejected": 15}
    assert counts["heuristic_filter"]["by_reason"]["exact_duplicate"] == 1
    assert (sample_data_dir / "data_docs" / "index.html").exists()

    second = dag.test(run_conf={"corpus": "sample"})
    assert str(second.state) == "success", states(second)
    assert query(sample_data_dir, "SELECT count(*), count(DISTINCT doc_id) FROM documents")[0] == docs
    for table in ("heuristic_filter", "doc_outcomes"):
        assert query(sample_data_dir, f"SELECT count(*), count(DISTINCT doc_id) FROM {table}")[0] == docs
    counts2 = json.loads(query(sample_data_dir, "SELECT counts FROM runs WHERE run_id = ?", [second.run_id])[0][0])
    assert counts2["ingest"]["new_docs"] == 0 and counts2["ingest"]["already_ingested"] == SAMPLE_DOCS
    assert counts2["work_set"] == 0


def test_failed_gate_stops_the_next_stage(dag, sample_data_dir):
    run = dag.test(run_conf={"corpus": "sample", "min_heuristic_kept_rate": 0.99})
    assert str(run.state) == "failed"
    s = states(run)
    assert s["heuristic_filter"] == "success"
    assert s["gate_heuristic_filter"] == "failed"
    assert s["finalize_run"] == "upstream_failed"
    status, stage, message = query(sample_data_dir, "SELECT status, failed_stage, message FROM runs")[0]
    assert (status, stage) == ("failed", "gate_heuristic_filter")
    assert "expect_column_mean_to_be_between(column='is_kept', min_value=0.99" in message


def test_ingest_gate_stops_the_filter_on_a_mostly_broken_corpus(dag, hostile_data_dir):
    # bad_text_values.jsonl: 1 good record out of 9; the gate allows at most 50 % errors.
    run = dag.test(run_conf={"corpus": "hostile/bad_text_values.jsonl"})
    s = states(run)
    assert (s["ingest"], s["gate_ingest"]) == ("success", "failed")
    assert s["heuristic_filter"] == "upstream_failed" and s["plan_shards"] == "upstream_failed"
    assert query(hostile_data_dir, "SELECT count(*) FROM heuristic_filter") == [(0,)]
    message = query(hostile_data_dir, "SELECT message FROM runs")[0][0]
    assert "expect_column_values_to_be_in_set(column='status', mostly=0.5, value_set=['ingested'])" in message
    assert "8 of 9 rows violate it" in message


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
    assert not (sample_data_dir / "warehouse.duckdb").exists()


def test_airflow_cli_dags_test_runs_the_pipeline(sample_data_dir):
    """The standard CLI path users take outside the Makefile."""
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "dags", "test", "webscale_rl",
         "-c", json.dumps({"corpus": "sample/docs_stem.jsonl"})],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert query(sample_data_dir, "SELECT status FROM runs") == [("success",)]
    assert query(sample_data_dir, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL") == [("accepted", 18)]
