"""scripts/test_overlap.py: the check `make test` runs on the live group's timings."""

from __future__ import annotations

import importlib.util
import json

import pytest

from conftest import ROOT

pytestmark = pytest.mark.unit

spec = importlib.util.spec_from_file_location("test_overlap", ROOT / "scripts" / "test_overlap.py")
test_overlap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(test_overlap)


def row(name, start, end, groups=("live",), worker="gw0"):
    return {"nodeid": name, "start": start, "end": end, "groups": list(groups), "worker": worker}


def test_back_to_back_tests_do_not_overlap_and_a_nested_one_does():
    assert test_overlap.overlaps([row("a", 0, 10), row("b", 10, 20)]) == []
    long, short, late = row("long", 0, 100), row("short", 5, 6), row("late", 50, 120)
    assert test_overlap.overlaps([short, late, long]) == [(long, short), (long, late)]


def test_the_script_fails_only_when_the_group_overlapped(tmp_path, capsys):
    path = tmp_path / "t.jsonl"
    rows = [row("a", 0, 10), row("b", 5, 12, worker="gw1"), row("other", 0, 50, groups=())]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    assert test_overlap.main([str(path), "--group", "live"]) == 1
    assert "OVERLAP: b started 5.0 s before a ended" in capsys.readouterr().out
    path.write_text("\n".join(json.dumps(r) for r in [rows[0], rows[2]]))
    assert test_overlap.main([str(path), "--group", "live"]) == 0
