"""Airflow UI additions for webscale_rl: the reports app (dataset cards, GX Data Docs) mounted
on the API server at /webscale-rl, and two entries in the UI's navigation that open it.

Airflow mounts a plugin's app as it is, without its login: every route here therefore
depends on Airflow's own check that the caller is a user allowed to read the webscale_rl
DAG (its JWT from the UI's session cookie or an Authorization header; 401 without one,
403 without the permission). The cards and samples show the corpus and the generated data.
"""

from __future__ import annotations

from airflow.api_fastapi.core_api.security import requires_access_dag
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends

from webscale_rl.reports_app import create_app

reports_app = create_app(
    dependencies=[Depends(requires_access_dag("GET", param_dag_id="webscale_rl"))]
)


class WebscaleRLReportsPlugin(AirflowPlugin):
    name = "webscale_rl_reports"
    fastapi_apps = [
        {"app": reports_app, "url_prefix": "/webscale-rl", "name": "webscale_rl reports"}
    ]
    # Relative hrefs: the UI resolves them against its own base URL (works behind a proxy).
    external_views = [
        {
            "name": "Dataset cards",
            "href": "webscale-rl/runs",
            "destination": "nav",
            "category": "browse",
            "url_route": "webscale-rl-runs",
        },
        {
            "name": "Data quality (GX)",
            "href": "webscale-rl/data-docs/index.html",
            "destination": "nav",
            "category": "browse",
            "url_route": "webscale-rl-data-docs",
        },
    ]
