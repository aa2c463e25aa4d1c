"""Heuristic filter: the method's minimum length plus Gopher / C4 / FineWeb web-text rules,
and exact-duplicate removal.

Each rule compares one measured statistic with a threshold, so a rejection records the
rule, the value and the threshold (datatrove's filters only return a reason name). The
repetition statistics use datatrove's own functions. Thresholds are Gopher's and
FineWeb's published values except where measured false rejections on good technical and
reference prose in the sample corpus argued otherwise (see DEFAULT_RULES).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
from datatrove.pipeline.filters.c4_filters import POLICY_SUBSTRINGS
from datatrove.pipeline.filters.gopher_repetition_filter import (
    find_all_duplicate,
    find_duplicates,
    find_top_duplicate,
    get_n_grams,
)

from webscale_rl.config import ConfigError
from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext
from webscale_rl.text import tokenize, words

STAGE = "heuristic_filter"
STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
TERMINAL_PUNCTUATION = (".", "!", "?", '"', "'", ":", ";", "”", "’", ")", "…")
BOILERPLATE_SUBSTRINGS = tuple(POLICY_SUBSTRINGS) + (
    "lorem ipsum",
    "add to cart",
    "click here",
    "javascript",
)


@dataclass(frozen=True)
class Rule:
    name: str
    stat: str
    op: str  # "min": value must be >= threshold; "max": value must be <= threshold
    threshold: float

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.op == "min" else value <= self.threshold


DEFAULT_RULES: tuple[Rule, ...] = (
    # The method: documents shorter than 50 tokens carry no extractable QA.
    Rule("min_tokens", "n_tokens", "min", 50),
    # Gopher quality (Rae et al. 2021, table A1).
    Rule("min_words", "n_words", "min", 50),
    Rule("min_avg_word_length", "avg_word_length", "min", 3),
    Rule("max_avg_word_length", "avg_word_length", "max", 10),
    Rule("max_hash_ratio", "hash_ratio", "max", 0.1),
    Rule("max_ellipsis_ratio", "ellipsis_ratio", "max", 0.1),
    Rule("max_bullet_lines_ratio", "bullet_lines_ratio", "max", 0.9),
    Rule("max_ellipsis_lines_ratio", "ellipsis_lines_ratio", "max", 0.3),
    Rule("min_alpha_words_ratio", "alpha_words_ratio", "min", 0.8),
    Rule("min_stop_words", "stop_words", "min", 2),
    # Gopher repetition.
    Rule("max_dup_line_ratio", "dup_line_ratio", "max", 0.3),
    Rule("max_dup_para_ratio", "dup_para_ratio", "max", 0.3),
    Rule("max_dup_line_char_ratio", "dup_line_char_ratio", "max", 0.2),
    Rule("max_dup_para_char_ratio", "dup_para_char_ratio", "max", 0.2),
    Rule("max_top_2gram_char_ratio", "top_2gram_char_ratio", "max", 0.2),
    Rule("max_top_3gram_char_ratio", "top_3gram_char_ratio", "max", 0.18),
    Rule("max_top_4gram_char_ratio", "top_4gram_char_ratio", "max", 0.16),
    Rule("max_dup_5gram_char_ratio", "dup_5gram_char_ratio", "max", 0.15),
    Rule("max_dup_6gram_char_ratio", "dup_6gram_char_ratio", "max", 0.14),
    Rule("max_dup_7gram_char_ratio", "dup_7gram_char_ratio", "max", 0.13),
    Rule("max_dup_8gram_char_ratio", "dup_8gram_char_ratio", "max", 0.12),
    Rule("max_dup_9gram_char_ratio", "dup_9gram_char_ratio", "max", 0.11),
    Rule("max_dup_10gram_char_ratio", "dup_10gram_char_ratio", "max", 0.10),
    # FineWeb / C4 line-level boilerplate.
    Rule("min_line_punct_ratio", "line_punct_ratio", "min", 0.12),
    Rule("max_short_line_ratio", "short_line_ratio", "max", 0.67),
    Rule("max_boilerplate_line_ratio", "boilerplate_line_ratio", "max", 0.2),
)


REASONS = [r.name for r in DEFAULT_RULES] + ["exact_duplicate"]
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS heuristic_filter (
    doc_id       VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,                -- first failing rule, or NULL when kept
    value        DOUBLE,                 -- that rule's measured value
    threshold    DOUBLE,
    duplicate_of VARCHAR,                -- doc_id kept in place of an exact duplicate
    failed_rules JSON                    -- every failing rule with value and threshold
);"""


def text_stats(text: str) -> dict[str, float]:
    """Every statistic a rule reads, computed once per document."""
    tokens = tokenize(text)
    ws = words(text)
    lowered = [w.lower() for w in ws]
    n_words = len(ws)
    lines = [line for line in text.split("\n") if line.strip()]
    n_lines = max(len(lines), 1)
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    n_chars = max(len(text), 1)
    stats: dict[str, float] = {
        "n_tokens": len(tokens),
        "n_words": n_words,
        "avg_word_length": sum(map(len, ws)) / n_words if n_words else 0.0,
        "hash_ratio": text.count("#") / max(n_words, 1),
        "ellipsis_ratio": (text.count("...") + text.count("…")) / max(n_words, 1),
        "bullet_lines_ratio": sum(line.lstrip().startswith(("•", "-", "*")) for line in lines)
        / n_lines,
        "ellipsis_lines_ratio": sum(line.rstrip().endswith(("...", "…")) for line in lines)
        / n_lines,
        "alpha_words_ratio": sum(any(c.isalpha() for c in w) for w in ws) / n_words
        if n_words
        else 0.0,
        "stop_words": len(STOP_WORDS.intersection(lowered)),
        "line_punct_ratio": sum(line.rstrip().endswith(TERMINAL_PUNCTUATION) for line in lines)
        / n_lines,
        "short_line_ratio": sum(len(line.strip()) <= 30 for line in lines) / n_lines,
        "boilerplate_line_ratio": sum(
            any(s in line.lower() for s in BOILERPLATE_SUBSTRINGS) for line in lines
        )
        / n_lines,
    }
    dup_lines, dup_line_chars = find_duplicates(lines)
    dup_paras, dup_para_chars = find_duplicates(paragraphs)
    stats["dup_line_ratio"] = dup_lines / n_lines
    stats["dup_para_ratio"] = dup_paras / max(len(paragraphs), 1)
    stats["dup_line_char_ratio"] = dup_line_chars / n_chars
    stats["dup_para_char_ratio"] = dup_para_chars / n_chars
    word_chars = max(sum(map(len, lowered)), 1)
    for n in (2, 3, 4):
        grams = get_n_grams(lowered, n)
        stats[f"top_{n}gram_char_ratio"] = find_top_duplicate(grams) / word_chars if grams else 0.0
    for n in range(5, 11):
        stats[f"dup_{n}gram_char_ratio"] = (
            find_all_duplicate(lowered, n) / word_chars if n_words >= n else 0.0
        )
    return stats


def evaluate(text: str, rules: tuple[Rule, ...] = DEFAULT_RULES) -> list[dict]:
    """The failing rules, in rule order, each with its measured value and threshold."""
    stats = text_stats(text)
    return [
        {"rule": r.name, "value": round(float(stats[r.stat]), 6), "threshold": r.threshold}
        for r in rules
        if not r.passes(stats[r.stat])
    ]


def rules_with_overrides(overrides: dict[str, float] | None) -> tuple[Rule, ...]:
    """Apply {rule_name: threshold} overrides; a threshold of None disables the rule."""
    if not overrides:
        return DEFAULT_RULES
    known = {r.name for r in DEFAULT_RULES}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown heuristic rule(s) {unknown}; known rules: {sorted(known)}")
    return tuple(
        Rule(r.name, r.stat, r.op, float(overrides[r.name]))
        if overrides.get(r.name) is not None
        else r
        for r in DEFAULT_RULES
        if not (r.name in overrides and overrides[r.name] is None)
    )


def check_params(params) -> None:
    """The stage contract's optional param check: every overridden rule exists."""
    try:
        rules_with_overrides(params.heuristic_rule_overrides)
    except ValueError as exc:
        raise ConfigError(f"param 'heuristic_rule_overrides': {exc}") from None


def input_sql(previous: str | None) -> str:
    """This run's documents in the shard, with the doc_id of the copy that is kept when
    exact duplicates (same dedup_key) exist anywhere in the warehouse. The first stage:
    it reads the run's documents, not an earlier stage's rows."""
    return f"""
WITH shard AS (
    SELECT d.doc_id, d.text, d.dedup_key FROM run_docs r JOIN documents d USING (doc_id)
    WHERE r.run_id = $run_id AND {common.SHARD_FILTER}
), first_copy AS (
    SELECT dedup_key, arg_min(doc_id, ingest_seq) AS kept_doc_id FROM documents
    WHERE dedup_key IN (SELECT dedup_key FROM shard) GROUP BY dedup_key
)
SELECT s.doc_id, s.text, f.kept_doc_id FROM shard s JOIN first_copy f USING (dedup_key)
ORDER BY s.doc_id
"""


def process(docs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    rules = rules_with_overrides(ctx.params.heuristic_rule_overrides)
    rows = []
    for doc in docs.itertuples(index=False):
        row = {
            "doc_id": doc.doc_id,
            "run_id": ctx.run_id,
            "status": "kept",
            "reason": None,
            "value": None,
            "threshold": None,
            "duplicate_of": None,
            "failed_rules": "[]",
        }
        if doc.kept_doc_id != doc.doc_id:
            row.update(status="rejected", reason="exact_duplicate", duplicate_of=doc.kept_doc_id)
        else:
            failed = evaluate(doc.text, rules)
            if failed:
                first = failed[0]
                row.update(
                    status="rejected",
                    reason=first["rule"],
                    value=first["value"],
                    threshold=first["threshold"],
                    failed_rules=json.dumps(failed),
                )
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "doc_id",
            "run_id",
            "status",
            "reason",
            "value",
            "threshold",
            "duplicate_of",
            "failed_rules",
        ],
    )


# --- gate -------------------------------------------------------------------------------


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    """The run's documents with their filter rows (NULL status = missing row), profiled."""
    return common.doc_gate_frame(con, run_id, STAGE, previous)


def gate_expectations(params, rows: int) -> list:
    return common.status_expectations(
        rows,
        reasons=REASONS,
        min_kept_rate=params.min_heuristic_kept_rate,
        max_kept_rate=params.max_heuristic_kept_rate,
    )
