"""Ingest: every record read ends as a document, a skip, or a recorded error with a reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from conftest import HOSTILE_DIR, SAMPLE_DIR
from webscale_rl import warehouse
from webscale_rl.stages.ingest import IngestError, IngestLimits, ingest_files

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
        return [r[0] for r in con.execute("SELECT source_id FROM documents ORDER BY ingest_seq").fetchall()]


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "w.duckdb"


def test_malformed_json_line_is_recorded_and_the_rest_ingested(db):
    report = run(db, [HOSTILE_DIR / "malformed_line.jsonl"])
    assert report["new_docs"] == 2 and report["errors"] == 1
    [(name, line, reason, detail)] = errors(db)
    assert (name, line, reason) == ("malformed_line.jsonl", 2, "malformed_json")
    assert "column" in detail
    assert source_ids(db) == ["ok-1", "ok-2"]


def test_invalid_utf8_line(db):
    run(db, [HOSTILE_DIR / "invalid_utf8.jsonl"])
    [(_, line, reason, detail)] = errors(db)
    assert (line, reason) == (2, "invalid_utf8")
    assert detail == "byte 29: invalid continuation byte"
    assert source_ids(db) == ["ok-1", "ok-2"]


def test_empty_null_missing_non_string_and_surrogate_text(db):
    report = run(db, [HOSTILE_DIR / "bad_text_values.jsonl"])
    assert report["new_docs"] == 1
    assert [(line, reason, detail) for _, line, reason, detail in errors(db)] == [
        (2, "empty_text", "text is empty or whitespace only"),
        (3, "empty_text", "text is empty or whitespace only"),
        (4, "missing_text", "'text' is null"),
        (5, "missing_text", "no 'text' field"),
        (6, "non_string_text", "'text' is int"),
        (7, "non_string_text", "'text' is list"),
        (8, "not_an_object", "got list"),
        (9, "invalid_unicode", "unpaired surrogate at char 7"),
    ]


def test_duplicate_source_id_keeps_the_first(db):
    run(db, [HOSTILE_DIR / "duplicate_ids.jsonl"])
    assert [(line, reason, detail) for _, line, reason, detail in errors(db)] == [
        (2, "duplicate_source_id", "id 'ok-1' first seen at line 1")
    ]
    assert source_ids(db) == ["ok-1", "ok-2"]


def test_duplicate_content_within_a_run_is_recorded(db):
    report = run(db, [HOSTILE_DIR / "duplicate_content.jsonl"])
    assert report["new_docs"] == 1
    [(_, line, reason, detail)] = errors(db)
    assert (line, reason) == (2, "duplicate_content")
    assert "duplicate_content.jsonl:1" in detail


def test_empty_file_is_recorded_but_not_fatal(db):
    report = run(db, [HOSTILE_DIR / "empty.jsonl"])
    assert report["new_docs"] == 0 and report["unusable_files"] == []
    assert [(line, reason) for _, line, reason, _ in errors(db)] == [(0, "empty_file")]


def test_parquet_null_text_row(db):
    run(db, [HOSTILE_DIR / "good_and_null.parquet"])
    assert [(line, reason) for _, line, reason, _ in errors(db)] == [(2, "missing_text")]
    assert source_ids(db) == ["p1", "p3"]


@pytest.mark.parametrize(
    ("name", "reason", "fix"),
    [
        ("binary_garbage.jsonl", "invalid_utf8", "re-encode the file as UTF-8"),
        ("wrong_schema.parquet", "missing_text_column", "needs a string column named 'text'"),
        ("truncated.parquet", "unreadable_file", "complete, readable JSONL or Parquet"),
    ],
)
def test_unusable_file_fails_with_the_file_and_the_fix_after_saving_good_files(db, name, reason, fix):
    good = HOSTILE_DIR / "malformed_line.jsonl"
    with pytest.raises(IngestError) as err:
        run(db, [good, HOSTILE_DIR / name])
    message = str(err.value)
    assert name in message and reason in message and fix in message
    assert source_ids(db) == ["ok-1", "ok-2"], "the good file must still be ingested"
    assert reason in {r for _, _, r, _ in errors(db)}


def test_wrong_schema_parquet_names_the_columns_found(db):
    with pytest.raises(IngestError):
        run(db, [HOSTILE_DIR / "wrong_schema.parquet"])
    [(_, line, reason, detail)] = errors(db)
    assert (line, reason, detail) == (0, "missing_text_column", "columns found: title, body")


def test_five_megabyte_document_is_rejected_or_truncated_by_the_limit(db, tmp_path):
    big = tmp_path / "big.jsonl"
    body = ("word " * 1_050_000).strip()  # ~5.2 MB
    big.write_text(json.dumps({"id": "huge", "text": body}) + "\n" + json.dumps({"id": "small", "text": "fine"}) + "\n")
    report = run(db, [big])
    assert report["new_docs"] == 1
    [(_, line, reason, detail)] = errors(db)
    assert (line, reason) == (1, "oversized") and f"{len(body)} chars > max_doc_chars 200000" == detail

    db2 = tmp_path / "w2.duckdb"
    run(db2, [big], limits=IngestLimits(max_doc_chars=1000, oversize_policy="truncate"))
    with warehouse.read(db2) as con:
        n_chars, meta = con.execute("SELECT n_chars, meta FROM documents WHERE source_id = 'huge'").fetchall()[0]
    assert n_chars <= 1000 and json.loads(meta)["truncated_from_chars"] == len(body)
    assert errors(db2) == []


def test_second_ingest_of_the_same_files_adds_nothing(db):
    files = sorted(p for p in SAMPLE_DIR.iterdir() if p.suffix in (".jsonl", ".parquet"))
    first = run(db, files, run_id="r1")
    second = run(db, files, run_id="r2")
    assert first["new_docs"] == 76 and first["errors"] == 0
    assert second["new_docs"] == 0 and second["already_ingested"] == 76
    with warehouse.read(db) as con:
        assert con.execute("SELECT count(*), count(DISTINCT doc_id) FROM documents").fetchall() == [(76, 76)]


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
        ids = [r[0] for r in con.execute("SELECT doc_id FROM documents ORDER BY ingest_seq").fetchall()]
        first = {r[0] for r in con.execute("SELECT doc_id FROM documents WHERE ingest_run_id = 'r1'").fetchall()}
        files_hit = con.execute("SELECT count(DISTINCT source_file) FROM documents WHERE ingest_run_id = 'r1'").fetchall()
    # The 10 smallest doc_ids of the corpus come first, then the next 10: uniform, not the head of a file.
    assert max(first) < min(set(ids) - first)
    assert files_hit[0][0] >= 2
    # r1's documents were never filtered (still pending), so r2 takes them on as well.
    assert b["resumed_pending"] == 10
    with warehouse.read(db) as con:
        assert con.execute("SELECT run_id, count(*) FROM run_docs GROUP BY ALL ORDER BY ALL").fetchall() == [
            ("r1", 10), ("r2", 20)]


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
