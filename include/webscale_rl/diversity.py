"""How diverse a set of question-answer pairs is: the figures the dataset card and
bench/diversity.py report.

- distinct-n (n = 1, 2, 3): distinct word n-grams of the questions over all their n-grams
  (Li et al. 2016); 1.0 when no n-gram repeats, low when questions share their wording.
- question types: the interrogative each question asks with (what, which, how many/much,
  when, who, where, why, how, yes/no), read from its last sentence, since a
  self-contained question often starts with the background it needs.
- answer types: number, date (or time), entity (capitalised name), short phrase.
- pairs per document, and per-domain shares.

Pure functions over lists, so they are unit-tested without a warehouse.
"""

from __future__ import annotations

from collections import Counter

import regex

from webscale_rl.text import folded_words

QUESTION_TYPES = (
    "how many/much",
    "when",
    "who",
    "where",
    "which",
    "what",
    "why",
    "how",
    "yes/no",
    "other",
)
ANSWER_TYPES = ("number", "date", "entity", "short phrase")

# In order of precedence: "how many" before "how", "what year" (a date) before "what".
_QUESTION_CUES = (
    (
        "how many/much",
        regex.compile(r"\bhow (?:many|much|long|far|old|big|tall|large|often)\b", regex.I),
    ),
    (
        "when",
        regex.compile(
            r"\b(?:when|(?:what|which|in which|in what) (?:year|date|day|month|time|century|decade))\b",
            regex.I,
        ),
    ),
    ("who", regex.compile(r"\b(?:who|whom|whose)\b", regex.I)),
    ("where", regex.compile(r"\bwhere\b", regex.I)),
    ("which", regex.compile(r"\bwhich\b", regex.I)),
    ("what", regex.compile(r"\bwhat\b", regex.I)),
    ("why", regex.compile(r"\bwhy\b", regex.I)),
    ("how", regex.compile(r"\bhow\b", regex.I)),
)
_YES_NO = regex.compile(
    r"^(?:is|are|was|were|do|does|did|can|could|will|would|should|has|have|had|must|may)\b",
    regex.I,
)
_SENTENCE_END = regex.compile(r"(?<=[.!?:;])\s+")
_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_DATE = regex.compile(
    rf"\b(?:\d{{4}}-\d\d(?:-\d\d)?|\d{{1,2}}[/.]\d{{1,2}}[/.]\d{{2,4}}|\d{{1,2}}:\d\d|"
    rf"(?:\d{{1,2}}(?:st|nd|rd|th)? )?(?:{_MONTHS})\.?(?: \d{{1,2}}(?:st|nd|rd|th)?,?)?(?: \d{{4}})?|"
    rf"\d{{3,4}}(?:s|\s*(?:bc|bce|ad|ce))|\d{{1,2}}(?:st|nd|rd|th) century)\b",
    regex.I,
)
# A bare year reads as a date only when the question asks when.
_YEAR = regex.compile(r"^(?:in |by |around |circa |c\. )?\d{3,4}$", regex.I)
_NUMBER = regex.compile(r"\d")
_CAPITALISED = regex.compile(r"^\p{Lu}")
_SMALL_WORDS = frozenset({"of", "the", "and", "de", "la", "von", "van", "for", "in", "on", "a"})


def distinct_n(texts: list[str], n: int) -> float | None:
    """Distinct word n-grams over all word n-grams of `texts` (None: no n-gram at all)."""
    total, seen = 0, set()
    for text in texts:
        ws = folded_words(text)
        grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else None


def question_type(question: str) -> str:
    """The interrogative of the question's last sentence (see QUESTION_TYPES)."""
    sentences = [s for s in _SENTENCE_END.split(question.strip()) if s.strip()]
    asking = [s for s in sentences if s.rstrip().endswith("?")] or sentences or [""]
    last = asking[-1]
    # The earliest interrogative asks ("What ... when ..." is a what); at one position the
    # more specific cue wins ("how many" over "how", "what year" over "what").
    found = [
        (m.start(), rank, name)
        for rank, (name, cue) in enumerate(_QUESTION_CUES)
        if (m := cue.search(last))
    ]
    if found:
        return min(found)[2]
    return "yes/no" if _YES_NO.search(last.strip()) else "other"


def answer_type(answer: str, question: str | None = None) -> str:
    """number, date, entity or short phrase (see ANSWER_TYPES); a bare year is a date when
    the question asks when."""
    text = answer.strip()
    if question is not None and _YEAR.match(text) and question_type(question) == "when":
        return "date"
    if _DATE.fullmatch(text.rstrip(".")) or (
        _DATE.search(text) and len(text.split()) <= 4 and not _is_quantity(text)
    ):
        return "date"
    if _NUMBER.search(text):
        return "number"
    content = [w for w in text.split() if w.lower() not in _SMALL_WORDS]
    if content and all(_CAPITALISED.match(w) for w in content):
        return "entity"
    return "short phrase"


def _is_quantity(text: str) -> bool:
    """A number with a unit that is not a date ('2,000 metres', '12%')."""
    return bool(regex.match(r"^[\d.,]+\s*(?:%|[^\d\s/:-]+)", text)) and not regex.search(
        rf"\b(?:{_MONTHS})\b", text, regex.I
    )


def _shares(counts: Counter, order: tuple[str, ...]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: round(counts[k] / total, 4) for k in order if counts[k]} if total else {}


def summary(
    questions: list[str],
    answers: list[str],
    doc_ids: list[str],
    domains: list[str | None],
    collapsed: int | None = None,
    considered: int | None = None,
) -> dict:
    """The diversity figures of a set of pairs. `collapsed` of `considered` questions were
    dropped as near-duplicates of another (decontaminate's question dedup), when known."""
    per_doc = Counter(doc_ids)
    per_doc_hist = Counter(per_doc.values())
    domain_counts = Counter(d or "unknown" for d in domains)
    return {
        "pairs": len(questions),
        "distinct_1": _round(distinct_n(questions, 1)),
        "distinct_2": _round(distinct_n(questions, 2)),
        "distinct_3": _round(distinct_n(questions, 3)),
        "distinct_questions": len({" ".join(folded_words(q)) for q in questions}),
        "duplicate_question_share": _round(collapsed / considered)
        if considered
        else (0.0 if considered == 0 else None),
        "question_types": _shares(Counter(map(question_type, questions)), QUESTION_TYPES),
        "answer_types": _shares(Counter(map(answer_type, answers, questions)), ANSWER_TYPES),
        "documents": len(per_doc),
        "pairs_per_document": _round(len(doc_ids) / len(per_doc)) if per_doc else None,
        "pairs_per_document_hist": dict(sorted(per_doc_hist.items())),
        "domain_shares": {d: round(n / len(domains), 4) for d, n in domain_counts.most_common()}
        if domains
        else {},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def describe(div: dict, title: str = "Diversity of the accepted pairs") -> list[str]:
    """A card's diversity section (markdown lines)."""
    lines = [f"## {title}", ""]
    if not div["pairs"]:
        return lines + ["No pairs.", ""]

    def mix(shares: dict[str, float]) -> str:
        return ", ".join(f"{k} {100 * v:.0f}%" for k, v in shares.items()) or "none"

    dup = div["duplicate_question_share"]
    lines += [
        f"Distinct-n of the questions (distinct word n-grams / all): distinct-1 "
        f"{div['distinct_1']}, distinct-2 {div['distinct_2']}, distinct-3 {div['distinct_3']}; "
        f"{div['distinct_questions']} distinct questions of {div['pairs']}.",
        "",
        "Near-duplicate questions (decontaminate's test): "
        + ("n/a" if dup is None else f"{100 * dup:.1f}% of the pairs it was applied to"),
        "",
        f"Question types: {mix(div['question_types'])}.",
        "",
        f"Answer types: {mix(div['answer_types'])}.",
        "",
        f"Pairs per document: {div['pairs_per_document']:.2f} on average over {div['documents']} "
        "documents ("
        + ", ".join(f"{k} pairs: {v} docs" for k, v in div["pairs_per_document_hist"].items())
        + ").",
        "",
        "Domain shares: "
        + ", ".join(f"{d} {100 * s:.0f}%" for d, s in div["domain_shares"].items())
        + ".",
        "",
    ]
    return lines
