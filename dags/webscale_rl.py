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
**learnability** (the policy model answers each pair `pass_samples` times; the reward's
pass rate is stored and exported, and pairs outside `pass_band` are dropped) →
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

from airflow.sdk import dag, get_current_context, task

from webscale_rl.airflow_tasks import fatal_errors_fail_the_task, triggering_extras
from webscale_rl.assets import EXPORT_ASSET, NEW_DOCUMENTS_ASSET
from webscale_rl.params import airflow_params
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
    params=airflow_params(),  # declared once in webscale_rl.params (form, validation, README table)
)
def webscale_rl():
    @task(queue=WAREHOUSE_QUEUE)
    def start_run() -> dict:
        from webscale_rl import pipeline
        from webscale_rl.landing import files_from_events

        context = get_current_context()
        with fatal_errors_fail_the_task():
            return pipeline.start_run(
                dict(context["params"]),
                context["run_id"],
                context["dag_run"].start_date,
                files_from_events(triggering_extras(context)),
            )

    @task(queue=WAREHOUSE_QUEUE)
    def ingest(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.run_ingest(run)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_ingest(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.gate_ingest(run)

    @task
    def plan_shards(run: dict) -> list[dict]:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.plan_shards(run)

    @task(max_active_tis_per_dagrun=4)
    def stage_shard(run: dict, stage: str, shard: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.run_stage(run, stage, shard)

    @task(queue=WAREHOUSE_QUEUE)
    def stage_whole_run(run: dict, stage: str) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.run_stage(run, stage)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_stage(run: dict, stage: str) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.gate_stage(run, stage)

    @task(queue=WAREHOUSE_QUEUE)
    def gate_dataset(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.gate_dataset(run)

    @task(queue=WAREHOUSE_QUEUE)
    def check_conservation(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.check_conservation(run)

    @task(outlets=[EXPORT_ASSET], queue=WAREHOUSE_QUEUE)
    def export(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            result = pipeline.run_export(run)
        # The Asset event names the export, so the training DAG it triggers trains on this one.
        get_current_context()["outlet_events"][EXPORT_ASSET].extra = {
            "path": result["path"],
            "run_id": result["run_id"],
            "pairs": result["pairs"],
        }
        return result

    @task(queue=WAREHOUSE_QUEUE)
    def dataset_card(run: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.run_dataset_card(run)

    @task(queue=WAREHOUSE_QUEUE)
    def finalize_run(run: dict, ingested: dict, exported: dict, conserved: dict) -> dict:
        from webscale_rl import pipeline

        with fatal_errors_fail_the_task():
            return pipeline.finalize_run(run, ingested, exported, conserved)

    run = start_run()
    ingested = ingest(run)
    shards = plan_shards(run)
    done = ingested >> gate_ingest(run) >> shards
    # One task per registered stage (mapped over the shards, or one for the run), then its gate.
    for stage in registry.stages():
        if stage.sharded:
            work = (
                stage_shard.override(
                    task_id=stage.name, pool="llm" if stage.llm else "default_pool"
                )
                .partial(run=run, stage=stage.name)
                .expand(shard=shards)
            )
        else:
            work = stage_whole_run.override(task_id=stage.name)(run, stage.name)
        done = done >> work >> gate_stage.override(task_id=f"gate_{stage.name}")(run, stage.name)
    conserved = check_conservation(run)
    exported = export(run)
    card = dataset_card(run)
    done >> gate_dataset(run) >> conserved >> exported >> card
    card >> finalize_run(run, ingested, exported, conserved)


webscale_rl()
