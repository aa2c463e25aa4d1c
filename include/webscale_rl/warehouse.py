"""The DuckDB warehouse: schema, short-lived locked connections, and the outcome view.

DuckDB lets one process open a file read-write at a time, and Airflow may run several
mapped tasks at once. Every access therefore goes through `write()` or `read()`, which
take an advisory file lock beside the database (exclusive for writers, shared for
readers), open the database, and close it again as soon as the block ends: no task holds
the file while it waits on anything slow.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

LOCK_TIMEOUT_S = 600.0

# Document-level stages in pipeline order. Each has a table keyed by doc_id with
# status in (kept, rejected, failed) and a reason. Later stages append here; the
# doc_outcomes view is generated from this list.
DOC_STAGES: tuple[str, ...] = ("heuristic_filter",)
STATUSES = ("kept", "rejected", "failed")
OUTCOMES = ("accepted", "rejected", "failed", "pending")

SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    doc_id        VARCHAR PRIMARY KEY,   -- sha256 of the normalised text
    ingest_seq    BIGINT NOT NULL,       -- global arrival order (first copy wins dedup)
    source_file   VARCHAR NOT NULL,
    source_line   BIGINT NOT NULL,       -- 1-based line (JSONL) or row (Parquet)
    source_id     VARCHAR,
    url           VARCHAR,
    text          VARCHAR NOT NULL,
    n_chars       BIGINT NOT NULL,
    n_tokens      BIGINT NOT NULL,
    dedup_key     VARCHAR NOT NULL,
    meta          JSON,
    ingest_run_id VARCHAR NOT NULL,
    ingested_at   TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_errors (
    source_file VARCHAR NOT NULL,
    line_no     BIGINT NOT NULL,         -- 0 = the file as a whole
    reason      VARCHAR NOT NULL,
    detail      VARCHAR,
    source_id   VARCHAR,
    run_id      VARCHAR NOT NULL,
    PRIMARY KEY (source_file, line_no)
);
CREATE TABLE IF NOT EXISTS run_docs (
    run_id VARCHAR NOT NULL,
    doc_id VARCHAR NOT NULL,
    PRIMARY KEY (run_id, doc_id)
);
CREATE TABLE IF NOT EXISTS heuristic_filter (
    doc_id       VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,                -- first failing rule, or NULL when kept
    value        DOUBLE,                 -- that rule's measured value
    threshold    DOUBLE,
    duplicate_of VARCHAR,                -- doc_id kept in place of an exact duplicate
    failed_rules JSON                    -- every failing rule with value and threshold
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       VARCHAR PRIMARY KEY,
    run_label    VARCHAR,
    corpus       VARCHAR,
    params       JSON,
    files        JSON,
    started_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    status       VARCHAR,                -- running, success, failed
    failed_stage VARCHAR,
    message      VARCHAR,
    counts       JSON
);
"""


class WarehouseBusy(RuntimeError):
    pass


@contextlib.contextmanager
def file_lock(db_path: Path, exclusive: bool, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    db_path.parent.mkdir(parents=True, exist_ok=True)
    lock_path = db_path.with_name(db_path.name + ".lock")
    with open(lock_path, "a+") as handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise WarehouseBusy(
                        f"warehouse {db_path} stayed locked for {timeout_s:.0f}s by another "
                        f"process (lock file {lock_path})"
                    ) from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def write(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Exclusive connection inside one transaction: all of the block commits, or none."""
    with file_lock(db_path, exclusive=True):
        con = duckdb.connect(str(db_path))
        try:
            con.execute(SCHEMA)
            con.execute(doc_outcomes_view_sql())
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        finally:
            con.close()


@contextlib.contextmanager
def read(db_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Read-only connection; the schema is created first if the file is new."""
    if not db_path.exists():
        with write(db_path):
            pass
    with file_lock(db_path, exclusive=False):
        con = duckdb.connect(str(db_path), read_only=True)
        try:
            yield con
        finally:
            con.close()


def doc_outcomes_view_sql(stages: tuple[str, ...] = DOC_STAGES) -> str:
    """One row per document: the last stage it reached, its outcome and the reason.

    A document is `pending` until a stage has a row for it, takes the status of the first
    stage that did not keep it, and is `accepted` once every stage kept it.
    """
    joins = "\n".join(f"LEFT JOIN {s} AS s{i} ON s{i}.doc_id = d.doc_id" for i, s in enumerate(stages))
    stage_cases, outcome_cases, reason_cases = [], [], []
    for i, stage in enumerate(stages):
        previous = stages[i - 1] if i else "ingest"
        stage_cases.append(f"WHEN s{i}.status IS NULL THEN '{previous}'")
        stage_cases.append(f"WHEN s{i}.status <> 'kept' THEN '{stage}'")
        outcome_cases.append(f"WHEN s{i}.status IS NULL THEN 'pending'")
        outcome_cases.append(f"WHEN s{i}.status <> 'kept' THEN s{i}.status")
        reason_cases.append(f"WHEN s{i}.status IS NULL THEN NULL")
        reason_cases.append(f"WHEN s{i}.status <> 'kept' THEN s{i}.reason")
    return f"""
CREATE OR REPLACE VIEW doc_outcomes AS
SELECT
    d.doc_id,
    CASE {' '.join(stage_cases)} ELSE '{stages[-1]}' END AS last_stage,
    CASE {' '.join(outcome_cases)} ELSE 'accepted' END AS outcome,
    CASE {' '.join(reason_cases)} ELSE NULL END AS reason
FROM documents AS d
{joins}
"""


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame, key: str = "doc_id") -> int:
    """Idempotent write of a stage's rows: rows with the same key are replaced, never duplicated."""
    if len(frame) == 0:
        return 0
    con.register("_incoming", frame)
    try:
        columns = ", ".join(frame.columns)
        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM _incoming)")
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _incoming")
    finally:
        con.unregister("_incoming")
    return len(frame)


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """First row of a query, with the result fully consumed (DuckDB 2 refuses to register or
    unregister a DataFrame while an earlier result is only partly fetched)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
