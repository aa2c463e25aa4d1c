"""
### webscale_rl_ingest — scheduled incremental ingestion from the landing directory

Scans `$WEBSCALE_RL_DATA_DIR/<landing>` (default `landing/`) on a schedule
(`WEBSCALE_RL_INGEST_SCHEDULE`, default `@daily`) and ingests only files that are new or
whose content changed (tracked in the `landing_files` table). When new documents arrived,
`publish` emits the `webscale_rl_new_documents` Asset event naming the files, which starts
a `webscale_rl` processing run on exactly those documents. Nothing new: `publish` is
skipped, no event, no processing run. Bad records land in `ingest_errors` as in any run.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from webscale_rl.airflow_tasks import fail_fast
from webscale_rl.assets import NEW_DOCUMENTS_ASSET

default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
}


@dag(
    dag_id="webscale_rl_ingest",
    schedule=os.environ.get("WEBSCALE_RL_INGEST_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webscale-rl", "ingestion"],
    doc_md=__doc__,
    default_args=default_args,
    params={
        "landing": Param(
            "landing",
            type="string",
            minLength=1,
            title="Landing directory",
            description="Folder (relative to the data dir) where new corpus files are dropped.",
        ),
        "max_docs": Param(
            0, type="integer", minimum=0, title="Max new documents per run (0 = all)"
        ),
    },
)
def webscale_rl_ingest():
    @task
    def scan_and_ingest() -> dict:
        from webscale_rl import landing
        from webscale_rl.config import ConfigError
        from webscale_rl.stages.ingest import IngestError

        context = get_current_context()
        params = context["params"]
        try:
            return landing.scan_and_ingest(
                params["landing"], context["run_id"], int(params["max_docs"])
            )
        except (ConfigError, IngestError) as exc:
            raise fail_fast(exc) from exc

    @task(outlets=[NEW_DOCUMENTS_ASSET])
    def publish(report: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        if not report["new_docs"]:
            raise AirflowSkipException(
                f"nothing new in the landing directory ({report['scanned']} file(s) scanned)"
            )
        get_current_context()["outlet_events"][NEW_DOCUMENTS_ASSET].extra = {
            "files": report["changed_files"],
            "new_docs": report["new_docs"],
            "ingest_run_id": report["ingest_run_id"],
        }
        return report

    publish(scan_and_ingest())


webscale_rl_ingest()
