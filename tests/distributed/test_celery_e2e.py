"""The pipeline on a real CeleryExecutor deployment (`make test-distributed`): PostgreSQL,
Redis, the scheduler, the api-server, the dag-processor and two Celery workers acting as
two hosts that share only the data dir and the staging folder (tests/support/celery_cluster).

- The sample corpus runs through it; task instances run on both workers (hostnames from the
  metadata DB), and the warehouse equals a single-process `airflow dags test` run of the same
  corpus against the same deterministic server, with conservation clean.
- One worker is killed with SIGKILL (its whole process group: the host is gone) while it runs
  an LLM stage's shard: the run still completes on the other worker through Airflow's retry,
  the dead worker's journal of answered calls is adopted across "hosts" (by lease, not pid),
  and no answer that reached the journal is bought again (counted per request hash, which
  the client sends with each call).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SAMPLE_DIR
from support.celery_cluster import CeleryCluster, missing_parts
from support.db import query, snapshot
from webscale_rl.scripted_llm import FakeLLM

pytestmark = [
    pytest.mark.distributed,
    pytest.mark.skipif(
        bool(missing_parts()),
        reason=f"needs {', '.join(missing_parts())}: run `make test-distributed`",
    ),
]

CORPUS = "sample/docs_stem.jsonl"
# Small shards so both workers get LLM shards; the method's layout sends more calls per
# document, so a shard is still mid-stage when the kill comes.
CONF = {"corpus": CORPUS, "shard_size": 4, "call_layout": "method", "run_label": "distributed"}
# A killed worker's task is failed by the scheduler once it misses heartbeats for this long,
# then retried after the DAG's retry_delay (20 s); the journal's lease must lapse before that.
HEARTBEAT_TIMEOUT_S = 30
# The LLM stages' mapped shard tasks (named after their stage), which any worker may run.
LLM_SHARDS = {"llm_filter", "classify", "generate", "verify"}
LEASE_TTL_S = 15


def _data_dir(root: Path) -> Path:
    (root / "sample").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", root / "sample")
    return root


def _connection(server: FakeLLM) -> dict:
    return server.connection(timeout_s=5.0, max_concurrency=2)


@pytest.fixture(scope="module")
def single_process(tmp_path_factory):
    """The reference: the same corpus in one `airflow dags test` process, shards writing the
    warehouse directly, against its own deterministic server."""
    root = tmp_path_factory.mktemp("single")
    data = _data_dir(root / "data")
    with FakeLLM() as server:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("WEBSCALE_RL")},
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "WEBSCALE_RL_DATA_DIR": str(data),
            "AIRFLOW_CONN_LLM_DEFAULT": json.dumps(_connection(server)),
        }
        done = subprocess.run(
            [str(Path(sys.executable).with_name("airflow")), "dags", "test", "webscale_rl"]
            + ["-c", json.dumps(CONF)],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        calls = server.stats["completions_ok"]
    return {"tables": snapshot(data), "calls": calls}


def _cluster(tmp_path: Path, server: FakeLLM) -> CeleryCluster:
    return CeleryCluster(
        tmp_path / "cluster",
        data_dir=_data_dir(tmp_path / "data"),
        staging_dir=tmp_path / "staging",
        llm_conn=_connection(server),
        extra_env={
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
            "WEBSCALE_RL_LEASE_TTL_S": str(LEASE_TTL_S),
        },
    )


def _report(cluster: CeleryCluster, run_id: str) -> str:
    rows = sorted(
        cluster.task_instances("webscale_rl", run_id),
        key=lambda r: (r["task_id"], r["map_index"], r["try_number"]),
    )
    return "\n".join(
        f"  {r['task_id']}[{r['map_index']}] try {r['try_number']}: {r['state']} on "
        f"{r['hostname']} (queue {r['queue']})"
        for r in rows
    )


def test_a_run_on_two_celery_workers_equals_the_single_process_run(tmp_path, single_process):
    with FakeLLM() as server, _cluster(tmp_path, server) as cluster:
        run_id = cluster.trigger("webscale_rl", CONF, "distributed-1")
        state = cluster.wait_for_run("webscale_rl", run_id)
        report = _report(cluster, run_id)
        print(f"task instances of {run_id}:\n{report}")
        assert state == "success", report + cluster.log_tail("worker-host-a")
        tis = cluster.task_instances("webscale_rl", run_id)
        hosts = {ti["hostname"] for ti in tis}
        assert hosts == {"host-a", "host-b"}, report
        # Everything that writes the warehouse ran on the warehouse host's queue.
        assert {ti["hostname"] for ti in tis if ti["queue"] == "warehouse"} == {"host-a"}
        assert any(ti["hostname"] == "host-b" and ti["task_id"] in LLM_SHARDS for ti in tis), report
        data = tmp_path / "data"
        assert snapshot(data) == single_process["tables"]
        assert server.stats["completions_ok"] == single_process["calls"]
        assert server.repeated_successes() == 0
        assert query(data, "SELECT count(*) FROM documents") == query(
            data, "SELECT count(*) FROM doc_outcomes"
        )
        assert query(data, "SELECT status FROM runs") == [("success",)]


def test_a_worker_killed_mid_llm_stage_the_run_completes_on_the_other(tmp_path, single_process):
    # A second per call: an LLM shard takes seconds, so the kill lands in the middle of one.
    with FakeLLM(latency_s=1.0) as server, _cluster(tmp_path, server) as cluster:
        run_id = cluster.trigger("webscale_rl", CONF, "distributed-kill")
        journals = tmp_path / "staging" / "warehouse.llm_journal"

        def host_b_mid_llm_shard() -> bool:
            running = [
                ti
                for ti in cluster.task_instances("webscale_rl", run_id)
                if ti["state"] == "running"
                and ti["hostname"] == "host-b"
                and ti["task_id"] in LLM_SHARDS
            ]
            answered = [
                p for p in journals.glob("host-b--*.jsonl") if p.read_text(encoding="utf-8")
            ]
            return bool(running and answered)

        deadline = time.monotonic() + 900
        while not host_b_mid_llm_shard():
            assert cluster.run_state("webscale_rl", run_id) not in ("success", "failed"), (
                "the run ended before host-b ran an LLM shard:\n" + _report(cluster, run_id)
            )
            assert time.monotonic() < deadline, _report(cluster, run_id)
            time.sleep(0.2)
        cluster.kill_worker("host-b")
        killed_at_calls = server.stats["completions_ok"]
        # What host-b's journals hold now is fixed: its writers are dead, and no client adopts
        # them before their lease lapses (LEASE_TTL_S without a heartbeat).
        journaled = {
            json.loads(line)["request_hash"]
            for p in journals.glob("host-b--*.jsonl")
            for line in p.read_text(encoding="utf-8").splitlines()
            if line.endswith("}")
        }

        state = cluster.wait_for_run("webscale_rl", run_id)
        report = _report(cluster, run_id)
        print(f"task instances of {run_id} (host-b killed):\n{report}")
        assert state == "success", report
        tis = cluster.task_instances("webscale_rl", run_id)
        # The shard host-b was running failed with it and was retried on host-a.
        lost = {
            (ti["task_id"], ti["map_index"])
            for ti in tis
            if ti["hostname"] == "host-b" and ti["state"] != "success"
        }
        assert lost, report
        for key in lost:
            assert any(
                (ti["task_id"], ti["map_index"]) == key
                and ti["hostname"] == "host-a"
                and ti["state"] == "success"
                for ti in tis
            ), report
        # Its journal was adopted (on host-a, which cannot ask host-b's kernel about its pid).
        assert not list(journals.glob("host-b--*.jsonl"))
        assert journaled
        data = tmp_path / "data"
        ledger = dict(query(data, "SELECT request_hash, status FROM llm_calls"))
        assert all(ledger.get(h) == "success" for h in journaled)
        # Every valid reply the server gave, by the request hash the client sends with each
        # call (the ledger's key): a journaled answer is never bought again; what is bought
        # twice is only what host-b had in flight when it died (answered into a dead socket:
        # at most 2 shard tasks, its worker concurrency, x 2 calls each, max_concurrency).
        bought = server.successes_by_hash()
        twice = {h for h, n in bought.items() if n > 1}
        print(
            f"answered by the kill {killed_at_calls} (both hosts), journaled by host-b "
            f"{len(journaled)}, answered in all {server.stats['completions_ok']} (single "
            f"process: {single_process['calls']}), bought twice {len(twice)}, of them "
            f"journaled {len(twice & journaled)}"
        )
        assert None not in bought  # every call named its hash
        assert journaled <= set(bought)
        assert not twice & journaled
        assert all(bought[h] == 2 for h in twice)
        assert len(twice) == server.repeated_successes() <= 2 * 2
        assert (
            server.stats["completions_ok"] == single_process["calls"] + server.repeated_successes()
        )
        assert query(data, "SELECT count(*) FROM documents") == query(
            data, "SELECT count(*) FROM doc_outcomes"
        )
        assert snapshot(data) == single_process["tables"]
        assert query(data, "SELECT status FROM runs") == [("success",)]
