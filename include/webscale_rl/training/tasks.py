"""What each task of the `webscale_rl_train` DAG does, as plain functions (no Airflow imports).

The DAG fires on the export Asset: it finds the export, gates the dataset files, writes a
train/val split into a training folder, measures the serving model's accuracy on the val
split (through the one LLM client, with the verifiable reward), trains with the chosen
launcher, and records the evaluation after training where the launcher allows it. Every
step writes `training_runs` / `training_evals` in the warehouse.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from webscale_rl import gates, warehouse
from webscale_rl.config import ConfigError, load_settings, run_folder_name
from webscale_rl.training import ray_jobs, reward
from webscale_rl.training.trl_grpo import MODEL_DIRNAME
from webscale_rl.training.venvs import venv_python

log = logging.getLogger(__name__)
LAUNCHERS = ("none", "verl", "trl-cpu")
EVAL_STAGE = "train_eval"


@dataclass(frozen=True)
class TrainParams:
    export: str = "latest"  # an export folder name under exports/, or "latest"
    launcher: str = "none"
    min_rows: int = 1
    eval_limit: int = 50
    trl_steps: int = 8
    verl_overrides: dict = field(default_factory=dict)
    verl_module: str = "verl.trainer.main_ppo"
    ray_address: str = ""
    ray_poll_s: int = 10
    ray_wait_hours: int = 72

    @classmethod
    def from_params(cls, params: dict) -> TrainParams:
        known = set(cls.__dataclass_fields__)
        p = cls(**{k: v for k, v in dict(params).items() if k in known and v is not None})
        if p.launcher not in LAUNCHERS:
            raise ConfigError(
                f"param 'launcher' must be one of {list(LAUNCHERS)}, got {p.launcher!r}"
            )
        for name in ("min_rows", "eval_limit", "trl_steps", "ray_poll_s", "ray_wait_hours"):
            value = getattr(p, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"param '{name}' must be an integer >= 0, got {value!r}")
        if not isinstance(p.verl_overrides, dict):
            raise ConfigError("param 'verl_overrides' must be an object of dotted verl config keys")
        if "/" in p.export or p.export.startswith("."):
            raise ConfigError(
                f"param 'export' must be a folder name under the exports dir or 'latest', got {p.export!r}"
            )
        if p.ray_poll_s < 1 or p.ray_wait_hours < 1:
            raise ConfigError("params 'ray_poll_s' and 'ray_wait_hours' must be at least 1")
        return p

    def ray_dashboard(self) -> str | None:
        """The Ray dashboard to submit to: the param, else WEBSCALE_RL_RAY_ADDRESS; None = no Ray."""
        address = self.ray_address.strip() or os.environ.get("WEBSCALE_RL_RAY_ADDRESS", "").strip()
        return ray_jobs.dashboard_url(address) if address else None


def _now() -> datetime:
    return datetime.now(UTC)


def find_export(exports_dir: Path, name: str = "latest", event_path: str | None = None) -> Path:
    """The export to train on: the one the triggering Asset event names, else the named
    folder, else the newest folder with a manifest."""
    if event_path:
        path = Path(event_path)
        if path.parent.resolve() == exports_dir.resolve() and (path / "manifest.json").exists():
            return path
        log.warning(
            "asset event names %s, which is not an export under %s; using %r",
            path,
            exports_dir,
            name,
        )
    if name != "latest":
        path = exports_dir / name
        if not (path / "manifest.json").exists():
            raise ConfigError(f"export {name!r} not found: no {path / 'manifest.json'}")
        return path
    candidates = sorted(exports_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"no export under {exports_dir}: run the webscale_rl DAG first")
    return candidates[-1].parent


def start(params: dict, train_run_id: str, event_path: str | None = None) -> dict:
    settings = load_settings()
    p = TrainParams.from_params(params)
    export_dir = find_export(settings.exports_dir, p.export, event_path)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    out = settings.data_dir / "training" / run_folder_name(train_run_id)
    with warehouse.write(settings.db_path) as con:
        con.execute(
            """INSERT OR REPLACE INTO training_runs (train_run_id, export_path, export_run_id, launcher,
                       params, status, started_at) VALUES (?, ?, ?, ?, ?, 'running', ?)""",
            [
                train_run_id,
                str(export_dir),
                manifest.get("run_id"),
                p.launcher,
                json.dumps(asdict(p)),
                _now(),
            ],
        )
    log.info(
        "training run %s on export %s (%s pairs), launcher %s, folder %s",
        train_run_id,
        export_dir,
        manifest.get("pairs"),
        p.launcher,
        out,
    )
    return {
        "train_run_id": train_run_id,
        "export": str(export_dir),
        "out": str(out),
        "params": asdict(p),
    }


# --- the dataset gate ---------------------------------------------------------------------


def dataset_frame(export_dir: Path) -> pd.DataFrame:
    frames = []
    for split in ("train", "val"):
        table = pq.read_table(export_dir / f"{split}.parquet").to_pylist()
        frames.append(
            pd.DataFrame(
                {
                    "split": split,
                    "data_source": [r.get("data_source") for r in table],
                    "prompt_text": [
                        " ".join(
                            (m or {}).get("content") or "" for m in (r.get("prompt") or [])
                        ).strip()
                        for r in table
                    ],
                    "ground_truth": [
                        ((r.get("reward_model") or {}).get("ground_truth") or "").strip()
                        for r in table
                    ],
                    "qa_id": [(r.get("extra_info") or {}).get("qa_id") for r in table],
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def dataset_expectations(min_rows: int) -> list:
    """Schema, at least `min_rows` rows, no empty prompt or ground truth, ids unique across
    the splits (a pair in both train and val would inflate the evaluation)."""
    import great_expectations.expectations as gxe

    return [
        gxe.ExpectTableColumnsToMatchSet(
            column_set=["split", "data_source", "prompt_text", "ground_truth", "qa_id"]
        ),
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows),
        gxe.ExpectColumnValuesToNotBeNull(column="data_source"),
        gxe.ExpectColumnValueLengthsToBeBetween(column="prompt_text", min_value=1),
        gxe.ExpectColumnValueLengthsToBeBetween(column="ground_truth", min_value=1),
        gxe.ExpectColumnValuesToNotBeNull(column="qa_id"),
        gxe.ExpectColumnValuesToBeUnique(column="qa_id"),
    ]


def gate_dataset(run: dict) -> dict:
    settings = load_settings()
    p = TrainParams.from_params(run["params"])
    frame = dataset_frame(Path(run["export"]))
    result = gates.run_gate(
        "training_data",
        frame,
        dataset_expectations(p.min_rows),
        data_dir=settings.data_dir,
        run_name=run["train_run_id"],
    )
    try:
        gates.enforce(result)
    except gates.GateFailed as exc:
        _mark(run, "failed", message=str(exc)[:4000])
        raise
    return {"rows": result.rows, "data_docs": result.docs_url}


# --- split ----------------------------------------------------------------------------------


def split(run: dict) -> dict:
    """Copy train/val into the training folder; when the export's val split is empty (a
    small export), move a deterministic tenth of train (at least one pair) into val."""
    export_dir, out = Path(run["export"]), Path(run["out"]) / "data"
    out.mkdir(parents=True, exist_ok=True)
    train = pq.read_table(export_dir / "train.parquet")
    val = pq.read_table(export_dir / "val.parquet")
    moved = 0
    if val.num_rows == 0 and train.num_rows >= 2:
        rows = sorted(train.to_pylist(), key=lambda r: r["extra_info"]["qa_id"])
        moved = max(1, len(rows) // 10)
        val_rows, train_rows = rows[:moved], rows[moved:]
        for r in val_rows:
            r["extra_info"]["split"] = "val"
        train = pa.Table.from_pylist(train_rows, schema=train.schema)
        val = pa.Table.from_pylist(val_rows, schema=train.schema)
    pq.write_table(train, out / "train.parquet")
    pq.write_table(val, out / "val.parquet")
    log.info(
        "split: %d train / %d val pairs in %s (%d moved from train to val)",
        train.num_rows,
        val.num_rows,
        out,
        moved,
    )
    return {"train": train.num_rows, "val": val.num_rows, "moved_to_val": moved, "folder": str(out)}


# --- evaluation through the LLM client -----------------------------------------------------


def _val_rows(run: dict, limit: int) -> list[dict]:
    rows = pq.read_table(Path(run["out"]) / "data" / "val.parquet").to_pylist()
    return rows[:limit] if limit else rows


def baseline_eval(run: dict, llm_settings=None) -> dict:
    """Accuracy of the serving model (llm_default) on the val split, scored by the reward.
    Calls go through the one client and its ledger: a re-run pays nothing again."""
    from webscale_rl.llm import LLMClient, LLMRequest
    from webscale_rl.llm.settings import from_airflow

    settings = load_settings()
    p = TrainParams.from_params(run["params"])
    llm = llm_settings or from_airflow()
    rows = _val_rows(run, p.eval_limit)
    requests = [
        LLMRequest(
            stage=EVAL_STAGE,
            item_id=r["extra_info"]["qa_id"],
            model=llm.model_for(EVAL_STAGE),
            messages=tuple(r["prompt"]),
            schema=None,
            schema_name="",
            prompt_id="export.prompt",
            max_tokens=llm.max_tokens,
            temperature=0.0,
            seed=llm.seed,
        )
        for r in rows
    ]
    results = (
        LLMClient(llm, settings.db_path, run["train_run_id"]).run(requests) if requests else {}
    )
    evals = []
    for r, req in zip(rows, requests, strict=True):
        res = results[req.request_hash]
        text = (res.parsed or {}).get("text") if res.ok else None
        # The rule alone (judge_base_url=""): the judge's calls would bypass the ledger.
        score = reward.compute_score(
            r["data_source"],
            text or "",
            r["reward_model"]["ground_truth"],
            r["extra_info"],
            judge_base_url="",
        )
        evals.append(
            {
                "train_run_id": run["train_run_id"],
                "phase": "baseline",
                "qa_id": r["extra_info"]["qa_id"],
                "model": req.model,
                "completion": text,
                "score": score if res.ok else None,
                "error": None if res.ok else f"{res.error_kind}: {res.error}",
            }
        )
    return _record_evals(run, "baseline", evals)


def _record_evals(run: dict, phase: str, evals: list[dict]) -> dict:
    settings = load_settings()
    frame = pd.DataFrame(
        evals, columns=["train_run_id", "phase", "qa_id", "model", "completion", "score", "error"]
    )
    scored = frame["score"].dropna()
    summary = {
        "phase": phase,
        "evaluated": len(frame),
        "scored": int(scored.size),
        "failed_calls": int(frame["score"].isna().sum()),
        "accuracy": round(float(scored.mean()), 4) if scored.size else None,
    }
    with warehouse.write(settings.db_path) as con:
        con.execute(
            "DELETE FROM training_evals WHERE train_run_id = ? AND phase = ?",
            [run["train_run_id"], phase],
        )
        if len(frame):
            con.register("_evals", frame)
            con.execute("INSERT INTO training_evals SELECT * FROM _evals")
            con.unregister("_evals")
    log.info("%s evaluation: %s", phase, json.dumps(summary))
    return summary


# --- training ---------------------------------------------------------------------------------


def train_python() -> Path:
    """The training venv's interpreter (torch, transformers, trl live there, not in Airflow's)."""
    return venv_python(
        "WEBSCALE_RL_TRAIN_PYTHON", ".venv-train", "train-venv", "requirements-train.txt"
    )


def train(run: dict) -> dict:
    """Train with the run's launcher. On a Ray cluster (`ray_address`) this submits the job
    and returns at once with {"ray": {...}}: the task then defers on the job
    (webscale_rl.training.ray_trigger) and `finish_ray_job` reads the outcome."""
    p = TrainParams.from_params(run["params"])
    out, data = Path(run["out"]), Path(run["out"]) / "data"
    if p.launcher == "none":
        return {"launcher": "none", "trained": False, "note": "export only"}
    address = p.ray_dashboard()
    if p.launcher == "verl":
        from webscale_rl.training import verl_launcher

        job = verl_launcher.prepare(
            data,
            out / "verl",
            p.verl_overrides,
            experiment=run_folder_name(run["train_run_id"]),
            module=p.verl_module,
        )
        for warning in job.warnings:
            log.warning("verl: %s", warning)
        if address is None:
            result = verl_launcher.by_hand(job)
            log.info("verl (no ray_address): %s", json.dumps(result))
            return {"launcher": "verl", "trained": False, **result}
        spec = job.ray_spec(address, _submission_id(run), _job_metadata(run, "verl"))
        return {"launcher": "verl", "warnings": job.warnings, **submit_to_ray(run, spec)}
    if address is not None:
        # The trainer runs on the Ray head: the training venv's interpreter and `--out` are
        # paths on that node (a local head shares them; a remote one needs the same layout).
        # The job ships the data and the reward in its working_dir, as the verl job does.
        shutil.copyfile(Path(reward.__file__), data / "reward.py")
        cmd = trl_command(p, Path("."), out / "trl", reward_file="reward.py")
        spec = ray_jobs.RayJobSpec(
            address=address,
            submission_id=_submission_id(run),
            entrypoint=shlex.join(cmd),
            working_dir=str(data),
            env_vars={"TQDM_DISABLE": "1"},  # progress bars are noise in a streamed task log
            metadata=_job_metadata(run, "trl-cpu"),
        )
        return {"launcher": "trl-cpu", **submit_to_ray(run, spec)}
    cmd = trl_command(p, data, out / "trl")
    log.info("trl-cpu: %s", " ".join(cmd))
    started = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        for line in proc.stdout:  # stream the trainer's per-step lines into the task log
            log.info("trl: %s", line.rstrip())
    if proc.returncode != 0:
        raise RuntimeError(
            f"trl-cpu training exited with {proc.returncode}; see the lines above in this log"
        )
    return _trl_result(out, round(time.monotonic() - started, 1))


def trl_command(
    p: TrainParams, data: Path, trl_out: Path, reward_file: str | None = None
) -> list[str]:
    """The trainer's command: `data` holds train/val.parquet ("." for a Ray job's working_dir);
    `reward_file` loads the reward by path instead of the installed module."""
    cmd = [
        str(train_python()),
        "-m",
        "webscale_rl.training.trl_grpo",
        "--train",
        str(data / "train.parquet"),
        "--val",
        str(data / "val.parquet"),
        "--out",
        str(trl_out),
        "--steps",
        str(p.trl_steps),
        "--eval-limit",
        str(p.eval_limit or 64),
        "--model-dir",
        str(load_settings().data_dir / "models" / MODEL_DIRNAME),
    ]
    return cmd + (["--reward-file", reward_file] if reward_file else [])


def _trl_result(out: Path, wall_s: float | None) -> dict:
    metrics_path = out / "trl" / "metrics.json"
    if not metrics_path.exists():
        raise RuntimeError(
            f"the trainer ended without writing {metrics_path}: on a Ray cluster, trl-cpu "
            "needs the head node to share this filesystem (it is a CPU smoke launcher)"
        )
    metrics = json.loads(metrics_path.read_text())
    return {
        "launcher": "trl-cpu",
        "trained": True,
        "wall_s": wall_s,
        "checkpoint": str(out / "trl" / "checkpoint"),
        "metrics": metrics,
    }


# --- training on a Ray cluster ---------------------------------------------------------------


def _submission_id(run: dict) -> str:
    return f"webscale-rl-{run_folder_name(run['train_run_id'])}"


def _job_metadata(run: dict, launcher: str) -> dict[str, str]:
    return {
        "airflow_dag_id": "webscale_rl_train",
        "airflow_run_id": run["train_run_id"],
        "launcher": launcher,
    }


def submit_to_ray(run: dict, spec: ray_jobs.RayJobSpec) -> dict:
    """Submit the job (or attach to the one this run already submitted: a retried task never
    starts a second training run) and record its id in training_runs."""
    submitted = ray_jobs.submit(spec)
    record_ray_status(
        run["train_run_id"], submitted["status"], spec.address, submitted["submission_id"]
    )
    log.info(
        "Ray job %s %s at %s: %s",
        submitted["submission_id"],
        "attached (submitted before by this run)" if submitted["attached"] else "submitted",
        spec.address,
        spec.entrypoint,
    )
    return {
        "trained": False,
        "ray": {
            "address": spec.address,
            "submission_id": submitted["submission_id"],
            "attached": submitted["attached"],
            "entrypoint": spec.entrypoint,
        },
    }


def record_ray_status(
    train_run_id: str,
    status: str,
    address: str | None = None,
    job_id: str | None = None,
    message: str | None = None,
    run_status: str | None = None,
) -> None:
    """Ray's view of the job on the training run's row; `run_status` also ends the run
    (the trigger's on_kill: 'cancelled')."""
    settings = load_settings()
    with warehouse.write(settings.db_path) as con:
        con.execute(
            """UPDATE training_runs SET ray_status = ?,
                      ray_address = coalesce(?, ray_address), ray_job_id = coalesce(?, ray_job_id),
                      message = coalesce(?, message), status = coalesce(?, status),
                      ended_at = CASE WHEN ? IS NULL THEN ended_at ELSE ? END
               WHERE train_run_id = ?""",
            [status, address, job_id, message, run_status, run_status, _now(), train_run_id],
        )


class RayJobFailed(RuntimeError):
    """The Ray job ended FAILED or STOPPED, or could not be watched."""


def finish_ray_job(run: dict, submitted: dict, event: dict) -> dict:
    """The deferred task resumed with the job's final status: record it; a job that did not
    succeed fails the task with the last lines of its log."""
    ray = dict(submitted["ray"], status=event["status"], message=event.get("message"))
    sid = ray["submission_id"]
    record_ray_status(run["train_run_id"], event["status"])
    if event["status"] != "SUCCEEDED":
        error = (
            f"Ray job {sid} at {ray['address']} ended {event['status']}: "
            f"{event.get('message') or 'no message'}\n"
            f"--- the last lines of the job's log ---\n{event.get('log_tail') or '(empty)'}"
        )
        # the verdict and the log's last lines, the part that says what went wrong
        clipped = error if len(error) <= 4000 else f"{error[:600]}\n…\n{error[-3300:]}"
        _mark(run, "failed", message=clipped, metrics={"ray": ray})
        raise RayJobFailed(error)
    log.info("Ray job %s SUCCEEDED: %s", sid, event.get("message"))
    if submitted["launcher"] == "trl-cpu":
        wall = None
        if event.get("start_time") and event.get("end_time"):
            wall = round((event["end_time"] - event["start_time"]) / 1000, 1)
        return {**_trl_result(Path(run["out"]), wall), "ray": ray}
    return {
        "launcher": submitted["launcher"],
        "trained": True,
        "ray": ray,
        "metrics": event.get("metrics") or {},
    }


def evaluate_after(run: dict, trained: dict) -> dict:
    """Record the trained model's accuracy where the launcher measured it (trl-cpu, on the
    same val rows); verl's evaluation happens on the cluster (trainer.test_freq)."""
    if trained.get("launcher") != "trl-cpu":
        summary = {
            "phase": "after",
            "evaluated": 0,
            "accuracy": None,
            "note": "no local evaluation for this launcher"
            if trained.get("launcher") == "none"
            else "verl evaluates on the cluster every trainer.test_freq steps",
        }
    else:
        m = trained["metrics"]
        evals = [
            {
                "train_run_id": run["train_run_id"],
                "phase": "after",
                "qa_id": e["qa_id"],
                "model": "checkpoint",
                "completion": e.get("completion"),
                "score": e["score"],
                "error": None,
            }
            for e in m.get("eval_after", {}).get("val", {}).get("items", [])
        ]
        summary = _record_evals(run, "after", evals)
        summary.update(
            accuracy_before_training=m.get("accuracy_before"),
            reward_per_step=m.get("reward_per_step"),
            weight_change=m.get("weight_change"),
        )
    _mark(run, "success", metrics={"trained": trained, "after": summary})
    return summary


def _mark(run: dict, status: str, message: str | None = None, metrics: dict | None = None) -> None:
    settings = load_settings()
    with warehouse.write(settings.db_path) as con:
        con.execute(
            "UPDATE training_runs SET status = ?, message = ?, metrics = ?, ended_at = ? WHERE train_run_id = ?",
            [
                status,
                message,
                json.dumps(metrics, default=str) if metrics else None,
                _now(),
                run["train_run_id"],
            ],
        )
