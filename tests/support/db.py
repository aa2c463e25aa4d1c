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


# What a run decided, minus what differs between equal runs (run ids, paths, timestamps):
# every registered stage's key, status and reason, and the columns below where a stage has
# more decisions to compare. A stage added to the registry is in the snapshot at once.
STAGE_DECISIONS = {
    "near_dedup": "duplicate_of",
    "llm_filter": "qualified, request_hash",
    "classify": "domain, personas",
    "generate": "doc_id, question, answer, request_hash",
    "verify": "correct, leakage, request_hash",
    "decontaminate": "duplicate_of",
    "learnability": "samples, passes, pass_rate",
}


def snapshot_sql() -> dict[str, str]:
    from webscale_rl.stages import registry

    sql = {"documents": "SELECT doc_id, source_line, source_id, n_tokens FROM documents"}
    for stage in registry.stages():
        extra = STAGE_DECISIONS.get(stage.name)
        columns = f"{stage.key}, status, reason" + (f", {extra}" if extra else "")
        sql[stage.name] = f"SELECT {columns} FROM {stage.name}"
    sql["doc_outcomes"] = "SELECT doc_id, last_stage, outcome, reason FROM doc_outcomes"
    sql["llm_calls"] = "SELECT request_hash, stage, status FROM llm_calls"
    return sql


def snapshot(path: Path) -> dict[str, list[tuple]]:
    """Every stage table's decisions, sorted: equal snapshots mean equal results."""
    return {table: sorted(query(path, sql), key=repr) for table, sql in snapshot_sql().items()}


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
