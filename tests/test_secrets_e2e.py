"""The LLM API key comes only from the `llm_default` connection and never lands in a log,
an XCom, the warehouse or any file the pipeline writes.

The end-to-end test plants a unique key as the connection's password, runs the DAG with the
standard CLI (`airflow dags test`) against the test server with faults injected (retries,
invalid replies and a permanent HTTP 400, whose error text is stored), checks the server
was called with that key, then greps everything the run left behind for it.

Where task logs go: `airflow dags test` runs the tasks in its own process and writes their
logs to its stdout/stderr (checked here), not to files under $AIRFLOW_HOME/logs; the files
that exist there (none, usually) are grepped as well.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from support.db import copy_airflow_db, query
from webscale_rl.llm import LLMClient, LLMRequest, LLMSettings, LLMUnavailable

pytestmark = pytest.mark.e2e

CORPUS = "sample/docs_stem.jsonl"  # 18 documents; "logtrim" is in exactly one of them
FAULTS = {
    "http_500": 0.1,
    "http_429": 0.05,
    "malformed_json": 0.05,
    "refusal": 0.05,
    "retry_after_s": 0.05,
    "permanent": {"kind": "http_400", "match": "logtrim"},
}


def planted_key() -> str:
    return f"sk-planted-{uuid.uuid4().hex}"


def warehouse_hits(db: Path, needle: str) -> tuple[list[str], int]:
    """(table.column where `needle` occurs, number of columns searched): every column of every
    table and view in the DuckDB file, whatever its type, read as text."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        columns = con.execute("""SELECT table_name, column_name FROM information_schema.columns
                                 WHERE table_schema = 'main' ORDER BY ALL""").fetchall()
        hits = []
        for table, column in columns:
            ident = '"' + column.replace('"', '""') + '"'
            n = con.execute(
                f'SELECT count(*) FROM "{table}" WHERE contains(CAST({ident} AS VARCHAR), ?)',
                [needle],
            ).fetchone()[0]
            if n:
                hits.append(f"{table}.{column}")
        return hits, len(columns)
    finally:
        con.close()


def file_hits(root: Path, needle: str) -> tuple[list[str], int]:
    """(files holding `needle`, files searched) under `root`. Parquet is compressed: its rows
    are read; every other file is searched byte for byte."""
    hits, searched = [], 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        searched += 1
        if path.suffix == ".parquet":
            found = needle in json.dumps(pq.read_table(path).to_pylist(), default=str)
        else:
            found = needle.encode() in path.read_bytes()
        if found:
            hits.append(str(path))
    return hits, searched


def test_planted_key_authenticates_the_run_and_is_found_nowhere_after_it(
    sample_data_dir, fake_llm, monkeypatch, tmp_path
):
    key = planted_key()
    conn = json.loads(os.environ["AIRFLOW_CONN_LLM_DEFAULT"])
    monkeypatch.setenv("AIRFLOW_CONN_LLM_DEFAULT", json.dumps({**conn, "password": key}))
    fake_llm.set_faults(FAULTS)
    airflow_home = Path(os.environ["AIRFLOW_HOME"])
    started = time.time()

    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run(
        [
            str(Path(sys.executable).with_name("airflow")),
            "dags",
            "test",
            "webscale_rl",
            "-c",
            json.dumps({"corpus": CORPUS, "run_label": "secrets-e2e"}),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]

    # The key was used: every completion request authenticated with it.
    assert fake_llm.stats["last_authorization"] == f"Bearer {key}"
    # The error paths ran: retried transient faults, invalid replies, a permanent 400 recorded.
    assert {"http_500", "http_429", "http_400"} <= set(fake_llm.stats["faults"]), fake_llm.stats[
        "faults"
    ]
    [(run_id, status)] = query(sample_data_dir, "SELECT run_id, status FROM runs")
    assert status == "success"
    # Which other calls fail depends on the injected faults' draws (a hash of each request's
    # bytes): the permanent 400 is always among them.
    failed = [
        e for (e,) in query(sample_data_dir, "SELECT error FROM llm_calls WHERE status = 'failed'")
    ]
    assert any("HTTP 400" in e for e in failed), failed

    # 1. The run's output: `dags test` prints the task logs (their lines are there).
    output = out.stdout + out.stderr
    assert "ingest:" in output and "llm_filter" in output and f"run {run_id} finished" in output
    assert key not in output

    # 2. Log files under $AIRFLOW_HOME/logs (dags test writes none; any that exist are searched).
    logs = airflow_home / "logs"
    if logs.exists():
        hits, _ = file_hits(logs, key)
        assert hits == [], f"key in log files {hits}"

    # 3. The Airflow metadata DB: this run's XComs, then the whole SQLite file byte for byte.
    # Read from a copy: see copy_airflow_db for the "disk I/O error" reading the live file gave.
    db = copy_airflow_db(airflow_home / "airflow.db", tmp_path / "meta" / "airflow.db")
    for part in (db, db.with_name(db.name + "-wal")):  # byte for byte, before SQLite opens it
        if part.exists():
            assert key.encode() not in part.read_bytes(), f"key in {part}"
    meta = sqlite3.connect(db)
    try:
        xcoms = meta.execute(
            "SELECT task_id, key, CAST(value AS TEXT) FROM xcom WHERE dag_id = ? AND run_id = ?",
            ["webscale_rl", run_id],
        ).fetchall()
    finally:
        meta.close()
    assert len(xcoms) > 10, "this run's XComs were not found"
    assert [(t, k) for t, k, v in xcoms if key in (v or "")] == []

    # 4. Every column of every warehouse table, as text.
    hits, n_columns = warehouse_hits(sample_data_dir / "warehouse.duckdb", key)
    assert n_columns > 100 and hits == [], hits
    # The sentinel proves the search finds what is there.
    assert "llm_calls.error" in warehouse_hits(sample_data_dir / "warehouse.duckdb", "HTTP 400")[0]

    # 5. Every file under the data dir: exports, dataset card, audit sheet, Data Docs...
    hits, searched = file_hits(sample_data_dir, key)
    assert hits == [], hits
    written = [
        p for p in sample_data_dir.rglob("*") if p.is_file() and p.stat().st_mtime >= started
    ]
    assert (
        searched > 20
        and any(p.suffix == ".parquet" for p in written)
        and any(p.name == "card.md" for p in written)
    )


def test_llm_settings_never_print_the_key(caplog):
    key = planted_key()
    settings = LLMSettings.from_connection(
        "http://127.0.0.1:9/v1", key, extra={"model": "m", "timeout_s": 2}
    )
    assert settings.api_key == key  # it is there, to be sent
    overridden = settings.with_overrides(stage_models={"verify": "small"}, max_retries=1)
    assert overridden.api_key == key
    with caplog.at_level(logging.INFO):
        logging.getLogger("test_secrets").info("settings %s %r", settings, overridden)
    for text in (repr(settings), str(settings), f"{settings}", repr(overridden), caplog.text):
        assert key not in text
    assert "base_url='http://127.0.0.1:9/v1'" in repr(settings)  # the rest is printed


def test_llm_settings_read_from_the_airflow_connection(monkeypatch):
    key = planted_key()
    monkeypatch.setenv(
        "AIRFLOW_CONN_LLM_DEFAULT",
        json.dumps(
            {
                "conn_type": "openai",
                "host": "http://127.0.0.1:9/v1",
                "password": key,
                "extra": {"model": "m"},
            }
        ),
    )
    from webscale_rl.llm.settings import from_airflow

    settings = from_airflow()
    assert settings.api_key == key and key not in repr(settings)


class _EchoingServer(ThreadingHTTPServer):
    daemon_threads = True
    reject_models = True  # False: the health check passes and only completions are rejected


class _Echo(BaseHTTPRequestHandler):
    """A server that rejects requests with 401 and, like some gateways, quotes the
    credential it was given in the error body."""

    server: _EchoingServer

    def log_message(self, *args) -> None:
        pass

    def _reply(self, code: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _reject(self) -> None:
        self._reply(
            401,
            {
                "error": {
                    "message": f"Incorrect API key provided: {self.headers.get('Authorization')}",
                    "type": "invalid_request_error",
                }
            },
        )

    def do_GET(self) -> None:
        if self.server.reject_models:
            return self._reject()
        self._reply(200, {"object": "list", "data": [{"id": "m", "object": "model"}]})

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._reject()


@pytest.fixture
def echoing_server():
    server = _EchoingServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_server_that_echoes_the_key_does_not_get_it_logged_or_stored(echoing_server, tmp_path):
    key = planted_key()
    url = f"http://127.0.0.1:{echoing_server.server_address[1]}/v1"
    settings = LLMSettings(base_url=url, api_key=key, model="m", max_retries=0, timeout_s=5)
    db = tmp_path / "w.duckdb"
    client = LLMClient(settings, db, "run-1")
    with pytest.raises(LLMUnavailable) as unavailable:
        client.health_check()
    assert "HTTP 401" in str(unavailable.value)
    echoing_server.reject_models = False
    request = LLMRequest(
        stage="llm_filter",
        item_id="d1",
        model="m",
        messages=({"role": "user", "content": "hi"},),
        schema=None,
        schema_name="s",
        prompt_id="p",
    )
    [result] = client.run([request]).values()
    assert result.status == "failed" and result.error.startswith("HTTP 401")
    stored = query(db, "SELECT error FROM llm_calls")
    assert stored and "Incorrect API key provided" in stored[0][0]
    leaks = [
        where
        for where, text in (
            ("the LLMUnavailable message", str(unavailable.value)),
            ("the call's error", result.error),
            ("llm_calls.error", stored[0][0]),
        )
        if key in text
    ]
    assert leaks == []
    assert "[redacted]" in stored[0][0] and "[redacted]" in str(unavailable.value)
