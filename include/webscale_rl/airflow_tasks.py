"""What the DAG files' tasks share: the fail-fast exception and the triggering Asset events.
Light (Airflow's task SDK only), so DAG files may import it at parse time."""

from __future__ import annotations


def fail_fast(exc: Exception):
    """Errors a retry cannot fix (bad params, unusable files, a failed gate) fail the task at once."""
    from airflow.sdk.exceptions import AirflowFailException

    return AirflowFailException(str(exc))


def triggering_extras(context) -> list[dict]:
    """The `extra` of every Asset event that triggered this run, oldest first (none: [])."""
    events = context.get("triggering_asset_events") or {}
    return [event.extra or {} for asset_events in events.values() for event in asset_events]
