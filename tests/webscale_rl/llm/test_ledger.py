"""The ledger's journal: every success reaches the OS at once, and the disk in batches."""

from __future__ import annotations

import json
import os
import time

import pytest

from webscale_rl import warehouse
from webscale_rl.llm import ledger

pytestmark = pytest.mark.unit


def _row(i: int) -> dict:
    return {"request_hash": f"h{i}", "stage": "generate", "status": "success", "raw": "é" * 3}


def test_each_append_is_readable_at_once_and_synced_in_batches(tmp_path):
    journal = ledger.Journal(
        tmp_path / "w.duckdb", "run-1", "generate", fsync_rows=3, fsync_every_s=3600
    )
    for i in range(7):
        journal.append(_row(i))
        # Another reader (the adopting client after a kill) sees every line written so far.
        lines = journal.path.read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["request_hash"] for line in lines] == [
            f"h{j}" for j in range(i + 1)
        ]
    assert journal.fsyncs == 2  # after rows 3 and 6; row 7 waits for the next batch
    journal.sync()
    assert journal.fsyncs == 3
    journal.sync()  # nothing new: no second fsync
    assert journal.fsyncs == 3
    journal.close()
    assert not journal.path.exists()


def test_a_slow_trickle_is_synced_row_by_row(tmp_path):
    journal = ledger.Journal(
        tmp_path / "w.duckdb", "run-1", "verify", fsync_rows=256, fsync_every_s=0
    )
    for i in range(4):
        journal.append(_row(i))
    assert journal.fsyncs == 4
    journal.close()


def test_a_dead_writers_journal_is_adopted_into_the_ledger(tmp_path):
    db = tmp_path / "w.duckdb"
    journal = ledger.Journal(db, "run-1", "generate")
    rows = [
        {c: None for c in ledger.COLUMNS}
        | {"request_hash": f"h{i}", "stage": "generate", "status": "success"}
        for i in range(5)
    ]
    for row in rows:
        journal.append(row)
    journal._handle.close()
    # Its writer "died": a pid that cannot be alive on this host.
    host, _, rest = journal.path.name.partition("--")
    dead = journal.path.with_name(f"{host}--999999999--{rest.partition('--')[2]}")
    journal.path.rename(dead)
    assert ledger.adopt_orphans(db, "run-1", "generate") == 5
    assert not dead.exists()
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT count(*) FROM llm_calls WHERE status = 'success'"
        ).fetchone() == (5,)


def _journal_of(db, host: str, monkeypatch, n: int = 3) -> ledger.Journal:
    """A journal written by a client on `host` (its rows flushed to the OS, not the ledger)."""
    monkeypatch.setenv("WEBSCALE_RL_HOST_ID", host)
    journal = ledger.Journal(db, "run-1", "generate")
    for i in range(n):
        journal.append(
            {c: None for c in ledger.COLUMNS}
            | {"request_hash": f"{host}-h{i}", "stage": "generate", "status": "success"}
        )
    return journal


def _age(path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_another_hosts_journal_is_adopted_only_once_its_lease_lapses(tmp_path, monkeypatch):
    """Another host's writer cannot be asked whether it is alive: its journal is adopted only
    after a whole ttl without a heartbeat, then exactly once."""
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("WEBSCALE_RL_LEASE_TTL_S", "60")
    journal = _journal_of(db, "host-a", monkeypatch)
    assert journal.path.name.startswith("host-a--")
    monkeypatch.setenv("WEBSCALE_RL_HOST_ID", "host-b")
    _age(journal.path, 30)  # half a ttl ago: presumed alive
    assert ledger.adopt_orphans(db, "run-1", "generate") == 0
    assert journal.path.exists()
    _age(journal.path, 61)
    assert ledger.adopt_orphans(db, "run-1", "generate") == 3
    assert not journal.path.exists()
    assert ledger.adopt_orphans(db, "run-1", "generate") == 0
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT list(request_hash ORDER BY request_hash) FROM llm_calls WHERE status = 'success'"
        ).fetchone() == ([f"host-a-h{i}" for i in range(3)],)


def test_a_heartbeat_renews_the_lease_so_a_live_writer_keeps_its_journal(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    monkeypatch.setenv("WEBSCALE_RL_LEASE_TTL_S", "60")
    journal = _journal_of(db, "host-a", monkeypatch)
    _age(journal.path, 61)
    journal.heartbeat()
    monkeypatch.setenv("WEBSCALE_RL_HOST_ID", "host-b")
    assert ledger.adopt_orphans(db, "run-1", "generate") == 0
    journal.close()
    assert not journal.path.exists()


def test_a_journal_adopted_twice_records_each_call_once(tmp_path, monkeypatch):
    """Two clients may adopt the same lapsed journal at once (or its writer, only presumed
    dead, flushes the rows itself): the ledger upserts by request hash."""
    db = tmp_path / "w.duckdb"
    journal = _journal_of(db, "host-a", monkeypatch)
    copy = journal.path.with_name(journal.path.name.replace("--generate--", "--generate-copy--"))
    copy.write_bytes(journal.path.read_bytes())
    monkeypatch.setenv("WEBSCALE_RL_HOST_ID", "host-b")
    monkeypatch.setenv("WEBSCALE_RL_LEASE_TTL_S", "0")
    assert ledger.adopt_orphans(db, "run-1", "generate") == 6
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT count(*), count(DISTINCT request_hash) FROM llm_calls"
        ).fetchone() == (3, 3)
