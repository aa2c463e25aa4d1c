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

from webscale_rl.airflow_tasks import call_pipeline, triggering_extras
from webscale_rl.assets import EXPORT_ASSET, NEW_DOCUMENTS_ASSET
from webscale_rl.stages import registry  # stage metadata only: no pandas, DuckDB or LLM client

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
        from webscale_rl.landing import files_from_events

        context = get_current_context()
        return call_pipeline("start_run", dict(context["params"]), context["run_id"], context["dag_run"].start_date,
                             files_from_events(triggering_extras(context)))

    @task(queue=WAREHOUSE_QUEUE)
    def ingest(run: dict) -> dict:
        return call_pipeline("run_ingest", run)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_ingest(run: dict) -> dict:
        return call_pipeline("gate_ingest", run)

    @task
    def plan_shards(run: dict) -> list[dict]:
        return call_pipeline("plan_shards", run)

    @task(max_active_tis_per_dagrun=4)
    def stage_shard(run: dict, stage: str, shard: dict) -> dict:
        return call_pipeline("run_stage", run, stage, shard)

    @task(queue=WAREHOUSE_QUEUE)
    def stage_whole_run(run: dict, stage: str) -> dict:
        return call_pipeline("run_stage", run, stage)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_stage(run: dict, stage: str) -> dict:
        return call_pipeline("gate_stage", run, stage)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_dataset(run: dict) -> dict:
        return call_pipeline("gate_dataset", run)

    @task(queue=WAREHOUSE_QUEUE)
    def check_conservation(run: dict) -> dict:
        return call_pipeline("check_conservation", run)

    @task(outlets=[EXPORT_ASSET], queue=WAREHOUSE_QUEUE)
    def export(run: dict) -> dict:
        result = call_pipeline("run_export", run)
        # The Asset event names the export, so the training DAG it triggers trains on this one.
        get_current_context()["outlet_events"][EXPORT_ASSET].extra = {
            "path": result["path"], "run_id": result["run_id"], "pairs": result["pairs"]}
        return result

    @task(queue=WAREHOUSE_QUEUE)
    def dataset_card(run: dict) -> dict:
        return call_pipeline("run_dataset_card", run)

    @task(queue=WAREHOUSE_QUEUE)
    def finalize_run(run: dict, ingested: dict, exported: dict, conserved: dict) -> dict:
        return call_pipeline("finalize_run", run, ingested, exported, conserved)

    run = start_run()
    ingested = ingest(run)
    shards = plan_shards(run)
    done = ingested >> gate_ingest(run) >> shards
    # One task per registered stage (mapped over the shards, or one for the run), then its gate.
    for stage in registry.stages():
        if stage.sharded:
            work = stage_shard.override(task_id=stage.name, pool="llm" if stage.llm else "default_pool").partial(
                run=run, stage=stage.name).expand(shard=shards)
        else:
            work = stage_whole_run.override(task_id=stage.name)(run, stage.name)
        done = done >> work >> gate_stage.override(task_id=f"gate_{stage.name}")(run, stage.name)
    conserved = check_conservation(run)
    exported = export(run)
    card = dataset_card(run)
    done >> gate_dataset(run) >> conserved >> exported >> card
    card >> finalize_run(run, ingested, exported, conserved)


webscale_rl()
