"""webscale_rl_train under real Airflow (dag.test): it takes the export the pipeline's Asset
event names, gates the dataset, measures the serving model on the val split through the
LLM client (the test server answering), and launches verl (the command, no cluster here)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from support.db import query

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dags():
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    return bag.dags["webscale_rl"], bag.dags["webscale_rl_train"]


def test_training_dag_on_the_export(dags, sample_data_dir, fake_llm):
    pipeline, train_dag = dags
    run = pipeline.test(run_conf={"corpus": "sample/docs_stem.jsonl"})
    assert str(run.state) == "success"
    export_dir = Path(
        json.loads(query(sample_data_dir, "SELECT counts FROM runs")[0][0])["export"]["path"]
    )

    # The export task's Asset event names the export folder (what triggers the training DAG).
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    with create_session() as session:
        extras = [e.extra for e in session.query(AssetEvent).order_by(AssetEvent.id).all()]
    assert extras[-1]["path"] == str(export_dir) and extras[-1]["pairs"] > 0

    # The test server knows the answer to every other exported question (and plays no
    # policy for the others: they get "unknown").
    pairs = sorted(
        pq.read_table(export_dir / "train.parquet").to_pylist()
        + pq.read_table(export_dir / "val.parquet").to_pylist(),
        key=lambda r: r["extra_info"]["qa_id"],
    )
    knows = {r["extra_info"]["qa_id"] for r in pairs[::2]}
    fake_llm.answers = {
        r["extra_info"]["question"]: r["reward_model"]["ground_truth"]
        if r["extra_info"]["qa_id"] in knows
        else "unknown"
        for r in pairs
    }

    trained = train_dag.test(run_conf={"launcher": "verl", "export": export_dir.name})
    assert str(trained.state) == "success"
    status, launcher, metrics = query(
        sample_data_dir, "SELECT status, launcher, metrics FROM training_runs"
    )[0]
    assert (status, launcher) == ("success", "verl")
    assert "verl.trainer.main_ppo" in json.loads(metrics)["trained"]["command"]
    # the sample's export is far below one reference batch: the run says it would train 0 steps
    [warning] = json.loads(metrics)["trained"]["warnings"]
    assert "fewer than data.train_batch_size 256" in warning

    evals = query(
        sample_data_dir,
        "SELECT qa_id, score, completion FROM training_evals WHERE phase = 'baseline'",
    )
    assert evals and all(score == (1.0 if qa in knows else 0.0) for qa, score, _ in evals)
    assert all(c.endswith("Answer: unknown") for qa, _, c in evals if qa not in knows)
    folder = next((sample_data_dir / "training").iterdir())
    val_ids = {
        r["extra_info"]["qa_id"] for r in pq.read_table(folder / "data" / "val.parquet").to_pylist()
    }
    assert {qa for qa, *_ in evals} == val_ids
    job = folder / "verl"
    assert (
        (job / "run.sh").exists()
        and (job / "reward.py").exists()
        and (job / "data" / "train.parquet").exists()
    )

    # A second training run on the same export pays for no evaluation call again.
    sent = fake_llm.stats["requests"]
    again = train_dag.test(run_conf={"launcher": "none", "export": export_dir.name})
    assert str(again.state) == "success"
    assert fake_llm.stats["requests"] == sent


def test_training_stops_at_the_gate_when_the_dataset_is_too_small(dags, sample_data_dir, fake_llm):
    pipeline, train_dag = dags
    assert str(pipeline.test(run_conf={"corpus": "sample/docs_stem.jsonl"}).state) == "success"
    run = train_dag.test(run_conf={"launcher": "verl", "export": "latest", "min_rows": 100000})
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["gate_training_data"] == "failed" and states["train"] != "success"
    status, message = query(sample_data_dir, "SELECT status, message FROM training_runs")[0]
    assert status == "failed" and "training_data" in message and "100000" in message
