"""`make train-smoke`: the webscale_rl_train DAG with the trl-cpu launcher, under real Airflow.

1. picks the export: EXPORT=name, else the newest pipeline export with at least
   --min-pairs pairs, else the bundled hand-written sample pairs (data/sample_export/) written
   as an export (`exports/sample_handwritten/`);
2. starts the embedded llama.cpp server with SmolLM2-135M-Instruct as `llm_default`, so the
   baseline evaluation measures the serving model (the same weights TRL trains);
3. runs `airflow dags test webscale_rl_train` with launcher trl-cpu: training-data gate,
   split, baseline evaluation, a few GRPO steps with TRL on the CPU (training venv), the
   checkpoint saved, reloaded and used to generate, and the evaluation after training;
4. prints the reward per step, the accuracies and where the checkpoint is.
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
    try:
        env["AIRFLOW_CONN_LLM_DEFAULT"] = json.dumps(embedded.connection())
        print(
            f"serving model for the baseline: {embedded.model} at {embedded.base_url}", flush=True
        )
        conf = {"launcher": "trl-cpu", "export": export, "trl_steps": args.steps, "eval_limit": 16}
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
                if (
                    "trl: " in line
                ):  # the trainer's own lines: steps, rewards, accuracies, checkpoint
                    print(line.split("trl: ", 1)[1].split(" [webscale_rl")[0].rstrip(), flush=True)
            proc.wait()
    finally:
        embedded.stop()
    wall = time.monotonic() - started
    con = duckdb.connect(str(settings.db_path), read_only=True)
    try:
        row = con.execute(
            "SELECT train_run_id, status, message, metrics FROM training_runs "
            "ORDER BY started_at DESC LIMIT 1"
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
