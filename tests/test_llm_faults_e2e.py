"""The whole DAG under injected LLM-server faults: transient faults change nothing in the
result, a permanent fault fails only the documents it hits, a dead server stops the run
at once with a message naming its URL."""

from __future__ import annotations

import json
import shutil
import time

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT, SAMPLE_DIR
from support.db import query
from support.fake_llm import FAULT_KINDS, FakeLLM

CORPUS = "sample/docs_stem.jsonl"  # 18 documents, ~130 LLM calls
TRANSIENT = [k for k in FAULT_KINDS if k != "http_400"]


@pytest.fixture(scope="module")
def dag():
    return DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]


def accepted(data_dir) -> list[tuple]:
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute("""SELECT g.qa_id, g.question, g.answer FROM verify v JOIN generate g USING (qa_id)
                              WHERE v.status = 'kept' ORDER BY g.qa_id""").fetchall()
    finally:
        con.close()


def fresh_data_dir(tmp_path, monkeypatch, name: str):
    data = tmp_path / name
    (data / "sample").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", data / "sample")
    monkeypatch.setenv("WEBSCALE_RL_DATA_DIR", str(data))
    return data


def use_server(monkeypatch, server: FakeLLM, timeout_s: float = 1.0) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_LLM_DEFAULT", json.dumps({
        "conn_type": "openai", "host": server.base_url, "password": "sk-test",
        "extra": {"model": "fake-model", "max_concurrency": 16, "backoff_base_s": 0.01,
                  "backoff_cap_s": 0.2, "timeout_s": timeout_s}}))


@pytest.fixture(scope="module")
def clean_run(dag, tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp, FakeLLM() as server:
        data = fresh_data_dir(tmp_path_factory.mktemp("clean"), mp, "data")
        use_server(mp, server)
        run = dag.test(run_conf={"corpus": CORPUS})
        assert str(run.state) == "success"
        result = accepted(data)
    assert len(result) > 30
    return result


@pytest.mark.parametrize("faults", [*({k: 0.05} for k in TRANSIENT), {k: 0.05 for k in TRANSIENT}],
                         ids=[*TRANSIENT, "all_together"])
def test_transient_faults_leave_the_accepted_set_unchanged(dag, clean_run, tmp_path, monkeypatch, faults):
    with FakeLLM(faults={**faults, "retry_after_s": 0.05, "timeout_sleep_s": 1.5}) as server:
        data = fresh_data_dir(tmp_path, monkeypatch, "data")
        use_server(monkeypatch, server)
        run = dag.test(run_conf={"corpus": CORPUS})
        assert str(run.state) == "success"
        assert sum(server.stats["faults"].values()) > 0, "no fault was injected"
        assert accepted(data) == clean_run
        assert query(data, "SELECT count(*) FROM llm_calls WHERE status <> 'success'") == [(0,)]
        assert query(data, "SELECT count(*), count(DISTINCT doc_id) FROM doc_outcomes") == [(18, 18)]


def test_permanent_fault_fails_only_the_documents_it_hits(dag, clean_run, tmp_path, monkeypatch):
    with FakeLLM(faults={"permanent": {"kind": "http_400", "match": "logtrim"}}) as server:
        data = fresh_data_dir(tmp_path, monkeypatch, "data")
        use_server(monkeypatch, server)
        run = dag.test(run_conf={"corpus": CORPUS})
        assert str(run.state) == "success"  # 1 of 18 failed: within the gate's 20 %
    failed = query(data, """SELECT d.source_id, o.last_stage, o.outcome, o.reason FROM doc_outcomes o
                            JOIN documents d USING (doc_id) WHERE o.outcome = 'failed'""")
    assert failed == [("sample-coding-04", "llm_filter", "failed", "llm_http_4xx")]
    [(error,)] = query(data, "SELECT error FROM llm_calls WHERE status = 'failed'")
    assert "HTTP 400" in error
    lost = {row for row in clean_run} - set(accepted(data))
    assert set(accepted(data)) <= set(clean_run) and lost
    assert query(data, "SELECT count(*) FROM doc_outcomes") == [(18,)]


def test_dead_server_stops_the_run_at_once_naming_the_url(dag, tmp_path, monkeypatch):
    server = FakeLLM().start()
    url = server.base_url
    server.stop()
    data = fresh_data_dir(tmp_path, monkeypatch, "data")
    use_server(monkeypatch, server)
    started = time.monotonic()
    run = dag.test(run_conf={"corpus": CORPUS})
    assert str(run.state) == "failed"
    assert time.monotonic() - started < 60
    stage, message = query(data, "SELECT failed_stage, message FROM runs")[0]
    assert stage == "llm_filter" and f"LLM server at {url}/models is not reachable" in message
    assert "llm_default" in message
    # Nothing was lost: every document is recorded, the filtered ones wait as pending.
    assert dict(query(data, "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL")) == {"pending": 18}
