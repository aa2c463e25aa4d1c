"""Learnability: how often the policy model already solves each pair, and which pairs to keep.

A pair the policy always answers right, or never does, gives GRPO nothing to learn from
(every sample of a group gets the same reward, so the advantage is zero). This stage asks
the `policy` model (the per-stage model for `learnability`, else the served model) each
accepted question `pass_samples` times, exactly as training will (the export's prompt,
sampled at `pass_temperature`, a different seed per sample), scores each completion with
the training reward's rule-based match, and stores the pass rate per pair.

`pass_band` chooses which pairs stay in the dataset:
- `not_always_solved` (default): drop pairs solved k/k (reason `always_solved`); keep 0/k,
  which may be too hard for this policy rather than wrong (the card says how many);
- `sometimes_solved`: keep only 0 < passes < k (also drops `never_solved`);
- `all`: measure only, drop nothing.

A completion is scored as it came back, as a rollout's is: cut at max_tokens, refused or
empty, it is that sample's answer (recorded as a success, never re-drawn). A sample whose
call failed (connection, timeout, HTTP error) fails its pair with the call's reason, and the
next attempt re-sends only that sample (the ledger keeps the others). With
`pass_samples` 0 the stage keeps every pair unmeasured.
"""

from __future__ import annotations

import pandas as pd

from webscale_rl.llm import LLMRequest, LLMResult
from webscale_rl.stages import common, registry
from webscale_rl.stages.common import StageContext
from webscale_rl.stages.export import POLICY_PROMPT_ID, policy_messages
from webscale_rl.training import reward

STAGE = "learnability"
BANDS = ("not_always_solved", "sometimes_solved", "all")
BAND_REASONS = ["always_solved", "never_solved"]
REASONS = BAND_REASONS + common.LLM_FAILURE_REASONS

TABLE_DDL = """
CREATE TABLE IF NOT EXISTS learnability (
    qa_id        VARCHAR PRIMARY KEY,
    doc_id       VARCHAR NOT NULL,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,       -- kept = in the pass band
    reason       VARCHAR,
    model        VARCHAR,
    samples      INTEGER,                -- completions scored (pass_samples), 0: not measured
    passes       INTEGER,                -- completions the reward scored 1.0
    pass_rate    DOUBLE,                 -- passes / samples; NULL when not measured or failed
    temperature  DOUBLE
);"""
# A warehouse from before this stage: the pairs its runs kept stay in their datasets,
# recorded as not measured (samples 0), rather than turning their documents `pending`.
BACKFILL_SQL = """
INSERT INTO learnability (qa_id, doc_id, run_id, status, reason, samples)
SELECT qa_id, doc_id, run_id, 'kept', NULL, 0 FROM {previous} WHERE status = 'kept'
"""
COLUMNS = [
    "qa_id",
    "doc_id",
    "run_id",
    "status",
    "reason",
    "model",
    "samples",
    "passes",
    "pass_rate",
    "temperature",
]


def input_sql(previous: str) -> str:
    """The pairs `previous` kept, with their question and answer."""
    pairs = registry.first_pair_stage().name
    return f"""
SELECT g.qa_id, g.doc_id, g.question, g.answer FROM run_docs r
JOIN documents d USING (doc_id)
JOIN {pairs} g ON g.doc_id = d.doc_id
JOIN {previous} p ON p.qa_id = g.qa_id AND p.status = 'kept'
WHERE r.run_id = $run_id AND {common.SHARD_FILTER}
ORDER BY g.qa_id
"""


def sample_requests(ctx: StageContext, qa_id: str, question: str) -> list[LLMRequest]:
    """The pair's k policy requests: the training prompt, one seed per sample (so each is its
    own ledger entry: a re-run re-sends none that succeeded)."""
    settings, p = ctx.llm, ctx.params
    return [
        LLMRequest(
            stage=STAGE,
            item_id=f"{qa_id}#{i}",
            model=settings.model_for(STAGE),
            messages=tuple(policy_messages(question)),
            schema=None,
            schema_name="",
            prompt_id=POLICY_PROMPT_ID,
            max_tokens=settings.max_tokens,
            temperature=p.pass_temperature,
            seed=settings.seed + i,
            # Scored as a rollout is: a reply cut at max_tokens, refused or empty is this
            # sample's answer (a success in the ledger), never re-drawn with a new seed.
            accept_unfinished=True,
        )
        for i in range(p.pass_samples)
    ]


def sample_score(result: LLMResult, answer: str) -> float | None:
    """1.0 / 0.0 by the training reward's rule match on the completion as it came back (cut
    at max_tokens too, as a rollout's is scored; the judge is not asked: its calls would
    bypass the ledger); None when the call itself failed."""
    if not result.ok:
        return None
    final = reward.extract_answer((result.parsed or {}).get("text") or "")
    return 1.0 if final is not None and reward.is_match(final, answer) else 0.0


def band_reason(passes: int, samples: int, band: str) -> str | None:
    """Why a measured pair leaves the dataset under `band`, or None when it stays."""
    if band != "all" and passes == samples:
        return "always_solved"
    if band == "sometimes_solved" and passes == 0:
        return "never_solved"
    return None


def process(inputs: pd.DataFrame, ctx: StageContext) -> pd.DataFrame:
    p = ctx.params
    model = ctx.llm.model_for(STAGE) if ctx.llm is not None else None
    pairs = inputs.to_dict("records")
    requests = {row["qa_id"]: sample_requests(ctx, row["qa_id"], row["question"]) for row in pairs}
    flat = [req for reqs in requests.values() for req in reqs]
    results = ctx.call_llm(flat) if flat else {}
    rows = []
    for row in pairs:
        out = {
            "qa_id": row["qa_id"],
            "doc_id": row["doc_id"],
            "run_id": ctx.run_id,
            "model": model,
            "samples": p.pass_samples,
            "passes": None,
            "pass_rate": None,
            "temperature": p.pass_temperature,
        }
        if not p.pass_samples:
            rows.append(dict(out, status="kept", reason=None))
            continue
        sampled = [results[req.request_hash] for req in requests[row["qa_id"]]]
        scores = [sample_score(r, row["answer"]) for r in sampled]
        failed = next((r for r, s in zip(sampled, scores, strict=True) if s is None), None)
        if failed is not None:
            rows.append(dict(out, status="failed", reason=common.failure_reason(failed)))
            continue
        passes = int(sum(scores))
        reason = band_reason(passes, p.pass_samples, p.pass_band)
        rows.append(
            dict(
                out,
                status="rejected" if reason else "kept",
                reason=reason,
                passes=passes,
                pass_rate=passes / p.pass_samples,
            )
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    pairs = registry.first_pair_stage().name
    return common.profile_frame(
        con,
        f"""
        SELECT g.qa_id, s.status, s.reason, s.samples, s.passes, s.pass_rate,
               s.pass_rate IS NOT DISTINCT FROM s.passes / nullif(s.samples, 0) AS rate_matches
        FROM run_docs r JOIN {pairs} g ON g.doc_id = r.doc_id
        JOIN {previous} p ON p.qa_id = g.qa_id AND p.status = 'kept'
        LEFT JOIN {STAGE} s ON s.qa_id = g.qa_id
        WHERE r.run_id = ?
        """,
        [run_id],
        key="qa_id",
        measures=common.STATUS_MEASURES,
    )


def gate_expectations(params, rows: int) -> list:
    """Every measured pair got `pass_samples` scored completions, its pass rate is
    passes / samples, and every pair kept lies in the run's pass band."""
    import great_expectations.expectations as gxe

    k = params.pass_samples
    suite = common.status_expectations(
        rows, key="qa_id", reasons=REASONS, max_failed_rate=params.max_llm_failed_rate
    )
    measured = {"row_condition": 'status!="failed"', "condition_parser": "pandas"}
    suite.append(gxe.ExpectColumnValuesToBeInSet(column="samples", value_set=[k], **measured))
    if not k:
        return suite + [gxe.ExpectColumnValuesToBeNull(column="passes", **measured)]
    kept = {"row_condition": 'status=="kept"', "condition_parser": "pandas"}
    low = 1 if params.pass_band == "sometimes_solved" else 0
    high = k if params.pass_band == "all" else k - 1
    return suite + [
        gxe.ExpectColumnValuesToNotBeNull(column="passes", **measured),
        gxe.ExpectColumnValuesToBeBetween(column="passes", min_value=0, max_value=k, **measured),
        gxe.ExpectColumnValuesToBeInSet(column="rate_matches", value_set=[True]),
        gxe.ExpectColumnValuesToBeBetween(column="passes", min_value=low, max_value=high, **kept),
    ]


def check_params(params) -> None:
    # The band is enforced by the schema (enum); a band that keeps nothing by construction
    # (sometimes_solved with one sample) is a mistake worth naming before any call is paid.
    from webscale_rl.config import ConfigError

    if params.pass_band == "sometimes_solved" and params.pass_samples == 1:
        raise ConfigError(
            "param 'pass_band' sometimes_solved needs pass_samples >= 2: with one sample every "
            "pair is solved 0/1 or 1/1, so none would be kept"
        )
