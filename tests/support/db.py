"""Reading the warehouse in tests: a short read-only connection per query."""

from __future__ import annotations

import subprocess
from pathlib import Path

import duckdb


def query(path: Path, sql: str, params=None) -> list[tuple]:
    """All rows of `sql`; `path` is a warehouse file or a data dir holding warehouse.duckdb."""
    db = path / "warehouse.duckdb" if path.is_dir() else path
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


# What a run decided, minus what differs between equal runs (run ids, paths, timestamps).
SNAPSHOT_SQL = {
    "documents": "SELECT doc_id, source_line, source_id, n_tokens FROM documents",
    "heuristic_filter": "SELECT doc_id, status, reason FROM heuristic_filter",
    "near_dedup": "SELECT doc_id, status, reason, duplicate_of FROM near_dedup",
    "llm_filter": "SELECT doc_id, status, reason, qualified, request_hash FROM llm_filter",
    "classify": "SELECT doc_id, status, reason, domain, personas FROM classify",
    "generate": "SELECT qa_id, doc_id, status, reason, question, answer, request_hash FROM generate",
    "verify": "SELECT qa_id, status, reason, correct, leakage, request_hash FROM verify",
    "decontaminate": "SELECT qa_id, status, reason, duplicate_of FROM decontaminate",
    "learnability": "SELECT qa_id, status, reason, samples, passes, pass_rate FROM learnability",
    "doc_outcomes": "SELECT doc_id, last_stage, outcome, reason FROM doc_outcomes",
    "llm_calls": "SELECT request_hash, stage, status FROM llm_calls",
}


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every stage table's decisions, sorted: equal snapshots mean equal results."""
    return {table: sorted(query(path, sql), key=repr) for table, sql in SNAPSHOT_SQL.items()}


def copy_airflow_db(db: Path, dest: Path) -> Path:
    """A private copy of the SQLite metadata DB `db` (and its WAL) at `dest`, made by `cp` in a
    child process. Never open the live file in the test process outside SQLite: closing any
    descriptor of it drops the POSIX locks this process's own SQLite connections (dag.test()'s
    pool) hold, so the next `airflow dags test` believes it closes the last connection,
    removes the WAL, and this process's SQLite then fails on it with "disk I/O error"."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal"):
        src = db.with_name(db.name + suffix)
        if src.exists():
            subprocess.run(["cp", str(src), str(dest) + suffix], check=True)
    return dest
