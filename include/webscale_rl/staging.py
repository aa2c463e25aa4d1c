"""Staged writes: how stage shards on other hosts reach the warehouse.

DuckDB is one file guarded by a local file lock: safe for processes on one machine, not
over a network filesystem. When WEBSCALE_RL_STAGING_DIR is set (shared storage every
worker mounts), shard tasks never write the warehouse: each writes its rows as Parquet
under <staging>/<run>/<stage>/<table>/, and the stage's gate task, which runs on the
warehouse host (queue WEBSCALE_RL_WAREHOUSE_QUEUE), commits them in one transaction
before validating. Without the setting, shards write the warehouse directly.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import duckdb
import pandas as pd

from webscale_rl import warehouse
from webscale_rl.config import run_folder_name
from webscale_rl.errors import FatalError
from webscale_rl.stages import registry

ENV = "WEBSCALE_RL_STAGING_DIR"
LEDGER = "llm_calls"


def keys(table: str) -> tuple[str, str]:
    """(the key a shard's rows replace by, the table's primary key) of a stage table (from
    the registry: generate replaces a document's pairs as a whole) or of the ledger."""
    if table == LEDGER:
        return "request_hash", "request_hash"
    stage = registry.get(table)
    return stage.replace_key, stage.key


class ShardWriteError(FatalError):
    """A shard's rows cannot be written for a reason a retry cannot fix (duplicate keys, a
    value the table refuses); the message names the table and the offending keys."""


def _check_keys(table: str, frame: pd.DataFrame) -> None:
    key = keys(table)[1]
    if len(frame) == 0:  # an empty shard may have no columns at all
        return
    repeated = frame.loc[frame[key].duplicated(keep=False), key]
    if len(repeated):
        shown = sorted(set(repeated))
        raise ShardWriteError(
            f"{table}: the shard's rows repeat {len(shown)} {key}(s), so none of them was written "
            f"(a retry would build the same rows; this is a defect in the stage's row building): "
            f"{', '.join(map(str, shown[:10]))}{' …' if len(shown) > 10 else ''}"
        )


def staging_dir() -> Path | None:
    value = os.environ.get(ENV, "").strip()
    return Path(value).expanduser().resolve() if value else None


def stage_path(run_id: str, stage: str) -> Path:
    return staging_dir() / run_folder_name(run_id) / stage


def write_shard(
    db_path: Path,
    table: str,
    frame: pd.DataFrame,
    *,
    run_id: str,
    stage: str,
    part: str,
    unique_part: bool = False,
) -> None:
    """Write a shard's rows: to the warehouse directly, or (staged) to its own Parquet file.

    A stage table's part is the shard, so a retried shard replaces its file; ledger parts
    are unique per flush, so every finished call of every attempt is kept."""
    _check_keys(table, frame)
    if staging_dir() is None:
        try:
            with warehouse.write(db_path) as con:
                warehouse.replace_rows(con, table, frame, key=keys(table)[0])
        except (duckdb.ConstraintException, duckdb.ConversionException) as exc:
            shown = ", ".join(map(str, frame[keys(table)[1]].head(10)))
            raise ShardWriteError(
                f"{table}: the warehouse refused the shard's rows ({exc}); none was "
                f"written. Keys in the shard: {shown}{' …' if len(frame) > 10 else ''}"
            ) from exc
        return
    if len(frame) == 0:  # an empty shard has nothing to commit (and Parquet needs columns)
        return
    folder = stage_path(run_id, stage) / table
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{part}-{uuid.uuid4().hex[:12]}" if unique_part else part
    tmp = folder / f".{name}.parquet.tmp"
    frame.to_parquet(tmp, index=False)
    tmp.rename(folder / f"{name}.parquet")  # atomic: a reader never sees half a file


def staged_successes(run_id: str, stage: str, hashes: list[str]) -> dict[str, dict]:
    """Ledger successes staged by earlier attempts of this stage (not committed yet)."""
    if staging_dir() is None or not hashes:
        return {}
    folder = stage_path(run_id, stage) / "llm_calls"
    files = sorted(str(p) for p in folder.glob("*.parquet")) if folder.exists() else []
    if not files:
        return {}
    import json

    con = duckdb.connect()
    try:
        con.register("_hashes", pd.DataFrame({"request_hash": hashes}))
        rows = con.execute(
            "SELECT request_hash, result, raw, prompt_tokens, completion_tokens FROM read_parquet(?, union_by_name = true) "
            "WHERE status = 'success' AND request_hash IN (SELECT request_hash FROM _hashes)",
            [files],
        ).fetchall()
    finally:
        con.close()
    return {
        h: {"result": json.loads(r), "raw": raw, "prompt_tokens": p, "completion_tokens": c}
        for h, r, raw, p, c in rows
    }


def commit(db_path: Path, run_id: str, stage: str) -> dict[str, int]:
    """Load a stage's staged Parquet into the warehouse in one transaction, then remove it.
    Idempotent: rows replace rows with the same key. Returns rows committed per table."""
    if staging_dir() is None:
        return {}
    folder = stage_path(run_id, stage)
    if not folder.exists():
        return {}
    committed: dict[str, int] = {}
    with warehouse.write(db_path) as con:
        for table_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            table = table_dir.name
            files = sorted(str(p) for p in table_dir.glob("*.parquet"))
            if not files:
                continue
            # One row per primary key: for the ledger a success wins over a failed attempt.
            order = (
                "(status = 'success') DESC, filename DESC" if table == LEDGER else "filename DESC"
            )
            replace_key, primary_key = keys(table)
            frame = con.execute(
                f"SELECT * EXCLUDE (filename) FROM read_parquet(?, union_by_name = true, filename = true) "
                f"QUALIFY row_number() OVER (PARTITION BY {primary_key} ORDER BY {order}) = 1",
                [files],
            ).df()
            committed[table] = warehouse.replace_rows(con, table, frame, key=replace_key)
    shutil.rmtree(folder)
    return committed
