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
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb

LOCK_TIMEOUT_S = 600.0

# DuckDB's own default cap is 80 % of the machine's RAM, and it keeps what it read or built
# (pages, hash tables) up to that cap: a task's memory then grows with the warehouse. A fixed
# cap, with larger joins and sorts spilling to `<db>.tmp`, keeps it flat in corpus size.
MEMORY_LIMIT_ENV = "WEBSCALE_RL_DUCKDB_MEMORY_LIMIT"
DEFAULT_MEMORY_LIMIT = "256MB"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|bytes|[kmgt]i?b)?\s*$", re.IGNORECASE)
_UNIT_BYTES = {"b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNIT_BYTES |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def memory_limit(share: float = 1.0) -> str:
    """The cap, or `share` of it for one of several DuckDB instances a task holds at once
    (near_dedup's read connection beside its LSH index): the cap is per task."""
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip() or DEFAULT_MEMORY_LIMIT
    size = _SIZE.match(limit)
    if share == 1.0 or not size:
        return limit  # DuckDB parses (or names as invalid) anything else as it is
    unit = (size.group(2) or "b").lower()
    return f"{int(float(size.group(1)) * _UNIT_BYTES[unit] * share)}B"


def connect(
    db_path: Path | str, read_only: bool = False, memory_share: float = 1.0
) -> duckdb.DuckDBPyConnection:
    """A connection with the warehouse's memory cap (or its share of the task's cap); a bad
    cap is named with its variable."""
    try:
        return duckdb.connect(
            str(db_path), read_only=read_only, config={"memory_limit": memory_limit(memory_share)}
        )
    except (duckdb.ParserException, duckdb.InvalidInputException) as exc:
        raise ValueError(
            f"{MEMORY_LIMIT_ENV}={memory_limit()!r} is not a DuckDB memory size "
            f"(use e.g. 512MB or 4GB): {exc}"
        ) from None


class WarehouseOutOfMemory(RuntimeError):
    """DuckDB hit the warehouse's memory cap on something it cannot spill."""


@contextlib.contextmanager
def _memory_cap_named() -> Iterator[None]:
    try:
        yield
    except duckdb.OutOfMemoryException as exc:
        raise WarehouseOutOfMemory(
            f"DuckDB needed more than the warehouse's {memory_limit()} memory cap: set "
            f"{MEMORY_LIMIT_ENV} higher (e.g. 4GB) and re-run. {str(exc).splitlines()[0]}"
        ) from exc


# Every stage table (webscale_rl.stages.registry: its module's TABLE_DDL) has a status in
# STATUSES and a reason; the doc_outcomes and accepted_pairs views are built from the registry.
STATUSES = ("kept", "rejected", "failed")
OUTCOMES = ("accepted", "rejected", "failed", "pending")

# The tables that are not a stage's (the stages declare theirs).
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
CREATE TABLE IF NOT EXISTS ingest_files (
    run_id           VARCHAR NOT NULL,   -- where every record of each file of a run went
    source_file      VARCHAR NOT NULL,
    records_seen     BIGINT NOT NULL,    -- = new_docs + already_ingested + deferred + errors
    new_docs         BIGINT NOT NULL,
    already_ingested BIGINT NOT NULL,
    deferred         BIGINT NOT NULL,    -- new documents left for a later run by max_docs
    errors           BIGINT NOT NULL,
    notes            JSON,               -- about the file, not errors: ["utf8_bom_stripped"]
    PRIMARY KEY (run_id, source_file)
);
ALTER TABLE ingest_files ADD COLUMN IF NOT EXISTS notes JSON;  -- warehouses made before the column
CREATE TABLE IF NOT EXISTS landing_files (
    path          VARCHAR PRIMARY KEY,   -- a file the scheduled ingestion has taken in
    size          BIGINT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    sha256        VARCHAR NOT NULL,
    ingest_run_id VARCHAR NOT NULL,
    seen_at       TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS run_docs (
    run_id VARCHAR NOT NULL,
    doc_id VARCHAR NOT NULL,
    PRIMARY KEY (run_id, doc_id)
);
CREATE TABLE IF NOT EXISTS audit_labels (
    qa_id          VARCHAR PRIMARY KEY,
    run_id         VARCHAR NOT NULL,     -- the run whose audit sample it came from
    correct        BOOLEAN,              -- NULL = not labelled
    leaked         BOOLEAN,
    self_contained BOOLEAN,
    notes          VARCHAR,
    source_file    VARCHAR,
    loaded_at      TIMESTAMPTZ
);
CREATE TABLE IF NOT EXISTS training_runs (
    train_run_id  VARCHAR PRIMARY KEY,   -- the webscale_rl_train DAG run
    export_path   VARCHAR NOT NULL,
    export_run_id VARCHAR,               -- the pipeline run that made the export
    launcher      VARCHAR NOT NULL,      -- none | verl | trl-cpu
    params        JSON,
    status        VARCHAR NOT NULL,      -- running | success | failed | cancelled
    message       VARCHAR,
    metrics       JSON,
    started_at    TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    ray_address   VARCHAR,               -- the Ray dashboard the job went to (launcher on Ray)
    ray_job_id    VARCHAR,               -- Ray's submission id
    ray_status    VARCHAR                -- PENDING | RUNNING | SUCCEEDED | FAILED | STOPPED
);
-- warehouses made before the Ray columns
ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS ray_address VARCHAR;
ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS ray_job_id VARCHAR;
ALTER TABLE training_runs ADD COLUMN IF NOT EXISTS ray_status VARCHAR;
CREATE TABLE IF NOT EXISTS training_evals (
    train_run_id VARCHAR NOT NULL,
    phase        VARCHAR NOT NULL,       -- baseline (serving model) | after (trained model)
    qa_id        VARCHAR NOT NULL,
    model        VARCHAR,
    completion   VARCHAR,
    score        DOUBLE,                 -- the verifiable reward: 1.0 / 0.0, NULL when the call failed
    error        VARCHAR,
    PRIMARY KEY (train_run_id, phase, qa_id)
);
CREATE TABLE IF NOT EXISTS llm_calls (
    request_hash      VARCHAR PRIMARY KEY,  -- sha256 of model + messages + params + schema
    stage             VARCHAR NOT NULL,
    item_id           VARCHAR,              -- doc_id or qa_id of the first request with this hash
    model             VARCHAR,
    prompt_id         VARCHAR,              -- prompt template name.version
    status            VARCHAR NOT NULL,     -- success | failed
    error_kind        VARCHAR,
    error             VARCHAR,
    attempts          INTEGER,
    prompt_tokens     BIGINT,               -- summed over every attempt, as the server reported
    completion_tokens BIGINT,
    latency_s         DOUBLE,
    raw               VARCHAR,              -- the reply text, kept for failures too
    result            JSON,                 -- the validated reply
    run_id            VARCHAR
);
CREATE TABLE IF NOT EXISTS llm_server_metrics (
    run_id     VARCHAR NOT NULL,
    point      VARCHAR NOT NULL,      -- start | end of the run's LLM work
    scraped_at TIMESTAMPTZ NOT NULL,
    server     VARCHAR,               -- the /metrics URL
    version    VARCHAR,               -- the server's /version, when it has one
    counters   JSON,                  -- vLLM counter name -> value, summed over label sets
    PRIMARY KEY (run_id, point)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id       VARCHAR PRIMARY KEY,
    run_label    VARCHAR,
    corpus       VARCHAR,
    params       JSON,
    files        JSON,
    started_at   TIMESTAMPTZ,
    ended_at     TIMESTAMPTZ,
    status       VARCHAR,                -- running, success, failed, refused
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
    with _memory_cap_named(), file_lock(db_path, exclusive=True):
        con = connect(db_path)
        try:
            con.execute(SCHEMA)
            create_stage_tables(con)
            con.execute(doc_outcomes_view_sql())
            con.execute(accepted_pairs_view_sql())
            con.execute(stage_counts_view_sql())
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
def read(db_path: Path, memory_share: float = 1.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """Read-only connection; the schema is created first if the file is new. `memory_share`:
    the part of the task's memory cap it may use (see memory_limit).

    With staged writes (WEBSCALE_RL_STAGING_DIR) readers may be on other hosts, where the
    local lock file means nothing: they rely on DuckDB's own file lock instead, retrying
    while the warehouse host commits."""
    if not db_path.exists():
        with write(db_path):
            pass
    if os.environ.get("WEBSCALE_RL_STAGING_DIR", "").strip():
        con = _connect_read_only_retrying(db_path, memory_share=memory_share)
        try:
            with _memory_cap_named():
                yield con
        finally:
            con.close()
        return
    with _memory_cap_named(), file_lock(db_path, exclusive=False):
        con = connect(db_path, read_only=True, memory_share=memory_share)
        try:
            yield con
        finally:
            con.close()


def _connect_read_only_retrying(
    db_path: Path, timeout_s: float = LOCK_TIMEOUT_S, memory_share: float = 1.0
) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return connect(db_path, read_only=True, memory_share=memory_share)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise WarehouseBusy(
                    f"warehouse {db_path} stayed locked for {timeout_s:.0f}s"
                ) from None
            time.sleep(0.2)


def stage_schema() -> str:
    """Every registered stage's table (each stage module declares its own)."""
    from webscale_rl.stages import registry  # the registry reads stage modules; import when used

    return "\n".join(stage.impl.TABLE_DDL for stage in registry.stages())


def create_stage_tables(con) -> None:
    """Create the stage tables that are missing. A stage added to a warehouse that already has
    data may declare `BACKFILL_SQL` (formatted with `previous`, the stage it reads), run once
    when its table is created, so documents finished before it existed keep their outcome."""
    from webscale_rl.stages import registry

    existing = {
        name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    }
    con.execute(stage_schema())
    for stage in registry.stages():
        backfill = getattr(stage.impl, "BACKFILL_SQL", None)
        if backfill and stage.name not in existing and registry.previous(stage.name) in existing:
            con.execute(backfill.format(previous=registry.previous(stage.name)))


def accepted_pairs_view_sql() -> str:
    from webscale_rl.stages import registry

    return f"CREATE OR REPLACE VIEW accepted_pairs AS {registry.accepted_pairs_sql()}"


def stage_counts_view_sql() -> str:
    """Rows per (run, stage, status, reason) over each run's work set: what the run counts,
    the CLI and the card report per stage."""
    from webscale_rl.stages import registry

    parts = [
        f"SELECT r.run_id, '{name}' AS stage, s.status, s.reason, count(*) AS n "
        f"FROM run_docs r JOIN {name} s USING (doc_id) GROUP BY ALL"
        for name in registry.names()
    ]
    union = "\nUNION ALL ".join(parts)
    return f"CREATE OR REPLACE VIEW stage_counts AS\n{union}"


def doc_outcomes_view_sql() -> str:
    """One row per document: the last stage it reached, its outcome and the reason.

    A document takes the status of the first document stage that did not keep it, or is
    `pending` where a stage has no row for it yet. Once every document stage kept it, its
    pairs decide: `accepted` if at least one passed every pair stage, `pending` while a
    pair kept by one stage awaits the next (or none was made yet), `failed` if a pair
    failed and none was accepted, else `rejected`. Stages come from the registry; the first
    pair stage makes the pairs (its table has `persona_idx`, the order reasons are read in).
    """
    from webscale_rl.stages import registry

    stages = registry.names("doc")
    pair_stages = registry.names("pair")
    joins = "\n".join(
        f"LEFT JOIN {s} AS s{i} ON s{i}.doc_id = d.doc_id" for i, s in enumerate(stages)
    )
    stage_cases, outcome_cases, reason_cases = [], [], []
    for i, stage in enumerate(stages):
        previous = stages[i - 1] if i else "ingest"
        stage_cases += [
            f"WHEN s{i}.status IS NULL THEN '{previous}'",
            f"WHEN s{i}.status <> 'kept' THEN '{stage}'",
        ]
        outcome_cases += [
            f"WHEN s{i}.status IS NULL THEN 'pending'",
            f"WHEN s{i}.status <> 'kept' THEN s{i}.status",
        ]
        reason_cases += [
            f"WHEN s{i}.status IS NULL THEN NULL",
            f"WHEN s{i}.status <> 'kept' THEN s{i}.reason",
        ]
    # p0 makes the pairs; p1.. each read the previous one's kept pairs.
    pair_joins = "\n    ".join(
        f"LEFT JOIN {s} p{i} ON p{i}.qa_id = p0.qa_id" for i, s in enumerate(pair_stages) if i
    )
    last = len(pair_stages) - 1
    awaiting = " OR ".join(
        f"(p{i}.status = 'kept' AND p{i + 1}.status IS NULL)" for i in range(last)
    )
    failed = " OR ".join(f"p{i}.status = 'failed'" for i in range(len(pair_stages)))
    latest = ", ".join(f"p{i}.{{0}}" for i in reversed(range(len(pair_stages))))
    # The furthest pair stage any of the document's pairs has a row in (0: the first).
    furthest = " ".join(
        f"WHEN p{i}.status IS NOT NULL THEN {i}" for i in reversed(range(1, last + 1))
    )
    return f"""
CREATE OR REPLACE VIEW doc_outcomes AS
WITH qa AS (
    SELECT p0.doc_id,
           count(*) FILTER (WHERE p{last}.status = 'kept') AS n_accepted,
           count(*) FILTER (WHERE {awaiting or "false"}) AS n_unverified,
           count(*) FILTER (WHERE {failed}) AS n_failed,
           count(*) FILTER (WHERE p0.status = 'failed') AS n_gen_failed,
           count(*) FILTER (WHERE p0.status <> 'kept') AS n_gen_stopped,
           count(*) AS n_pairs,
           {f"max(CASE {furthest} ELSE 0 END)" if furthest else "0"} AS furthest,
           arg_min(coalesce({latest.format("reason")}), p0.persona_idx)
               FILTER (WHERE coalesce({latest.format("status")}) <> 'kept') AS first_reason
    FROM {pair_stages[0]} p0
    {pair_joins}
    GROUP BY p0.doc_id
)
SELECT
    d.doc_id,
    CASE {" ".join(stage_cases)}
         WHEN qa.doc_id IS NULL THEN '{stages[-1]}'
         WHEN qa.n_accepted > 0 THEN '{pair_stages[-1]}'
         WHEN qa.n_unverified > 0 THEN '{pair_stages[0]}'
         WHEN qa.n_failed > 0 AND qa.n_failed = qa.n_gen_failed THEN '{pair_stages[0]}'
         WHEN qa.n_gen_stopped = qa.n_pairs THEN '{pair_stages[0]}'
         ELSE {list(pair_stages)}[qa.furthest + 1] END AS last_stage,
    CASE {" ".join(outcome_cases)}
         WHEN qa.doc_id IS NULL THEN 'pending'
         WHEN qa.n_accepted > 0 THEN 'accepted'
         WHEN qa.n_unverified > 0 THEN 'pending'
         WHEN qa.n_failed > 0 THEN 'failed'
         ELSE 'rejected' END AS outcome,
    CASE {" ".join(reason_cases)}
         WHEN qa.n_accepted > 0 OR qa.doc_id IS NULL OR qa.n_unverified > 0 THEN NULL
         ELSE qa.first_reason END AS reason
FROM documents AS d
{joins}
LEFT JOIN qa ON qa.doc_id = d.doc_id
"""


def _names_and_rows(frame) -> tuple[list[str], int]:
    if hasattr(frame, "column_names"):  # an Arrow table (its .columns are its arrays)
        return frame.column_names, frame.num_rows
    return list(frame.columns), len(frame)  # pandas


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, frame, key: str = "doc_id") -> int:
    """Idempotent write of a stage's rows: rows with the same key are replaced, never
    duplicated. `frame`: a pandas frame, an Arrow table, or the Path of a Parquet file (a
    spool), which DuckDB reads itself: its rows never pass through Python or Arrow memory."""
    if isinstance(frame, Path):
        import pyarrow.parquet as pq

        metadata = pq.read_metadata(frame)
        names, rows = metadata.schema.to_arrow_schema().names, metadata.num_rows
        frame = con.read_parquet(str(frame))
    else:
        names, rows = _names_and_rows(frame)
    if rows == 0:
        return 0
    con.register("_incoming", frame)
    try:
        columns = ", ".join(names)
        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM _incoming)")
        con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _incoming")
    finally:
        # After a failed statement the transaction is aborted and unregister fails too: let
        # the statement's own error through (the caller's write() rolls back).
        with contextlib.suppress(duckdb.TransactionException):
            con.unregister("_incoming")
    return rows


def one(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> tuple | None:
    """First row of a query, with the result fully consumed (DuckDB 2 refuses to register or
    unregister a DataFrame while an earlier result is only partly fetched)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
