"""The run params, declared once: the Airflow trigger form, the typed and validated
`RunParams` the tasks read, and the README's params table all come from `PARAMS`.

Light on purpose (jsonschema and the standard library only): the DAG file builds its form
from here at parse time. Checks that need the stages (rule names, per-stage models) and
that relate two params live in `RunParams.validate`.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from functools import lru_cache

from webscale_rl.config import ConfigError

RATE = {"type": "number", "minimum": 0, "maximum": 1}


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: object
    schema: dict  # the JSON schema of the value: the form's widget and the validation
    title: str
    description: str  # the form's help text and the README's "meaning"


PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "corpus",
        "sample",
        {"type": "string", "minLength": 1},
        "Corpus",
        "File, directory or glob of `.jsonl`, `.jsonl.gz` or `.parquet` files, relative to the data dir "
        "(WEBSCALE_RL_DATA_DIR). Paths that resolve (through symlinks too) outside the data dir and "
        "WEBSCALE_RL_ALLOWED_ROOTS are refused.",
    ),
    ParamSpec(
        "max_docs",
        0,
        {"type": "integer", "minimum": 0},
        "Max new documents",
        "Cap on NEW documents this run ingests (0 = all): a hash sample, so successive runs walk through "
        "a large corpus in uniform batches.",
    ),
    ParamSpec(
        "run_label",
        "",
        {"type": ["null", "string"]},
        "Run label",
        "Free text stored with the run in the `runs` table.",
    ),
    ParamSpec(
        "shard_size",
        500,
        {"type": "integer", "minimum": 1},
        "Shard size",
        "Documents per mapped shard task (shards are doc_id ranges).",
    ),
    ParamSpec(
        "max_doc_chars",
        200_000,
        {"type": "integer", "minimum": 1},
        "Max document characters",
        "Longer documents are rejected or truncated (see the oversize policy), recorded either way.",
    ),
    ParamSpec(
        "oversize_policy",
        "reject",
        {"type": "string", "enum": ["reject", "truncate"]},
        "Oversize policy",
        "`reject` an over-long document, or `truncate` it at the last space before the limit.",
    ),
    ParamSpec(
        "max_ingest_error_rate",
        0.5,
        RATE,
        "Gate: max ingest error rate",
        "Ingest gate: the share of records allowed to fail ingestion.",
    ),
    ParamSpec(
        "min_heuristic_kept_rate",
        0.05,
        RATE,
        "Gate: min heuristic kept rate",
        "Heuristic-filter gate: the least share of documents kept.",
    ),
    ParamSpec(
        "max_heuristic_kept_rate",
        1.0,
        RATE,
        "Gate: max heuristic kept rate",
        "Heuristic-filter gate: the greatest share of documents kept.",
    ),
    ParamSpec(
        "heuristic_rule_overrides",
        {},
        {"type": "object"},
        "Heuristic rule overrides",
        '`{"rule_name": threshold}`; `null` disables a rule.',
    ),
    ParamSpec(
        "near_dup_threshold",
        0.7,
        {"type": "number", "minimum": 0.3, "maximum": 1},
        "Near-duplicate threshold",
        "Estimated Jaccard of 5-word shingles at or above which a document is a near-duplicate of one "
        "kept before (0.7 catches about 3 % edits).",
    ),
    ParamSpec(
        "max_personas",
        3,
        {"type": "integer", "minimum": 1, "maximum": 10},
        "Personas per document",
        "Up to this many distinct personas per document; one pair is generated for each.",
    ),
    ParamSpec(
        "few_shot",
        2,
        {"type": "integer", "minimum": 0, "maximum": 6},
        "Few-shot demonstrations",
        "Demonstrations per generate call, from the domain's library (7 per domain; the method "
        "shows 2).",
    ),
    ParamSpec(
        "demo_selection",
        "per_document",
        {"type": "string", "enum": ["per_document", "per_domain"]},
        "Demonstrations drawn",
        "`per_document`: each document gets its own draw from its domain's library (by its "
        "doc_id, so a re-run draws the same); `per_domain`: every document of a domain shows "
        "the same demonstrations (a longer shared prompt prefix, less diverse questions).",
    ),
    ParamSpec(
        "sampling",
        {"generate": {"temperature": 1.0, "top_p": 1.0}},
        {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                    "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                    "seed": {"type": "integer", "minimum": 0, "maximum": 2147483647},
                },
                "additionalProperties": False,
            },
        },
        "Per-stage sampling",
        '`{"stage": {"temperature": t, "top_p": p, "seed": s}}` per LLM stage, merged over the '
        "defaults: generation sampled at temperature 1.0 (the method's), every other stage greedy "
        "(temperature 0). A sampled request's seed is derived from `seed` (default the "
        "connection's) and the request's own content, so a re-run sends the same request and the "
        "ledger answers it.",
    ),
    ParamSpec(
        "call_layout",
        "fused",
        {"type": "string", "enum": ["fused", "method"]},
        "LLM call layout",
        "`fused`: per document one filter+classify call, one generate call for all personas and one "
        "verify call for all pairs, each starting with the document (a shared, cached prefix); "
        "`method`: the paper's calls, one filter, one classify, one generate per persona, one verify "
        "per pair.",
    ),
    ParamSpec(
        "max_answer_words",
        5,
        {"type": "integer", "minimum": 1, "maximum": 50},
        "Max answer words",
        "The one answer-length policy: the generate prompt asks for at most this many words, the "
        "output schema caps the answer at 12 characters per word, verify rejects longer answers "
        "before any LLM call and the dataset gate checks both bounds.",
    ),
    ParamSpec(
        "models",
        {},
        {"type": "object", "additionalProperties": {"type": "string"}},
        "Per-stage models",
        'Per-stage model, e.g. `{"llm_filter": "big", "generate": "big", "classify": "small", '
        '"verify": "small"}`; other stages use the llm_default model.',
    ),
    ParamSpec(
        "max_llm_failed_rate",
        0.2,
        RATE,
        "Gate: max share of failed LLM items per stage",
        "Every LLM stage's gate: the share of items whose call failed.",
    ),
    ParamSpec(
        "min_llm_filter_kept_rate",
        0.0,
        RATE,
        "Gate: min LLM-filter kept rate",
        "LLM-filter gate: the least share of documents kept.",
    ),
    ParamSpec(
        "min_accepted_rate",
        0.0,
        RATE,
        "Gate: min share of generated pairs accepted by verify",
        "Verify gate: the least share of pairs accepted.",
    ),
    ParamSpec(
        "builtin_benchmarks",
        ["humaneval"],
        {"type": "array", "items": {"type": "string", "enum": ["humaneval"]}},
        "Built-in benchmarks",
        "Benchmarks shipped with installed packages to decontaminate against, besides the files in "
        "WEBSCALE_RL_BENCHMARKS_DIR.",
    ),
    ParamSpec(
        "decontam_ngram",
        13,
        {"type": "integer", "minimum": 5, "maximum": 50},
        "Decontamination n-gram (words)",
        "Size in words of the benchmark overlap check (13 is lm-eval-harness's).",
    ),
    ParamSpec(
        "decontaminate_documents",
        False,
        {"type": "boolean"},
        "Decontaminate source documents too",
        "Also reject pairs whose source document overlaps a benchmark.",
    ),
    ParamSpec(
        "question_dup_threshold",
        0.8,
        {"type": "number", "minimum": 0.3, "maximum": 1},
        "Duplicate-question threshold",
        "Jaccard of word 1+2-gram sets at or above which two questions are the same question.",
    ),
    ParamSpec(
        "pass_samples",
        4,
        {"type": "integer", "minimum": 0, "maximum": 64},
        "Learnability: samples per pair",
        "The policy model (per-stage model `learnability`, else the served one) answers each "
        "pair this many times with the training prompt; the reward's pass rate is stored and "
        "exported (0 = do not measure, keep every pair).",
    ),
    ParamSpec(
        "pass_temperature",
        1.0,
        {"type": "number", "minimum": 0, "maximum": 2},
        "Learnability: sampling temperature",
        "Temperature of the policy's samples (a rollout's; at 0 every sample is the same answer).",
    ),
    ParamSpec(
        "pass_band",
        "not_always_solved",
        {"type": "string", "enum": ["not_always_solved", "sometimes_solved", "all"]},
        "Learnability: pairs to keep",
        "`not_always_solved`: drop pairs the policy solved in every sample (no GRPO signal), "
        "keep 0/k (hard, or wrong: the card counts them); `sometimes_solved`: keep only "
        "0 < passes < k; `all`: measure, drop nothing.",
    ),
    ParamSpec(
        "min_accepted_pairs",
        1,
        {"type": "integer", "minimum": 0},
        "Gate: min accepted pairs",
        "Dataset gate: a run with new documents must produce at least this many pairs.",
    ),
    ParamSpec(
        "audit_per_stratum",
        3,
        {"type": "integer", "minimum": 0},
        "Audit sample per domain and verdict",
        "Audit sample size per (domain, verifier verdict).",
    ),
    ParamSpec(
        "val_fraction",
        0.1,
        RATE,
        "Validation share of the export",
        "Share of the export in `val.parquet` (by qa_id hash).",
    ),
)


def spec(name: str) -> ParamSpec:
    return next(p for p in PARAMS if p.name == name)


def default(name: str):
    return spec(name).default


def airflow_params() -> dict:
    """The trigger form: one Airflow Param per declaration."""
    from airflow.sdk import Param

    return {
        p.name: Param(
            p.default, title=p.title, description=p.description.replace("`", ""), **p.schema
        )
        for p in PARAMS
    }


@lru_cache(maxsize=None)
def _validator(name: str):
    import jsonschema

    return jsonschema.Draft202012Validator(spec(name).schema)


def check(name: str, value) -> None:
    """Raise ConfigError naming the param when `value` does not fit its declaration."""
    error = next(iter(_validator(name).iter_errors(value)), None)
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path)
        raise ConfigError(f"param '{name}'{f' at {where}' if where else ''}: {error.message}")


def markdown_table() -> str:
    """The README's params table."""
    import json

    rows = ["| param | default | meaning |", "|---|---|---|"]
    rows += [f"| `{p.name}` | `{json.dumps(p.default)}` | {p.description} |" for p in PARAMS]
    return "\n".join(rows)


_TYPES = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "object": dict,
    "array": list,
}


def _field(p: ParamSpec) -> tuple:
    kind = p.schema["type"] if isinstance(p.schema["type"], str) else p.schema["type"][-1]
    if isinstance(p.default, (dict, list)):
        return (
            p.name,
            _TYPES[kind],
            dataclasses.field(default_factory=lambda d=p.default: copy.deepcopy(d)),
        )
    return p.name, _TYPES[kind], dataclasses.field(default=p.default)


def _from_params(cls, params: dict):
    """Defaults, overridden by the given values that are not None (unknown keys are ignored);
    each value checked against its declaration, then the checks across params."""
    names = {p.name for p in PARAMS}
    given = {k: v for k, v in dict(params).items() if k in names and v is not None}
    for name, value in given.items():
        check(name, value)
    run_params = cls(**given)
    run_params.validate()
    return run_params


def _validate(self) -> None:
    """What one param's schema cannot say: relations between params, and names the stages
    define (heuristic rules, LLM stages)."""
    from webscale_rl.stages import registry

    if self.min_heuristic_kept_rate > self.max_heuristic_kept_rate:
        raise ConfigError("param 'min_heuristic_kept_rate' must not exceed max_heuristic_kept_rate")
    llm_stages = [stage.name for stage in registry.stages() if stage.llm]
    for name in ("models", "sampling"):
        unknown = sorted(set(getattr(self, name)) - set(llm_stages))
        if unknown:
            raise ConfigError(
                f"param '{name}' must map LLM stages {llm_stages}; unknown: {unknown}"
            )
    for stage in registry.stages():  # a stage may check the params it reads (its names, its rules)
        check_params = getattr(stage.impl, "check_params", None)
        if check_params:
            check_params(self)


# The run's params, validated: one field per declaration in PARAMS, named as in the form.
RunParams = dataclasses.make_dataclass(
    "RunParams",
    [_field(p) for p in PARAMS],
    frozen=True,
    namespace={
        "from_params": classmethod(_from_params),
        "validate": _validate,
        "__doc__": "The run's params, validated: one field per declaration in PARAMS.",
    },
)
RunParams.__module__ = __name__  # for pickling and repr (make_dataclass's module= is Python 3.12+)


if __name__ == "__main__":  # python -m webscale_rl.params: the README's params table
    print(markdown_table())
