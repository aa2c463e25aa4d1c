"""The embedded servers start from a checkout at a 150+ character path (issue: `make demo`
failed beyond ~54 characters, vLLM's IPC sockets breaking the 107-byte Unix-socket limit).

The package is imported from a real copy at such a path, so everything it derives from
where it lives (REPO_ROOT, the venvs, vLLM's caches) is there; what holds sockets is not.
llama.cpp's server and the local Ray head are started from that copy here; the real vLLM
server is started the same way by tests/test_vllm_server.py's fixture (one vLLM start per
suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT
from support import long_checkout
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
print(json.dumps(out))
"""

SERVERS = """
import json, os, urllib.request
from pathlib import Path
from webscale_rl.embedded_llm import EmbeddedLLM
from webscale_rl.training.ray_head import LocalRayHead
out = {}
with EmbeddedLLM() as llm:
    with urllib.request.urlopen(llm.base_url + "/models", timeout=30) as r:
        out["llamacpp_models"] = [m["id"] for m in json.loads(r.read())["data"]]
if os.environ.get("WITH_RAY") == "1":
    with LocalRayHead(num_cpus=1) as head:
        with urllib.request.urlopen(head.dashboard_url + "/api/version", timeout=30) as r:
            out["ray_version"] = json.loads(r.read())["ray_version"]
        out["ray_temp_dir"] = str(head.temp_dir)
        out["ray_sockets"] = sorted(
            str(p) for p in head.temp_dir.rglob("*") if p.is_socket()
        )
        out["ray_python"] = str(head.python)
    out["ray_temp_dir_removed"] = not head.temp_dir.exists()
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    return long_checkout.make(tmp_path_factory.mktemp("checkout"))


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


def test_llamacpp_and_the_ray_head_start_from_the_long_checkout(checkout):
    pytest.importorskip("llama_cpp", reason="run `make embedded-llm`")
    with_ray = (ROOT / ".venv-verl" / "bin" / "ray").exists()
    got = run_from(checkout, SERVERS, WITH_RAY="1" if with_ray else "0")
    assert got["llamacpp_models"] == ["smollm2-135m-instruct"]
    if with_ray:
        assert got["ray_python"] == str(checkout / ".venv-verl" / "bin" / "python")
        assert got["ray_version"] and got["ray_temp_dir_removed"]
        assert got["ray_sockets"], "Ray's raylet and plasma sockets are under its temp dir"
        assert max(len(s.encode()) for s in got["ray_sockets"]) <= LIMIT
