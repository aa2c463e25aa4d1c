"""webscale_rl_ingest under real Airflow (dag.test): a file dropped into the landing
directory is ingested once, announced by an Asset event naming it, and processed; a run
with nothing new emits no event."""

from __future__ import annotations

import json
import shutil

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT, SAMPLE_DIR

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dags():
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    return bag.dags["webscale_rl_ingest"], bag.dags["webscale_rl"]


def asset_events(name: str) -> list[dict]:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        return [
            e.extra
            for e in session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.name == name)
            .order_by(AssetEvent.id)
            .all()
        ]


def states(run) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in run.get_task_instances()}


def test_new_landing_file_is_ingested_announced_and_processed_once(dags, data_dir, fake_llm):
    ingest_dag, pipeline_dag = dags
    landing = data_dir / "landing"
    landing.mkdir()
    before = len(asset_events("webscale_rl_new_documents"))

    # Nothing there yet: the run succeeds, publish is skipped, no Asset event.
    empty = ingest_dag.test(run_conf={"landing": "landing"})
    assert states(empty) == {"scan_and_ingest": "success", "publish": "skipped"}
    assert len(asset_events("webscale_rl_new_documents")) == before

    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", landing / "batch-1.jsonl")
    first = ingest_dag.test(run_conf={"landing": "landing"})
    assert states(first) == {"scan_and_ingest": "success", "publish": "success"}
    event = asset_events("webscale_rl_new_documents")[-1]
    assert event["files"] == [str(landing / "batch-1.jsonl")] and event["new_docs"] == 18

    # The processing run the event starts takes exactly the event's files; their documents
    # were ingested by the ingestion run and are picked up as pending, none is new here.
    from webscale_rl import lease, pipeline

    run = pipeline.start_run({"corpus": "sample"}, "asset-run", event_files=event["files"])
    assert run["files"] == event["files"] and run["params"]["corpus"].startswith("asset:")
    # start_run took the warehouse lease for a run that will not go on; let it go, or the
    # processing run below waits out the lease's 120 s ttl before taking it over.
    lease.release(data_dir / "warehouse.duckdb", "asset-run")
    processed = pipeline_dag.test(run_conf={"corpus": "landing/batch-1.jsonl"})
    assert str(processed.state) == "success"
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        counts = json.loads(
            con.execute("SELECT counts FROM runs WHERE run_id = ?", [processed.run_id]).fetchall()[
                0
            ][0]
        )
        landed = con.execute("SELECT path, ingest_run_id FROM landing_files").fetchall()
    finally:
        con.close()
    assert counts["ingest"]["new_docs"] == 0 and counts["ingest"]["resumed_pending"] == 18
    assert counts["work_set"] == 18 and counts["export"]["pairs"] > 0
    assert landed == [(str(landing / "batch-1.jsonl"), first.run_id)]

    # The next scheduled run finds nothing new: no event, so no second processing run.
    again = ingest_dag.test(run_conf={"landing": "landing"})
    assert states(again)["publish"] == "skipped"
    assert len(asset_events("webscale_rl_new_documents")) == before + 1
