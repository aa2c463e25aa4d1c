"""What the DAG files' tasks share: errors a retry cannot fix failing the task at once, and
the triggering Asset events. Light (Airflow's task SDK only), so DAG files may import it at
parse time; each task imports `webscale_rl.pipeline` when it runs and calls its function by
name, so a reader (or a tool) can follow a task to its code."""

from __future__ import annotations

import contextlib


def fail_fast(exc: Exception):
    """Errors a retry cannot fix (bad params, unusable files, a failed gate) fail the task at once."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


@contextlib.contextmanager
def fatal_errors_fail_the_task():
    """Around a task's call into the pipeline: a FatalError (bad params, unusable files, a
    failed gate, a lost lease) fails the task at once with its message, no Airflow retry;
    anything else may be retried."""
    from webscale_rl.errors import FatalError

    try:
        yield
    except FatalError as exc:
        raise fail_fast(exc) from exc


def triggering_extras(context) -> list[dict]:
    """The `extra` of every Asset event that triggered this run, oldest first (none: [])."""
    events = context.get("triggering_asset_events") or {}
    return [event.extra or {} for asset_events in events.values() for event in asset_events]
