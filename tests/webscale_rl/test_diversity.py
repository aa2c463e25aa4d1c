"""The diversity figures of the dataset card and bench/diversity.py."""

from __future__ import annotations

import pytest

from webscale_rl import diversity

pytestmark = pytest.mark.unit


def test_distinct_n_counts_distinct_ngrams_over_all_ngrams():
    assert diversity.distinct_n(["a b c", "a b d"], 1) == 4 / 6
    assert diversity.distinct_n(["a b c", "a b d"], 2) == 3 / 4
    assert diversity.distinct_n(["A b c", "a B c"], 3) == 1 / 2  # folded: the same trigram
    assert diversity.distinct_n(["one two"], 3) is None  # no trigram at all
    same = ["How tall is the Meridian Bridge?"] * 4
    varied = [
        "How tall is the Meridian Bridge?",
        "Which river does the Meridian Bridge cross?",
        "When did the bridge open to traffic?",
        "Who designed the Kessel crossing?",
    ]
    assert diversity.distinct_n(same, 2) == 0.25
    assert diversity.distinct_n(varied, 2) > 0.8


@pytest.mark.parametrize(
    "question, kind",
    [
        (
            "A theatre's first row has 20 seats. How many seats are there in 15 rows?",
            "how many/much",
        ),
        ("How much does the ferry cost for a car?", "how many/much"),
        ("In which year did the Meridian Bridge open?", "when"),
        ("When was the library founded?", "when"),
        ("Who designed the Meridian Bridge?", "who"),
        ("Where does the Kessel River rise?", "where"),
        ("Which logtrim option compresses rotated files?", "which"),
        ("What does str.find() return when nothing is found?", "what"),
        ("Why does water expand when it freezes?", "why"),
        ("How does a heat pump move heat?", "how"),
        ("Is the hut open in winter?", "yes/no"),
        ("Name the river.", "other"),
        # the background comes first; the last sentence asks
        ("Who built it is unknown. What is the bridge's length in metres?", "what"),
    ],
)
def test_question_type_reads_the_asking_sentence(question, kind):
    assert diversity.question_type(question) == kind


@pytest.mark.parametrize(
    "answer, question, kind",
    [
        ("510", None, "number"),
        ("312 metres", None, "number"),
        ("12%", None, "number"),
        ("-1", None, "number"),
        ("1932", "In which year did it open?", "date"),
        ("1932", "How many people attended?", "number"),
        ("15 June 2024", None, "date"),
        ("2024-06-15", None, "date"),
        ("09:00", None, "date"),
        ("the 1990s", None, "date"),
        ("Jane Austen", None, "entity"),
        ("Bank of England", None, "entity"),
        ("cue column", None, "short phrase"),
        ("compress rotated logs", None, "short phrase"),
    ],
)
def test_answer_type(answer, question, kind):
    assert diversity.answer_type(answer, question) == kind


def test_summary_reports_every_figure_the_card_shows():
    s = diversity.summary(
        questions=["How tall is it?", "How tall is it?", "Who built it?"],
        answers=["312 metres", "312 metres", "Ada Lovelace"],
        doc_ids=["d1", "d1", "d2"],
        domains=["Technology & Engineering", "Technology & Engineering", "Other"],
        collapsed=1,
        considered=4,
    )
    assert s["pairs"] == 3 and s["distinct_questions"] == 2
    assert s["distinct_1"] == round(6 / 11, 4)  # how tall is it who built / 11 words
    assert s["duplicate_question_share"] == 0.25
    assert s["question_types"] == {"how many/much": round(2 / 3, 4), "who": round(1 / 3, 4)}
    assert s["answer_types"] == {"number": round(2 / 3, 4), "entity": round(1 / 3, 4)}
    assert (s["documents"], s["pairs_per_document"]) == (2, 1.5)
    assert s["pairs_per_document_hist"] == {1: 1, 2: 1}
    assert s["domain_shares"] == {
        "Technology & Engineering": round(2 / 3, 4),
        "Other": round(1 / 3, 4),
    }
    lines = "\n".join(diversity.describe(s))
    assert (
        "distinct-2" in lines
        and "25.0% of the pairs it was applied to" in lines
        and "how many/much 67%" in lines
    )


def test_summary_of_nothing():
    s = diversity.summary([], [], [], [], 0, 0)
    assert s["pairs"] == 0 and s["distinct_2"] is None and s["duplicate_question_share"] == 0.0
    assert diversity.describe(s)[-2] == "No pairs."
