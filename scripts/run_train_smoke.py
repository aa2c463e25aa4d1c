"""`make train-smoke`: the webscale_rl_train DAG with the trl-cpu launcher, under real Airflow,
its trainer run as a Ray job on a local Ray head.

1. picks the export: EXPORT=name, else the newest pipeline export with at least
   --min-pairs pairs, else the bundled hand-written sample pairs (data/sample_export/) written
   as an export (`exports/sample_handwritten/`);
2. starts the embedded llama.cpp server with SmolLM2-135M-Instruct as `llm_default`, so the
   baseline evaluation measures the serving model (the same weights TRL trains);
3. starts a one-node Ray cluster (`ray start --head --block`, 2 CPUs, from the verl training
   venv that carries Ray; stopped at the end by its PID);
4. runs `airflow dags test webscale_rl_train` with launcher trl-cpu and that head as
   `ray_address`: training-data gate, split, baseline evaluation, then the train task submits
   the trainer through Ray's job API (the split's folder shipped as the job's working_dir)
   and defers; the trigger streams the job's log (a few GRPO steps with TRL on the CPU, the
   checkpoint saved, reloaded and used to generate) and hands back Ray's final status;
5. prints the Ray job id, the reward per step as the job logged it, Ray's final status, the
   accuracies and where the checkpoint is.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from webscale_rl.config import load_settings
from webscale_rl.embedded_llm import EmbeddedLLM
from webscale_rl.stages.export import write_sample_export
from webscale_rl.training.ray_head import LocalRayHead

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SAMPLE = "sample_handwritten"


def pick_export(exports_dir: Path, name: str | None, min_pairs: int) -> tuple[str, str]:
    if name and name != SAMPLE:
        return name, "as asked (EXPORT)"
    manifests = sorted(
        exports_dir.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for manifest in manifests if name != SAMPLE else []:
        if (
            manifest.parent.name != SAMPLE
            and json.loads(manifest.read_text())["pairs"] >= min_pairs
        ):
            return manifest.parent.name, "the newest pipeline export with enough pairs"
    written = write_sample_export(
        ROOT / "data" / "sample_export" / "pairs.jsonl", exports_dir, SAMPLE
    )
    why = (
        "as asked (EXPORT)"
        if name == SAMPLE
        else f"no pipeline export with >= {min_pairs} pairs yet"
    )
    return Path(
        written["path"]
    ).name, f"{why}: the bundled hand-written sample ({written['pairs']} pairs)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--export", default=os.environ.get("EXPORT"))
    parser.add_argument("--steps", type=int, default=int(os.environ.get("STEPS", "8")))
    parser.add_argument("--min-pairs", type=int, default=16)
    args = parser.parse_args()

    settings = load_settings()
    settings.exports_dir.mkdir(parents=True, exist_ok=True)
    export, why = pick_export(settings.exports_dir, args.export, args.min_pairs)
    print(f"export: {settings.exports_dir / export} ({why})", flush=True)
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    log_dir = Path(env.get("AIRFLOW_HOME", ROOT / ".airflow"))
    embedded = EmbeddedLLM(log_path=log_dir / "embedded-llm.log").start()
    head = None
    try:
        env["AIRFLOW_CONN_LLM_DEFAULT"] = json.dumps(embedded.connection())
        print(
            f"serving model for the baseline: {embedded.model} at {embedded.base_url}", flush=True
        )
        head = LocalRayHead(num_cpus=2, log_path=log_dir / "ray-head.log").start()
        print(f"Ray head: {head.dashboard_url} (pid {head.pid}, 2 CPUs)", flush=True)
        conf = {
            "launcher": "trl-cpu",
            "export": export,
            "trl_steps": args.steps,
            "eval_limit": 16,
            "ray_address": head.dashboard_url,
            "ray_poll_s": 2,
        }
        log_path = log_dir / "train-smoke.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [str(BIN / "airflow"), "dags", "test", "webscale_rl_train", "-c", json.dumps(conf)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
                cwd=ROOT,
            )
            for line in proc.stdout:
                log.write(line)
                # the job's own lines (steps, rewards, accuracies, checkpoint) as the trigger
                # streamed them, and the job's submission and status changes
                for marker in ("ray job | ", "ray job ", "Ray job "):
                    if marker in line:
                        text = line.split(marker, 1)[1].split(" [webscale_rl")[0].rstrip()
                        prefix = "  | " if marker == "ray job | " else f"{marker.strip()} "
                        print(prefix + text, flush=True)
                        break
            proc.wait()
    finally:
        if head is not None:
            head.stop()
            print(f"Ray head stopped (pid {head.pid})", flush=True)
        embedded.stop()
    wall = time.monotonic() - started
    con = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        row = con.execute(
            "SELECT train_run_id, status, message, metrics, ray_job_id, ray_status "
            "FROM training_runs ORDER BY started_at DESC LIMIT 1"
        ).fetchall()
        evals = (
            con.execute(
                """SELECT phase, count(*), avg(score) FROM training_evals
                               WHERE train_run_id = ? GROUP BY ALL ORDER BY ALL""",
                [row[0][0]],
            ).fetchall()
            if row
            else []
        )
    finally:
        con.close()
    if proc.returncode != 0 or not row or row[0][1] != "success":
        print(log_path.read_text()[-6000:])
        print(
            f"train-smoke FAILED after {wall:.0f}s: {(row[0][2] if row else None) or 'see the log above'}; "
            f"full Airflow log: {log_path}"
        )
        return proc.returncode or 1
    print(f"\nRay job {row[0][4]}: {row[0][5]} (training_runs.ray_job_id, ray_status)")
    metrics = json.loads(row[0][3])["trained"]["metrics"]
    print(f"\ntraining run {row[0][0]}: success in {wall:.0f}s (Airflow log {log_path})")
    for phase, n, acc in evals:
        label = (
            "serving model via llm_default (llama.cpp Q4_1), the export's prompts as written"
            if phase == "baseline"
            else "trained checkpoint, with TRL's two few-shot turns"
        )
        print(f"  {phase} accuracy on val, {label}: {acc:.3f} (n={n})")
    before = (metrics.get("accuracy_before") or {}).get("val")
    print(
        f"  same checkpoint before training, same prompts: {before if before is None else f'{before:.3f}'} "
        "(before/after compare like with like; the baseline shows the served model without few-shot turns)"
    )
    print(
        f"  steps with reward variance: {metrics.get('steps_with_reward_variance')}/{metrics.get('steps')}; "
        f"weights changed: {(metrics.get('weight_change') or {}).get('tensors_changed')} tensors"
    )
    print(f"  reward per step: {metrics.get('reward_per_step')}")
    print(f"  checkpoint: {metrics.get('checkpoint')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
