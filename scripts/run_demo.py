"""`make demo`: run the webscale_rl DAG under real Airflow on the sample corpus.

LLM endpoint, in order of preference:
  --llm-url URL (or LLM_URL): any OpenAI-compatible server (vLLM, llama.cpp, OpenAI...);
  --scripted: the project's deterministic scripted server (webscale_rl.scripted_llm), which is
      NOT a language model (fast; shows the mechanics);
  otherwise (the default) the embedded real model, SmolLM2-135M-Instruct, served by
      --backend (LLM_BACKEND) auto | vllm | llamacpp: auto is vLLM's CPU build (make vllm)
      and falls back to llama.cpp's server, saying why, where vLLM cannot run; any GGUF given
      with --gguf PATH (or GGUF) is served by llama.cpp.
Whatever server is started here runs on 127.0.0.1 on a free port and is stopped by its PID
whatever happens. At the end: the run's funnel, what the server did (vLLM's prefix-cache
hit rate, tokens, requests running at once) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from webscale_rl import embedded_server
from webscale_rl.embedded_llm import wait_for_models

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

from webscale_rl.scripted_llm import spawn  # noqa: E402  (the scripted server, for --scripted)


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
        "--backend",
        default=os.environ.get("LLM_BACKEND", "auto"),
        help="embedded server: auto (vLLM, else llama.cpp), vllm or llamacpp",
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
                "conn_type": "webscale_rl_llm",
                "host": url,
                "password": os.environ.get("LLM_API_KEY", "EMPTY"),
                "extra": {"model": args.model, "structured_output": args.dialect},
            }
        elif args.scripted:
            server, url = spawn()
            wait_for_models(url, 60)
            label = f"scripted test server (pid {server.pid}) at {url}: deterministic answers, NOT a language model"
            conn = {
                "conn_type": "webscale_rl_llm",
                "host": url,
                "password": "EMPTY",
                "extra": {"model": "fake-model"},
            }
        else:
            backend, fallback = embedded_server.choose_backend(args.backend, args.gguf)
            if fallback:
                print(fallback, flush=True)
            log_dir = Path(env.get("AIRFLOW_HOME", ROOT / ".airflow"))
            print(f"starting the embedded {backend} server (vLLM takes about a minute)", flush=True)
            started = time.monotonic()
            embedded, label = embedded_server.start(backend, log_dir, args.gguf)
            label += f"; ready in {time.monotonic() - started:.0f}s"
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
        print(f"LLM: {label}")
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
