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

pytestmark = pytest.mark.unit

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


# --- the prose view and the boilerplate-shape rules ----------------------------------------

DEVSET = SAMPLE_DIR.parents[1] / "tests" / "data" / "heuristic_devset" / "documents.jsonl"


def test_prose_view_sets_markdown_syntax_urls_and_fenced_code_aside():
    text = (
        "# Install\n\nUse **pip** and `venv`, see [the guide](https://example.org/guide) "
        "or <https://example.org>.\n\n```sh\npip install thing\n```\n\n| a | b |\n|---|---|\n"
        "| one | two |\n![badge](https://img.example/b.svg)"
    )
    prose, code_chars = hf.prose_view(text)
    assert "#" not in prose and "*" not in prose and "`" not in prose
    assert "http" not in prose and "example.org" not in prose and "badge" not in prose
    assert "the guide" in prose and "pip install" not in prose
    assert "|" not in prose and "---" not in prose and "one" in prose
    assert code_chars == len("```sh\npip install thing\n```")


def test_prose_view_sets_restructuredtext_syntax_aside():
    text = (
        "Usage\n=====\n\n.. note::\n:maxdepth: 2\nCall :func:`os.stat` or read "
        "`the docs <https://docs.example>`_.\n.. _target: https://x.example\n"
    )
    prose, _ = hf.prose_view(text)
    assert prose.split() == ["Usage", "Call", "os.stat", "or", "read", "the", "docs."]


def test_a_rst_title_underlined_with_tildes_is_not_a_code_fence():
    prose, code_chars = hf.prose_view("Title\n~~~~~\n\nSome prose follows here.")
    assert code_chars == 0 and "Some prose follows here." in prose


def test_words_are_counted_on_the_prose_view():
    linked = " ".join(f"[w{i}](https://example.org/{i})" for i in range(20))
    stats = hf.text_stats(linked)
    assert stats["n_words"] == 20  # link targets are not words


LICENCE = (
    "MIT License\n\nCopyright (c) 2024 A. Author\n\nPermission is hereby granted, free of charge, "
    "to any person obtaining a copy of this software, to deal in the Software without "
    "restriction, subject to the following conditions:\n\nThe above copyright notice and this "
    "permission notice shall be included in all copies.\n\nTHE SOFTWARE IS PROVIDED AS IS, "
    "WITHOUT WARRANTY OF ANY KIND, INCLUDING THE WARRANTIES OF MERCHANTABILITY. IN NO EVENT "
    "SHALL THE AUTHORS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER LIABILITY."
)
CHANGELOG = "\n\n".join(
    f"foo (1.{i}-1) unstable; urgency=medium\n\n  * Fix the build with the new compiler.\n"
    f"  * Update the watch file for the upstream release.\n\n"
    f" -- Jane Doe <jane@example.org>  Mon, 0{i % 9 + 1} Jan 2024 10:00:00 +0000"
    for i in range(8)
)
GNU_CHANGELOG = "\n\n".join(
    f"2024-0{i % 9 + 1}-1{i}  Jane Doe  <jane@example.org>\n\n"
    f"\t* src/parse.c (read_token): Handle an empty token.\n\t* NEWS: Mention it."
    for i in range(8)
)
INFO_INDEX = "File: x.info,  Node: Index\n\n* Menu:\n\n" + "\n".join(
    f"* option {i}:                  Invoking.         (line {i + 6})" for i in range(30)
)
INFO_MENU = "File: x.info,  Node: Top\n\nThe X manual.\n\n* Menu:\n\n" + "\n".join(
    f"* Chapter {i}::   What chapter {i} of the manual is about" for i in range(30)
)
SOURCE = (
    "#include <stdio.h>\n\nstatic int count = 0;\n\nint main(void) {\n"
    + "\n".join(f'    printf("%d\\n", count + {i});' for i in range(30))
    + "\n    return 0;\n}\n"
)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        (LICENCE, "max_licence_term_ratio"),
        (CHANGELOG, "max_changelog_line_ratio"),
        (INFO_MENU, "max_entry_line_ratio"),
        (SOURCE, "max_bare_code_line_ratio"),
        (GNU_CHANGELOG, "max_changelog_line_ratio"),
        (INFO_INDEX, "max_entry_line_ratio"),
    ],
)
def test_each_boilerplate_shape_rule_rejects_its_kind(text, rule):
    failed = hf.evaluate(normalize_text(text))
    assert rule in [f["rule"] for f in failed]
    assert rule not in [f["rule"] for f in hf.evaluate(PROSE)]


def test_readme_code_in_fences_is_not_code_share():
    readme = (
        PROSE
        + "\n\nInstall it with the package manager and start the service:\n\n```sh\n"
        + "\n".join(f"sudo service start unit{i};" for i in range(12))
        + "\n```\n\nThe service then answers on port 8080 and logs to the journal."
    )
    stats = hf.text_stats(normalize_text(readme))
    assert stats["code_line_ratio"] < 0.33 and stats["bare_code_line_ratio"] < 0.33


def test_code_explained_by_prose_is_not_a_source_file():
    """A tutorial or an error-index entry is mostly code lines (indentation is gone after
    normalisation) but a fifth or more of its words stand in sentences; a source file's do
    not (its comments are not counted as prose)."""
    code = "\n".join(f"let x{i} = compute({i});" for i in range(12))
    tutorial = (
        "Closures capture the variables of the scope they are defined in, by reference.\n"
        + code
        + "\nHere every binding borrows its value, so the compiler knows the lifetimes.\n"
        "Moving a value into the closure instead makes the closure own that value.\n"
    )
    stats = hf.text_stats(normalize_text(tutorial))
    assert stats["code_line_ratio"] > 0.55 and stats["prose_word_share"] >= 0.15
    assert stats["bare_code_line_ratio"] == 0.0
    commented = "\n".join(f"// This is the {i}th step of the computation here.\n" for i in range(8))
    source = hf.text_stats(normalize_text(commented + code))
    assert source["prose_word_share"] == 0.0 and source["bare_code_line_ratio"] > 0.33


def test_option_lines_of_a_manual_are_not_index_entries():
    """A manual's option or key lines each head a description: entry lines count only in
    runs of three or more, as in a table of contents."""
    manual = "NAME\nfoo-config - print build flags\n\nOPTIONS\n" + "\n".join(
        f"--flag{i}\nPrint the flags that option {i} needs for the build." for i in range(10)
    )
    assert hf.text_stats(normalize_text(manual))["entry_line_ratio"] == 0.0
    toc = "Contents\n\n" + "\n".join(f"chapter-{i}" for i in range(10)) + "\nEnd of contents."
    assert hf.text_stats(normalize_text(toc))["entry_line_ratio"] > 0.8


def test_new_rules_are_reasons_and_can_be_overridden():
    for name in (
        "max_bare_code_line_ratio",
        "max_licence_term_ratio",
        "max_changelog_line_ratio",
        "max_entry_line_ratio",
    ):
        assert name in hf.REASONS
    relaxed = hf.rules_with_overrides({"max_licence_term_ratio": None})
    assert "max_licence_term_ratio" not in [f["rule"] for f in hf.evaluate(LICENCE, relaxed)]


def test_targets_hold_on_the_tuning_set():
    """Calibrated on documents.jsonl (dev and eval, 429): at most 5 % of good documents
    rejected and at least 80 % of boilerplate caught (9/276 = 3.3 % and 129/153 = 84.3 %
    when this was written). The holdout set is not asserted on here: it is only reported
    (bench/heuristic_devset.py), so that no one tunes on it to make a test pass."""
    dev = [json.loads(line) for line in DEVSET.open(encoding="utf-8")]
    rejected = [bool(hf.evaluate(normalize_text(d["text"]))) for d in dev]
    keep = [r for r, d in zip(rejected, dev, strict=True) if d["label"] == "keep"]
    junk = [r for r, d in zip(rejected, dev, strict=True) if d["label"] == "reject"]
    assert sum(keep) / len(keep) <= 0.05
    assert sum(junk) / len(junk) >= 0.80


@pytest.mark.parametrize(
    "hostile",
    [
        "." * 200_000,  # once a dot-leader pattern scanned from inside the run: minutes
        "[" * 100_000 + "](" * 50_000,  # link text running over other brackets
        "-" * 200_000 + "x",  # a table separator row that never ends as one
        "`" + "a <" * 60_000,  # an rST link whose target never closes
        "for " + "x in " * 40_000 + "y",
    ],
    ids=["dots", "brackets", "dashes", "rst-link", "for-in"],
)
def test_line_shapes_of_a_hostile_document_are_rejected_not_hung_on(hostile):
    # Every shape regex is linear in the line's length: a quadratic one would take minutes
    # on these 200,000-character lines (the stage's max_doc_chars), not a fraction of a second.
    assert hf.evaluate(normalize_text(hostile))
