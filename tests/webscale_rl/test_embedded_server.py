"""Choosing and configuring the embedded model server (no server is started here; the real
vLLM and llama.cpp servers are exercised in tests/test_vllm_server.py and
tests/test_embedded_llm.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from webscale_rl import embedded_server, socket_dir
from webscale_rl.embedded_llm import EmbeddedLLMError
from webscale_rl.embedded_vllm import (
    BEST_CONCURRENCY,
    EmbeddedVLLM,
    cpu_flags,
    cpu_unsupported_reason,
    unavailable_reason,
)

pytestmark = pytest.mark.unit

EPYC = "processor\t: 0\nflags\t\t: fpu sse2 avx fma avx2 bmi2\n\nprocessor\t: 1\nflags\t\t: fpu\n"


def test_cpu_flags_come_from_the_first_processor():
    assert {"avx2", "fma"} <= cpu_flags(EPYC) and "avx512f" not in cpu_flags(EPYC)
    assert cpu_flags("Features\t: fp asimd bf16\n") == {"fp", "asimd", "bf16"}
    assert cpu_flags("") == set()


@pytest.mark.parametrize(
    ("machine", "flags", "runs"),
    [
        ("x86_64", {"avx2", "fma"}, True),
        ("x86_64", {"avx2", "avx512f", "avx512_bf16"}, True),
        ("x86_64", {"avx", "sse4_2"}, False),
        ("aarch64", set(), True),
        ("riscv64", set(), False),
    ],
)
def test_vllm_runs_on_avx2_x86_and_on_aarch64(machine, flags, runs):
    reason = cpu_unsupported_reason(machine, flags)
    assert (reason is None) is runs
    if not runs:
        assert "AVX2" in reason or machine in reason


def test_bfloat16_only_where_the_cpu_computes_it():
    assert EmbeddedVLLM.dtype({"avx2", "avx512f", "avx512_bf16"}) == "bfloat16"
    assert EmbeddedVLLM.dtype({"asimd", "bf16"}) == "bfloat16"
    assert EmbeddedVLLM.dtype({"avx2", "avx512f"}) == "float32"
    assert EmbeddedVLLM.dtype({"avx2"}) == "float32"


def test_the_server_command_and_environment(tmp_path):
    server = EmbeddedVLLM(
        model_dir=tmp_path / "model", python=tmp_path / "py", port=8123, cache_dir=tmp_path / "c"
    )
    cmd = server.command()
    assert cmd[:3] == [str(tmp_path / "py"), "-m", "vllm.entrypoints.openai.api_server"]
    assert "--enable-prefix-caching" in cmd and "--enforce-eager" in cmd
    # seeded sampled requests crash the CPU build's engine under chunked prefill
    assert "--no-enable-chunked-prefill" in cmd
    assert cmd[cmd.index("--served-model-name") + 1] == server.model
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("--port") + 1] == "8123"
    env = server.environment()
    assert env["VLLM_CPU_OMP_THREADS_BIND"].startswith("0-")  # every core, not `auto`'s one
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    # Caches stay where the caller put them; the IPC sockets' temp dir is short and private
    # (a socket path is at most 107 bytes), the same for vLLM's RPC base, gone on stop().
    assert env["VLLM_CACHE_ROOT"].startswith(str(tmp_path))
    sockets = Path(env["TMPDIR"])
    assert env["VLLM_RPC_BASE_PATH"] == str(sockets) and not str(sockets).startswith(str(tmp_path))
    assert (
        len(str(sockets)) + 37 <= socket_dir.SUN_PATH_MAX
        and sockets.stat().st_mode & 0o777 == 0o700
    )
    server.stop()
    assert not sockets.exists() and server.socket_dir is None
    conn = server.connection()
    assert conn["host"] == "http://127.0.0.1:8123/v1"
    assert conn["extra"]["structured_output"] == "json_schema"
    assert conn["extra"]["max_concurrency"] == BEST_CONCURRENCY


def test_start_refuses_a_missing_venv_with_the_fix(tmp_path):
    server = EmbeddedVLLM(model_dir=tmp_path, python=tmp_path / "no-python", cache_dir=tmp_path)
    if cpu_unsupported_reason():
        pytest.skip("this CPU cannot run vLLM: start() refuses for that reason first")
    with pytest.raises(EmbeddedLLMError, match="make vllm"):
        server.start()


def test_explicit_backends(monkeypatch):
    assert embedded_server.choose_backend("llamacpp") == ("llamacpp", None)
    assert embedded_server.choose_backend("llama.cpp") == ("llamacpp", None)
    assert embedded_server.choose_backend("auto", gguf="/m/x.gguf") == ("llamacpp", None)
    with pytest.raises(EmbeddedLLMError, match="unknown LLM_BACKEND"):
        embedded_server.choose_backend("tgi")
    with pytest.raises(EmbeddedLLMError, match="LLM_BACKEND=llamacpp"):
        embedded_server.choose_backend("vllm", gguf="/m/x.gguf")


def test_auto_falls_back_to_llama_cpp_and_says_why(monkeypatch, tmp_path):
    monkeypatch.setenv("WEBSCALE_RL_VLLM_PYTHON", str(tmp_path / "missing" / "python"))
    reason = unavailable_reason()
    assert reason is not None
    with pytest.raises(EmbeddedLLMError, match="LLM_BACKEND=vllm, but"):
        embedded_server.choose_backend("vllm")
    monkeypatch.setattr(embedded_server, "server_available", lambda: True)
    backend, message = embedded_server.choose_backend(None)
    assert backend == "llamacpp" and reason in message and "llama.cpp" in message
    monkeypatch.setattr(embedded_server, "server_available", lambda: False)
    with pytest.raises(EmbeddedLLMError, match="make embedded-llm"):
        embedded_server.choose_backend("auto")


def test_auto_prefers_vllm_when_it_can_run(monkeypatch, tmp_path):
    python, model = tmp_path / "python", tmp_path / "model"
    python.touch()
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("WEBSCALE_RL_VLLM_PYTHON", str(python))
    monkeypatch.setenv("WEBSCALE_RL_VLLM_MODEL", str(model))
    if cpu_unsupported_reason():
        pytest.skip("this CPU cannot run vLLM")
    assert embedded_server.choose_backend("auto") == ("vllm", None)
