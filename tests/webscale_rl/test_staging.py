"""Staged writes for shard workers on other hosts: shards write Parquet, never the
warehouse; the stage's gate commits them; results equal the direct path."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT, SAMPLE_DIR
from support import stages
from support.db import query
from webscale_rl import staging, warehouse
from webscale_rl.llm import LLMSettings
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages.ingest import ingest_files


def count(db, sql) -> int:
    return query(db, sql)[0][0]


@pytest.fixture
def staged(tmp_path, monkeypatch):
    monkeypatch.setenv(staging.ENV, str(tmp_path / "shared-staging"))
    return tmp_path / "shared-staging"


@pytest.mark.e2e
def test_shards_stage_parquet_and_the_commit_loads_it_once(tmp_path, staged):
    db = tmp_path / "w.duckdb"
    ingest_files(
        [SAMPLE_DIR / "docs_stem.jsonl"],
        db_path=db,
        run_id="r:1",
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    for lo, hi in (("00000000", "80000000"), ("80000000", None)):
        stages.run(db, "r:1", "heuristic_filter", shard={"lo": lo, "hi": hi})
    # a retried shard replaces its file
    stages.run(db, "r:1", "heuristic_filter", shard={"lo": "00000000", "hi": "80000000"})
    assert count(db, "SELECT count(*) FROM heuristic_filter") == 0, "a shard wrote the warehouse"
    files = sorted(
        p.name for p in (staged / "r_1" / "heuristic_filter" / "heuristic_filter").glob("*.parquet")
    )
    assert files == ["00000000.parquet", "80000000.parquet"]
    assert staging.commit(db, "r:1", "heuristic_filter") == {"heuristic_filter": 18}
    assert count(db, "SELECT count(DISTINCT doc_id) FROM heuristic_filter") == 18
    assert not (staged / "r_1" / "heuristic_filter").exists()
    assert (
        staging.commit(db, "r:1", "heuristic_filter") == {}
    )  # nothing left: a second commit is a no-op
    stages.run(db, "r:1", "near_dedup")  # one task on the warehouse host: writes directly

    with FakeLLM() as server:
        settings = LLMSettings(base_url=server.base_url)
        stages.run(db, "r:1", "llm_filter", settings)
        assert count(db, "SELECT count(*) FROM llm_calls") == 0
        sent = server.stats["requests"]
        stages.run(db, "r:1", "llm_filter", settings)  # retry: answered from staged ledger
        assert server.stats["requests"] == sent
    committed = staging.commit(db, "r:1", "llm_filter")
    assert committed == {"llm_calls": 18, "llm_filter": 18}
    assert count(db, "SELECT count(*) FROM llm_calls WHERE status = 'success'") == 18


@pytest.mark.e2e
def test_dag_with_staged_writes_gives_the_same_result_as_direct_writes(
    sample_data_dir, fake_llm, staged
):
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]
    run = dag.test(run_conf={"corpus": "sample", "shard_size": 20})
    assert str(run.state) == "success"
    db = sample_data_dir / "warehouse.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    try:
        outcomes = dict(
            con.execute("SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL").fetchall()
        )
        tokens = con.execute("SELECT sum(prompt_tokens) FROM llm_calls").fetchall()[0][0]
        counts = json.loads(con.execute("SELECT counts FROM runs").fetchall()[0][0])
    finally:
        con.close()
    assert outcomes == {"accepted": 58, "rejected": 18}  # as in the direct-write end-to-end test
    assert tokens == fake_llm.stats["prompt_tokens"]
    assert counts["export"]["pairs"] > 100
    assert not any(p.suffix == ".parquet" for p in staged.rglob("*")), (
        "staged files left uncommitted"
    )


@pytest.mark.unit
def test_a_shard_repeating_a_key_fails_at_once_naming_the_keys_and_writes_nothing(tmp_path):
    import pandas as pd

    db = tmp_path / "w.duckdb"
    with warehouse.write(db):
        pass
    frame = pd.DataFrame(
        {
            "qa_id": ["q1", "q2", "q1"],
            "doc_id": ["d"] * 3,
            "run_id": ["r"] * 3,
            "persona_idx": [0, 1, 2],
            "persona": ["a teacher", "a nurse", "a teacher"],
            "status": ["kept"] * 3,
        }
    )
    with pytest.raises(staging.ShardWriteError) as failed:
        staging.write_shard(db, "generate", frame, run_id="r", stage="generate", part="00000000")
    assert str(failed.value).startswith(
        "generate: the shard's rows repeat 1 qa_id(s), so none of them was written"
    )
    assert str(failed.value).endswith(": q1")
    assert count(db, "SELECT count(*) FROM generate") == 0


@pytest.mark.unit
def test_a_value_the_table_refuses_is_a_shard_write_error_too(tmp_path):
    import pandas as pd

    db = tmp_path / "w.duckdb"
    frame = pd.DataFrame(
        {"doc_id": ["d1"], "run_id": ["r"], "status": [None]}
    )  # status is NOT NULL
    with pytest.raises(staging.ShardWriteError) as failed:
        staging.write_shard(
            db, "llm_filter", frame, run_id="r", stage="llm_filter", part="00000000"
        )
    assert "llm_filter: the warehouse refused the shard's rows" in str(failed.value)
    assert str(failed.value).endswith("Keys in the shard: d1")
    assert count(db, "SELECT count(*) FROM llm_filter") == 0
