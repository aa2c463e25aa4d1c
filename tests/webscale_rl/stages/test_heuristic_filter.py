"""Heuristic filter: each rule measured on purpose-built text, the sample corpus's junk all
rejected for the right reason, its good documents of many kinds all kept."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from conftest import SAMPLE_DIR
from support import stages
from webscale_rl import warehouse
from webscale_rl.stages import heuristic_filter as hf
from webscale_rl.stages.ingest import ingest_files
from webscale_rl.text import normalize_text

PROSE = (
    "The bridge opened to traffic in 1932 after six years of construction. It spans the river "
    "with a single steel arch of 503 metres, and at the time it was the widest long-span bridge "
    "in the world. Engineers tested the structure by parking ninety-six locomotives across it. "
    "Today the crossing carries eight lanes of traffic, two railway lines and a cycleway, and "
    "about 160,000 vehicles use it on an average working day."
)


def sample(kind: str) -> list[dict]:
    docs = []
    for path in sorted(SAMPLE_DIR.glob("docs_*.jsonl")):
        docs += [json.loads(line) for line in path.open()]
    return [d for d in docs if d["id"].startswith("bad-") == (kind == "bad")]


def first_rule(text: str):
    failed = hf.evaluate(normalize_text(text))
    return (failed[0]["rule"], failed[0]["value"]) if failed else None


def test_good_prose_passes_every_rule():
    assert hf.evaluate(PROSE) == []


def test_short_document_fails_min_tokens_with_its_measured_value():
    failed = hf.evaluate("The museum opened in 1887 and is free on Sundays.")
    assert failed[0] == {"rule": "min_tokens", "value": 11.0, "threshold": 50}


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (
            "\n".join(["Home", "About us", "Products", "Contact", "Login", "Cart"] * 12),
            "min_stop_words",
        ),
        (PROSE + "\n" + "\n".join(f"#tag{i} #deal{i} #sale" for i in range(40)), "max_hash_ratio"),
        ("\n".join(f"- item {i} of the list" for i in range(60)), "max_bullet_lines_ratio"),
        (
            "\n".join(f"{i},{i * 3},{i * 7},{i * 11}" for i in range(80)) + "\nthe and of to",
            "min_avg_word_length",
        ),
        ((PROSE + "\n\n") * 3, "max_dup_para_ratio"),
        (
            PROSE + "\n" + "\n".join(["Buy now and save big on every order."] * 8),
            "max_dup_line_ratio",
        ),
        (PROSE.replace(". ", " and then\n") + " and then", "min_line_punct_ratio"),
        (
            PROSE + "\nThis site uses cookies.\nRead our privacy policy.\nTerms of use apply.\n"
            "Accept all cookies.\nWe use cookies to improve your experience.",
            "max_boilerplate_line_ratio",
        ),
    ],
)
def test_each_rule_rejects_the_junk_it_targets(text, rule):
    assert rule in [f["rule"] for f in hf.evaluate(normalize_text(text))]


def test_every_deliberately_bad_sample_document_is_rejected():
    bad = sample("bad")
    assert len(bad) >= 12
    verdicts = {d["id"]: first_rule(d["text"]) for d in bad}
    assert all(verdicts.values()), {k: v for k, v in verdicts.items() if not v}
    assert verdicts["bad-short-01"][0] == "min_tokens"
    assert verdicts["bad-hashtag-01"][0] == "max_hash_ratio"
    assert verdicts["bad-bullets-01"][0] == "max_bullet_lines_ratio"
    assert verdicts["bad-repetition-01"][0] == "max_dup_line_ratio"
    assert verdicts["bad-cookie-01"][0] == "max_boilerplate_line_ratio"


def test_no_good_sample_document_of_any_kind_is_rejected():
    """False-rejection rate on the 60 good documents (articles, manuals, code docs, glossaries,
    recipes, FAQs, lab protocols...) must be zero with the default thresholds."""
    good = sample("good")
    assert len(good) >= 60
    rejected = {d["id"]: first_rule(d["text"]) for d in good if first_rule(d["text"])}
    assert rejected == {}


def test_overrides_change_or_disable_rules_and_unknown_names_are_refused():
    short = "The museum opened in 1887 and is free on Sundays, said the guide."
    assert "min_tokens" in [f["rule"] for f in hf.evaluate(short)]
    relaxed = hf.rules_with_overrides({"min_tokens": 5, "min_words": None})
    assert "min_tokens" not in [f["rule"] for f in hf.evaluate(short, relaxed)]
    assert "min_words" not in {r.name for r in relaxed}
    with pytest.raises(ValueError, match="unknown heuristic rule"):
        hf.rules_with_overrides({"min_tokenz": 5})


def test_stage_removes_exact_duplicates_keeping_the_first_copy_and_is_idempotent(tmp_path):
    db = tmp_path / "w.duckdb"
    files = [SAMPLE_DIR / "docs_stem.jsonl", SAMPLE_DIR / "mirror_copies.parquet"]
    ingest_files(files, db_path=db, run_id="r1", ingested_at=datetime(2026, 1, 1, tzinfo=UTC))
    first = stages.run(db, "r1", "heuristic_filter")
    again = stages.run(db, "r1", "heuristic_filter")
    assert first == again and first["rows"] == 20
    with warehouse.read(db) as con:
        rows = dict(
            con.execute(
                "SELECT d.source_id, h.status || ':' || coalesce(h.reason, '') || ':' || coalesce(k.source_id, '') "
                "FROM heuristic_filter h JOIN documents d USING (doc_id) "
                "LEFT JOIN documents k ON k.doc_id = h.duplicate_of"
            ).fetchall()
        )
        assert con.execute(
            "SELECT count(*), count(DISTINCT doc_id) FROM heuristic_filter"
        ).fetchall() == [(20, 20)]
    assert rows["bad-exactdup-01"] == "rejected:exact_duplicate:sample-math-03"
    assert rows["sample-math-03"] == "kept::"
    # A 3 %-edited near-duplicate is not an exact duplicate: near-dup removal is a later stage.
    assert sum(v.startswith("kept") for v in rows.values()) == 19


def test_shards_partition_the_id_space():
    from webscale_rl.pipeline import shard_ranges

    shards = shard_ranges(1200, 500)
    assert [s["lo"] for s in shards] == ["00000000", "55555555", "aaaaaaaa"]
    assert [s["hi"] for s in shards] == ["55555555", "aaaaaaaa", None]
    assert shard_ranges(0, 500) == [{"lo": "00000000", "hi": None}]
    assert len(shard_ranges(10**9, 1)) == 256
