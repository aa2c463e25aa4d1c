"""The reports app and its Airflow plugin: run list, a run's report and card, the Data Docs,
and nothing outside the exports and Data Docs folders."""

from __future__ import annotations

import json
from html import escape as html_escape

import pytest
from fastapi.testclient import TestClient

from support import pairs
from webscale_rl import card, warehouse
from webscale_rl.config import load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def client(data_dir):
    from webscale_rl.reports_app import create_app

    return TestClient(create_app())


def test_runs_page_lists_runs_and_links_their_cards(data_dir, client, monkeypatch):
    assert "no runs yet" in client.get("/runs").text
    db = data_dir / "warehouse.duckdb"
    pairs.build(
        data_dir.parent,
        [{"doc": 0, "question": "How many sides does a hexagon have?", "answer": "6"}],
    )
    (data_dir.parent / "w.duckdb").rename(db)
    with warehouse.write(db) as con:
        con.execute(
            """INSERT INTO runs (run_id, run_label, corpus, params, status, started_at, counts)
                       VALUES ('manual__2026-01-01T00:00:00+00:00', 'nightly', 'sample', '{}', 'success', now(), ?)""",
            [json.dumps({"export": {"pairs": 1}})],
        )
        con.execute("""INSERT INTO runs (run_id, corpus, params, status, failed_stage, message, started_at)
                       VALUES ('r-failed', 'sample', '{}', 'failed', 'gate_verify', 'min_accepted_rate not met', now())""")
        con.execute("UPDATE run_docs SET run_id = 'manual__2026-01-01T00:00:00+00:00'")
        con.execute("""INSERT INTO decontaminate (qa_id, doc_id, run_id, status)
                       SELECT qa_id, doc_id, run_id, 'kept' FROM verify""")
    card.write_card(db, load_settings().exports_dir, "manual__2026-01-01T00:00:00+00:00")
    page = client.get("/runs")
    assert page.status_code == 200
    assert "nightly" in page.text and "gate_verify: min_accepted_rate not met" in page.text
    folder = "manual__2026-01-01T00_00_00_00_00"
    assert f'href="runs/{folder}/report"' in page.text
    report = client.get(f"/runs/{folder}/report")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "Dataset card" in report.text and "data:image/png;base64," in report.text
    assert client.get(f"/runs/{folder}/card").text.startswith("# Dataset card")


def test_a_refused_run_is_listed_with_its_reason(data_dir, client):
    from webscale_rl import pipeline
    from webscale_rl.config import ConfigError

    with pytest.raises(ConfigError) as refused:
        pipeline.start_run({"corpus": "../elsewhere", "run_label": "typo <b>"}, "r-refused")
    page = client.get("/runs")
    assert page.status_code == 200
    row = next(line for line in page.text.splitlines() if "r-refused" in line)
    assert "<td class='refused'>refused</td>" in row and "typo &lt;b&gt;" in row
    assert html_escape(f"start_run: {refused.value}"[:1000]) in row


def test_data_docs_are_served_and_nothing_else(data_dir, client):
    docs = data_dir / "data_docs"
    docs.mkdir()
    (docs / "index.html").write_text("<html>gx index</html>")
    (data_dir / "warehouse.duckdb").write_bytes(b"not for the web")
    assert client.get("/data-docs/index.html").text == "<html>gx index</html>"
    assert client.get("/data-docs/../warehouse.duckdb").status_code == 404
    assert client.get("/data-docs/%2e%2e/warehouse.duckdb").status_code == 404
    assert client.get("/runs/..%2Fwarehouse.duckdb/report").status_code == 404
    assert client.get("/runs/.hidden/card").status_code == 404
    assert client.get("/runs/nope/report").status_code == 404


def test_airflow_loads_the_plugin_with_its_app_and_nav_entries():
    from airflow import plugins_manager

    apps = [
        a for a in plugins_manager.get_fastapi_plugins()[0] if a["url_prefix"] == "/webscale-rl"
    ]
    assert len(apps) == 1 and apps[0]["app"].url_path_for("runs") == "/runs"
    plugin = next(p for p in plugins_manager._get_plugins()[0] if p.name == "webscale_rl_reports")
    views = {v["name"]: v for v in plugin.external_views}
    assert views["Dataset cards"]["destination"] == "nav" and not views["Dataset cards"][
        "href"
    ].startswith("/")
    assert views["Data quality (GX)"]["href"] == "webscale-rl/data-docs/index.html"


def test_airflow_api_server_serves_the_reports_only_to_logged_in_readers(data_dir):
    """The real Airflow API app (what `airflow api-server` runs) mounts the plugin's app
    behind Airflow's login: every route refuses an anonymous caller (401) and a user
    without read access to the DAG (403), and serves a reader by bearer token or by the
    UI's session cookie; traversal is still refused after login."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.security import COOKIE_NAME_JWT_TOKEN

    client = TestClient(create_app())
    folder = "r1"
    (load_settings().exports_dir / folder).mkdir(parents=True)
    (load_settings().exports_dir / folder / "report.html").write_text("<html>card</html>")
    (load_settings().exports_dir / folder / "card.md").write_text("# Dataset card")
    (data_dir / "data_docs").mkdir()
    (data_dir / "data_docs" / "index.html").write_text("<html>gx index</html>")
    routes = [
        "/webscale-rl/runs",
        f"/webscale-rl/runs/{folder}/report",
        f"/webscale-rl/runs/{folder}/card",
        "/webscale-rl/data-docs/index.html",
    ]
    auth = get_auth_manager()
    reader = auth.generate_jwt(SimpleAuthManagerUser(username="ana", role="viewer"))
    nobody = auth.generate_jwt(SimpleAuthManagerUser(username="eve", role=None))
    for route in routes:
        assert client.get(route).status_code == 401, route
        assert client.get(route, headers={"Authorization": "Bearer forged"}).status_code == 403
        assert (
            client.get(route, headers={"Authorization": f"Bearer {nobody}"}).status_code == 403
        ), route
        by_token = client.get(route, headers={"Authorization": f"Bearer {reader}"})
        assert by_token.status_code == 200, (route, by_token.text[:200])
        by_cookie = TestClient(create_app(), cookies={COOKIE_NAME_JWT_TOKEN: reader}).get(route)
        assert by_cookie.status_code == 200, route
    page = client.get("/webscale-rl/runs", headers={"Authorization": f"Bearer {reader}"})
    assert "<h1>webscale_rl runs</h1>" in page.text
    for escape in ("/webscale-rl/data-docs/../warehouse.duckdb", "/webscale-rl/runs/.hidden/card"):
        assert client.get(escape, headers={"Authorization": f"Bearer {reader}"}).status_code == 404
