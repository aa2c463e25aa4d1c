"""fatal_errors_fail_the_task: an error a retry cannot fix fails the task at once (no Airflow retry)."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from webscale_rl import airflow_tasks, lease, pipeline
from webscale_rl.config import load_settings

pytestmark = pytest.mark.unit


def test_a_lost_lease_fails_the_task_without_a_retry(data_dir):
    # A real takeover: another run holds the warehouse lease, so this run's task finds it
    # lost on its first heartbeat. A retry would find the same: the task fails at once.
    db = load_settings().db_path
    db.parent.mkdir(parents=True, exist_ok=True)
    lease.acquire(db, "the-other-run")
    with pytest.raises(AirflowFailException, match="lost the warehouse lease to run the-other-run"):
        with airflow_tasks.fatal_errors_fail_the_task():
            pipeline.finalize_run({"run_id": "this-run", "files": [], "params": {}}, {})
    assert lease._read(lease.lease_path(db))[0]["run_id"] == "the-other-run"
