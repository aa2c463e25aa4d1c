"""Ingest: every record read ends as a document, a skip, or a recorded error with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from conftest import HOSTILE_DIR, SAMPLE_DIR
from webscale_rl import warehouse
from webscale_rl.stages.ingest import IngestError, ingest_files

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def run(db: Path, files, run_id="r1", **kw) -> dict:
    return ingest_files([Path(f) for f in files], db_path=db, run_id=run_id, ingested_at=T0, **kw)


def errors(db: Path) -> list[tuple]:
    with warehouse.read(db) as con:
        return con.execute(
            "SELECT regexp_extract(source_file, '[^/]+$'), line_no, reason, detail FROM ingest_errors ORDER BY ALL"
        ).fetchall()


def source_ids(db: Path) -> list[str]:
    with warehouse.read(db) as con:
        return [
            r[0]
            for r in con.execute("SELECT source_id FROM documents ORDER BY ingest_seq").fetchall()
        ]


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "w.duckdb"


# What each hostile fixture on its own records, line by line (reason and detail), is checked
# once, through the pipeline's own task functions, in tests/test_hostile_inputs.py.


@pytest.mark.parametrize(
    ("name", "reason", "fix"),
    [
        ("binary_garbage.jsonl", "invalid_utf8", "re-encode the file as UTF-8"),
        ("wrong_schema.parquet", "missing_text_column", "needs a string column named 'text'"),
        ("truncated.parquet", "unreadable_file", "complete, readable JSONL or Parquet"),
    ],
)
def test_unusable_file_fails_with_the_file_and_the_fix_after_saving_good_files(
    db, name, reason, fix
):
    good = HOSTILE_DIR / "malformed_line.jsonl"
    with pytest.raises(IngestError) as err:
        run(db, [good, HOSTILE_DIR / name])
    message = str(err.value)
    assert name in message and reason in message and fix in message
    assert source_ids(db) == ["ok-1", "ok-2"], "the good file must still be ingested"
    assert reason in {r for _, _, r, _ in errors(db)}


def test_second_ingest_of_the_same_files_adds_nothing(db):
    files = sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix in (".jsonl", ".parquet"))
    first = run(db, files, run_id="r1")
    second = run(db, files, run_id="r2")
    assert first["new_docs"] == 76 and first["errors"] == 0
    assert second["new_docs"] == 0 and second["already_ingested"] == 76
    with warehouse.read(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchall() == [
            (76, 76)
        ]


def test_rerun_does_not_duplicate_error_rows(db):
    run(db, [HOSTILE_DIR / "bad_text_values.jsonl"], run_id="r1")
    run(db, [HOSTILE_DIR / "bad_text_values.jsonl"], run_id="r2")
    assert len(errors(db)) == 8


def test_max_docs_takes_a_hash_sample_and_walks_through_the_corpus_in_batches(db):
    files = sorted(SAMPLE_DIR.glob("*.jsonl"))
    a = run(db, files, run_id="r1", max_docs=10)
    b = run(db, files, run_id="r2", max_docs=10)
    assert (a["new_docs"], a["capped_at_max_docs"], a["records_read"]) == (10, True, 74)
    assert (b["new_docs"], b["already_ingested"]) == (10, 10)
    with warehouse.read(db) as con:
        ids = [
            r[0] for r in con.execute("SELECT doc_id FROM documents ORDER BY ingest_seq").fetchall()
        ]
        first = {
            r[0]
            for r in con.execute(
                "SELECT doc_id FROM documents WHERE ingest_run_id = 'r1'"
            ).fetchall()
        }
        files_hit = con.execute(
            "SELECT count(DISTINCT source_file) FROM documents WHERE ingest_run_id = 'r1'"
        ).fetchall()
    # The 10 smallest doc_ids of the corpus come first, then the next 10: uniform, not the head of a file.
    assert max(first) < min(set(ids) - first)
    assert files_hit[0][0] >= 2
    # r1's documents were never filtered (still pending), so r2 takes them on as well.
    assert b["resumed_pending"] == 10
    with warehouse.read(db) as con:
        assert con.execute(
            "SELECT run_id, count(*) FROM run_docs GROUP BY ALL ORDER BY ALL"
        ).fetchall() == [("r1", 10), ("r2", 20)]


def test_documents_row_carries_the_contract_columns(db):
    run(db, [SAMPLE_DIR / "docs_stem.jsonl"])
    con = duckdb.connect(str(db), read_only=True)
    try:
        row = con.execute(
            "SELECT doc_id, source_file, source_line, source_id, url, n_tokens, ingest_run_id, ingested_at, meta "
            "FROM documents WHERE source_id = 'sample-math-01'"
        ).fetchall()[0]
    finally:
        con.close()
    doc_id, source_file, line, sid, url, n_tokens, run_id, at, meta = row
    assert len(doc_id) == 64 and source_file.endswith("docs_stem.jsonl") and line == 1
    assert url.startswith("https://") and n_tokens > 200 and run_id == "r1" and at == T0
    assert json.loads(meta)["domain_hint"] == "Math"
