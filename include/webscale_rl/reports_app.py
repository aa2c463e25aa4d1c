"""The reports web app the Airflow plugin mounts at /webscale-rl: data-quality reports and
dataset cards where users already work.

    /webscale-rl/runs                      every pipeline run: status, counts, links
    /webscale-rl/runs/{folder}/report      the run's report.html (self-contained, with plots)
    /webscale-rl/runs/{folder}/card        the run's card.md
    /webscale-rl/data-docs/...             the Great Expectations Data Docs site

Plain FastAPI (no Airflow import), testable on its own. Files are served only from the
exports and Data Docs folders under WEBSCALE_RL_DATA_DIR; a folder name must match an
existing export exactly, so no path reaches outside them. Airflow does not authenticate a
plugin's app by itself: the plugin (plugins/webscale_rl_reports.py) builds this app with
Airflow's own user dependency on every route, so only a logged-in user with read access
to the webscale_rl DAG gets a page (the UI's session cookie or an API bearer token).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence

from fastapi import FastAPI, HTTPException, params
from fastapi.responses import FileResponse, HTMLResponse, PlainTextResponse

from webscale_rl import warehouse
from webscale_rl.config import load_settings, run_folder_name

_FOLDER = re.compile(r"^[A-Za-z0-9._-]+$")


def _export_file(folder: str, name: str):
    settings = load_settings()
    if not _FOLDER.match(folder) or folder.startswith("."):
        raise HTTPException(404, "no such export")
    path = settings.exports_dir / folder / name
    if path.parent.parent != settings.exports_dir or not path.is_file():
        raise HTTPException(
            404,
            f"{name} not found for export {folder} (the run may not have reached "
            "its dataset_card task)",
        )
    return path


def _runs() -> list[tuple]:
    settings = load_settings()
    if not settings.db_path.exists():
        return []
    with warehouse.read(settings.db_path) as con:
        return con.execute("""SELECT run_id, run_label, status, failed_stage, message, started_at, counts FROM runs
                              ORDER BY started_at DESC LIMIT 200""").fetchall()


def create_app(dependencies: Sequence[params.Depends] = ()) -> FastAPI:
    """The app; `dependencies` run before every route (the plugin passes Airflow's login)."""
    app = FastAPI(
        title="webscale_rl reports",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        dependencies=list(dependencies),
    )

    @app.get("/runs", response_class=HTMLResponse)
    def runs() -> str:
        settings = load_settings()
        rows = []
        for run_id, label, status, failed_stage, message, started, counts in _runs():
            folder = run_folder_name(run_id)
            pairs = (json.loads(counts).get("export") or {}).get("pairs") if counts else None
            has_card = (settings.exports_dir / folder / "report.html").exists()
            links = (
                f'<a href="runs/{folder}/report">report</a> · <a href="runs/{folder}/card">card.md</a>'
                if has_card
                else "—"
            )
            why = f"{failed_stage}: {message}" if failed_stage else ""
            rows.append(
                f"<tr><td>{html.escape(run_id)}</td><td>{html.escape(label or '')}</td>"
                f"<td class='{html.escape(status or '')}'>{html.escape(status or '')}</td>"
                f"<td>{'' if pairs is None else pairs}</td><td>{html.escape(str(started or ''))}</td>"
                f"<td>{links}</td><td>{html.escape(why[:1000])}</td></tr>"
            )
        body = (
            "".join(rows)
            or "<tr><td colspan='7'>no runs yet: trigger the webscale_rl DAG</td></tr>"
        )
        return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>webscale_rl runs</title>
<style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left}}.failed,.refused{{color:#b00}}.success{{color:#070}}</style>
</head><body><h1>webscale_rl runs</h1>
<p><a href="data-docs/index.html">Data quality reports (Great Expectations Data Docs)</a></p>
<table id="runs"><thead><tr><th>run</th><th>label</th><th>status</th><th>accepted pairs</th><th>started</th>
<th>dataset card</th><th>failed at</th></tr></thead><tbody>{body}</tbody></table></body></html>"""

    @app.get("/runs/{folder}/report")
    def report(folder: str) -> FileResponse:
        return FileResponse(_export_file(folder, "report.html"), media_type="text/html")

    @app.get("/runs/{folder}/card", response_class=PlainTextResponse)
    def card(folder: str) -> str:
        return _export_file(folder, "card.md").read_text(encoding="utf-8")

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str) -> FileResponse:
        root = load_settings().data_docs_dir.resolve()
        target = (root / (path or "index.html")).resolve()
        if root not in target.parents or not target.is_file():
            raise HTTPException(404, "not in the Data Docs (no gate has run yet?)")
        return FileResponse(target)

    return app
