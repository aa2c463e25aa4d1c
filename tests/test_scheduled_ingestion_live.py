"""Data-aware scheduling under a running Airflow (`airflow standalone`, scheduler included):
a file dropped into the landing directory is taken in by webscale_rl_ingest, whose Asset
event makes the scheduler start webscale_rl, which processes only that file's documents."""

from __future__ import annotations

import json
import shutil
import time

import duckdb
import pytest

from conftest import SAMPLE_DIR
from support.airflow_server import AirflowServer
from support.browser import artifacts_dir
from webscale_rl import landing

# One worker runs the heavy live tests (a real model, airflow standalone) one after another.
pytestmark = pytest.mark.live

TIMEOUT_S = 420


@pytest.fixture
def airflow(data_dir, fake_llm):
    server = AirflowServer(
        data_dir=data_dir,
        llm_conn=fake_llm.connection(),
        log_copy=artifacts_dir() / "airflow-scheduled.log",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _wait_for(what: str, check, af: AirflowServer, timeout: float = TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except RuntimeError:  # e.g. the DAG is not parsed yet (404)
            found = None
        if found:
            return found
        time.sleep(2)
    raise AssertionError(f"timed out waiting for {what}\n{af.log_tail()}")


def test_landing_file_triggers_processing_of_only_its_documents(airflow, data_dir):
    af = airflow
    folder = data_dir / "landing"
    folder.mkdir()
    # An earlier batch, already taken in (pending, never processed): it must stay untouched.
    shutil.copy(SAMPLE_DIR / "docs_life_commerce.jsonl", folder / "batch-1.jsonl")
    assert landing.scan_and_ingest("landing", "earlier-ingest")["new_docs"] == 24

    for dag_id in ("webscale_rl_ingest", "webscale_rl"):
        _wait_for(f"{dag_id} to be parsed", lambda d=dag_id: af.api("GET", f"/api/v2/dags/{d}"), af)
        af.api("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", folder / "batch-2.jsonl")
    af.api("POST", "/api/v2/dags/webscale_rl_ingest/dagRuns", {"logical_date": None, "conf": {}})

    def asset_run():
        runs = af.api("GET", "/api/v2/dags/webscale_rl/dagRuns?limit=10")["dag_runs"]
        done = [
            r
            for r in runs
            if r["run_type"] == "asset_triggered" and r["state"] in ("success", "failed")
        ]
        return done[0] if done else None

    run = _wait_for("the asset-triggered webscale_rl run to finish", asset_run, af)
    assert run["state"] == "success", af.log_tail()
    con = duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True)
    try:
        files, counts = con.execute(
            "SELECT files, counts FROM runs WHERE run_id = ?", [run["dag_run_id"]]
        ).fetchall()[0]
        batch1 = con.execute("""SELECT o.outcome, count(*) FROM doc_outcomes o JOIN documents d USING (doc_id)
                                WHERE d.source_file LIKE '%batch-1.jsonl' GROUP BY ALL""").fetchall()
    finally:
        con.close()
    counts = json.loads(counts)
    assert json.loads(files) == [str(folder / "batch-2.jsonl")]
    assert (
        counts["work_set"] == 18
        and counts["ingest"]["resumed_pending"] == 18
        and counts["export"]["pairs"] > 0
    )
    assert batch1 == [("pending", 24)]  # only the new file's documents were processed
