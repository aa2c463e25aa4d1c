"""Scheduled ingestion's file tracking: only new or changed landing files are taken in."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import SAMPLE_DIR
from webscale_rl import landing
from webscale_rl.config import ConfigError

pytestmark = pytest.mark.unit


@pytest.fixture
def landing_dir(data_dir):
    folder = data_dir / "landing"
    folder.mkdir()
    return folder


def test_only_new_or_changed_files_are_ingested(data_dir, landing_dir):
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", landing_dir / "a.jsonl")
    first = landing.scan_and_ingest("landing", "ingest-1")
    assert (first["scanned"], first["new_docs"]) == (1, 18)
    assert first["changed_files"] == [str(landing_dir / "a.jsonl")]

    again = landing.scan_and_ingest("landing", "ingest-2")
    assert (again["changed_files"], again["new_docs"]) == ([], 0)

    # Touched but unchanged: not re-read. Changed: read again, and only its new record is new.
    stat = (landing_dir / "a.jsonl").stat()
    os.utime(landing_dir / "a.jsonl", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert landing.scan_and_ingest("landing", "ingest-3")["changed_files"] == []
    with open(landing_dir / "a.jsonl", "a") as handle:
        handle.write(
            json.dumps(
                {"id": "late", "text": " ".join(["A new paragraph about tidal energy."] * 12)}
            )
            + "\n"
        )
    shutil.copy(SAMPLE_DIR / "docs_science_society.jsonl", landing_dir / "b.jsonl")
    changed = landing.scan_and_ingest("landing", "ingest-4")
    assert sorted(changed["changed_files"]) == [
        str(landing_dir / "a.jsonl"),
        str(landing_dir / "b.jsonl"),
    ]
    assert changed["new_docs"] == 1 + 18


def test_an_empty_landing_directory_is_not_an_error_but_a_missing_one_is(data_dir, landing_dir):
    assert landing.scan_and_ingest("landing", "i")["new_docs"] == 0
    with pytest.raises(ConfigError, match="does not exist"):
        landing.scan_and_ingest("no-such-folder", "i")
    with pytest.raises(ConfigError, match="outside the allowed roots"):
        landing.scan_and_ingest("../..", "i")


def test_files_from_events_keeps_order_without_repeats():
    assert landing.files_from_events(
        [{"files": ["/d/a", "/d/b"]}, None, {"files": ["/d/b", "/d/c"]}]
    ) == ["/d/a", "/d/b", "/d/c"]
