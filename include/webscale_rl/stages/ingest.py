"""Ingest: read JSONL/Parquet corpus files into `documents`, recording every bad record.

Every line or row read ends in exactly one place: a new row in `documents`, a skip
because the same text is already in the warehouse (incremental ingestion), or a row in
`ingest_errors` with the file, the line and a reason. A file that yields no usable
record at all is reported as a whole and fails the task after the good files are saved.
"""

from __future__ import annotations

import codecs
import gzip
import heapq
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from webscale_rl import untrusted_json, warehouse
from webscale_rl.errors import FatalError
from webscale_rl.params import spec as param_spec
from webscale_rl.text import content_hash, dedup_key, normalize_text, tokenize

BATCH_ROWS = 5000
OVERSIZE_POLICIES = tuple(param_spec("oversize_policy").schema["enum"])

# What to tell the user for each reason that can make a whole file unusable.
FIXES = {
    "malformed_json": 'each line must be one JSON object, e.g. {"id": "1", "text": "..."}',
    "too_deeply_nested": f"flatten the record's fields: at most {untrusted_json.MAX_DEPTH} "
    "levels of nested arrays/objects",
    "number_too_long": "write very long numbers as strings",
    "not_an_object": "each line must be a JSON object, not a list or a bare value",
    "invalid_utf8": "re-encode the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
    "missing_text": "every record needs a non-empty string field 'text'",
    "non_string_text": "the 'text' field must be a string",
    "empty_text": "every record needs a non-empty string field 'text'",
    "missing_text_column": "a Parquet corpus file needs a string column named 'text'",
    "unreadable_file": "check that the file is a complete, readable JSONL or Parquet file",
    "oversized": "raise the max_doc_chars param, or set oversize_policy to 'truncate'",
    "wrong_encoding": "re-encode the file as UTF-8 (e.g. `iconv -f UTF-16 -t UTF-8 in.jsonl > out.jsonl`)",
}
# Byte-order marks of encodings a JSONL corpus file must not use (UTF-32 before UTF-16: FF FE
# starts both), and the leading bytes of UTF-16 JSON without a mark ("{" and a NUL).
FOREIGN_ENCODINGS = (
    (codecs.BOM_UTF32_LE, "UTF-32 LE (byte-order mark FF FE 00 00)"),
    (codecs.BOM_UTF32_BE, "UTF-32 BE (byte-order mark 00 00 FE FF)"),
    (codecs.BOM_UTF16_LE, "UTF-16 LE (byte-order mark FF FE)"),
    (codecs.BOM_UTF16_BE, "UTF-16 BE (byte-order mark FE FF)"),
    (b"{\x00", "UTF-16 LE (no byte-order mark; NUL bytes between the characters)"),
    (b"\x00{", "UTF-16 BE (no byte-order mark; NUL bytes between the characters)"),
)
UTF8_BOM_NOTE = "utf8_bom_stripped"


class IngestError(FatalError):
    """One or more corpus files were entirely unusable; the message names each and the fix."""


@dataclass(frozen=True)
class IngestLimits:
    max_doc_chars: int = 200_000
    oversize_policy: str = "reject"

    def __post_init__(self) -> None:
        if self.max_doc_chars < 1:
            raise ValueError(f"max_doc_chars must be >= 1, got {self.max_doc_chars}")
        if self.oversize_policy not in OVERSIZE_POLICIES:
            raise ValueError(
                f"oversize_policy must be one of {OVERSIZE_POLICIES}, got {self.oversize_policy!r}"
            )


@dataclass
class Record:
    """One raw record from a file: a candidate document, an error, or (neither) a note
    about the file as a whole that is not an error, such as a stripped byte-order mark."""

    line_no: int
    fields: dict | None = None
    error: str | None = None
    detail: str | None = None
    note: str | None = None


def sniff_first_line(raw: bytes) -> tuple[bytes, str | None, str | None]:
    """Check the first line of a JSONL file for a byte-order mark.

    Returns (the line without a UTF-8 BOM, a note when one was stripped, the name of a
    foreign encoding when the file is UTF-16/32 and cannot be read line by line)."""
    if raw.startswith(codecs.BOM_UTF8):
        return raw[len(codecs.BOM_UTF8) :], UTF8_BOM_NOTE, None
    for prefix, name in FOREIGN_ENCODINGS:
        if raw.startswith(prefix):
            return raw, None, name
    return raw, None, None


@dataclass
class FileTally:
    """Where each record of one file went; the conservation check recounts the file and
    compares. seen = new + already + deferred + errors."""

    seen: int = 0  # records the reader yielded, errors included
    records: int = 0  # of those, parsed objects
    usable: int = 0  # valid documents
    new: int = 0  # taken on by this run (inserted, or inserted by an earlier attempt of it)
    already: int = 0  # the same text was ingested by an earlier run
    offered: int = 0  # new documents offered to the max_docs sample
    chosen: int = 0  # of those, taken
    errors: Counter = field(default_factory=Counter)
    notes: list = field(default_factory=list)  # about the file, not errors (e.g. utf8_bom_stripped)

    @property
    def deferred(self) -> int:
        """New documents left for a later run by max_docs."""
        return self.offered - self.chosen


def _storable(value) -> str | None:
    """A record's id as text the warehouse takes: a lone surrogate is written as its escape."""
    if value is None:
        return None
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def read_jsonl(path: Path) -> Iterator[Record]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as handle:
            saw_content = False
            for line_no, raw in enumerate(handle, start=1):
                if line_no == 1:
                    raw, note, foreign = sniff_first_line(raw)
                    if foreign:  # one error for the file, not one per "line" of UTF-16 bytes
                        yield Record(
                            0, error="wrong_encoding", detail=f"the file is {foreign}, not UTF-8"
                        )
                        return
                    if note:
                        yield Record(0, note=note)
                if not raw.strip():
                    continue
                saw_content = True
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Record(
                        line_no, error="invalid_utf8", detail=f"byte {exc.start}: {exc.reason}"
                    )
                    continue
                try:
                    obj = untrusted_json.loads(line)
                except untrusted_json.UntrustedJSONError as exc:
                    yield Record(line_no, error=exc.reason, detail=_short(exc.detail))
                    continue
                if not isinstance(obj, dict):
                    yield Record(line_no, error="not_an_object", detail=f"got {type(obj).__name__}")
                    continue
                yield Record(line_no, fields=obj)
            if not saw_content:
                yield Record(0, error="empty_file", detail="file has no records")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        yield Record(0, error="unreadable_file", detail=_short(f"{type(exc).__name__}: {exc}"))


def read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        yield Record(0, error="unreadable_file", detail=_short(f"{type(exc).__name__}: {exc}"))
        return
    names = parquet.schema_arrow.names
    if "text" not in names:
        yield Record(
            0, error="missing_text_column", detail=f"columns found: {', '.join(names) or 'none'}"
        )
        return
    if parquet.metadata.num_rows == 0:
        yield Record(0, error="empty_file", detail="file has no rows")
        return
    row_no = 0
    try:
        for batch in parquet.iter_batches(batch_size=2048):
            for row in batch.to_pylist():
                row_no += 1
                yield Record(row_no, fields=row)
    except Exception as exc:
        yield Record(
            row_no + 1, error="unreadable_file", detail=_short(f"{type(exc).__name__}: {exc}")
        )


def read_records(path: Path) -> Iterator[Record]:
    return read_parquet(path) if path.name.endswith(".parquet") else read_jsonl(path)


def to_document(record: Record, limits: IngestLimits) -> tuple[dict | None, str | None, str | None]:
    """Validate one record's fields. Returns (document fields, error reason, detail)."""
    fields = record.fields or {}
    text = fields.get("text")
    if text is None:
        return None, "missing_text", "no 'text' field" if "text" not in fields else "'text' is null"
    if not isinstance(text, str):
        return None, "non_string_text", f"'text' is {type(text).__name__}"
    meta = {k: v for k, v in fields.items() if k not in ("text", "id", "url")}
    if len(text) > limits.max_doc_chars:
        if limits.oversize_policy == "reject":
            return None, "oversized", f"{len(text)} chars > max_doc_chars {limits.max_doc_chars}"
        meta["truncated_from_chars"] = len(text)
        cut = text.rfind(" ", 0, limits.max_doc_chars)
        text = text[: cut if cut > 0 else limits.max_doc_chars]
    normalized = normalize_text(text)
    if not normalized:
        return None, "empty_text", "text is empty or whitespace only"
    source_id = fields.get("id")
    url = fields.get("url")
    stored = {
        "text": normalized,
        "source_id": None if source_id is None else str(source_id),
        "url": url if isinstance(url, str) else None,
        "meta": json.dumps(meta, ensure_ascii=False, default=str),
    }
    # JSON may spell a lone surrogate ("\ud800"); the warehouse stores UTF-8 only and
    # would refuse the whole batch, so the record is refused here, naming the field.
    for column, value in stored.items():
        try:
            if value is not None:
                value.encode("utf-8")
        except UnicodeEncodeError as exc:
            field_name = {"text": "", "source_id": " in 'id'"}.get(column, f" in '{column}'")
            return None, "invalid_unicode", f"unpaired surrogate{field_name} at char {exc.start}"
    return (
        {
            "doc_id": content_hash(normalized),
            **stored,
            "n_chars": len(normalized),
            "n_tokens": len(tokenize(normalized)),
            "dedup_key": dedup_key(normalized),
        },
        None,
        None,
    )


class _Writer:
    """Buffers new documents and errors, writing them in short locked transactions."""

    def __init__(
        self, db_path: Path, run_id: str, ingested_at: datetime, tallies: dict[str, FileTally]
    ):
        self.db_path, self.run_id, self.ingested_at = db_path, run_id, ingested_at
        self.tallies = tallies
        self.docs: list[dict] = []
        self.errors: list[dict] = []
        self.new_docs = 0
        self.already_ingested = 0

    def _count(self, docs, existing: dict[str, str]) -> None:
        """Tally documents found in the warehouse: ingested by this run (an earlier attempt
        of this task) counts as new, by another run as already ingested."""
        for d in docs:
            owner = existing.get(d["doc_id"])
            if owner is None:
                continue
            tally = self.tallies[d["source_file"]]
            if owner == self.run_id:
                tally.new += 1
                self.new_docs += 1
            else:
                tally.already += 1
                self.already_ingested += 1

    def drop_existing(self, docs: list[dict]) -> list[dict]:
        """The documents not yet in the warehouse; the others are tallied."""
        if not docs:
            return []
        with warehouse.read(self.db_path) as con:
            con.register("_batch", pd.DataFrame({"doc_id": [d["doc_id"] for d in docs]}))
            existing = dict(
                con.execute(
                    "SELECT doc_id, ingest_run_id FROM documents WHERE doc_id IN (SELECT doc_id FROM _batch)"
                ).fetchall()
            )
            con.unregister("_batch")
        self._count(docs, existing)
        return [d for d in docs if d["doc_id"] not in existing]

    def flush(self) -> None:
        if not self.docs and not self.errors:
            return
        with warehouse.write(self.db_path) as con:
            if self.docs:
                frame = pd.DataFrame(self.docs)
                con.register("_batch", frame)
                existing = dict(
                    con.execute(
                        "SELECT doc_id, ingest_run_id FROM documents WHERE doc_id IN (SELECT doc_id FROM _batch)"
                    ).fetchall()
                )
                con.unregister("_batch")
                self._count(self.docs, existing)
                # An earlier attempt of this task may have inserted some: claim them again.
                mine = [doc_id for doc_id, owner in existing.items() if owner == self.run_id]
                if mine:
                    con.execute(
                        "INSERT OR IGNORE INTO run_docs SELECT ?, unnest(?::VARCHAR[])",
                        [self.run_id, mine],
                    )
                fresh = frame[~frame["doc_id"].isin(existing)].copy()
                for name, n in fresh["source_file"].value_counts().items():
                    self.tallies[name].new += int(n)
                if len(fresh):
                    start = warehouse.one(
                        con, "SELECT coalesce(max(ingest_seq), 0) FROM documents"
                    )[0]
                    fresh["ingest_seq"] = range(start + 1, start + 1 + len(fresh))
                    fresh["ingest_run_id"] = self.run_id
                    fresh["ingested_at"] = self.ingested_at
                    con.register("_fresh", fresh)
                    con.execute("INSERT INTO documents BY NAME SELECT * FROM _fresh")
                    con.execute(
                        "INSERT OR IGNORE INTO run_docs SELECT ?, doc_id FROM _fresh", [self.run_id]
                    )
                    con.unregister("_fresh")
                    self.new_docs += len(fresh)
            if self.errors:
                frame = pd.DataFrame(self.errors)
                frame["run_id"] = self.run_id
                con.register("_errors", frame)
                con.execute("INSERT OR REPLACE INTO ingest_errors BY NAME SELECT * FROM _errors")
                con.unregister("_errors")
        self.docs, self.errors = [], []


class _HashSample:
    """The `size` new documents with the smallest doc_ids: a uniform, order-independent,
    deterministic sample (doc_ids are content hashes), so a capped run is representative of
    the whole corpus rather than the head of its first file."""

    def __init__(self, size: int):
        self.size = size
        self.heap: list[tuple[int, str, dict]] = []  # max-heap on the doc_id prefix
        self.offered = 0

    def offer(self, doc: dict) -> None:
        self.offered += 1
        key = -int(doc["doc_id"][:16], 16)
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, (key, doc["doc_id"], doc))
        elif key > self.heap[0][0]:
            heapq.heapreplace(self.heap, (key, doc["doc_id"], doc))

    def chosen(self) -> list[dict]:
        return sorted(
            (doc for _, _, doc in self.heap), key=lambda d: (d["source_file"], d["source_line"])
        )


def ingest_files(
    files: list[Path],
    *,
    db_path: Path,
    run_id: str,
    ingested_at: datetime,
    max_docs: int = 0,
    limits: IngestLimits = IngestLimits(),
) -> dict:
    """Ingest `files` in order; returns counts (XCom-safe). Raises IngestError after saving
    everything usable if any file was entirely unusable.

    `max_docs` (0 = no limit) caps the NEW documents this run takes on: every record is
    still read and checked, and the new documents with the smallest doc_ids are kept, so
    successive capped runs walk through a large corpus in uniform random batches.
    """
    tallies: dict[str, FileTally] = {}
    writer = _Writer(db_path, run_id, ingested_at, tallies)
    sample = _HashSample(max_docs) if max_docs else None
    candidates: list[dict] = []
    seen_in_run: dict[str, str] = {}
    errors_by_reason: Counter = Counter()
    records_read = 0

    def record_error(
        path: Path,
        tally: FileTally,
        record: Record,
        reason: str,
        detail: str | None,
        source_id=None,
    ):
        tally.errors[reason] += 1
        errors_by_reason[reason] += 1
        writer.errors.append(
            {
                "source_file": str(path),
                "line_no": record.line_no,
                "reason": reason,
                "detail": detail,
                "source_id": source_id,
            }
        )

    def offer_candidates() -> None:
        new = writer.drop_existing(candidates)
        for doc in new:
            tallies[doc["source_file"]].offered += 1
            sample.offer(doc)
        candidates.clear()

    for path in files:
        tally = tallies.setdefault(str(path), FileTally())
        source_ids: dict[str, int] = {}
        for record in read_records(path):
            if record.note:
                tally.notes.append(record.note)
                continue
            tally.seen += 1
            if record.error:
                record_error(path, tally, record, record.error, record.detail)
                continue
            records_read += 1
            tally.records += 1
            doc, reason, detail = to_document(record, limits)
            source_id = _storable(record.fields.get("id"))
            if doc is None:
                record_error(path, tally, record, reason, detail, source_id)
                continue
            if source_id is not None:
                if source_id in source_ids:
                    record_error(
                        path,
                        tally,
                        record,
                        "duplicate_source_id",
                        f"id {source_id!r} first seen at line {source_ids[source_id]}",
                        source_id,
                    )
                    continue
                source_ids[source_id] = record.line_no
            where = f"{path}:{record.line_no}"
            if doc["doc_id"] in seen_in_run:
                record_error(
                    path,
                    tally,
                    record,
                    "duplicate_content",
                    f"same text as {seen_in_run[doc['doc_id']]} (doc_id {doc['doc_id'][:12]})",
                    source_id,
                )
                continue
            seen_in_run[doc["doc_id"]] = where
            tally.usable += 1
            doc.update(source_file=str(path), source_line=record.line_no)
            if sample is None:
                writer.docs.append(doc)
                if len(writer.docs) >= BATCH_ROWS or len(writer.errors) >= BATCH_ROWS:
                    writer.flush()
            else:
                candidates.append(doc)
                if len(candidates) >= BATCH_ROWS:
                    offer_candidates()
                if len(writer.errors) >= BATCH_ROWS:
                    writer.flush()
    if sample is not None:
        offer_candidates()
        writer.docs = sample.chosen()
        for doc in writer.docs:
            tallies[doc["source_file"]].chosen += 1
    writer.flush()
    _record_tallies(db_path, run_id, tallies)

    resumed = _claim_pending(db_path, run_id, files)
    unusable = {
        name: tally
        for name, tally in tallies.items()
        if tally.usable == 0
        and sum(tally.errors.values()) > 0
        and set(tally.errors) != {"empty_file"}
    }
    report = {
        "files": len(files),
        "files_read": len(tallies),
        "records_read": records_read,
        "new_docs": writer.new_docs,
        "already_ingested": writer.already_ingested,
        "resumed_pending": resumed,
        "errors": sum(errors_by_reason.values()),
        "errors_by_reason": dict(sorted(errors_by_reason.items())),
        "capped_at_max_docs": bool(sample and sample.offered > max_docs),
        "file_notes": {name: t.notes for name, t in sorted(tallies.items()) if t.notes},
        "unusable_files": sorted(unusable),
    }
    if unusable:
        lines = []
        for name, tally in sorted(unusable.items()):
            reason, count = tally.errors.most_common(1)[0]
            lines.append(
                f"  {name}: {count} x {reason} -> fix: {FIXES.get(reason, 'see ingest_errors')}"
            )
        raise IngestError(
            f"{len(unusable)} corpus file(s) had no usable record (details in table ingest_errors; "
            f"the other files were ingested):\n" + "\n".join(lines)
        )
    return report


def _record_tallies(db_path: Path, run_id: str, tallies: dict[str, FileTally]) -> None:
    rows = [
        {
            "run_id": run_id,
            "source_file": name,
            "records_seen": t.seen,
            "new_docs": t.new,
            "already_ingested": t.already,
            "deferred": t.deferred,
            "errors": sum(t.errors.values()),
            "notes": json.dumps(t.notes) if t.notes else None,
        }
        for name, t in tallies.items()
    ]
    if not rows:
        return
    with warehouse.write(db_path) as con:
        con.register("_tallies", pd.DataFrame(rows))
        con.execute("INSERT OR REPLACE INTO ingest_files BY NAME SELECT * FROM _tallies")
        con.unregister("_tallies")


def _claim_pending(db_path: Path, run_id: str, files: list[Path]) -> int:
    """Resume: documents from these files that an earlier run ingested but did not finish
    (pending) or that failed on a transient fault (server down, overloaded, timed out)
    join this run's work set. Returns how many were added."""
    from webscale_rl.stages.common import TRANSIENT_LLM_REASONS

    if not files:
        return 0
    with warehouse.write(db_path) as con:
        names = pd.DataFrame({"source_file": [str(p) for p in files]})
        con.register("_files", names)
        added = warehouse.one(
            con,
            """
            INSERT OR IGNORE INTO run_docs
            SELECT ?, o.doc_id FROM doc_outcomes o JOIN documents d USING (doc_id)
            WHERE (o.outcome = 'pending' OR (o.outcome = 'failed' AND list_contains(?, o.reason)))
              AND d.source_file IN (SELECT source_file FROM _files)
              AND o.doc_id NOT IN (SELECT doc_id FROM run_docs WHERE run_id = ?)
            """,
            [run_id, TRANSIENT_LLM_REASONS, run_id],
        )
        con.unregister("_files")
    return int(added[0]) if added else 0


# --- gate -------------------------------------------------------------------------------

ERROR_REASONS = (
    "malformed_json",
    "too_deeply_nested",
    "number_too_long",
    "value_too_large",
    "not_an_object",
    "invalid_utf8",
    "invalid_unicode",
    "missing_text",
    "non_string_text",
    "empty_text",
    "oversized",
    "duplicate_source_id",
    "duplicate_content",
    "empty_file",
    "unreadable_file",
    "missing_text_column",
    "wrong_encoding",
)
GATE_COLUMNS = [
    "status",
    "reason",
    "doc_id_chars",
    "has_chars",
    "has_tokens",
    "doc_id_missing",
    "n_rows",
    "rows_total",
    "duplicate_doc_ids",
    "error_rate",
]


def gate_frame(con, files: list[str]) -> pd.DataFrame:
    """The profile of the run files' ingest ledger: every record read, ingested or not."""
    from webscale_rl.stages.common import profile_frame

    con.register("_files", pd.DataFrame({"source_file": files}))
    try:
        return profile_frame(
            con,
            """
            SELECT 'ingested' AS status, doc_id, NULL::VARCHAR AS reason,
                   length(doc_id) AS doc_id_chars, coalesce(n_chars >= 1, false) AS has_chars,
                   coalesce(n_tokens >= 1, false) AS has_tokens
            FROM documents WHERE source_file IN (SELECT source_file FROM _files)
            UNION ALL
            SELECT 'error', NULL, reason, NULL, NULL, NULL
            FROM ingest_errors WHERE source_file IN (SELECT source_file FROM _files)
            """,
            measures={"error_rate": "avg(CASE WHEN status = 'error' THEN 1.0 ELSE 0.0 END)"},
        )
    finally:
        con.unregister("_files")


def gate_expectations(max_error_rate: float, rows: int) -> list:
    import great_expectations.expectations as gxe

    ingested = {"row_condition": 'status=="ingested"', "condition_parser": "pandas"}
    errored = {"row_condition": 'status=="error"', "condition_parser": "pandas"}
    suite = [
        gxe.ExpectTableColumnsToMatchSet(column_set=GATE_COLUMNS, exact_match=True),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=["ingested", "error"]),
        gxe.ExpectColumnValuesToBeInSet(column="doc_id_missing", value_set=[False], **ingested),
        gxe.ExpectColumnValuesToBeBetween(
            column="doc_id_chars", min_value=64, max_value=64, **ingested
        ),
        gxe.ExpectColumnValuesToBeInSet(column="has_chars", value_set=[True], **ingested),
        gxe.ExpectColumnValuesToBeInSet(column="has_tokens", value_set=[True], **ingested),
        gxe.ExpectColumnValuesToNotBeNull(column="reason", **errored),
        gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=list(ERROR_REASONS), **errored),
    ]
    if rows:
        suite += [
            gxe.ExpectColumnMaxToBeBetween(column="duplicate_doc_ids", max_value=0),
            # The share of records that failed to ingest stays within the configured bound.
            gxe.ExpectColumnMaxToBeBetween(column="error_rate", max_value=max_error_rate),
        ]
    return suite
