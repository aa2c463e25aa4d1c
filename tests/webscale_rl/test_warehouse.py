from __future__ import annotations

import multiprocessing as mp
from datetime import UTC, datetime

import pandas as pd

from webscale_rl import warehouse


def _doc(i: int) -> dict:
    return {"doc_id": f"{i:064x}", "ingest_seq": i, "source_file": "f.jsonl", "source_line": i,
            "text": f"text {i}", "n_chars": 6, "n_tokens": 2, "dedup_key": f"k{i}",
            "ingest_run_id": "r", "ingested_at": datetime(2026, 1, 1, tzinfo=UTC)}


def test_replace_rows_never_duplicates(tmp_path):
    db = tmp_path / "w.duckdb"
    rows = pd.DataFrame({"doc_id": ["a", "b"], "run_id": "r", "status": ["kept", "rejected"], "reason": [None, "x"]})
    for _ in range(3):
        with warehouse.write(db) as con:
            warehouse.replace_rows(con, "heuristic_filter", rows)
    changed = rows.assign(status=["rejected", "rejected"], reason=["y", "x"])
    with warehouse.write(db) as con:
        warehouse.replace_rows(con, "heuristic_filter", changed)
    with warehouse.read(db) as con:
        assert con.execute("SELECT doc_id, status, reason FROM heuristic_filter ORDER BY 1").fetchall() == [
            ("a", "rejected", "y"), ("b", "rejected", "x")]


def test_doc_outcomes_has_one_row_per_document_with_pending_kept_and_rejected(tmp_path):
    db = tmp_path / "w.duckdb"
    with warehouse.write(db) as con:
        con.register("d", pd.DataFrame([_doc(i) for i in range(3)]))
        con.execute("INSERT INTO documents BY NAME SELECT * FROM d")
        con.unregister("d")
        warehouse.replace_rows(con, "heuristic_filter", pd.DataFrame(
            {"doc_id": [f"{0:064x}", f"{1:064x}"], "run_id": "r", "status": ["kept", "rejected"],
             "reason": [None, "min_tokens"]}))
    with warehouse.read(db) as con:
        rows = con.execute("SELECT right(doc_id, 1), last_stage, outcome, reason FROM doc_outcomes ORDER BY 1").fetchall()
    assert rows == [
        ("0", "heuristic_filter", "accepted", None),
        ("1", "heuristic_filter", "rejected", "min_tokens"),
        ("2", "ingest", "pending", None),
    ]


def test_view_sql_chains_later_stages():
    sql = warehouse.doc_outcomes_view_sql(("heuristic_filter", "llm_filter"))
    assert "WHEN s1.status IS NULL THEN 'heuristic_filter'" in sql
    assert "ELSE 'llm_filter' END AS last_stage" in sql


def _writer(db, worker: int, n: int) -> None:
    for i in range(n):
        with warehouse.write(db) as con:
            con.execute("INSERT INTO run_docs VALUES (?, ?)", [f"w{worker}", f"doc{i}"])


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
        assert con.execute("SELECT run_id, count(*) FROM run_docs GROUP BY ALL ORDER BY 1").fetchall() == [
            ("w0", 25), ("w1", 25), ("w2", 25)]


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
