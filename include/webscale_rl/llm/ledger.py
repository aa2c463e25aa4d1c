"""The call ledger `llm_calls`: one row per distinct request (model + messages + params).

A request whose hash already succeeded is answered from here and never sent again: this
is the cache that makes re-runs and resumes free. Failed requests are retried by the
next run and their row replaced.

Between ledger flushes every success is also appended to a per-process journal file the
moment its reply is parsed, so a crash (even SIGKILL) loses no call that was paid for: the
next client adopts the journals of dead writers into the ledger before it looks anything up.
Journals live beside the warehouse, or on the shared staging storage when workers are
remote. A journal is owned by lease: its writer touches it every ttl/4 seconds, and any
client on any host adopts one that went a ttl without a touch (WEBSCALE_RL_LEASE_TTL_S,
default 120 s) or whose writer's pid is gone from this host. Adoption is an upsert by
request hash, so a journal adopted twice, or one whose writer was only presumed dead and
flushes the same rows itself later, records each call once.
A write reaches the OS at once (a killed process loses nothing); it is fsynced to the disk
in batches (every FSYNC_ROWS rows or FSYNC_EVERY_S seconds), so a power loss or kernel
crash loses at most that window of successes, which the next run sends again.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path

import pandas as pd

from webscale_rl import lease, staging, warehouse
from webscale_rl.config import host_id, run_folder_name

log = logging.getLogger(__name__)

COLUMNS = [
    "request_hash",
    "stage",
    "item_id",
    "model",
    "prompt_id",
    "status",
    "error_kind",
    "error",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "raw",
    "result",
    "run_id",
]


def successes(
    db_path: Path, hashes: list[str], run_id: str | None = None, stage: str | None = None
) -> dict[str, dict]:
    """{request_hash: row} of the given hashes that already succeeded: in the warehouse, or
    staged by an earlier attempt of this run's stage (remote workers)."""
    if not hashes:
        return {}
    staged = staging.staged_successes(run_id, stage, hashes) if run_id and stage else {}
    with warehouse.read(db_path) as con:
        con.register("_hashes", pd.DataFrame({"request_hash": hashes}))
        rows = con.execute(
            "SELECT request_hash, result, raw, prompt_tokens, completion_tokens FROM llm_calls "
            "WHERE status = 'success' AND request_hash IN (SELECT request_hash FROM _hashes)"
        ).fetchall()
        con.unregister("_hashes")
    found = {
        h: {"result": json.loads(r), "raw": raw, "prompt_tokens": p, "completion_tokens": c}
        for h, r, raw, p, c in rows
    }
    return {**staged, **found}


def record(db_path: Path, rows: list[dict], run_id: str, stage: str, part: str = "all") -> None:
    """Upsert finished calls (a short locked write, or a staged file; called in batches)."""
    if not rows:
        return
    frame = pd.DataFrame(rows, columns=COLUMNS)
    staging.write_shard(
        db_path, "llm_calls", frame, run_id=run_id, stage=stage, part=part, unique_part=True
    )


def per_stage(con, run_id: str) -> dict[str, dict]:
    """A run's ledger by stage: calls, failed calls, attempts, prompt / completion tokens (as the
    server reported, over every attempt) and the models that answered."""
    return {
        stage: {
            "calls": calls,
            "failed": failed,
            "attempts": attempts,
            "prompt_tokens": pt,
            "completion_tokens": ct,
            "models": sorted(models),
        }
        for stage, calls, failed, attempts, pt, ct, models in con.execute(
            """SELECT stage, count(*), count(*) FILTER (WHERE status <> 'success'),
                      coalesce(sum(attempts), 0)::BIGINT, coalesce(sum(prompt_tokens), 0)::BIGINT,
                      coalesce(sum(completion_tokens), 0)::BIGINT, list(DISTINCT model)
               FROM llm_calls WHERE run_id = ? GROUP BY ALL ORDER BY ALL""",
            [run_id],
        ).fetchall()
    }


# -- journal ---------------------------------------------------------------------------


def journal_dir(db_path: Path) -> Path:
    """Beside the warehouse, or on the shared staging storage when workers are remote."""
    return (staging.staging_dir() or db_path.parent) / f"{db_path.stem}.llm_journal"


# An fsync costs about a disk round trip; one per success would cap a stage's call rate
# (bench/llm_client.py measures the three choices). Batched, the window a power loss can
# take is a quarter-second's calls or FSYNC_ROWS of them.
FSYNC_ROWS = 256
FSYNC_EVERY_S = 0.25


def _fsync_dir(folder: Path) -> None:
    """Make a new file's name durable (its folder's entry), not only its bytes."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """This process's append-only record of successful calls not yet flushed to the ledger.
    The file name carries host and pid, and its mtime is the writer's heartbeat, so a later
    client on any host can tell whether its writer died."""

    def __init__(
        self,
        db_path: Path,
        run_id: str,
        stage: str,
        fsync_rows: int = FSYNC_ROWS,
        fsync_every_s: float = FSYNC_EVERY_S,
    ):
        folder = journal_dir(db_path)
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{host_id()}--{os.getpid()}--{run_folder_name(run_id)}--{stage}--{uuid.uuid4().hex[:8]}"
        self.path = folder / f"{name}.jsonl"
        self.fsync_rows, self.fsync_every_s = fsync_rows, fsync_every_s
        self.fsyncs = 0  # how many times the file was synced to the disk
        self._handle = None
        self._unsynced = 0
        self._synced_at = 0.0

    def append(self, row: dict) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
            _fsync_dir(self.path.parent)
            self._synced_at = time.monotonic()
        # One write + flush per line: the OS has it even if this process is killed next.
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        self._unsynced += 1
        if (
            self._unsynced >= self.fsync_rows
            or time.monotonic() - self._synced_at >= self.fsync_every_s
        ):
            self.sync()

    def heartbeat(self) -> None:
        """Renew the lease on the journal (its mtime); call at least every ttl/4 seconds."""
        if self._handle is not None:
            os.utime(self.path)

    def sync(self) -> None:
        """fsync what was appended: it survives a power loss from here on."""
        if self._handle is not None and self._unsynced:
            os.fsync(self._handle.fileno())
            self.fsyncs += 1
            self._unsynced, self._synced_at = 0, time.monotonic()

    def close(self) -> None:
        """Called once every row is in the ledger: the journal is then redundant."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self.path.unlink(missing_ok=True)


def _writer_is_dead(path: Path, ttl: float) -> bool:
    """A journal's writer is dead when the journal went `ttl` seconds without a heartbeat (on
    any host: it may be gone with its host), or, on this host, as soon as its pid is gone."""
    try:
        if time.time() - path.stat().st_mtime > ttl:
            return True
    except FileNotFoundError:
        return False  # adopted or closed meanwhile
    host, _, rest = path.name.partition("--")
    pid = rest.partition("--")[0]
    if host != host_id() or not pid.isdigit():
        return False  # another host's writer with a fresh heartbeat: alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def adopt_orphans(db_path: Path, run_id: str, stage: str, part: str = "all") -> int:
    """Record the journals of dead writers (a crashed task) in the ledger, then remove them.
    Returns how many successful calls were recovered."""
    folder = journal_dir(db_path)
    if not folder.exists():
        return 0
    recovered, ttl = 0, lease.ttl_s()
    for path in sorted(folder.glob("*.jsonl")):
        if not _writer_is_dead(path, ttl):
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue  # another client adopted it first
        rows = []
        for line in text.splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by the crash: that call is simply sent again
        record(db_path, rows, run_id, stage, part=f"{part}-adopted")
        path.unlink(missing_ok=True)
        recovered += len(rows)
        log.info(
            "recovered %d successful calls from %s (its writer died before flushing them)",
            len(rows),
            path.name,
        )
    return recovered
