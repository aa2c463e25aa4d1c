"""
### webscale_rl — pretraining documents to verifiable RL question–answer data

Runs the Webscale-RL method stage by stage. Every stage writes its own table to the
DuckDB warehouse (`WEBSCALE_RL_DB`, default `$WEBSCALE_RL_DATA_DIR/warehouse.duckdb`) and
is followed by a Great Expectations gate; a failed gate stops the run before bad data
reaches the next stage, and its log lists each violated expectation with examples and
the link to its Data Docs page (`$WEBSCALE_RL_DATA_DIR/data_docs/index.html`).

Stages: **ingest** (JSONL / Parquet; bad records land in `ingest_errors`) →
**heuristic filter** (minimum length, Gopher / FineWeb / C4 rules, exact duplicates) →
**near-dedup** (MinHash LSH against every document kept so far) → **LLM filter** →
**classify** (domain + personas) → **generate** (one QA pair per persona) → **verify**
(rule checks, then context / correctness / leakage) → **decontaminate** (13-gram overlap
with HumanEval and the files in the benchmarks dir; near-identical questions collapsed) →
**dataset gate** → **conservation check** (every record read, every document and every
pair accounted for exactly once; a violation lists the ids and stops the run) → **export** (verl Parquet + JSONL, published as the `webscale_rl_export`
Asset) → **dataset card** (`card.md`, `report.html`, `audit.csv` beside the export).
Stages are mapped over
doc_id-range shards; LLM shard tasks run in the `llm` pool and call the server named by
the `llm_default` connection. `doc_outcomes` gives one row per document, `llm_calls` is
the call ledger (a successful call is never paid twice).

Runs by itself when `webscale_rl_ingest` emits the `webscale_rl_new_documents` Asset
(then it processes the landing files the event names), or trigger it with the form:
`corpus` is a file, directory or glob resolved under the data dir.
Re-running is safe: documents already in the warehouse are skipped, and every write
replaces its own rows. One run works on a warehouse at a time (a lease with heartbeats;
a run whose process died is taken over after `WEBSCALE_RL_LEASE_TTL_S`, default 120 s).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from webscale_rl.airflow_tasks import fail_fast, triggering_extras
from webscale_rl.assets import EXPORT_ASSET, NEW_DOCUMENTS_ASSET

LLM_STAGES = ("llm_filter", "classify", "generate", "verify")
# Tasks that write the DuckDB warehouse run on its host. With Celery workers on other hosts,
# set this to a queue only the warehouse host's worker serves, and WEBSCALE_RL_STAGING_DIR
# so shard tasks (default queue, any host) stage Parquet instead of writing the warehouse.
WAREHOUSE_QUEUE = os.environ.get("WEBSCALE_RL_WAREHOUSE_QUEUE", "default")

default_args = {
    "owner": "data-platform",
    "retries": 2,
    "retry_delay": timedelta(seconds=20),
    "retry_exponential_backoff": True,
}


@dag(
    dag_id="webscale_rl",
    # Data-aware: runs when webscale_rl_ingest takes in new landing files; or trigger by hand.
    schedule=[NEW_DOCUMENTS_ASSET],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webscale-rl", "data-engine", "llm"],
    doc_md=__doc__,
    default_args=default_args,
    render_template_as_native_obj=True,
    params={
        "corpus": Param("sample", type="string", minLength=1, title="Corpus",
                        description="File, directory or glob of .jsonl / .jsonl.gz / .parquet files, "
                                    "relative to the data dir (WEBSCALE_RL_DATA_DIR)."),
        "max_docs": Param(0, type="integer", minimum=0, title="Max new documents",
                          description="Cap on NEW documents ingested by this run (0 = no limit)."),
        "run_label": Param("", type=["null", "string"], title="Run label",
                           description="Free text stored with the run in the `runs` table."),
        "shard_size": Param(500, type="integer", minimum=1, title="Shard size",
                            description="Documents per mapped shard task."),
        "max_doc_chars": Param(200_000, type="integer", minimum=1, title="Max document characters",
                               description="Longer documents are rejected or truncated (see oversize policy)."),
        "oversize_policy": Param("reject", type="string", enum=["reject", "truncate"],
                                 title="Oversize policy"),
        "max_ingest_error_rate": Param(0.5, type="number", minimum=0, maximum=1,
                                       title="Gate: max ingest error rate",
                                       description="Share of records allowed to fail ingestion."),
        "min_heuristic_kept_rate": Param(0.05, type="number", minimum=0, maximum=1,
                                         title="Gate: min heuristic kept rate"),
        "max_heuristic_kept_rate": Param(1.0, type="number", minimum=0, maximum=1,
                                         title="Gate: max heuristic kept rate"),
        "heuristic_rule_overrides": Param({}, type="object", title="Heuristic rule overrides",
                                          description='{"rule_name": threshold}; null disables a rule.'),
        "near_dup_threshold": Param(0.7, type="number", minimum=0.3, maximum=1, title="Near-duplicate threshold",
                                    description="Estimated Jaccard of 5-word shingles at or above which a document "
                                                "is a near-duplicate of one kept before (0.7 catches ~3% edits)."),
        "max_personas": Param(3, type="integer", minimum=1, maximum=10, title="Personas per document"),
        "few_shot": Param(2, type="integer", minimum=0, maximum=4, title="Few-shot demonstrations"),
        "generate_mode": Param("per_persona", type="string", enum=["per_persona", "batched"],
                               title="Generation mode",
                               description="per_persona: one call per persona (the method); batched: "
                                           "one call per document for all personas."),
        "max_answer_words": Param(8, type="integer", minimum=1, title="Max answer words",
                                  description="Verify rejects longer answers before any LLM call."),
        "models": Param({}, type="object", title="Per-stage models",
                        description='e.g. {"llm_filter": "big", "generate": "big", "classify": "small", '
                                    '"verify": "small"}; others use the llm_default model.'),
        "max_llm_failed_rate": Param(0.2, type="number", minimum=0, maximum=1,
                                     title="Gate: max share of failed LLM items per stage"),
        "min_llm_filter_kept_rate": Param(0.0, type="number", minimum=0, maximum=1,
                                          title="Gate: min LLM-filter kept rate"),
        "min_accepted_rate": Param(0.0, type="number", minimum=0, maximum=1,
                                   title="Gate: min share of generated pairs accepted by verify"),
        "builtin_benchmarks": Param(["humaneval"], type="array", items={"type": "string", "enum": ["humaneval"]},
                                    title="Built-in benchmarks",
                                    description="Benchmarks shipped with installed packages to decontaminate against, "
                                                "besides the files in WEBSCALE_RL_BENCHMARKS_DIR."),
        "decontam_ngram": Param(13, type="integer", minimum=5, maximum=50, title="Decontamination n-gram (words)"),
        "decontaminate_documents": Param(False, type="boolean", title="Decontaminate source documents too",
                                         description="Also reject pairs whose source document overlaps a benchmark."),
        "question_dup_threshold": Param(0.8, type="number", minimum=0.3, maximum=1,
                                        title="Duplicate-question threshold",
                                        description="Jaccard of word 1+2-grams at or above which questions collapse."),
        "min_accepted_pairs": Param(1, type="integer", minimum=0, title="Gate: min accepted pairs",
                                    description="The dataset gate fails a run with new documents but fewer pairs."),
        "audit_per_stratum": Param(3, type="integer", minimum=0, title="Audit sample per domain and verdict"),
        "val_fraction": Param(0.1, type="number", minimum=0, maximum=1, title="Validation share of the export"),
    },
)
def webscale_rl():
    @task(queue=WAREHOUSE_QUEUE)
    def start_run() -> dict:
        from webscale_rl import pipeline
        from webscale_rl.config import ConfigError
        from webscale_rl.landing import files_from_events
        from webscale_rl.lease import LeaseBusy

        context = get_current_context()
        try:
            return pipeline.start_run(dict(context["params"]), context["run_id"],
                                      context["dag_run"].start_date, files_from_events(triggering_extras(context)))
        except (ConfigError, LeaseBusy) as exc:
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def ingest(run: dict) -> dict:
        from webscale_rl import pipeline
        from webscale_rl.stages.ingest import IngestError

        try:
            return pipeline.run_ingest(run)
        except IngestError as exc:
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def gate_ingest(run: dict, _ingested: dict) -> dict:
        from webscale_rl import gates, pipeline

        try:
            return pipeline.gate_ingest(run)
        except gates.GateFailed as exc:
            raise fail_fast(exc) from exc

    @task
    def plan_shards(run: dict, _gate: dict) -> list[dict]:
        from webscale_rl import pipeline

        return pipeline.plan_shards(run)

    @task(max_active_tis_per_dagrun=4)
    def heuristic_filter(run: dict, shard: dict) -> dict:
        from webscale_rl import pipeline
        from webscale_rl.staging import ShardWriteError

        try:
            return pipeline.run_heuristic_filter(run, shard)
        except ShardWriteError as exc:  # the same rows would fail again
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def gate_heuristic_filter(run: dict, shard_results: list[dict]) -> dict:
        from webscale_rl import gates, pipeline

        try:
            return pipeline.gate_heuristic_filter(run)
        except gates.GateFailed as exc:
            raise fail_fast(exc) from exc

    @task(pool="llm", max_active_tis_per_dagrun=4)
    def llm_stage(run: dict, stage: str, shard: dict, _previous_gate: dict) -> dict:
        from webscale_rl import pipeline
        from webscale_rl.llm import LLMUnavailable
        from webscale_rl.staging import ShardWriteError

        try:
            return pipeline.run_llm_stage(run, shard, stage)
        except (LLMUnavailable, ShardWriteError) as exc:
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def gate_llm_stage(run: dict, stage: str, shard_results: list[dict]) -> dict:
        from webscale_rl import gates, pipeline

        try:
            return pipeline.gate_llm_stage(run, stage)
        except gates.GateFailed as exc:
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def near_dedup(run: dict, _gate: dict) -> dict:
        from webscale_rl import pipeline

        return pipeline.run_near_dedup(run)

    @task(queue=WAREHOUSE_QUEUE)
    def decontaminate(run: dict, _gate: dict) -> dict:
        from webscale_rl import pipeline
        from webscale_rl.config import ConfigError

        try:
            return pipeline.run_decontaminate(run)
        except ConfigError as exc:  # an unreadable benchmark file: say which and stop
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def gate(run: dict, stage: str, _result: dict) -> dict:
        from webscale_rl import gates, pipeline

        gate_fn = {"near_dedup": pipeline.gate_near_dedup, "decontaminate": pipeline.gate_decontaminate,
                   "dataset": pipeline.gate_dataset}[stage]
        try:
            return gate_fn(run)
        except gates.GateFailed as exc:
            raise fail_fast(exc) from exc

    @task(queue=WAREHOUSE_QUEUE)
    def check_conservation(run: dict, _gate: dict) -> dict:
        from webscale_rl import conservation, pipeline

        try:
            return pipeline.check_conservation(run)
        except conservation.ConservationError as exc:  # a retry would count the same rows
            raise fail_fast(exc) from exc

    @task(outlets=[EXPORT_ASSET], queue=WAREHOUSE_QUEUE)
    def export(run: dict, _conserved: dict) -> dict:
        from webscale_rl import pipeline

        result = pipeline.run_export(run)
        # The Asset event names the export, so the training DAG it triggers trains on this one.
        get_current_context()["outlet_events"][EXPORT_ASSET].extra = {
            "path": result["path"], "run_id": result["run_id"], "pairs": result["pairs"]}
        return result

    @task(queue=WAREHOUSE_QUEUE)
    def dataset_card(run: dict, _exported: dict) -> dict:
        from webscale_rl import pipeline

        return pipeline.run_dataset_card(run)

    @task(queue=WAREHOUSE_QUEUE)
    def finalize_run(run: dict, ingested: dict, exported: dict, conserved: dict, _card: dict) -> dict:
        from webscale_rl import pipeline

        return pipeline.finalize_run(run, ingested, exported, conserved)

    run = start_run()
    ingested = ingest(run)
    ingest_ok = gate_ingest(run, ingested)
    shards = plan_shards(run, ingest_ok)
    filtered = heuristic_filter.partial(run=run).expand(shard=shards)
    gate_ok = gate_heuristic_filter(run, filtered)
    gate_ok = gate.override(task_id="gate_near_dedup")(run, "near_dedup", near_dedup(run, gate_ok))
    for stage in LLM_STAGES:
        results = llm_stage.override(task_id=stage).partial(
            run=run, stage=stage, _previous_gate=gate_ok).expand(shard=shards)
        gate_ok = gate_llm_stage.override(task_id=f"gate_{stage}")(run, stage, results)
    gate_ok = gate.override(task_id="gate_decontaminate")(run, "decontaminate", decontaminate(run, gate_ok))
    dataset_ok = gate.override(task_id="gate_dataset")(run, "dataset", gate_ok)
    conserved = check_conservation(run, dataset_ok)
    exported = export(run, conserved)
    finalize_run(run, ingested, exported, conserved, dataset_card(run, exported))


webscale_rl()
