"""The warehouse lease: one pipeline run works on a warehouse at a time.

Airflow's `max_active_runs=1` already serialises the runs one scheduler starts, but not a
manual `airflow dags test`, a second deployment, or a run that outlived its process. Two
runs at once would both claim the same pending documents and pay for the same LLM calls
twice, so `start_run` takes this lease and every task of the run keeps it alive.

The lease is a small JSON file beside the warehouse (on the shared staging storage when
workers are remote) naming the holder run; its mtime is the heartbeat. It is free when it
does not exist, when its run has ended (success or failed in `runs`), or when nobody has
touched it for `ttl` seconds (the holder died: a SIGKILLed process cannot release it). A
run that finds another run holding its lease stops with LeaseLost instead of writing on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from webscale_rl import staging, warehouse
from webscale_rl.config import host_id
from webscale_rl.errors import FatalError

log = logging.getLogger(__name__)
TTL_ENV, WAIT_ENV = "WEBSCALE_RL_LEASE_TTL_S", "WEBSCALE_RL_LEASE_WAIT_S"
DEFAULT_TTL_S, DEFAULT_WAIT_S = 120.0, 900.0


class LeaseBusy(FatalError):
    """Another live run held the warehouse for longer than we were willing to wait."""


class LeaseLost(FatalError):
    """This run's lease was taken over (it was presumed dead): it must not write on."""


def ttl_s() -> float:
    return float(os.environ.get(TTL_ENV) or DEFAULT_TTL_S)


def wait_s() -> float:
    return float(os.environ.get(WAIT_ENV) or DEFAULT_WAIT_S)


def lease_path(db_path: Path) -> Path:
    return (staging.staging_dir() or db_path.parent) / f"{db_path.name}.lease"


def _read(path: Path) -> tuple[dict | None, float]:
    """(holder record, seconds since its last heartbeat), or (None, inf) when free."""
    try:
        holder = json.loads(path.read_text())
        return holder, time.time() - path.stat().st_mtime
    except (FileNotFoundError, json.JSONDecodeError):
        return None, float("inf")


def _run_status(db_path: Path, run_id: str) -> str | None:
    with warehouse.read(db_path) as con:
        row = warehouse.one(con, "SELECT status FROM runs WHERE run_id = ?", [run_id])
    return row[0] if row else None


def acquire(
    db_path: Path, run_id: str, wait: float | None = None, ttl: float | None = None
) -> dict | None:
    """Take the lease for `run_id`, waiting up to `wait` seconds for a live holder to finish.
    Returns the holder it took over from when that holder was presumed dead, else None."""
    wait = wait_s() if wait is None else wait
    ttl = ttl_s() if ttl is None else ttl
    path = lease_path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait
    logged = False
    while True:
        # The lock file makes read-decide-write one step between processes on this host
        # (start_run runs on the warehouse host).
        with warehouse.file_lock(path, exclusive=True):
            holder, idle = _read(path)
            ended = (
                holder is not None
                and holder["run_id"] != run_id
                and _run_status(db_path, holder["run_id"]) in ("success", "failed")
            )
            if holder is None or holder["run_id"] == run_id or ended or idle > ttl:
                record = {
                    "run_id": run_id,
                    "host": host_id(),
                    "pid": os.getpid(),
                    "acquired_at": datetime.now(UTC).isoformat(),
                }
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(record))
                tmp.replace(path)
                stale = holder if holder and holder["run_id"] != run_id and not ended else None
                if stale:
                    log.warning(
                        "took over the warehouse lease from run %s: no heartbeat for %.0fs (ttl %.0fs)",
                        stale["run_id"],
                        idle,
                        ttl,
                    )
                return stale
        if time.monotonic() > deadline:
            raise LeaseBusy(
                f"warehouse {db_path} is in use by run {holder['run_id']} (host {holder.get('host')}, last "
                f"heartbeat {idle:.0f}s ago); runs on one warehouse go one at a time. Wait for it to end, or, "
                f"if that run is dead, its lease expires {ttl:.0f}s after its last heartbeat "
                f"({TTL_ENV}). Waited {wait:.0f}s ({WAIT_ENV})."
            )
        if not logged:
            log.info(
                "waiting for run %s to release warehouse %s (heartbeat %.0fs ago)",
                holder["run_id"],
                db_path,
                idle,
            )
            logged = True
        time.sleep(min(1.0, max(0.05, ttl / 10)))


def beat(db_path: Path, run_id: str) -> None:
    """Heartbeat; raises LeaseLost when another run holds the lease now."""
    path = lease_path(db_path)
    holder, _ = _read(path)
    if holder is None:
        # Released after a failure (the run is being retried): take it back if still free.
        acquire(db_path, run_id, wait=0)
        return
    if holder["run_id"] != run_id:
        raise LeaseLost(
            f"run {run_id} lost the warehouse lease to run {holder['run_id']} (it went {ttl_s():.0f}s without "
            f"a heartbeat and was presumed dead). Nothing more is written by this run; trigger it again."
        )
    os.utime(path)


def release(db_path: Path, run_id: str) -> None:
    path = lease_path(db_path)
    with warehouse.file_lock(path, exclusive=True):
        holder, _ = _read(path)
        if holder and holder["run_id"] == run_id:
            path.unlink(missing_ok=True)


@contextlib.contextmanager
def kept_alive(db_path: Path, run_id: str) -> Iterator[None]:
    """Check the lease, then beat every ttl/4 seconds from a thread while the block runs."""
    beat(db_path, run_id)
    stop = threading.Event()
    lost: list[LeaseLost] = []

    def loop() -> None:
        while not stop.wait(ttl_s() / 4):
            try:
                beat(db_path, run_id)
            except LeaseLost as exc:
                log.error("%s", exc)
                lost.append(exc)
                return
            except Exception as exc:  # a missed beat is not fatal; the next one may succeed
                log.warning("lease heartbeat failed: %s", exc)

    thread = threading.Thread(target=loop, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
    if lost:
        raise lost[0]
