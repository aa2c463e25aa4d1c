"""Airflow UI additions for webscale_rl: the reports app (dataset cards, GX Data Docs) mounted
on the API server at /webscale-rl, and two entries in the UI's navigation that open it."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from webscale_rl.reports_app import app as reports_app


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
