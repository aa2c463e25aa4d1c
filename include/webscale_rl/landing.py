"""Scheduled incremental ingestion from a landing directory.

The `webscale_rl_ingest` DAG runs on a schedule (default daily). Each run scans the
landing directory (`landing` param, default `landing/` under the data dir) and ingests
only files that are new or changed since they were last seen (size, mtime, then sha256 to
tell a touched file from a changed one), recording each in `landing_files`. When new
documents arrived it emits the `webscale_rl_new_documents` Asset event naming the files;
the `webscale_rl` DAG is scheduled on that Asset and processes exactly the documents of
those files that have no outcome yet. Nothing new: the publish task is skipped, no event
is emitted, and no processing run starts.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from webscale_rl import warehouse
from webscale_rl.config import CORPUS_SUFFIXES, ConfigError, load_settings, resolve_corpus
from webscale_rl.stages import ingest


@dataclass(frozen=True)
class FileState:
    path: str
    size: int
    mtime_ns: int
    sha256: str | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def landing_files(landing: str) -> list[Path]:
    """Corpus files under the landing directory (inside the allowed roots); none is fine."""
    settings = load_settings()
    # The roots are checked first (by resolve_corpus): saying whether a folder outside them
    # exists would let the param probe the host's file system.
    missing = False
    with contextlib.suppress(OSError):
        root = (
            (settings.data_dir / landing) if not Path(landing).is_absolute() else Path(landing)
        ).resolve()
        missing = any(root.is_relative_to(r) for r in settings.allowed_roots) and not root.exists()
    if missing:
        raise ConfigError(
            f"landing directory {root} does not exist: create it and drop "
            f"{', '.join(CORPUS_SUFFIXES)} files there"
        )
    return resolve_corpus(landing, settings, allow_empty=True)


def changed_files(db_path: Path, files: list[Path]) -> list[FileState]:
    """Files not seen before, or whose content changed since (a touch alone is not a change)."""
    with warehouse.read(db_path) as con:
        known = {
            p: (size, mtime, sha)
            for p, size, mtime, sha in con.execute(
                "SELECT path, size, mtime_ns, sha256 FROM landing_files"
            ).fetchall()
        }
    out = []
    for path in files:
        stat = path.stat()
        state = FileState(str(path), stat.st_size, stat.st_mtime_ns)
        seen = known.get(state.path)
        if seen and seen[:2] == (state.size, state.mtime_ns):
            continue
        digest = _sha256(path)
        if seen and seen[2] == digest:
            continue
        out.append(FileState(state.path, state.size, state.mtime_ns, digest))
    return out


def scan_and_ingest(landing: str, run_id: str, max_docs: int = 0) -> dict:
    """Ingest the new or changed landing files; returns what the publish task announces."""
    settings = load_settings()
    files = landing_files(landing)
    changed = changed_files(settings.db_path, files)
    report = {
        "scanned": len(files),
        "changed_files": [c.path for c in changed],
        "new_docs": 0,
        "ingest_run_id": run_id,
    }
    if not changed:
        return report
    now = datetime.now(UTC)
    try:
        result = ingest.ingest_files(
            [Path(c.path) for c in changed],
            db_path=settings.db_path,
            run_id=run_id,
            ingested_at=now,
            max_docs=max_docs,
        )
    except ingest.IngestError:
        _record(
            settings.db_path, changed, run_id, now
        )  # the usable files were saved; do not re-read them
        raise
    _record(settings.db_path, changed, run_id, now)
    report.update(
        new_docs=result["new_docs"], errors=result["errors"], records_read=result["records_read"]
    )
    return report


def _record(db_path: Path, changed: list[FileState], run_id: str, when: datetime) -> None:
    frame = pd.DataFrame(
        [
            {
                "path": c.path,
                "size": c.size,
                "mtime_ns": c.mtime_ns,
                "sha256": c.sha256,
                "ingest_run_id": run_id,
                "seen_at": when,
            }
            for c in changed
        ]
    )
    with warehouse.write(db_path) as con:
        warehouse.replace_rows(con, "landing_files", frame, key="path")


def files_from_events(extras: list[dict]) -> list[str]:
    """The landing files named by the triggering Asset events, in order, without repeats."""
    files: list[str] = []
    for extra in extras:
        for path in (extra or {}).get("files", []):
            if path not in files:
                files.append(path)
    return files
