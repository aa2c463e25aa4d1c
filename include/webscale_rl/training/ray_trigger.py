"""The trigger a deferred `train` task waits on: a Ray job's status, polled over HTTP.

It runs in Airflow's triggerer (or inline under `dag.test()`), so the hours a training job
takes hold no worker slot. Each poll reads the job's status and its log; new log lines go to
this trigger's log, which Airflow shows in the task's log. When the job ends (SUCCEEDED,
FAILED, STOPPED) one event carries the status, Ray's message and the log's last lines back
to the task. When a user marks the deferred task failed/success or clears it, Airflow
cancels the trigger and calls `on_kill`, which stops the Ray job: an Airflow run never
leaves a cluster job it no longer watches. (A triggerer restart also cancels triggers, but
without `on_kill`: the job keeps running and the next triggerer picks the trigger up.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from webscale_rl.training import ray_jobs


class RayJobTrigger(BaseTrigger):
    def __init__(
        self,
        address: str,
        submission_id: str,
        poll_interval_s: float = 10.0,
        tail_lines: int = 40,
        unreachable_limit_s: float = 600.0,
        train_run_id: str | None = None,
        echo: dict | None = None,
    ):
        super().__init__()
        self.address = address
        self.submission_id = submission_id
        self.poll_interval_s = poll_interval_s
        self.tail_lines = tail_lines
        self.unreachable_limit_s = unreachable_limit_s
        self.train_run_id = train_run_id
        # returned in the event as "echo": what the resumed task needs from before it
        # deferred (dag.test() resumes with the event alone, without the defer kwargs)
        self.echo = echo or {}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "address": self.address,
                "submission_id": self.submission_id,
                "poll_interval_s": self.poll_interval_s,
                "tail_lines": self.tail_lines,
                "unreachable_limit_s": self.unreachable_limit_s,
                "train_run_id": self.train_run_id,
                "echo": self.echo,
            },
        )

    def _event(self, status: str, message: str, **more) -> TriggerEvent:
        return TriggerEvent(
            {
                "status": status,
                "submission_id": self.submission_id,
                "message": message,
                "log_tail": "",
                "echo": self.echo,
                **more,
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        import httpx

        seen = 0
        unreachable_since: float | None = None
        last_status = None
        read_after_end = False
        async with httpx.AsyncClient(timeout=30) as client:
            while True:
                try:
                    info = await ray_jobs.job_info(client, self.address, self.submission_id)
                    logs = await ray_jobs.job_logs(client, self.address, self.submission_id)
                except httpx.HTTPError as exc:
                    if isinstance(exc, httpx.HTTPStatusError) and exc.response.status_code == 404:
                        # Ray keeps job records in its head (no GCS fault tolerance): a
                        # restarted head, or a deleted job, leaves nothing to wait for.
                        yield self._event(
                            "LOST",
                            f"Ray at {self.address} has no job {self.submission_id}: the head "
                            "restarted or the job was deleted; check the cluster, then clear "
                            "the task to submit again",
                        )
                        return
                    # A dashboard restart or a network blip is not the job failing: keep
                    # polling for a while, then report it (the job may still be running).
                    now = time.monotonic()
                    unreachable_since = unreachable_since or now
                    if now - unreachable_since > self.unreachable_limit_s:
                        yield self._event(
                            "UNREACHABLE",
                            f"Ray dashboard {self.address} unreachable for "
                            f"{self.unreachable_limit_s:.0f}s: {exc!r}; the job may still be "
                            "running there",
                        )
                        return
                    self.log.warning("Ray dashboard %s: %r; retrying", self.address, exc)
                    await asyncio.sleep(self.poll_interval_s)
                    continue
                unreachable_since = None
                status = info.get("status")
                if status != last_status:
                    self.log.info("ray job %s: %s", self.submission_id, status)
                    last_status = status
                lines, seen = ray_jobs.new_lines(logs, seen)
                for line in lines:
                    self.log.info("ray job | %s", line)
                if status in ray_jobs.TERMINAL and not read_after_end:
                    # One more read: the driver's last lines may reach the log after Ray
                    # has recorded its exit, and they are the ones the task fails with.
                    read_after_end = True
                    await asyncio.sleep(1)
                    continue
                if status in ray_jobs.TERMINAL:
                    yield self._event(
                        status,
                        info.get("message") or "",
                        driver_exit_code=info.get("driver_exit_code"),
                        start_time=info.get("start_time"),
                        end_time=info.get("end_time"),
                        log_tail=ray_jobs.tail(logs, self.tail_lines),
                        logs_chars=len(logs),
                        # verl's per-step console lines (nothing for other trainers)
                        metrics=ray_jobs.verl_metrics(logs),
                    )
                    return
                await asyncio.sleep(self.poll_interval_s)

    async def on_kill(self) -> None:
        """The user acted on the deferred task (marked it failed or success, or cleared it):
        stop the Ray job so nothing keeps training for a run Airflow gave up on, and record
        the status Ray reaches. Shielded: the triggerer cancels a trigger again on each
        loop while it is still there (seen here: on_kill cut off a second after the stop),
        and Airflow gives on_kill at most 30 s ([triggerer] on_kill_timeout)."""
        await asyncio.shield(self._stop_and_record())

    async def _stop_and_record(self) -> None:
        import httpx

        status = None
        async with httpx.AsyncClient(timeout=10) as client:
            stopped = await ray_jobs.stop_job(client, self.address, self.submission_id)
            self.log.warning(
                "the Airflow task was cancelled: Ray job %s %s",
                self.submission_id,
                "asked to stop" if stopped else "had already ended",
            )
            for _ in range(20):  # Ray: SIGTERM, then SIGKILL after its grace period
                status = (await ray_jobs.job_info(client, self.address, self.submission_id)).get(
                    "status"
                )
                if status in ray_jobs.TERMINAL:
                    break
                await asyncio.sleep(1)
        self.log.warning("Ray job %s: %s", self.submission_id, status)
        if self.train_run_id:
            from webscale_rl.training import tasks

            await asyncio.to_thread(
                tasks.record_ray_status,
                self.train_run_id,
                status or "UNKNOWN",
                message="the Airflow task was cancelled, so the Ray job was stopped",
                run_status="cancelled",
            )
