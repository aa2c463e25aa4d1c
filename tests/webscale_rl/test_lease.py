"""The warehouse lease: one run at a time, a dead holder taken over, a taken-over run stopped."""

from __future__ import annotations

import os
import time

import pytest

from webscale_rl import lease, warehouse

pytestmark = pytest.mark.unit


@pytest.fixture
def db(tmp_path, monkeypatch):
    monkeypatch.delenv("WEBSCALE_RL_STAGING_DIR", raising=False)
    path = tmp_path / "warehouse.duckdb"
    with warehouse.write(path):
        pass
    return path


def set_status(db, run_id: str, status: str) -> None:
    with warehouse.write(db) as con:
        con.execute("INSERT OR REPLACE INTO runs (run_id, status) VALUES (?, ?)", [run_id, status])


def age(db, seconds: float) -> None:
    """Make the lease's last heartbeat `seconds` old."""
    path = lease.lease_path(db)
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_a_live_holder_keeps_others_out_with_a_message_that_says_what_to_do(db):
    set_status(db, "run-a", "running")
    assert lease.acquire(db, "run-a", wait=0) is None
    assert (
        lease.acquire(db, "run-a", wait=0) is None
    )  # re-entrant for the same run (a retried task)
    with pytest.raises(lease.LeaseBusy) as busy:
        lease.acquire(db, "run-b", wait=0.3, ttl=60)
    message = str(busy.value)
    assert f"warehouse {db} is in use by run run-a" in message
    assert "its lease expires 60s after its last heartbeat (WEBSCALE_RL_LEASE_TTL_S)" in message
    assert "Waited 0s (WEBSCALE_RL_LEASE_WAIT_S)" in message


def test_a_run_that_ended_frees_the_lease_at_once(db):
    for status in ("success", "failed"):
        set_status(db, "run-a", "running")
        lease.acquire(db, "run-a", wait=0)
        set_status(db, "run-a", status)
        assert lease.acquire(db, "run-b", wait=0, ttl=600) is None  # ended, not presumed dead
        lease.release(db, "run-b")


def test_a_silent_holder_is_taken_over_after_the_ttl_and_then_stopped(db):
    set_status(db, "run-a", "running")
    lease.acquire(db, "run-a", wait=0)
    age(db, 5)
    with pytest.raises(lease.LeaseBusy):
        lease.acquire(db, "run-b", wait=0, ttl=10)  # 5 s of silence is within the ttl
    taken = lease.acquire(db, "run-b", wait=0, ttl=4)
    assert taken["run_id"] == "run-a" and taken["pid"] == os.getpid()
    with pytest.raises(lease.LeaseLost, match="run run-a lost the warehouse lease to run run-b"):
        lease.beat(db, "run-a")
    lease.release(db, "run-a")  # a stale run's release must not free the new holder's lease
    assert lease.lease_path(db).exists()
    lease.beat(db, "run-b")


def test_waiting_ends_when_the_holder_releases(db):
    set_status(db, "run-a", "running")
    lease.acquire(db, "run-a", wait=0)
    lease.release(db, "run-a")
    assert not lease.lease_path(db).exists()
    assert lease.acquire(db, "run-b", wait=0) is None


def test_kept_alive_beats_from_a_thread_and_raises_when_taken_over(db, monkeypatch):
    monkeypatch.setenv(lease.TTL_ENV, "0.4")  # beat every 0.1 s
    set_status(db, "run-a", "running")
    lease.acquire(db, "run-a", wait=0)
    with lease.kept_alive(db, "run-a"):
        age(db, 100)
        time.sleep(0.35)
        assert time.time() - lease.lease_path(db).stat().st_mtime < 0.3  # the thread beat
    with pytest.raises(lease.LeaseLost), lease.kept_alive(db, "run-a"):
        age(db, 100)
        lease.acquire(db, "run-b", wait=0, ttl=1)  # presumed dead: taken over mid-task
        time.sleep(0.35)
