"""What the DAG files' tasks share: calling the pipeline with errors a retry cannot fix
failing the task at once, and the triggering Asset events. Light (Airflow's task SDK only),
so DAG files may import it at parse time; the pipeline is imported when a task runs."""

from __future__ import annotations


def fail_fast(exc: Exception):
    """Errors a retry cannot fix (bad params, unusable files, a failed gate) fail the task at once."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def call_pipeline(function: str, *args, **kwargs):
    """`webscale_rl.pipeline.<function>(*args, **kwargs)` for a task: a FatalError fails the
    task at once with its message (no Airflow retry); anything else may be retried."""
    from webscale_rl import pipeline
    from webscale_rl.errors import FatalError

    try:
        return getattr(pipeline, function)(*args, **kwargs)
    except FatalError as exc:
        raise fail_fast(exc) from exc


def triggering_extras(context) -> list[dict]:
    """The `extra` of every Asset event that triggered this run, oldest first (none: [])."""
    events = context.get("triggering_asset_events") or {}
    return [event.extra or {} for asset_events in events.values() for event in asset_events]
