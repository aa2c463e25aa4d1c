"""The embedded servers start from a checkout at a 150+ character path (issue: `make demo`
failed beyond ~54 characters, vLLM's IPC sockets breaking the 107-byte Unix-socket limit).

The package is imported from a real copy at such a path (the suite's `long_checkout_dir`),
so everything it derives from where it lives (REPO_ROOT, the venvs, vLLM's caches) is
there; what holds sockets is not. The suite's one vLLM server (tests/test_vllm_server.py)
and one Ray head (tests/support/live_servers.py) are started as from that copy, and their
socket paths are checked here and there. llama.cpp's server holds no Unix socket and takes
nothing from the checkout (its interpreter, the installed model, a log under the temp dir),
which the probe checks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from webscale_rl import socket_dir

pytestmark = pytest.mark.live

LIMIT = socket_dir.SUN_PATH_MAX

PROBE = """
import json, os
from pathlib import Path
from webscale_rl import embedded_vllm
from webscale_rl.training import ray_jobs
server = embedded_vllm.EmbeddedVLLM()
env = server.environment()
out = {
    "package": embedded_vllm.__file__,
    "cache_dir": str(server.cache_dir),
    "vllm_python": str(embedded_vllm.vllm_python()),
    "ray_python": str(ray_jobs.ray_python()) if (Path(embedded_vllm.REPO_ROOT) / ".venv-verl").exists() else None,
    "tmpdir": env["TMPDIR"],
    "rpc_base": env["VLLM_RPC_BASE_PATH"],
    "mode": oct(Path(env["TMPDIR"]).stat().st_mode & 0o777),
}
server.stop()
out["socket_dir_removed"] = not Path(env["TMPDIR"]).exists()
from webscale_rl.embedded_llm import EmbeddedLLM
out["llamacpp_log"] = str(EmbeddedLLM().log_path)
print(json.dumps(out))
"""


@pytest.fixture
def checkout(long_checkout_dir):
    return long_checkout_dir


def run_from(checkout, script: str, **env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=checkout,
        env={**os.environ, "PYTHONPATH": str(checkout / "include"), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_package_lives_at_the_long_path_and_its_sockets_do_not(checkout):
    assert len(str(checkout)) >= 150
    got = run_from(checkout, PROBE)
    assert got["package"].startswith(str(checkout / "include"))
    assert got["cache_dir"] == str(checkout / ".cache" / "vllm")
    assert got["vllm_python"] == str(checkout / ".venv-vllm" / "bin" / "python")
    if got["ray_python"] is not None:
        assert got["ray_python"] == str(checkout / ".venv-verl" / "bin" / "python")
    # vLLM names its IPC sockets <dir>/<uuid4>: 37 more bytes.
    assert got["tmpdir"] == got["rpc_base"] and len(got["tmpdir"].encode()) + 37 <= LIMIT
    assert got["mode"] == "0o700" and got["socket_dir_removed"]
    assert not got["llamacpp_log"].startswith(str(checkout))


def test_the_suites_ray_head_runs_from_the_long_checkout_with_short_sockets(checkout, ray_head):
    assert ray_head.python == checkout / ".venv-verl" / "bin" / "python"
    version = httpx.get(f"{ray_head.dashboard_url}/api/version", timeout=30).json()
    assert version["ray_version"]
    sockets = [p for p in ray_head.temp_dir.rglob("*") if p.is_socket()]
    assert sockets, "Ray's raylet and plasma sockets are under its temp dir"
    assert max(len(str(p).encode()) for p in sockets) <= LIMIT
