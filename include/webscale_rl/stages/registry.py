"""The stage registry: the one place that says which stages the pipeline runs, in what order.

Everything that used to keep its own list of stages reads it: the DAG (one task per stage,
mapped over shards or run-level, and one gate after each), the generic runner
(`webscale_rl.runner`), the warehouse (stage tables, the `doc_outcomes` and
`accepted_pairs` views), staging (replace keys), the conservation check (keyed tables),
the run counts, the CLI summary and the dataset card (funnel labels).

A stage is declared here with its metadata only (name, unit, card label, whether it is
mapped over shards and whether it calls the LLM) and the dotted path of the module that
implements it, so the DAG file can read the registry at parse time without importing
pandas, DuckDB or the LLM client. The module implements the stage contract:

- `TABLE_DDL`: its table, keyed by `doc_id` (document stages) or `qa_id` (pair stages),
  with `run_id`, `status` (kept | rejected | failed) and `reason` columns;
- `REASONS`: every reason it may record for a row it does not keep;
- either `input_sql(previous)` (the shard's input rows; `previous` is the stage whose kept
  rows it reads) and `process(inputs, ctx) -> DataFrame` (the rows to write: no warehouse
  or staging I/O, the LLM through `ctx.call_llm`), which the runner reads and writes for
  it; or, for a stage that keeps state across runs (near-dedup signatures, questions
  kept by earlier runs), `run(ctx) -> dict`, which does its own reads and writes;
- `gate_frame(con, run_id, previous)` and `gate_expectations(params, rows)`: its gate;
- optionally `REPLACE_KEY`: the column a shard's rows replace by, when it is not the key
  (generate replaces a document's pairs as a whole), and `check_params(params)`: raise
  ConfigError for a param value only the stage can judge (heuristic rule names).

Document stages come first, then pair stages; each reads the kept rows of the stage
before it. `registered()` adds a stage for the length of a block (tests, extensions).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType

UNITS = ("doc", "pair")


@dataclass(frozen=True)
class Stage:
    name: str
    unit: str  # "doc": one row per document; "pair": one row per QA pair
    label: str  # the dataset card's funnel step for what it kept
    module: str  # dotted path of the module implementing the stage contract
    sharded: bool = True  # mapped over doc_id-range shards; False: one run-level task
    llm: bool = False  # calls the LLM server (its shard tasks run in the `llm` pool)

    @property
    def key(self) -> str:
        return "doc_id" if self.unit == "doc" else "qa_id"

    @property
    def impl(self) -> ModuleType:
        return importlib.import_module(self.module)

    @property
    def replace_key(self) -> str:
        return getattr(self.impl, "REPLACE_KEY", self.key)


_STAGES: list[Stage] = [
    Stage(
        "heuristic_filter",
        "doc",
        "kept by the heuristic filter",
        "webscale_rl.stages.heuristic_filter",
    ),
    Stage(
        "near_dedup",
        "doc",
        "kept by near-duplicate removal",
        "webscale_rl.stages.near_dedup",
        sharded=False,
    ),
    Stage("llm_filter", "doc", "kept by the LLM filter", "webscale_rl.stages.llm_filter", llm=True),
    Stage(
        "classify", "doc", "classified (domain + personas)", "webscale_rl.stages.classify", llm=True
    ),
    Stage("generate", "pair", "QA pairs generated", "webscale_rl.stages.generate", llm=True),
    Stage("verify", "pair", "pairs accepted by verify", "webscale_rl.stages.verify", llm=True),
    Stage(
        "decontaminate",
        "pair",
        "pairs decontaminated and deduplicated",
        "webscale_rl.stages.decontaminate",
        sharded=False,
    ),
    Stage(
        "learnability",
        "pair",
        "pairs in the policy's pass band (the dataset)",
        "webscale_rl.stages.learnability",
        llm=True,
    ),
]


def stages(unit: str | None = None) -> tuple[Stage, ...]:
    """The stages in pipeline order (of one unit, if given)."""
    return tuple(s for s in _STAGES if unit is None or s.unit == unit)


def names(unit: str | None = None) -> tuple[str, ...]:
    return tuple(s.name for s in stages(unit))


def get(name: str) -> Stage:
    for stage in _STAGES:
        if stage.name == name:
            return stage
    raise KeyError(f"no stage {name!r}; stages: {list(names())}")


def previous(name: str) -> str | None:
    """The stage whose kept rows `name` reads (None: the first stage reads the run's documents)."""
    position = names().index(name)
    return _STAGES[position - 1].name if position else None


def first_pair_stage() -> Stage:
    """The stage that makes pairs from documents: its table holds each pair's question and answer."""
    return stages("pair")[0]


@contextlib.contextmanager
def registered(stage: Stage, before: str) -> Iterator[Stage]:
    """Run with `stage` inserted before the stage named `before`, then restore the registry."""
    if stage.unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}, got {stage.unit!r}")
    if stage.name in names():
        raise ValueError(f"a stage named {stage.name!r} is registered already")
    _STAGES.insert(names().index(before), stage)
    units = [s.unit for s in _STAGES]
    if units != sorted(units, key=UNITS.index) or stage is first_pair_stage():
        _STAGES.remove(stage)
        raise ValueError(
            f"a {stage.unit} stage cannot go before {before!r}: document stages come first, "
            f"then the stage that makes pairs"
        )
    try:
        yield stage
    finally:
        _STAGES.remove(stage)


def accepted_pairs_sql() -> str:
    """What every reader means by an accepted pair (export, dataset gate, card, CLI): a pair
    of a run's work set that every pair stage kept, with the facts the export writes. The
    domain is classify's; benchmark and duplicate_of are decontaminate's (the dataset gate
    checks them); pass_rate and pass_samples are learnability's (NULL: not measured)."""
    pairs = stages("pair")
    made, later = pairs[0].name, [s.name for s in pairs[1:]]
    kept = "\n".join(f"JOIN {s} ON {s}.qa_id = g.qa_id AND {s}.status = 'kept'" for s in later)
    return f"""
SELECT r.run_id, g.qa_id, g.doc_id, g.persona, g.question, g.answer, classify.domain, d.url, d.source_id,
       decontaminate.benchmark, decontaminate.duplicate_of,
       learnability.pass_rate, nullif(learnability.samples, 0) AS pass_samples
FROM run_docs r
JOIN {made} g ON g.doc_id = r.doc_id AND g.status = 'kept'
{kept}
LEFT JOIN classify ON classify.doc_id = g.doc_id
JOIN documents d ON d.doc_id = g.doc_id
"""
