"""The `train` task of webscale_rl_train: an operator because it may defer.

Locally (trl-cpu without a cluster, verl's printed command, `none`) it runs
`tasks.train` and returns. With a Ray cluster it submits the job, then defers on
`RayJobTrigger`: the worker slot is released while the job runs, the job's log streams into
this task's log from the triggerer, and `execute_complete` records the final status (a job
that failed or was stopped fails the task with its last log lines). Marking the deferred
task failed, success or clearing it stops the Ray job (the trigger's `on_kill`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import BaseOperator

from webscale_rl.airflow_tasks import fail_fast


class TrainOperator(BaseOperator):
    template_fields = ("run",)

    def __init__(self, *, run: Any, **kwargs):
        super().__init__(**kwargs)
        self.run = run

    def execute(self, context) -> dict:
        from webscale_rl.config import ConfigError
        from webscale_rl.training import tasks
        from webscale_rl.training.ray_trigger import RayJobTrigger

        try:
            trained = tasks.train(self.run)
        except ConfigError as exc:
            raise fail_fast(exc) from exc
        if "ray" not in trained:
            return trained
        p = tasks.TrainParams.from_params(self.run["params"])
        self.defer(
            trigger=RayJobTrigger(
                address=trained["ray"]["address"],
                submission_id=trained["ray"]["submission_id"],
                poll_interval_s=p.ray_poll_s,
                train_run_id=self.run["train_run_id"],
                echo=trained,
            ),
            method_name="execute_complete",
            timeout=timedelta(hours=p.ray_wait_hours),
        )

    def execute_complete(self, context, event: dict) -> dict:
        from webscale_rl.training import tasks

        return tasks.finish_ray_job(self.run, event["echo"], event)
