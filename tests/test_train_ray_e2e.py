"""webscale_rl_train on a real Ray cluster: a one-node Ray head on this machine (`ray start
--head` from the verl training venv), jobs submitted through Ray's job API, the `train` task
deferred on a trigger that polls the job over HTTP.

- under `dag.test()` (which runs the trigger inline): a verl job whose entry point does not
  exist fails on Ray, and the task fails with the job's own last log lines;
- under a running Airflow (`airflow standalone`: scheduler, triggerer, api-server): the
  trainer runs as a Ray job, the task defers, a user marks it failed through the REST API,
  and the triggerer's on_kill stops the Ray job.

The successful run, with its reward per step and checkpoint, is `make train-smoke`.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time

import duckdb
import httpx
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from support.airflow_server import AirflowServer
from support.browser import artifacts_dir
from support.db import query
from webscale_rl.stages.export import write_sample_export
from webscale_rl.training import ray_jobs
from webscale_rl.training.ray_head import LocalRayHead
from webscale_rl.training.ray_trigger import RayJobTrigger

RAY_PYTHON = ROOT / ".venv-verl" / "bin" / "python"
TRAIN_PYTHON = ROOT / ".venv-train" / "bin" / "python"
PAIRS = ROOT / "data" / "sample_export" / "pairs.jsonl"

# Real servers (a Ray head, airflow standalone): the `live` group, which runs on one worker,
# one test at a time (tests/support/tiers.py makes xdist's grouping work under pytest 9).
pytestmark = pytest.mark.live


# `ray_head` is the suite's one Ray head (tests/support/live_servers.py).


@pytest.fixture
def export(data_dir) -> str:
    """The bundled hand-written pairs written as an export (no pipeline run needed)."""
    return write_sample_export(PAIRS, data_dir / "exports")["path"].rsplit("/", 1)[1]


def ray_job(head: LocalRayHead, submission_id: str) -> dict:
    return httpx.get(f"{head.dashboard_url}/api/jobs/{submission_id}", timeout=30).json()


def test_a_failing_ray_job_fails_the_task_with_its_log_tail(ray_head, export, data_dir, fake_llm):
    train_dag = DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl_train"]
    run = train_dag.test(
        run_conf={
            "launcher": "verl",
            "export": export,
            "ray_address": ray_head.dashboard_url,
            "verl_module": "verl.trainer.no_such_entrypoint",
            "verl_overrides": {"data.train_batch_size": 4},
            "ray_poll_s": 1,
        }
    )
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    assert states["train"] == "failed" and states["evaluate_after"] != "success", states
    status, message, job_id, ray_status, ray_address = query(
        data_dir,
        "SELECT status, message, ray_job_id, ray_status, ray_address FROM training_runs",
    )[0]
    assert (status, ray_status, ray_address) == ("failed", "FAILED", ray_head.dashboard_url), (
        message
    )
    # the message is Ray's verdict plus the job's own last lines (python's error)
    assert f"Ray job {job_id} at {ray_head.dashboard_url} ended FAILED" in message
    assert "No module named verl.trainer.no_such_entrypoint" in message, message

    # Ray's own record: the job we submitted, with the folder shipped as its working_dir
    job = ray_job(ray_head, job_id)
    assert job["status"] == "FAILED" and job["driver_exit_code"] == 1, job
    assert job["entrypoint"].startswith("python3 -m verl.trainer.no_such_entrypoint ")
    assert "data.train_files=data/train.parquet" in job["entrypoint"]
    assert job["runtime_env"]["working_dir"].startswith("gcs://")
    assert job["metadata"]["airflow_run_id"] == run.run_id


def test_a_job_ray_does_not_know_ends_the_wait_at_once(ray_head):
    """A restarted head forgets its jobs: waiting on one it has no record of ends at once."""
    trigger = RayJobTrigger(ray_head.dashboard_url, "no-such-job", poll_interval_s=1)
    event = only_event(trigger)
    assert event["status"] == "LOST"
    assert "has no job no-such-job: the head restarted" in event["message"]


def test_a_submission_id_is_a_key_a_retry_attaches_and_a_failed_job_gets_a_fresh_one(
    ray_head, tmp_path
):
    """A retried or cleared task calls submit again with its run's id: a job under that id
    that is running or succeeded is attached to (never paid twice); a failed one is not."""
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "answer.txt").write_text("42\n")

    def spec(sid: str, code: str) -> ray_jobs.RayJobSpec:
        return ray_jobs.RayJobSpec(
            address=ray_head.dashboard_url,
            submission_id=sid,
            entrypoint=f"python3 -c {shlex.quote(code)}",
            working_dir=str(folder),
        )

    ok = spec("key-test-ok", "print(open('answer.txt').read().strip())")
    first = ray_jobs.submit(ok)
    assert first == {"submission_id": "key-test-ok", "attached": False, "status": "PENDING"}
    wait_for(
        "the job to succeed", lambda: ray_job(ray_head, "key-test-ok")["status"] == "SUCCEEDED"
    )
    assert ray_jobs.submit(ok) == {
        "submission_id": "key-test-ok",
        "attached": True,
        "status": "SUCCEEDED",
    }
    logs = httpx.get(f"{ray_head.dashboard_url}/api/jobs/key-test-ok/logs", timeout=30).json()
    assert logs["logs"].count("\n42\n") == 1  # ran once, from the shipped working_dir

    bad = spec("key-test-bad", "raise SystemExit(3)")
    ray_jobs.submit(bad)
    wait_for("the job to fail", lambda: ray_job(ray_head, "key-test-bad")["status"] == "FAILED")
    again = ray_jobs.submit(bad)
    assert again == {"submission_id": "key-test-bad-r2", "attached": False, "status": "PENDING"}


def test_cancelling_the_deferred_task_stops_the_ray_job(ray_head, export, data_dir, fake_llm):
    if not TRAIN_PYTHON.exists():
        pytest.skip(f"no training venv: run `make train-venv` (it creates {TRAIN_PYTHON})")
    home = data_dir.parent / "airflow-home"  # kept: the train task's log is read on failure
    af = AirflowServer(
        home=home,
        data_dir=data_dir,
        llm_conn=fake_llm.connection(),
        log_copy=artifacts_dir() / "airflow-ray-cancel.log",
        extra_env={
            "WEBSCALE_RL_TRAIN_PYTHON": str(TRAIN_PYTHON),
            "WEBSCALE_RL_RAY_PYTHON": str(RAY_PYTHON),
        },
    ).start()
    try:
        wait_for("the DAG to be parsed", lambda: af.api("GET", "/api/v2/dags/webscale_rl_train"))
        af.api("PATCH", "/api/v2/dags/webscale_rl_train", {"is_paused": False})
        conf = {
            "launcher": "trl-cpu",
            "export": export,
            "trl_steps": 500,  # far longer than the test waits: it ends only when stopped
            "ray_address": ray_head.dashboard_url,
            "ray_poll_s": 1,
        }
        dag_run = af.api(
            "POST", "/api/v2/dags/webscale_rl_train/dagRuns", {"logical_date": None, "conf": conf}
        )
        run_id = dag_run["dag_run_id"]
        ti_path = f"/api/v2/dags/webscale_rl_train/dagRuns/{run_id}/taskInstances/train"

        def deferred_and_running():
            state = af.api("GET", ti_path)["state"]
            if state in ("failed", "success", "upstream_failed"):
                raise AssertionError(f"train ended {state} before it was cancelled")
            jobs = httpx.get(f"{ray_head.dashboard_url}/api/jobs/", timeout=30).json()
            mine = [j for j in jobs if j["metadata"].get("airflow_run_id") == run_id]
            # The triggerer has taken the trigger up once the job's lines reach the task's
            # log (a trigger cancelled before it ever ran gets no on_kill from Airflow).
            streamed = "ray job | " in task_log(home, "train")
            if state == "deferred" and mine and mine[0]["status"] == "RUNNING" and streamed:
                return mine[0]
            return None

        job = wait_for("train to defer on a running Ray job", deferred_and_running, af=af)
        argv = shlex.split(job["entrypoint"])
        assert argv[0] == str(TRAIN_PYTHON) and argv[argv.index("--reward-file") + 1] == "reward.py"

        # What "Mark as failed" in the UI does.
        af.api("PATCH", ti_path, {"new_state": "failed"})
        stopped = wait_for(
            "the Ray job to stop",
            lambda: (j := ray_job(ray_head, job["submission_id"]))["status"] == "STOPPED" and j,
            af=af,
            timeout=120,
        )
        assert stopped["status"] == "STOPPED"
        wait_for(
            "on_kill to record the stop",
            lambda: query(data_dir, "SELECT ray_status FROM training_runs")[0][0] == "STOPPED",
            af=af,
            timeout=60,
            also=lambda: task_log(home, "train"),
        )
    finally:
        af.stop()
    status, ray_status, job_id, message = query(
        data_dir, "SELECT status, ray_status, ray_job_id, message FROM training_runs"
    )[0]
    assert (status, ray_status, job_id) == ("cancelled", "STOPPED", job["submission_id"])
    assert "cancelled" in message


def task_log(home, task_id: str) -> str:
    """The task's log files, the triggerer's own beside the worker's."""
    return "\n".join(
        p.read_text(errors="replace")[-6000:]
        for p in sorted((home / "logs").rglob(f"task_id={task_id}/*"))
        if p.is_file()
    )


def wait_for(what: str, check, af: AirflowServer | None = None, timeout: float = 420, also=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (RuntimeError, httpx.HTTPError, json.JSONDecodeError, duckdb.Error):
            found = None  # not parsed yet (404), or a read while the warehouse is locked
        if found:
            return found
        time.sleep(2)
    raise AssertionError(
        f"timed out waiting for {what}\n{af.log_tail() if af else ''}\n{also() if also else ''}"
    )


def only_event(trigger) -> dict:
    """Run the trigger to its end, as the triggerer does; it must fire exactly one event."""

    async def collect():
        return [event.payload async for event in trigger.run()]

    [event] = asyncio.run(collect())
    return event
