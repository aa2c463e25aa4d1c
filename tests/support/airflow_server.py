"""A real Airflow (`airflow standalone`: api-server, scheduler, dag-processor, triggerer) for
browser tests, in a throwaway AIRFLOW_HOME on a free port.

    with AirflowServer(data_dir=..., llm_conn=...) as af:
        af.base_url, af.username, af.password, af.token(), af.api("GET", "/api/v2/...")

The metadata DB is migrated and the `llm` pool created before standalone starts. Login is
the simple auth manager with a known user: `[core] simple_auth_manager_users = admin:admin`
and `simple_auth_manager_passwords_file` pointing at a file written here (the manager only
generates passwords for users missing from that file). Stopping follows scripts/run_up.py:
SIGINT to every component, SIGTERM to the parent, SIGKILL to the process group as a last
resort, so nothing outlives the test even when it fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
USERNAME = "admin"
PASSWORD = "admin-browser-test"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def control_plane_healthy(base_url: str, timeout: float = 5) -> bool:
    """Whether the api-server at `base_url` reports its metadata DB, scheduler and
    dag-processor healthy (raises OSError or ValueError while it is not answering yet)."""
    with urllib.request.urlopen(f"{base_url}/api/v2/monitor/health", timeout=timeout) as resp:
        health = json.load(resp)
    return all(
        health.get(part, {}).get("status") == "healthy"
        for part in ("metadatabase", "scheduler", "dag_processor")
    )


class AirflowServer:
    def __init__(
        self,
        *,
        data_dir: Path,
        llm_conn: dict | None = None,
        home: Path | None = None,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
        log_copy: Path | None = None,
    ):
        self._own_home = home is None
        self.home = Path(home) if home else Path(tempfile.mkdtemp(prefix="airflow-home-"))
        self.port = port or free_port()
        self.base_url = f"http://localhost:{self.port}"
        self.username, self.password = USERNAME, PASSWORD
        self.log_path = self.home / "standalone.log"
        self.log_copy = log_copy
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._token: str | None = None
        self.env = self._environment(Path(data_dir), llm_conn, extra_env or {})

    def _environment(
        self, data_dir: Path, llm_conn: dict | None, extra: dict[str, str]
    ) -> dict[str, str]:
        passwords = self.home / "passwords.json"
        self.home.mkdir(parents=True, exist_ok=True)
        passwords.write_text(json.dumps({USERNAME: PASSWORD}) + "\n", encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        env.update(
            {
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USERNAME}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": self.base_url,
                # Task runners report to the execution API; its default assumes port 8080.
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                "WEBSCALE_RL_DATA_DIR": str(data_dir),
                "NO_COLOR": "1",
            }
        )
        for key in ("WEBSCALE_RL_DB", "WEBSCALE_RL_ALLOWED_ROOTS"):
            env.pop(key, None)
        if llm_conn is not None:
            env["AIRFLOW_CONN_LLM_DEFAULT"] = json.dumps(llm_conn)
        env.update(extra)
        return env

    # -- lifecycle ---------------------------------------------------------------------------
    def _airflow(self, *args: str) -> None:
        subprocess.run(
            [str(BIN / "airflow"), *args],
            env=self.env,
            check=True,
            capture_output=True,
            timeout=300,
        )

    def start(self, timeout: float = 180) -> AirflowServer:
        self._airflow("db", "migrate")
        self._airflow("pools", "set", "llm", "4", "LLM shard tasks")
        self._log_file = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [str(BIN / "airflow"), "standalone"],
            env=self.env,
            cwd=self.home,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"airflow standalone exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if control_plane_healthy(self.base_url):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow was not healthy within {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            _stop_standalone(proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_copy is not None and self.log_path.exists():
            self.log_copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.log_path, self.log_copy)
        if self._own_home:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> AirflowServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""

    # -- REST API ----------------------------------------------------------------------------
    def token(self) -> str:
        if self._token is None:
            body = json.dumps({"username": self.username, "password": self.password}).encode()
            req = urllib.request.Request(
                f"{self.base_url}/auth/token",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            # A token request is safe to repeat.
            self._token = _json_reply(req, attempts=3)["access_token"]
        return self._token

    def api(self, method: str, path: str, body: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base_url}{path}",
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token()}", "Content-Type": "application/json"},
        )
        # Reads and PATCHes are safe to repeat; a POST is sent once.
        try:
            return _json_reply(req, attempts=1 if method == "POST" else 3)
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"{method} {path}: {err.code} {err.read()[:500]!r}") from err


def _json_reply(req: urllib.request.Request, attempts: int):
    """The request's JSON reply, sending it again (up to `attempts` times) when no answer
    comes within 60 s: beside a busy test worker on 2 cores, with a DAG run's task runners
    reporting to the same server, one request has gone unanswered for 30 s (CI, stop 27)."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return json.load(resp)
        except TimeoutError:
            if attempt == attempts:
                raise


def _stop_standalone(proc: subprocess.Popen) -> None:
    """SIGINT each component, then SIGTERM the parent (a SIGINT to the parent alone leaves it
    waiting); SIGKILL the whole session if anything is still there."""
    import psutil

    try:
        parent = psutil.Process(proc.pid)
        direct, everything = parent.children(), parent.children(recursive=True)
    except psutil.NoSuchProcess:
        direct, everything = [], []
    for child in direct:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.send_signal(signal.SIGINT)
    psutil.wait_procs(direct, timeout=10)
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    # Leftovers (task runners, api-server workers) of this standalone only.
    _, alive = psutil.wait_procs(everything, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
