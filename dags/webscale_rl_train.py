"""
### webscale_rl_train — RL training on the exported dataset

Fires when the `webscale_rl` DAG's export task updates the `webscale_rl_export` Asset
(data-aware scheduling), or by hand with a chosen export. Steps:

1. **start** — find the export (the one the Asset event names, else the `export` param,
   else the newest) and register the run in `training_runs`;
2. **gate_training_data** — Great Expectations on the export's verl Parquet files:
   schema, at least `min_rows` pairs, no empty prompt or ground truth, no pair in both
   splits; a failure stops the run before any training;
3. **split** — train/val into `$WEBSCALE_RL_DATA_DIR/training/<run>/data/` (a small export
   with an empty val split gets a deterministic tenth of train);
4. **baseline_eval** — accuracy of the serving model (`llm_default`) on the val split,
   scored by the verifiable reward (`webscale_rl.training.reward`), through the one LLM
   client and its ledger; rows in `training_evals`;
5. **train** — by `launcher`: `verl` writes a GRPO job mirroring the method's reference
   run; `trl-cpu` runs TRL's GRPOTrainer on SmolLM2-135M from the training venv
   (`make train-venv`); `none` stops at the export. With a Ray cluster (`ray_address`) the
   job goes through Ray's job API and the task **defers**: no worker slot is held while it
   trains, the job's log streams into this task's log, its id and final status land in
   `training_runs`, a failed or stopped job fails the task with its last log lines, and
   marking the deferred task failed stops the Ray job. Without one, `verl` logs the exact
   command and `trl-cpu` trains in the worker;
6. **evaluate_after** — the trained model's accuracy where the launcher measures it.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import Param, dag, get_current_context, task

from webscale_rl.airflow_tasks import fail_fast, triggering_extras
from webscale_rl.assets import EXPORT_ASSET
from webscale_rl.training.train_operator import TrainOperator

default_args = {
    "owner": "ml-platform",
    "retries": 1,
    "retry_delay": timedelta(seconds=30),
}


def _event_path(context) -> str | None:
    """The export folder named by the newest Asset event that triggered this run, if any."""
    return next((x["path"] for x in reversed(triggering_extras(context)) if x.get("path")), None)


@dag(
    dag_id="webscale_rl_train",
    schedule=[EXPORT_ASSET],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["webscale-rl", "training", "rl"],
    doc_md=__doc__,
    default_args=default_args,
    params={
        "export": Param(
            "latest",
            type="string",
            minLength=1,
            title="Export",
            description="Folder under $WEBSCALE_RL_DATA_DIR/exports/, or 'latest'. A run started by "
            "the export Asset uses the export that fired it.",
        ),
        "launcher": Param(
            "none",
            type="string",
            enum=["none", "verl", "trl-cpu"],
            title="Launcher",
            description="verl: GRPO job on a Ray cluster (or the command to run); trl-cpu: a real "
            "smoke-scale GRPO run on CPU; none: export only.",
        ),
        "min_rows": Param(1, type="integer", minimum=0, title="Gate: min pairs"),
        "eval_limit": Param(
            50, type="integer", minimum=0, title="Max val pairs evaluated (0 = all)"
        ),
        "trl_steps": Param(8, type="integer", minimum=1, title="trl-cpu: GRPO steps"),
        "verl_overrides": Param(
            {},
            type="object",
            title="verl overrides",
            description='Dotted verl config keys, e.g. {"actor_rollout_ref.model.path": '
            '"Qwen/Qwen2.5-7B", "trainer.n_gpus_per_node": 4}.',
        ),
        "verl_module": Param(
            "verl.trainer.main_ppo",
            type="string",
            minLength=1,
            title="verl entry point",
            description="The module run as `python3 -m <module> <overrides>`, e.g. a verl "
            "recipe's main.",
        ),
        "ray_address": Param(
            "",
            type="string",
            title="Ray address",
            description="The Ray dashboard, http://<head>:8265, for Ray's job API (default: env "
            "WEBSCALE_RL_RAY_ADDRESS; empty = verl logs the command, trl-cpu trains here).",
        ),
        "ray_poll_s": Param(
            10, type="integer", minimum=1, title="Ray: seconds between status polls"
        ),
        "ray_wait_hours": Param(
            72, type="integer", minimum=1, title="Ray: hours to wait for the job"
        ),
    },
)
def webscale_rl_train():
    @task
    def start() -> dict:
        from webscale_rl.config import ConfigError
        from webscale_rl.training import tasks

        context = get_current_context()
        try:
            return tasks.start(dict(context["params"]), context["run_id"], _event_path(context))
        except ConfigError as exc:
            raise fail_fast(exc) from exc

    @task
    def gate_training_data(run: dict) -> dict:
        from webscale_rl import gates
        from webscale_rl.training import tasks

        try:
            return tasks.gate_dataset(run)
        except gates.GateFailed as exc:
            raise fail_fast(exc) from exc

    @task
    def split(run: dict, _gate: dict) -> dict:
        from webscale_rl.training import tasks

        return tasks.split(run)

    @task(pool="llm")
    def baseline_eval(run: dict, _split: dict) -> dict:
        from webscale_rl.llm import LLMUnavailable
        from webscale_rl.training import tasks

        try:
            return tasks.baseline_eval(run)
        except LLMUnavailable as exc:
            raise fail_fast(exc) from exc

    @task
    def evaluate_after(run: dict, trained: dict) -> dict:
        from webscale_rl.training import tasks

        return tasks.evaluate_after(run, trained)

    run = start()
    ready = split(run, gate_training_data(run))
    # retries=0: a second attempt would attach to the same Ray job anyway (submission id).
    # execution_timeout bounds the local work; a Ray job's wait is bounded by ray_wait_hours.
    trained = TrainOperator(
        task_id="train", run=run, retries=0, execution_timeout=timedelta(hours=2)
    )
    baseline_eval(run, ready) >> trained
    evaluate_after(run, trained.output)


webscale_rl_train()
