from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from webscale_rl import warehouse


def _doc(i: int) -> dict:
    return {
        "doc_id": f"{i:064x}",
        "ingest_seq": i,
        "source_file": "f.jsonl",
        "source_line": i,
        "text": f"text {i}",
        "n_chars": 6,
        "n_tokens": 2,
        "dedup_key": f"k{i}",
        "ingest_run_id": "r",
        "ingested_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


@pytest.mark.unit
def test_replace_rows_never_duplicates(tmp_path):
    db = tmp_path / "w.duckdb"
    rows = pd.DataFrame(
        {"doc_id": ["a", "b"], "run_id": "r", "status": ["kept", "rejected"], "reason": [None, "x"]}
    )
    for _ in range(3):
        with warehouse.write(db) as con:
            warehouse.replace_rows(con, "heuristic_filter", rows)
    changed = rows.assign(status=["rejected", "rejected"], reason=["y", "x"])
    with warehouse.write(db) as con:
        warehouse.replace_rows(con, "heuristic_filter", changed)
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT doc_id, status, reason FROM heuristic_filter ORDER BY 1"
        ).fetchall() == [("a", "rejected", "y"), ("b", "rejected", "x")]


def _stage(con, table: str, rows: list[tuple]) -> None:
    frame = pd.DataFrame(rows, columns=["doc_id", "status", "reason"]).assign(run_id="r")
    frame["doc_id"] = frame["doc_id"].map(lambda i: f"{i:064x}")
    warehouse.replace_rows(con, table, frame)


def _pairs(con, rows: list[tuple]) -> None:
    """rows: (doc, persona_idx, generate status, generate reason, verify status or None, verify reason,
    decontaminate status or None, decontaminate reason, learnability status or None, its reason)"""
    rows = [r + (None, None) * ((10 - len(r)) // 2) for r in rows]
    gen = pd.DataFrame(
        [
            {
                "qa_id": f"q{d}{i}",
                "doc_id": f"{d:064x}",
                "run_id": "r",
                "persona_idx": i,
                "persona": f"p{i}",
                "status": gs,
                "reason": gr,
            }
            for d, i, gs, gr, *_ in rows
        ]
    )
    ver = pd.DataFrame(
        [
            {"qa_id": f"q{d}{i}", "doc_id": f"{d:064x}", "run_id": "r", "status": vs, "reason": vr}
            for d, i, _, _, vs, vr, *_ in rows
            if vs
        ]
    )
    dec = pd.DataFrame(
        [
            {"qa_id": f"q{d}{i}", "doc_id": f"{d:064x}", "run_id": "r", "status": xs, "reason": xr}
            for d, i, *_, xs, xr, _, _ in rows
            if xs
        ]
    )
    learn = pd.DataFrame(
        [
            {"qa_id": f"q{d}{i}", "doc_id": f"{d:064x}", "run_id": "r", "status": ls, "reason": lr}
            for d, i, *_, ls, lr in rows
            if ls
        ]
    )
    warehouse.replace_rows(con, "generate", gen, key="qa_id")
    warehouse.replace_rows(con, "verify", ver, key="qa_id")
    warehouse.replace_rows(con, "decontaminate", dec, key="qa_id")
    warehouse.replace_rows(con, "learnability", learn, key="qa_id")


@pytest.mark.unit
def test_doc_outcomes_has_one_row_per_document_through_every_stage(tmp_path):
    db = tmp_path / "w.duckdb"
    with warehouse.write(db) as con:
        con.register("d", pd.DataFrame([_doc(i) for i in range(12)]))
        con.execute("INSERT INTO documents BY NAME SELECT * FROM d")
        con.unregister("d")
        _stage(
            con,
            "heuristic_filter",
            [(0, "rejected", "min_tokens")] + [(i, "kept", None) for i in range(2, 12)],
        )
        _stage(
            con,
            "near_dedup",
            [(8, "rejected", "near_duplicate")]
            + [(i, "kept", None) for i in (2, 3, 4, 5, 6, 7, 9, 10, 11)],
        )
        _stage(
            con,
            "llm_filter",
            [(2, "failed", "llm_timeout")]
            + [(i, "kept", None) for i in (3, 4, 5, 6, 7, 9, 10, 11)],
        )
        _stage(con, "classify", [(i, "kept", None) for i in (3, 4, 5, 6, 7, 9, 10, 11)])
        _pairs(
            con,
            [
                (4, 0, "kept", None, "rejected", "leakage"),
                (4, 1, "kept", None, "kept", None, "kept", None, "kept", None),
                (5, 0, "kept", None, "rejected", "incorrect"),
                (5, 1, "kept", None, "rejected", "leakage"),
                (6, 0, "kept", None, None, None),
                (7, 0, "failed", "llm_timeout", None, None),
                (7, 1, "failed", "llm_refusal", None, None),
                (9, 0, "kept", None, "kept", None, "rejected", "duplicate_question"),
                (9, 1, "kept", None, "rejected", "incorrect"),
                (10, 0, "kept", None, "kept", None),  # verified, not yet decontaminated
                (11, 0, "kept", None, "kept", None, "kept", None, "rejected", "always_solved"),
                (11, 1, "kept", None, "kept", None, "kept", None),  # not measured yet
            ],
        )
    with warehouse.read(db) as con:
        rows = con.execute(
            "SELECT doc_id, last_stage, outcome, reason FROM doc_outcomes ORDER BY doc_id"
        ).fetchall()
    assert [(int(d, 16), *rest) for d, *rest in rows] == [
        (0, "heuristic_filter", "rejected", "min_tokens"),
        (1, "ingest", "pending", None),
        (2, "llm_filter", "failed", "llm_timeout"),
        (3, "classify", "pending", None),
        (4, "learnability", "accepted", None),
        (5, "verify", "rejected", "incorrect"),
        (6, "generate", "pending", None),
        (7, "generate", "failed", "llm_timeout"),
        (8, "near_dedup", "rejected", "near_duplicate"),
        (9, "decontaminate", "rejected", "duplicate_question"),
        (10, "generate", "pending", None),
        (11, "generate", "pending", None),
    ]


def _writer(db, worker: int, n: int) -> None:
    for i in range(n):
        with warehouse.write(db) as con:
            con.execute("INSERT INTO run_docs VALUES (?, ?)", [f"w{worker}", f"doc{i}"])


@pytest.mark.e2e
def test_concurrent_writers_from_several_processes_all_land(tmp_path):
    db = tmp_path / "w.duckdb"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(db, w, 25)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT run_id, count(*) FROM run_docs GROUP BY ALL ORDER BY 1"
        ).fetchall() == [("w0", 25), ("w1", 25), ("w2", 25)]


@pytest.mark.unit
def test_failed_block_rolls_back(tmp_path):
    db = tmp_path / "w.duckdb"
    try:
        with warehouse.write(db) as con:
            con.execute("INSERT INTO run_docs VALUES ('r', 'd')")
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    with warehouse.read(db) as con:
        assert con.execute("SELECT count(*) FROM run_docs").fetchall() == [(0,)]


def _cap_as_duckdb_prints_it(value: str) -> str:
    con = duckdb.connect(":memory:", config={"memory_limit": value})
    try:
        return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    finally:
        con.close()


@pytest.mark.unit
def test_every_connection_carries_the_memory_cap(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    monkeypatch.delenv(warehouse.MEMORY_LIMIT_ENV, raising=False)
    default = _cap_as_duckdb_prints_it(warehouse.DEFAULT_MEMORY_LIMIT)
    with warehouse.write(db) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0] == default
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "3GB")
    with warehouse.read(db) as con:
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[
            0
        ] == _cap_as_duckdb_prints_it("3GB")
    assert _cap_as_duckdb_prints_it("3GB") != default


@pytest.mark.unit
def test_a_bad_memory_cap_names_its_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(ValueError, match=warehouse.MEMORY_LIMIT_ENV):
        with warehouse.write(tmp_path / "w.duckdb"):
            pass


@pytest.mark.unit
def test_running_out_of_the_cap_says_which_variable_to_raise(tmp_path, monkeypatch):
    db = tmp_path / "w.duckdb"
    with warehouse.write(db):
        pass
    monkeypatch.setenv(warehouse.MEMORY_LIMIT_ENV, "2MB")
    # A primary-key index must fit in memory: 200k long keys do not fit in 2 MB.
    with pytest.raises(warehouse.WarehouseOutOfMemory, match=warehouse.MEMORY_LIMIT_ENV):
        with warehouse.write(db) as con:
            con.execute("CREATE TABLE big (k VARCHAR PRIMARY KEY)")
            con.execute(
                "INSERT INTO big SELECT range::VARCHAR || repeat('x', 100) FROM range(200000)"
            )
    monkeypatch.delenv(warehouse.MEMORY_LIMIT_ENV)
    with warehouse.read(db) as con:  # rolled back, and the warehouse still opens
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'big'"
        ).fetchone() == (0,)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("cap", "half"),
    [("512MB", "256000000B"), ("1GiB", "536870912B"), ("1.5 gb", "750000000B"), ("80%", "80%")],
)
def test_a_task_holding_two_duckdb_instances_splits_its_memory_cap(monkeypatch, cap, half):
    """near_dedup holds a warehouse connection and its LSH index at once: each gets a share of
    the one per-task cap (a form DuckDB parses but this does not is passed on whole)."""
    monkeypatch.setenv("WEBSCALE_RL_DUCKDB_MEMORY_LIMIT", cap)
    assert warehouse.memory_limit() == cap
    assert warehouse.memory_limit(0.5) == half
