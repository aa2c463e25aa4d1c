"""Every hostile-input fixture through the pipeline's own task functions (start_run, then
run_ingest), on a copy in a fresh data dir, against a manifest of what must happen to it:
the exact rows of `ingest_errors` (line, reason, detail) and the documents kept, the exact
IngestError message (recorded on the run too), or the exact refusal from start_run.

A fixture added to tests/fixtures/hostile without an entry here fails
test_manifest_covers_every_fixture. The 5 MB document is generated at test time.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import HOSTILE_DIR
from support.db import query
from webscale_rl import pipeline
from webscale_rl.config import ConfigError
from webscale_rl.conservation import count_records
from webscale_rl.stages.ingest import IngestError

pytestmark = pytest.mark.unit

UNUSABLE = (
    "1 corpus file(s) had no usable record (details in table ingest_errors; the other files were "
    "ingested):\n  {path}: {n} x {reason} -> fix: {fix}"
)


@dataclass(frozen=True)
class Ingested:
    """The file is read: these records become documents, these land in ingest_errors."""

    source_ids: list
    errors: list = field(default_factory=list)  # (line_no, reason, detail: exact str or regex)
    notes: list | None = None  # ingest_files.notes: about the file, not errors


@dataclass(frozen=True)
class Unusable:
    """No usable record: ingest records each error, then fails with the file and the fix."""

    errors: list
    fix: str


@dataclass(frozen=True)
class Refused:
    """start_run refuses the corpus param with this message ({data} = the data dir)."""

    message: str


MANIFEST = {
    "bad_text_values.jsonl": Ingested(
        ["ok-1"],
        [
            (2, "empty_text", "text is empty or whitespace only"),
            (3, "empty_text", "text is empty or whitespace only"),
            (4, "missing_text", "'text' is null"),
            (5, "missing_text", "no 'text' field"),
            (6, "non_string_text", "'text' is int"),
            (7, "non_string_text", "'text' is list"),
            (8, "not_an_object", "got list"),
            (9, "invalid_unicode", "unpaired surrogate at char 7"),
        ],
    ),
    "binary_garbage.jsonl": Unusable(
        [
            (1, "invalid_utf8", "byte 0: invalid start byte"),
            (2, "invalid_utf8", "byte 0: invalid start byte"),
        ],
        "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    ),
    # 100,000 levels of [[[…]]] in one record's meta: json.loads would raise RecursionError
    # (the task failed and lost the file); the depth is checked before the parser recurses.
    "deeply_nested.jsonl": Ingested(
        ["ok-1", "ok-2"],
        [(2, "too_deeply_nested", "nested deeper than 64 levels of arrays/objects")],
    ),
    # Valid JSON that Python or the warehouse cannot take: a 5,000-digit integer (int() refuses
    # 4,300+), lone surrogates in meta, id and url (DuckDB stores UTF-8 only and refused the
    # whole batch), one level past the nesting limit. Brackets inside the text never count,
    # and an overflowing float is kept (as Infinity in meta).
    "hostile_values.jsonl": Ingested(
        ["ok-1", "nest-63", "brackets-in-text", "ok-2"],
        [
            (
                2,
                "number_too_long",
                "Exceeds the limit (4300 digits) for integer string conversion: value has 5000 "
                "digits",
            ),
            (3, "invalid_unicode", "unpaired surrogate in 'meta' at char 19"),
            (4, "invalid_unicode", "unpaired surrogate in 'id' at char 3"),
            (5, "invalid_unicode", "unpaired surrogate in 'url' at char 20"),
            (6, "too_deeply_nested", "nested deeper than 64 levels of arrays/objects"),
        ],
    ),
    "duplicate_content.jsonl": Ingested(
        ["first"],
        [
            (
                2,
                "duplicate_content",
                re.compile(
                    r"same text as .*/hostile/duplicate_content\.jsonl:1 \(doc_id [0-9a-f]{12}\)"
                ),
            ),
        ],
    ),
    "duplicate_ids.jsonl": Ingested(
        ["ok-1", "ok-2"],
        [
            (2, "duplicate_source_id", "id 'ok-1' first seen at line 1"),
        ],
    ),
    "empty.jsonl": Ingested([], [(0, "empty_file", "file has no records")]),
    "good_and_null.parquet": Ingested(["p1", "p3"], [(2, "missing_text", "'text' is null")]),
    "invalid_utf8.jsonl": Ingested(
        ["ok-1", "ok-2"], [(2, "invalid_utf8", "byte 29: invalid continuation byte")]
    ),
    # The JSON error names the column; the message before it is the json module's.
    "malformed_line.jsonl": Ingested(
        ["ok-1", "ok-2"],
        [
            (2, "malformed_json", "Invalid control character at: column 44"),
        ],
    ),
    "no_matching_files": Refused(
        "corpus 'hostile/no_matching_files' matched no corpus files (expected .jsonl, "
        ".jsonl.gz, .parquet) under {data}/hostile/no_matching_files"
    ),
    # Saved by Windows tools: a UTF-8 byte-order mark, CRLF line endings and blank lines. The
    # mark is stripped and noted on the file's tally; the first record is a document like the rest.
    "utf8_bom_crlf.jsonl": Ingested(["bom-1", "bom-2", "bom-3"], [], notes=["utf8_bom_stripped"]),
    # UTF-16 cannot be read line by line: one error for the file, naming the encoding and the fix.
    "utf16_bom.jsonl": Unusable(
        [(0, "wrong_encoding", "the file is UTF-16 LE (byte-order mark FF FE), not UTF-8")],
        "re-encode the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`)",
    ),
    "truncated.parquet": Unusable(
        [
            (
                0,
                "unreadable_file",
                "ArrowInvalid: Parquet magic bytes not found in footer. Either the file is "
                "corrupted or this is not a parquet file.",
            ),
        ],
        "check that the file is a complete, readable JSONL or Parquet file",
    ),
    "wrong_schema.parquet": Unusable(
        [(0, "missing_text_column", "columns found: title, body")],
        "a Parquet corpus file needs a string column named 'text'",
    ),
}


def same(expected, actual: str | None) -> bool:
    return (
        bool(actual is not None and expected.fullmatch(actual))
        if isinstance(expected, re.Pattern)
        else expected == actual
    )


def recorded_errors(data: Path, run_id: str) -> list[tuple]:
    return query(
        data,
        "SELECT source_file, line_no, reason, detail FROM ingest_errors WHERE run_id = ? "
        "ORDER BY line_no",
        [run_id],
    )


def check_errors(data: Path, run_id: str, path: Path, expected: list) -> None:
    rows = recorded_errors(data, run_id)
    assert {r[0] for r in rows} <= {str(path)}
    got = [(line, reason) for _, line, reason, _ in rows]
    assert got == [(line, reason) for line, reason, _ in expected]
    for (_, _, _, detail), (line, reason, want) in zip(rows, expected, strict=True):
        assert same(want, detail), f"line {line} {reason}: detail {detail!r} != {want!r}"


def test_manifest_covers_every_fixture():
    on_disk = sorted(p.name for p in HOSTILE_DIR.iterdir())
    assert sorted(MANIFEST) == on_disk, (
        "each hostile fixture needs an expected outcome in MANIFEST (and back)"
    )


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_hostile_fixture_gives_its_recorded_reason_or_message(hostile_data_dir, name):
    expected = MANIFEST[name]
    data = hostile_data_dir
    path = (data / "hostile" / name).resolve()
    run_id = f"hostile__{name}"

    if isinstance(expected, Refused):
        with pytest.raises(ConfigError) as refused:
            pipeline.start_run({"corpus": f"hostile/{name}"}, run_id)
        assert str(refused.value) == expected.message.format(data=data)
        # A refused run leaves its runs row, with the message, and touches nothing else.
        assert query(data, "SELECT run_id, status, failed_stage, message FROM runs") == [
            (run_id, "refused", "start_run", str(refused.value))
        ]
        assert query(data, "SELECT count(*) FROM documents") == [(0,)]
        assert query(data, "SELECT count(*) FROM ingest_errors") == [(0,)]
        return

    run = pipeline.start_run({"corpus": f"hostile/{name}"}, run_id)
    assert run["files"] == [str(path)]

    if isinstance(expected, Unusable):
        with pytest.raises(IngestError) as failed:
            pipeline.run_ingest(run)
        reason = expected.errors[0][1]
        message = UNUSABLE.format(
            path=path, n=len(expected.errors), reason=reason, fix=expected.fix
        )
        assert str(failed.value) == message
        assert query(
            data, "SELECT status, failed_stage, message FROM runs WHERE run_id = ?", [run_id]
        ) == [("failed", "ingest", message)]
        check_errors(data, run_id, path, expected.errors)
        assert query(data, "SELECT count(*) FROM documents") == [(0,)]
        return

    report = pipeline.run_ingest(run)
    check_errors(data, run_id, path, expected.errors)
    ids = [
        r[0]
        for r in query(
            data,
            "SELECT source_id FROM documents WHERE source_file = ? ORDER BY source_line",
            [str(path)],
        )
    ]
    assert ids == expected.source_ids
    assert report["new_docs"] == len(expected.source_ids)
    assert report["errors_by_reason"] == dict(
        sorted(Counter(r for _, r, _ in expected.errors).items())
    )
    assert report["unusable_files"] == []
    assert query(data, "SELECT status FROM runs WHERE run_id = ?", [run_id]) == [("running",)]
    [(notes,)] = query(data, "SELECT notes FROM ingest_files WHERE run_id = ?", [run_id])
    assert (json.loads(notes) if notes else None) == expected.notes
    assert report["file_notes"] == ({str(path): expected.notes} if expected.notes else {})
    # The conservation check's independent recount agrees with what the reader yielded.
    assert count_records(path) == len(expected.source_ids) + len(expected.errors)


def test_a_utf16_file_fails_once_and_the_good_files_of_the_run_are_kept(data_dir):
    corpus = data_dir / "mixed"
    corpus.mkdir()
    shutil.copy(HOSTILE_DIR / "utf16_bom.jsonl", corpus / "a_utf16.jsonl")
    good = (HOSTILE_DIR / "utf8_bom_crlf.jsonl").read_bytes()
    (corpus / "b_bom.jsonl.gz").write_bytes(
        gzip.compress(good)
    )  # the mark inside a gzip stream too
    run = pipeline.start_run({"corpus": "mixed"}, "mixed-encodings")
    with pytest.raises(IngestError) as failed:
        pipeline.run_ingest(run)
    utf16 = (corpus / "a_utf16.jsonl").resolve()
    assert str(failed.value) == UNUSABLE.format(
        path=utf16,
        n=1,
        reason="wrong_encoding",
        fix="re-encode the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`)",
    )
    assert recorded_errors(data_dir, "mixed-encodings") == [
        (
            str(utf16),
            0,
            "wrong_encoding",
            "the file is UTF-16 LE (byte-order mark FF FE), not UTF-8",
        )
    ]
    assert query(data_dir, "SELECT source_id FROM documents ORDER BY source_line") == [
        ("bom-1",),
        ("bom-2",),
        ("bom-3",),
    ]
    assert query(
        data_dir,
        "SELECT regexp_extract(source_file, '[^/]+$'), records_seen, new_docs, errors, notes "
        "FROM ingest_files ORDER BY 1",
    ) == [("a_utf16.jsonl", 1, 0, 1, None), ("b_bom.jsonl.gz", 3, 3, 0, '["utf8_bom_stripped"]')]


HUGE_WORDS = (
    1_050_000  # "word " x 1.05 M: a 5.25 MB document, over the default max_doc_chars 200,000
)


def write_huge(data: Path, with_small: bool = True) -> tuple[Path, int]:
    body = ("word " * HUGE_WORDS).strip()
    folder = data / "generated"
    folder.mkdir(exist_ok=True)
    path = folder / "five_mb.jsonl"
    lines = [json.dumps({"id": "huge", "text": body})]
    if with_small:
        lines.append(
            json.dumps(
                {"id": "small", "text": "A small record with enough plain words to be a document."}
            )
        )
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size > 5_000_000
    return path.resolve(), len(body)


def test_five_megabyte_document_is_rejected_by_default(data_dir):
    path, n_chars = write_huge(data_dir)
    run = pipeline.start_run({"corpus": "generated/five_mb.jsonl"}, "huge-reject")
    assert (
        run["params"]["oversize_policy"] == "reject" and run["params"]["max_doc_chars"] == 200_000
    )
    report = pipeline.run_ingest(run)
    assert report["new_docs"] == 1 and report["errors_by_reason"] == {"oversized": 1}
    check_errors(
        data_dir, "huge-reject", path, [(1, "oversized", f"{n_chars} chars > max_doc_chars 200000")]
    )
    assert query(data_dir, "SELECT source_id FROM documents") == [("small",)]


def test_five_megabyte_document_is_truncated_under_the_truncate_policy(data_dir):
    path, n_chars = write_huge(data_dir)
    run = pipeline.start_run(
        {"corpus": "generated/five_mb.jsonl", "oversize_policy": "truncate"}, "huge-truncate"
    )
    report = pipeline.run_ingest(run)
    assert report["new_docs"] == 2 and report["errors"] == 0
    assert recorded_errors(data_dir, "huge-truncate") == []
    [(kept, meta)] = query(data_dir, "SELECT n_chars, meta FROM documents WHERE source_id = 'huge'")
    assert 199_990 <= kept <= 200_000, "cut at the last space before the limit"
    assert json.loads(meta)["truncated_from_chars"] == n_chars


def test_a_file_holding_only_an_oversized_document_fails_naming_it(data_dir):
    path, n_chars = write_huge(data_dir, with_small=False)
    run = pipeline.start_run({"corpus": "generated/five_mb.jsonl"}, "huge-only")
    with pytest.raises(IngestError) as failed:
        pipeline.run_ingest(run)
    assert (
        f"  {path}: 1 x oversized -> fix: raise the max_doc_chars param, or set oversize_policy "
        "to 'truncate'"
    ) in str(failed.value)
    check_errors(
        data_dir, "huge-only", path, [(1, "oversized", f"{n_chars} chars > max_doc_chars 200000")]
    )
