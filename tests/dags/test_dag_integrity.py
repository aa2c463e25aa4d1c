"""DAG integrity: the DAG folder imports cleanly, and each DAG follows the project's rules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from webscale_rl.stages import registry

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS_DIR))


@pytest.mark.unit
def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.unit
def test_webscale_rl_is_declared_as_agreed(dagbag):
    dag = dagbag.dags["webscale_rl"]
    assert [a.name for a in dag.schedule] == ["webscale_rl_new_documents"]  # data-aware, or manual
    assert "webscale-rl" in dag.tags
    assert dag.doc_md and "heuristic filter" in dag.doc_md
    assert dag.max_active_runs == 1
    assert {"corpus", "max_docs", "run_label"} <= set(dag.params.keys())
    assert dag.params["corpus"] == "sample"
    for t in dag.tasks:
        assert t.retries >= 1, f"{t.task_id} has no retries"
    ids = {t.task_id for t in dag.tasks}
    stages = {task for name in registry.names() for task in (name, f"gate_{name}")}
    assert {
        "start_run",
        "ingest",
        "gate_ingest",
        "plan_shards",
        *stages,
        "gate_dataset",
        "check_conservation",
        "export",
        "dataset_card",
        "finalize_run",
    } <= ids


@pytest.mark.unit
def test_every_stage_is_followed_by_its_gate_and_the_next_stage_waits_for_it(dagbag):
    dag = dagbag.dags["webscale_rl"]
    chain = ["ingest", *registry.names()]
    for stage, next_stage in zip(chain, chain[1:] + ["gate_dataset"], strict=True):
        gate = f"gate_{stage}"
        assert gate in dag.get_task(stage).downstream_task_ids, f"{stage} is not followed by {gate}"
        assert gate in dag.get_task(next_stage).get_flat_relative_ids(upstream=True), (
            f"{next_stage} may start before {gate}"
        )
    # The conservation check sits between the last gate and the export: a run that does not
    # add up exports nothing (and fires no Asset event).
    assert dag.get_task("check_conservation").upstream_task_ids == {"start_run", "gate_dataset"}
    assert dag.get_task("export").upstream_task_ids == {"start_run", "check_conservation"}
    assert {"export", "dataset_card", "check_conservation"} <= dag.get_task(
        "finalize_run"
    ).upstream_task_ids
    assert dag.get_task("export").outlets[0].name == "webscale_rl_export"


@pytest.mark.e2e
def test_warehouse_writers_can_be_routed_to_the_warehouse_host():
    env = dict(os.environ, WEBSCALE_RL_WAREHOUSE_QUEUE="warehouse")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json; from airflow.dag_processing.dagbag import DagBag; "
            "dag = DagBag(dag_folder=sys.argv[1]).dags['webscale_rl']; "
            "print(json.dumps({t.task_id: t.queue for t in dag.tasks}))",
            str(DAGS_DIR),
        ],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    queues = json.loads(out.stdout.strip().splitlines()[-1])
    # Run-level tasks and every gate write the warehouse; sharded stages only stage rows.
    run_level = [s.name for s in registry.stages() if not s.sharded]
    sharded = [s.name for s in registry.stages() if s.sharded]
    gates = [f"gate_{name}" for name in ("ingest", *registry.names(), "dataset")]
    assert run_level and sharded
    for task_id in (
        "start_run",
        "ingest",
        *gates,
        *run_level,
        "check_conservation",
        "export",
        "dataset_card",
        "finalize_run",
    ):
        assert queues[task_id] == "warehouse", task_id
    for task_id in sharded:
        assert queues[task_id] != "warehouse", task_id


@pytest.mark.unit
def test_llm_tasks_run_in_the_llm_pool(dagbag):
    dag = dagbag.dags["webscale_rl"]
    assert [s.name for s in registry.stages() if s.llm] == [
        "llm_filter",
        "classify",
        "generate",
        "verify",
        "learnability",
    ]
    for stage in registry.stages():
        assert dag.get_task(stage.name).pool == ("llm" if stage.llm else "default_pool")


@pytest.mark.e2e
def test_parsing_does_no_heavy_imports():
    """Parsing the DAG file must not import GX, DuckDB, pandas or datatrove (slow, and I/O)."""
    code = (
        "import sys, json, runpy; runpy.run_path(sys.argv[1]); "
        "print(json.dumps([m for m in ('great_expectations', 'duckdb', 'pandas', 'datatrove', 'webscale_rl.pipeline') if m in sys.modules]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(DAGS_DIR / "webscale_rl.py")],
        capture_output=True,
        text=True,
        check=True,
        env=dict(os.environ),
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


@pytest.mark.unit
def test_training_dag_fires_on_the_export_asset(dagbag):
    dag = dagbag.dags["webscale_rl_train"]
    producer = dagbag.dags["webscale_rl"].get_task("export").outlets[0]
    assert dag.schedule == [producer]  # data-aware: scheduled on the export Asset
    assert dag.max_active_runs == 1 and "training" in dag.tags and dag.doc_md
    assert dag.params.get_param("launcher").schema["enum"] == ["none", "verl", "trl-cpu"]
    chain = ["start", "gate_training_data", "split", "baseline_eval", "train", "evaluate_after"]
    for upstream, downstream in zip(chain, chain[1:], strict=False):
        assert upstream in dag.get_task(downstream).get_flat_relative_ids(upstream=True), (
            upstream,
            downstream,
        )
    assert dag.get_task("baseline_eval").pool == "llm"


@pytest.mark.unit
def test_ingestion_dag_is_scheduled_and_announces_new_documents(dagbag):
    dag = dagbag.dags["webscale_rl_ingest"]
    assert dag.schedule == "@daily" and dag.max_active_runs == 1 and dag.doc_md
    publish = dag.get_task("publish")
    assert (
        publish.outlets[0] == dagbag.dags["webscale_rl"].schedule[0]
    )  # the processing DAG's trigger
    assert all(t.retries >= 1 for t in dag.tasks)
