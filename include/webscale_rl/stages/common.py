"""What the stages share: the context the runner hands them, the input query of a document
stage, calling the one LLM client, and the generic part of each stage's gate."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from webscale_rl import warehouse
from webscale_rl.llm import LLMClient, LLMRequest, LLMResult, LLMSettings

SHARD_FILTER = "d.doc_id >= $lo AND ($hi IS NULL OR d.doc_id < $hi)"
WHOLE_RUN = ("00000000", None)  # the shard of a run-level stage: every doc_id


@dataclass(frozen=True)
class StageContext:
    """What a stage's `process` or `run` gets from the runner (webscale_rl.runner)."""

    db_path: Path
    run_id: str
    params: Any  # the run's validated params (webscale_rl.pipeline.RunParams)
    previous: str | None  # the stage whose kept rows this stage reads
    shard: tuple[str, str | None] = WHOLE_RUN  # doc_id range [lo, hi)
    llm: LLMSettings | None = None  # set for LLM stages

    def call_llm(self, requests: list[LLMRequest]) -> dict[str, LLMResult]:
        """Results by request_hash, through the one client (ledger, retries, journal)."""
        return call_llm(self.llm, self.db_path, self.run_id, requests, shard=self.shard[0])


def kept_docs_sql(previous: str, columns: str = "") -> str:
    """This run's documents in the shard that `previous` kept, with their text."""
    extra = f", {columns}" if columns else ""
    return f"""
SELECT d.doc_id, d.text{extra} FROM run_docs r
JOIN documents d USING (doc_id)
JOIN {previous} p ON p.doc_id = d.doc_id AND p.status = 'kept'
WHERE r.run_id = $run_id AND {SHARD_FILTER}
ORDER BY d.doc_id
"""


def ingest_windows(con, run_id: str, rows: int) -> list[tuple[int, int]]:
    """[lo, hi) ranges of ingest_seq, `rows` wide, that hold the run's documents, in order.

    A run-level stage that must read the run's documents in arrival order reads one window
    at a time: documents are stored in ingest_seq order, so DuckDB's zone maps prune each
    window's scan, and only the window's rows are sorted (a sort of the whole run's texts
    needs memory in proportion to the run)."""
    return [
        (w * rows, (w + 1) * rows)
        for (w,) in con.execute(
            """SELECT DISTINCT d.ingest_seq // $rows FROM run_docs r
               JOIN documents d USING (doc_id) WHERE r.run_id = $run ORDER BY 1""",
            {"rows": rows, "run": run_id},
        ).fetchall()
    ]


def make_request(
    settings: LLMSettings,
    stage: str,
    item_id: str,
    messages: list[dict],
    schema: dict,
    schema_name: str,
    prompt_id: str,
    max_invalid_retries: int | None = None,
) -> LLMRequest:
    """A stage's request with the run's model for that stage and its decoding settings.

    A sampled request (temperature > 0) carries a seed derived from the stage's base seed and
    the request's own content (model, messages, schema): two requests of a run draw
    independently, and a re-run sends the very same request, which the ledger answers. A
    greedy request keeps the base seed (it has no effect there), so its identity is what it
    was before seeds were derived."""
    model = settings.model_for(stage)
    temperature, top_p, seed = settings.sampling_for(stage)
    if temperature > 0:
        seed = content_seed(seed, model, messages, schema)
    return LLMRequest(
        stage=stage,
        item_id=item_id,
        model=model,
        messages=tuple(messages),
        schema=schema,
        schema_name=schema_name,
        prompt_id=prompt_id,
        max_tokens=settings.max_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        max_invalid_retries=max_invalid_retries,
    )


def content_seed(base: int, model: str, messages: list[dict], schema: dict | None) -> int:
    """A 31-bit seed from a base seed and what a request asks (servers take a signed int32)."""
    body = json.dumps([base, model, list(messages), schema], sort_keys=True, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(body.encode("utf-8")).digest()[:4], "big") >> 1


def read_inputs(db_path: Path, sql: str, run_id: str, lo: str, hi: str | None) -> pd.DataFrame:
    """Run a stage's input query; it may use $run_id, $lo, $hi and SHARD_FILTER (alias d)."""
    with warehouse.read(db_path) as con:
        return con.execute(sql, {"run_id": run_id, "lo": lo, "hi": hi}).df()


def call_llm(
    settings: LLMSettings,
    db_path: Path,
    run_id: str,
    requests: list[LLMRequest],
    shard: str = "all",
) -> dict[str, LLMResult]:
    if not requests:
        return {}
    return LLMClient(settings, db_path, run_id, shard=shard).run(requests)


def best_candidate(
    candidates, similarity: Callable[[str], float], threshold: float
) -> tuple[str, float] | None:
    """The LSH candidate most similar at or above `threshold` (ties: the smallest id), with its
    similarity; LSH candidates are only likely matches, so each is confirmed here."""
    hits = [(c, similarity(c)) for c in candidates]
    hits = [h for h in hits if h[1] >= threshold]
    return min(hits, key=lambda h: (-h[1], h[0])) if hits else None


# A reply that came back but is unusable (not JSON, not valid for the schema, cut at
# max_tokens): retrying the same request with a new seed did not help, so a fused call
# falls back to the method's per-item calls for its document.
REPLY_ERRORS = frozenset({"invalid_json", "schema_mismatch", "truncated"})
FUSED_INVALID_RETRIES = 1  # a fused call's invalid reply is retried once before the fallback


def reply_error(result: LLMResult) -> bool:
    return not result.ok and result.error_kind in REPLY_ERRORS


def failure_reason(result: LLMResult, domain_field: bool = False) -> str:
    """The reason recorded for a failed call; with `domain_field`, a reply whose `domain`
    is outside the schema's ten is `domain_out_of_list` (never coerced to "Other")."""
    if (
        domain_field
        and result.error_kind == "schema_mismatch"
        and "at domain:" in (result.error or "")
    ):
        return "domain_out_of_list"
    return f"llm_{result.error_kind or 'error'}"


def shard_counts(frame: pd.DataFrame, lo: str, hi: str | None) -> dict:
    by_status = frame["status"].value_counts().to_dict() if len(frame) else {}
    return {"shard": [lo, hi], "rows": len(frame), **{k: int(v) for k, v in by_status.items()}}


# --- gates ------------------------------------------------------------------------------
#
# A gate validates a *profile* of its stage, computed in DuckDB: one row per distinct
# combination of the values the expectations check (status, reason, domain, flags, capped
# lengths), with `n_rows`, the items that row stands for, and run-level measures (duplicate
# keys, failed and kept shares) repeated on every row. Its size depends on how many distinct
# values there are, not on how many items the run has, so a gate's memory stays flat from
# 18 documents to millions; the failure messages still count items (gates.run_gate maps each
# unexpected profile row back to its n_rows).

# Gate profiles count answer lengths up to this (longer ones read as cap + 1): above any
# bound the answer-length policy can set (answer_policy: 50 words x 12 characters).
ANSWER_CHARS_CAP = 1000

STATUS_MEASURES = {
    "failed_rate": "avg(CASE WHEN status = 'failed' THEN 1.0 ELSE 0.0 END)",
    "kept_rate": "avg(CASE WHEN status = 'kept' THEN 1.0 ELSE 0.0 END)",
}


def profile_frame(
    con,
    item_sql: str,
    params: list | None = None,
    *,
    key: str = "doc_id",
    measures: dict[str, str] | None = None,
    measure_only: tuple[str, ...] = (),
) -> pd.DataFrame:
    """The profile of `item_sql` (one row per item: its `key` and the checked values, each of
    bounded cardinality) that a gate validates. Columns: every column of `item_sql` but the
    key and `measure_only` ones, `<key>_missing`, `n_rows`, `rows_total`,
    `duplicate_<key>s` and `measures` (name -> an aggregate over the items)."""
    aggregates = {
        "rows_total": "count(*)",
        f"duplicate_{key}s": f"count({key}) - count(DISTINCT {key})",
        **(measures or {}),
    }
    totals = ", ".join(f"{expr} AS {name}" for name, expr in aggregates.items())
    excluded = ", ".join((key, *measure_only))
    return con.execute(
        f"""
        WITH items AS ({item_sql}),
        totals AS (SELECT {totals} FROM items)
        SELECT g.*, totals.* FROM (
            SELECT * EXCLUDE ({excluded}), {key} IS NULL AS {key}_missing, count(*) AS n_rows
            FROM items GROUP BY ALL
        ) g CROSS JOIN totals ORDER BY ALL
        """,
        params or [],
    ).df()


def doc_gate_frame(
    con, run_id: str, stage: str, previous: str | None, columns: str = ""
) -> pd.DataFrame:
    """The profile of the run's documents that reached `stage` (kept by `previous`), each with
    its row in the stage table; a NULL status means the stage lost a document. `columns`
    adds checked values (of bounded cardinality) from the stage table, alias s."""
    extra = f", {columns}" if columns else ""
    join_prev = (
        f"JOIN {previous} p ON p.doc_id = r.doc_id AND p.status = 'kept'" if previous else ""
    )
    return profile_frame(
        con,
        f"""SELECT r.doc_id, s.status, s.reason {extra}
            FROM run_docs r {join_prev} LEFT JOIN {stage} s ON s.doc_id = r.doc_id
            WHERE r.run_id = ?""",
        [run_id],
        measures=STATUS_MEASURES,
    )


def capped_length(expr: str, cap: int) -> str:
    """A length as a checked value of bounded cardinality: lengths above `cap` read cap + 1
    (still outside a bound of `cap`), a missing value reads 0."""
    return f"least(coalesce(length({expr}), 0), {cap + 1})"


def status_expectations(
    rows: int,
    key: str = "doc_id",
    reasons: list[str] | None = None,
    max_failed_rate: float = 1.0,
    min_kept_rate: float = 0.0,
    max_kept_rate: float = 1.0,
) -> list:
    """On a stage profile (profile_frame with STATUS_MEASURES): keys present and unique,
    every input has a row (a NULL status means a shard lost it), statuses and reasons
    valid, failure share and kept share within bounds."""
    import great_expectations.expectations as gxe

    not_kept = {"row_condition": 'status!="kept"', "condition_parser": "pandas"}
    suite = [
        gxe.ExpectColumnValuesToBeInSet(column=f"{key}_missing", value_set=[False]),
        gxe.ExpectColumnValuesToNotBeNull(column="status"),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(warehouse.STATUSES)),
        gxe.ExpectColumnValuesToNotBeNull(column="reason", **not_kept),
    ]
    if reasons is not None:
        suite.append(
            gxe.ExpectColumnValuesToBeInSet(column="reason", value_set=reasons, **not_kept)
        )
    if rows:  # the run-level measures sit on the profile's rows: none when there are no items
        suite.append(gxe.ExpectColumnMaxToBeBetween(column=f"duplicate_{key}s", max_value=0))
        if max_failed_rate < 1.0:  # at 1.0 the check could not fail: leave it out
            suite.append(
                gxe.ExpectColumnMaxToBeBetween(column="failed_rate", max_value=max_failed_rate)
            )
        suite.append(
            gxe.ExpectColumnMaxToBeBetween(
                column="kept_rate", min_value=min_kept_rate, max_value=max_kept_rate
            )
        )
    return suite


# Failures a later run may not meet again (the server was down, overloaded, slow): their
# documents are taken on again by the next run over the same files. A reply that broke the
# schema, was cut, refused or got a 4xx failed after the client's own retries with new
# seeds; resending it would pay again for the same answer, so those documents stay failed.
TRANSIENT_LLM_REASONS = ["llm_connection", "llm_timeout", "llm_http_429", "llm_http_5xx"]

LLM_FAILURE_REASONS = [
    f"llm_{k}"
    for k in (
        "connection",
        "timeout",
        "http_429",
        "http_5xx",
        "http_4xx",
        "invalid_json",
        "schema_mismatch",
        "truncated",
        "refusal",
        "error",
    )
]


def llm_doc_rows(
    inputs: pd.DataFrame,
    ctx: StageContext,
    make_request: Callable[[Any], LLMRequest],
    make_row: Callable[[dict, LLMResult], dict],
) -> pd.DataFrame:
    """The rows of a stage with one LLM call per document: a request per input row, then
    a row per document built from its result."""
    keyed = [(row.doc_id, make_request(row)) for row in inputs.itertuples(index=False)]
    results = ctx.call_llm([req for _, req in keyed])
    by_doc = {doc_id: results[req.request_hash] for doc_id, req in keyed}
    return pd.DataFrame(
        [
            dict(
                make_row(row, by_doc[row["doc_id"]]),
                doc_id=row["doc_id"],
                run_id=ctx.run_id,
                request_hash=by_doc[row["doc_id"]].request.request_hash,
            )
            for row in inputs.to_dict("records")
        ]
    )
