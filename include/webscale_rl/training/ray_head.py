"""A single-node Ray cluster on this machine, for `make train-smoke` and the tests.

    with LocalRayHead(num_cpus=2) as head:
        head.dashboard_url   # http://127.0.0.1:<port>: what `ray_address` takes

`ray start --head --block` runs in the foreground from the training venv (`ray_python()`),
on free ports and its own temp dir, so it never meets another Ray on the machine; stopping
sends SIGTERM to that one PID, on which Ray drains the node and shuts down every process it
started (SIGKILL to its process group only if it has not exited 60 s later). The head's
PATH starts with the venv's bin, so a job's `python3` is the venv's (the one with verl).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from webscale_rl import socket_dir
from webscale_rl.embedded_llm import free_port
from webscale_rl.training.ray_jobs import ray_python


class LocalRayHead:
    def __init__(
        self,
        num_cpus: int = 2,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        python: Path | None = None,
    ):
        self.num_cpus = num_cpus
        self.python = Path(python) if python else ray_python()
        # Ray puts its Unix sockets under the temp dir: short and private (107-byte limit).
        self.temp_dir = socket_dir.make("ray-")
        self.log_path = log_path or self.temp_dir / "head.log"
        # Ray's worker ports default to 10002-19999: the fixed ports sit outside that range.
        self.ports = [free_port() for _ in range(4)]
        while any(10002 <= p <= 19999 for p in self.ports) or len(set(self.ports)) < 4:
            self.ports = [free_port() for _ in range(4)]
        self.dashboard_port = self.ports[0]
        self.dashboard_url = f"http://127.0.0.1:{self.dashboard_port}"
        self.extra_env = env or {}
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout_s: float = 120) -> LocalRayHead:
        ray = self.python.parent / "ray"
        ports = self.ports[1:]
        cmd = [
            str(ray),
            "start",
            "--head",
            "--block",
            f"--num-cpus={self.num_cpus}",
            "--num-gpus=0",
            f"--port={ports[0]}",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={self.dashboard_port}",
            f"--dashboard-agent-listen-port={ports[1]}",
            f"--ray-client-server-port={ports[2]}",
            f"--temp-dir={self.temp_dir}",
            "--include-dashboard=true",
            "--disable-usage-stats",
        ]
        env = {
            **os.environ,
            **self.extra_env,
            "PATH": f"{self.python.parent}:{os.environ.get('PATH', '')}",
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        env.pop("VIRTUAL_ENV", None)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"`ray start --head` exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self._jobs_api_up():
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"Ray's job API did not come up in {timeout_s:.0f}s:\n{self.log_tail()}")

    def _jobs_api_up(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.dashboard_url}/api/jobs/", timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        if self._log:
            self._log.close()
            self._log = None
        socket_dir.remove(self.temp_dir)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
