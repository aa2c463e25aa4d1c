"""`make up`: Airflow's UI locally (airflow standalone: api-server, scheduler, dag-processor,
triggerer) with an LLM behind `llm_default`, so the DAG can be triggered from the form.

LLM: LLM_URL (+ MODEL, DIALECT) for your server; SCRIPTED=1 for the test server; otherwise
the embedded SmolLM2 server: vLLM's CPU build, or llama.cpp's (LLM_BACKEND=auto|vllm|llamacpp). Stop with Ctrl-C or `make down` (SIGINT to every
Airflow component, then the LLM server is stopped by its PID).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def stop_standalone(standalone: subprocess.Popen) -> None:
    """airflow standalone stops cleanly when each component gets SIGINT first and the
    parent SIGTERM after (a SIGINT to the parent alone leaves it waiting)."""
    import psutil

    for child in psutil.Process(standalone.pid).children():
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGINT)
    time.sleep(3)
    standalone.terminate()
    try:
        standalone.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(standalone.pid, signal.SIGKILL)
        standalone.wait(10)


def main() -> int:
    airflow_home = Path(os.environ.get("AIRFLOW_HOME", ROOT / ".airflow"))
    pid_file = airflow_home / "up.pid"
    env = dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}")
    # A local UI: the connection form's Test button on (Airflow ships it off, since it lets
    # UI users make the API server send requests; the compose deployment leaves it off).
    env.setdefault("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    llm = None
    if os.environ.get("LLM_URL"):
        conn = {
            "conn_type": "webscale_rl_llm",
            "host": os.environ["LLM_URL"],
            "password": os.environ.get("LLM_API_KEY", "EMPTY"),
            "extra": {
                "model": os.environ.get("MODEL", "default"),
                "structured_output": os.environ.get("DIALECT", "json_schema"),
            },
        }
    elif os.environ.get("SCRIPTED"):
        from webscale_rl.scripted_llm import FakeLLM

        llm = FakeLLM().start()
        conn = {
            "conn_type": "webscale_rl_llm",
            "host": llm.base_url,
            "password": "EMPTY",
            "extra": {"model": "fake-model"},
        }
    else:
        from webscale_rl import embedded_server

        gguf = os.environ.get("GGUF") or None
        backend, fallback = embedded_server.choose_backend(os.environ.get("LLM_BACKEND"), gguf)
        if fallback:
            print(fallback, flush=True)
        llm, label = embedded_server.start(backend, airflow_home, gguf)
        print(f"LLM: {label}", flush=True)
        conn = llm.connection()
    env["AIRFLOW_CONN_LLM_DEFAULT"] = json.dumps(conn)
    print(f"LLM for llm_default: {conn['host']} (model {conn['extra']['model']})", flush=True)
    standalone = subprocess.Popen(
        [str(BIN / "airflow"), "standalone"], env=env, start_new_session=True
    )
    pid_file.write_text(str(os.getpid()))
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        "Airflow UI: http://localhost:8080 (admin password: see the standalone output or "
        f"{airflow_home}/simple_auth_manager_passwords.json.generated); stop with Ctrl-C or `make down`",
        flush=True,
    )
    try:
        while not stopping and standalone.poll() is None:
            time.sleep(0.5)
    finally:
        if standalone.poll() is None:
            stop_standalone(standalone)
        if llm is not None:
            llm.stop()
        pid_file.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
