"""Two pipeline runs on one warehouse at the same time.

Airflow's max_active_runs=1 serialises the runs one scheduler starts; it cannot see a run
started by a second deployment or by `airflow dags test` beside it. Here two separate
`airflow dags test` processes (each with its own Airflow metadata DB, as two deployments
would have) start together on the same data dir: the warehouse lease makes the second wait
for the first, which does all the work; the second finds nothing left to do. Nothing is
processed or paid for twice and every table keeps one row per key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE_DIR
from support.db import copy_airflow_db, query
from webscale_rl import lease
from webscale_rl.scripted_llm import FakeLLM

pytestmark = pytest.mark.e2e

# 18 documents, in the default fused layout: 18 filter+classify calls (classify reads them
# from the ledger), 18 generate calls, 17 verify calls (one document's pairs all fail the
# rule checks) and 4 policy samples for each of the 37 pairs decontamination kept
# (learnability) = 201 LLM calls.
CORPUS = "sample/docs_stem.jsonl"
CALLS = 18 + 18 + 17 + 4 * 37


def start(name: str, tmp_path: Path, env: dict) -> subprocess.Popen:
    """`airflow dags test` with its own copy of the migrated metadata DB."""
    meta = copy_airflow_db(
        Path(os.environ["AIRFLOW_HOME"]) / "airflow.db", tmp_path / f"airflow-{name}.db"
    )
    env = dict(env, AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{meta}")
    # Output to a file, not a pipe: a run blocked on a full pipe would hold the lease forever.
    with open(tmp_path / f"{name}.log", "w") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).with_name("airflow")),
                "dags",
                "test",
                "webscale_rl",
                "-c",
                json.dumps({"corpus": CORPUS, "run_label": name}),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_two_runs_at_once_do_the_work_once(tmp_path):
    data = tmp_path / "data"
    (data / "sample").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", data / "sample")
    with FakeLLM(latency_s=0.02) as server:
        env = dict(
            os.environ,
            PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            WEBSCALE_RL_DATA_DIR=str(data),
            AIRFLOW_CONN_LLM_DEFAULT=json.dumps(server.connection(max_concurrency=8)),
        )
        procs = {name: start(name, tmp_path, env) for name in ("first", "second")}
        for proc in procs.values():
            proc.wait(timeout=600)
        logs = {name: (tmp_path / f"{name}.log").read_text() for name in procs}
        for name, proc in procs.items():
            assert proc.returncode == 0, logs[name][-3000:]
        # Every call was paid for once, by whichever run did the work.
        assert server.stats["completions_ok"] == CALLS
        assert server.repeated_successes() == 0

    runs = {
        label: (json.loads(counts), started, ended)
        for label, counts, started, ended in query(
            data,
            "SELECT run_label, counts, started_at, ended_at FROM runs WHERE status = 'success'",
        )
    }
    assert set(runs) == {"first", "second"}
    worker, idle = sorted(runs, key=lambda label: -runs[label][0]["work_set"])
    # They overlapped in time, and the one that waited found every document done.
    assert runs[idle][1] < runs[worker][2]
    assert "waiting for run" in logs[idle]
    assert runs[worker][0]["work_set"] == 18 and runs[idle][0]["work_set"] == 0
    assert (
        runs[idle][0]["ingest"]["already_ingested"] == 18
        and runs[idle][0]["ingest"]["resumed_pending"] == 0
    )
    assert runs[idle][0]["llm_calls"] == {}
    for counts, _, _ in runs.values():
        assert counts["conservation"]["violations"] == 0
    # One row per key everywhere, one outcome per document, the lease released.
    assert query(data, "SELECT count(*), count(DISTINCT doc_id) FROM documents") == [(18, 18)]
    assert query(data, "SELECT count(*), count(DISTINCT doc_id) FROM doc_outcomes") == [(18, 18)]
    assert query(data, "SELECT count(*), count(DISTINCT request_hash) FROM llm_calls") == [
        (CALLS, CALLS)
    ]
    assert query(data, "SELECT count(DISTINCT run_id) FROM run_docs") == [(1,)]
    assert not lease.lease_path(data / "warehouse.duckdb").exists()
