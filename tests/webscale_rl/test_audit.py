"""The audit loop: a stratified sample with empty label columns; a filled-in sheet loads into
DuckDB and the card reports the verifier's precision and recall as computed by hand."""

from __future__ import annotations

import csv
import json

import duckdb
import pytest

from support import pairs
from webscale_rl import audit, cli, warehouse

pytestmark = pytest.mark.unit

# Documents 0-5 are Math, 6-11 Coding. The answer says what a person would judge.
PAIRS = (
    [
        {"doc": i, "domain": "Math", "verify": "kept", "answer": "good"} for i in range(4)
    ]  # 4 accepted, good
    + [
        {"doc": 4, "domain": "Math", "verify": "rejected", "reason": "incorrect", "answer": "bad"},
        {"doc": 5, "domain": "Math", "verify": "rejected", "reason": "leakage", "answer": "good"},
    ]  # a verifier miss
    + [
        {"doc": 6, "domain": "Coding", "verify": "kept", "answer": "good"},
        {"doc": 7, "domain": "Coding", "verify": "kept", "answer": "bad"},
        {"doc": 8, "domain": "Coding", "verify": "kept", "answer": "bad"},
    ]
    + [
        {
            "doc": d,
            "domain": "Coding",
            "verify": "rejected",
            "reason": "no_context",
            "answer": "bad",
        }
        for d in (9, 10, 11)
    ]
)
for n, p in enumerate(PAIRS):
    p["question"] = f"Audit question number {n} about the document?"


@pytest.fixture
def audited(data_dir, monkeypatch):
    db = data_dir / "w.duckdb"
    monkeypatch.setenv("WEBSCALE_RL_DB", str(db))
    pairs.build(data_dir, PAIRS)
    with warehouse.write(db) as con:
        con.execute(
            "INSERT INTO runs (run_id, corpus, params, status) VALUES ('r1', 'sample', '{}', 'success')"
        )
        con.execute("""INSERT INTO decontaminate (qa_id, doc_id, run_id, status)
                       SELECT qa_id, doc_id, run_id, 'kept' FROM verify WHERE status = 'kept'""")
    return db


def test_sample_is_stratified_by_domain_and_verdict(audited):
    with warehouse.read(audited) as con:
        one_each = audit.sample(con, "r1", per_stratum=1)
        everything = audit.sample(con, "r1", per_stratum=10)
        again = audit.sample(con, "r1", per_stratum=1)
    assert sorted(zip(one_each["domain"], one_each["verifier_verdict"], strict=True)) == [
        ("Coding", "accepted"),
        ("Coding", "rejected"),
        ("Math", "accepted"),
        ("Math", "rejected"),
    ]
    assert list(one_each["qa_id"]) == list(again["qa_id"])  # stable across calls
    assert len(everything) == len(PAIRS)
    assert list(everything.columns) == audit.COLUMNS
    assert set(everything["correct"]) == {""} and set(everything["self_contained"]) == {""}


def fill(sheet, out, partial_qa: str | None = None, bad_value: str | None = None):
    """A person's labels: y/n/y for a good answer, n/n/y for a bad one."""
    rows = list(csv.DictReader(sheet.open()))
    for row in rows:
        good = row["answer"] == "good"
        row.update(correct="y" if good else "n", leaked="n", self_contained="yes" if good else "y")
        if row["qa_id"] == partial_qa:
            row.update(leaked="", self_contained="")  # half-judged: left out of the metrics
    if bad_value:
        rows[3]["correct"] = bad_value
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_loaded_labels_give_precision_and_recall_as_computed_by_hand(audited, data_dir, capsys):
    from webscale_rl import card
    from webscale_rl.config import load_settings

    settings = load_settings()
    written = card.write_card(audited, settings.exports_dir, "r1", audit_per_stratum=10)
    sheet = data_dir / "exports" / "r1" / "audit.csv"
    assert written["audit_rows"] == len(PAIRS) and sheet.exists()
    assert "No labels loaded yet" in (sheet.parent / "card.md").read_text()

    with warehouse.read(audited) as con:
        first_good_accepted = con.execute(
            "SELECT v.qa_id FROM verify v JOIN generate g USING (qa_id) WHERE v.status = 'kept' AND g.answer = 'good' "
            "ORDER BY g.persona_idx LIMIT 1"
        ).fetchall()[0][0]
    filled = data_dir / "filled.csv"
    fill(sheet, filled, partial_qa=first_good_accepted)
    assert cli.main(["audit-load", str(filled)]) == 0
    # By hand: accepted = 5 good (one half-judged, left out) + 2 bad -> TP 4, FP 2;
    # rejected = 1 good + 4 bad -> FN 1, TN 4. Precision 4/6, recall 4/5.
    with warehouse.read(audited) as con:
        m = audit.metrics(con, "r1")
    assert (m["labelled"], m["tp"], m["fp"], m["fn"], m["tn"]) == (11, 4, 2, 1, 4)
    assert m["precision"] == pytest.approx(4 / 6) and m["recall"] == pytest.approx(4 / 5)
    card_md = (sheet.parent / "card.md").read_text()
    assert "precision 0.667" in card_md and "recall 0.800" in card_md
    assert "Verifier precision 0.667" in (sheet.parent / "report.html").read_text()
    assert "precision 0.667" in capsys.readouterr().out
    assert json.loads((sheet.parent / "card.json").read_text())["audit"]["tp"] == 4

    # Loading again (a corrected sheet) replaces labels, never duplicates them.
    assert cli.main(["audit-load", str(filled)]) == 0
    con = duckdb.connect(str(audited), read_only=True)
    try:
        assert con.execute(
            "SELECT count(*), count(DISTINCT qa_id) FROM audit_labels"
        ).fetchall() == [(12, 12)]
    finally:
        con.close()


def test_bad_sheets_are_refused_with_line_and_column(audited, data_dir, capsys):
    from webscale_rl import card
    from webscale_rl.config import load_settings

    card.write_card(audited, load_settings().exports_dir, "r1", audit_per_stratum=10)
    sheet = data_dir / "exports" / "r1" / "audit.csv"
    bad = data_dir / "bad.csv"
    fill(sheet, bad, bad_value="maybe")
    assert cli.main(["audit-load", str(bad)]) == 2
    assert "line 5, column 'correct': 'maybe' is not a label" in capsys.readouterr().err
    unknown = data_dir / "unknown.csv"
    unknown.write_text(
        '"qa_id","run_id","correct","leaked","self_contained"\n"deadbeef","r1","y","n","y"\n'
    )
    assert cli.main(["audit-load", str(unknown)]) == 2
    assert "not in the warehouse" in capsys.readouterr().err
    (data_dir / "nolabels.csv").write_text("qa_id,run_id\n")
    assert cli.main(["audit-load", str(data_dir / "nolabels.csv")]) == 2
    with warehouse.read(audited) as con:
        assert con.execute("SELECT count(*) FROM audit_labels").fetchall() == [(0,)]
