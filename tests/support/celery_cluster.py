"""A real CeleryExecutor deployment on this machine, for the distributed tests:

    PostgreSQL (Debian's server, a throwaway cluster) as the metadata DB and Celery result
    backend, Redis (Debian's) as the broker, Airflow's api-server, scheduler and
    dag-processor, and two Celery workers that act as two hosts.

Each worker has its own AIRFLOW_HOME, working folder, temp dir and host id
(WEBSCALE_RL_HOST_ID, also Airflow's hostname_callable, so the metadata DB names the
host that ran each task). What they share is what hosts would share: the data dir (read
by every worker; written only by tasks on the `warehouse` queue, which only the first
worker serves) and the staging folder (shards' Parquet, journals, the run lease).

    with CeleryCluster(root, data_dir=..., staging_dir=..., llm_conn=...) as cluster:
        run_id = cluster.trigger("webscale_rl", conf)
        cluster.wait_for_run("webscale_rl", run_id)
        cluster.task_hosts("webscale_rl", run_id)
        cluster.kill_worker("host-b")        # SIGKILL to its whole process group
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from support.airflow_server import control_plane_healthy, free_port
from webscale_rl import socket_dir

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
WAREHOUSE_QUEUE = "warehouse"


def missing_parts() -> list[str]:
    """What this machine lacks to run the cluster (`make test-distributed` installs it)."""
    missing = []
    if not shutil.which("redis-server"):
        missing.append("redis-server (Debian package redis-server)")
    if not _pg_bindir():
        missing.append("PostgreSQL's server (Debian package postgresql)")
    for module in ("airflow.providers.celery", "psycopg2", "redis"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} (requirements-distributed.txt)")
    return missing


def _pg_bindir() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: as root, run its programs as the `postgres` user."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class ComponentDied(RuntimeError):
    """A component of the cluster exited: waiting longer cannot help."""


def _wait(check, timeout: float, what: str, poll: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except ComponentDied:
            raise
        except Exception as exc:  # not up yet
            result, last = None, exc
        else:
            last = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready within {timeout:.0f}s ({last})")
        time.sleep(poll)


class Postgres:
    """A throwaway PostgreSQL cluster on a free port, trusting local connections."""

    def __init__(self):
        # Not under pytest's tmp_path: its folders are private to root, and the server runs as
        # the postgres user. Its socket (-k) lives here too: a short path (107-byte limit).
        self.root = socket_dir.make("wsrl-pg-")
        self.port = free_port()
        self.started = False

    def start(self) -> Postgres:
        bindir = _pg_bindir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        subprocess.run(
            [*_as_postgres(), str(bindir / "initdb"), "-D", str(self.data), "-A", "trust"]
            + ["-U", "airflow", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
        )
        # pg_ctl starts the server in the background and waits until it accepts connections.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c max_connections=300"
        )
        self._pg_ctl("-l", str(self.root / "postgres.log"), "-o", options, "start")
        self.started = True
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="postgres")
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute("CREATE DATABASE airflow")
        con.close()
        return self

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_postgres(), str(_pg_bindir() / "pg_ctl"), "-D", str(self.data), "-w"]
            + ["-t", "60", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}/airflow"

    def query(self, sql: str, params=None) -> list[tuple]:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=self.port, user="airflow", dbname="airflow")
        try:
            with con.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()
        finally:
            con.close()

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(subprocess.SubprocessError):
                self._pg_ctl("-m", "immediate", "stop")
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)


class Redis:
    def __init__(self, root: Path):
        self.root, self.port = root, free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Redis:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.root)],
            stdout=(self.root / "redis.log").open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        import redis

        _wait(lambda: redis.Redis(port=self.port).ping(), 30, "Redis")
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class CeleryCluster:
    def __init__(
        self,
        root: Path,
        *,
        data_dir: Path,
        staging_dir: Path,
        llm_conn: dict,
        workers: tuple[str, ...] = ("host-a", "host-b"),
        extra_env: dict[str, str] | None = None,
    ):
        self.root = Path(root)
        self.workers = workers
        self.procs: dict[str, subprocess.Popen] = {}
        self.postgres = Postgres()
        self.redis = Redis(self.root / "redis")
        self.api_port = free_port()
        self.data_dir, self.staging_dir = Path(data_dir), Path(staging_dir)
        self.llm_conn, self.extra_env = llm_conn, extra_env or {}

    # -- environment ---------------------------------------------------------------------
    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "WEBSCALE_RL"))}
        env.update(
            {
                "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.postgres.url,
                "AIRFLOW__CELERY__BROKER_URL": self.redis.url,
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.postgres.url,
                # Shared secrets: every component signs or checks the same tokens.
                "AIRFLOW__CORE__FERNET_KEY": self._fernet_key,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._jwt_secret,
                "AIRFLOW__API__SECRET_KEY": self._jwt_secret,
                "AIRFLOW__API__PORT": str(self.api_port),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "webscale_rl.config.host_id",
                "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__PARALLELISM": "8",
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                # A worker reserves only what it runs: a dead worker strands no queued task.
                "AIRFLOW__CELERY__WORKER_PREFETCH_MULTIPLIER": "1",
                "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "120",
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "WEBSCALE_RL_DATA_DIR": str(self.data_dir),
                "WEBSCALE_RL_STAGING_DIR": str(self.staging_dir),
                "WEBSCALE_RL_WAREHOUSE_QUEUE": WAREHOUSE_QUEUE,
                "AIRFLOW_CONN_LLM_DEFAULT": json.dumps(self.llm_conn),
                "NO_COLOR": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def _env(self, name: str) -> dict[str, str]:
        home = self.root / name
        (home / "tmp").mkdir(parents=True, exist_ok=True)
        return {
            **self._base_env(),
            "AIRFLOW_HOME": str(home),
            "TMPDIR": str(home / "tmp"),
            "WEBSCALE_RL_HOST_ID": name,
        }

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> CeleryCluster:
        from cryptography.fernet import Fernet

        self._fernet_key = Fernet.generate_key().decode()
        self._jwt_secret = secrets.token_urlsafe(32)
        try:
            self.postgres.start()
            self.redis.start()
            control = self._env("control")
            for args in (["db", "migrate"], ["pools", "set", "llm", "4", "LLM shard tasks"]):
                done = subprocess.run(
                    [str(BIN / "airflow"), *args], env=control, capture_output=True, timeout=600
                )
                if done.returncode:
                    raise RuntimeError(f"airflow {' '.join(args)} failed:\n{done.stderr[-3000:]!r}")
            for component in ("api-server", "scheduler", "dag-processor"):
                self._spawn(component, "control", ["airflow", component])
            for i, host in enumerate(self.workers):
                queues = f"default,{WAREHOUSE_QUEUE}" if i == 0 else "default"
                self._spawn(
                    f"worker-{host}",
                    host,
                    ["airflow", "celery", "worker", "--queues", queues]
                    + ["--celery-hostname", f"{host}@%h", "--skip-serve-logs"],
                )
            _wait(self._healthy, 300, "Airflow's api-server, scheduler and dag-processor", poll=2)
            _wait(self._workers_up, 300, "both Celery workers", poll=2)
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, name: str, home: str, argv: list[str]) -> None:
        env = self._env(home)
        log = (self.root / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(BIN / argv[0]), *argv[1:]],
            env=env,
            cwd=env["AIRFLOW_HOME"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killing a "host" kills all of it
        )

    def _check_alive(self, workers: bool = True) -> None:
        for name, proc in self.procs.items():
            if (workers or not name.startswith("worker-")) and proc.poll() is not None:
                raise ComponentDied(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def _healthy(self) -> bool:
        self._check_alive()
        return control_plane_healthy(f"http://127.0.0.1:{self.api_port}", timeout=10)

    def _workers_up(self) -> bool:
        from celery import Celery

        self._check_alive()
        app = Celery(broker=self.redis.url)
        try:
            replies = app.control.ping(timeout=2) or []
        finally:
            app.close()
        names = {name.split("@")[0] for reply in replies for name in reply}
        return set(self.workers) <= names

    def kill_worker(self, host: str) -> None:
        """SIGKILL everything of the worker's "host" (its Celery pool and the task runners it
        started, wherever their process group): nothing of it gets to clean up."""
        proc = self.procs[f"worker-{host}"]
        others = self._processes(lambda env: env.get("WEBSCALE_RL_HOST_ID") == host)
        for other in others:
            with contextlib.suppress(psutil.Error):
                other.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # Dead on return, so what the host wrote (its journals) is final from here on.
        psutil.wait_procs(others, timeout=30)

    @staticmethod
    def _processes(match) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["environ"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if proc.pid != os.getpid() and match(proc.info["environ"] or {}):
                    found.append(proc)
        return found

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        # Task runners a worker started in their own session, if any outlived it.
        root = str(self.root)
        for child in self._processes(lambda env: env.get("AIRFLOW_HOME", "").startswith(root)):
            with contextlib.suppress(psutil.Error):
                child.kill()
        self.redis.stop()
        self.postgres.stop()

    def __enter__(self) -> CeleryCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_tail(self, name: str, chars: int = 3000) -> str:
        try:
            return (self.root / f"{name}.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- runs ----------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 300) -> str:
        done = subprocess.run(
            [str(BIN / "airflow"), *args],
            env=self._env("control"),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)}: {done.stderr[-3000:]}")
        return done.stdout

    def trigger(self, dag_id: str, conf: dict, run_id: str) -> str:
        _wait(
            lambda: self.postgres.query(
                "SELECT 1 FROM serialized_dag WHERE dag_id = %s", (dag_id,)
            ),
            300,
            f"the dag-processor to parse {dag_id}",
            poll=2,
        )
        self.airflow("dags", "unpause", dag_id)
        self.airflow("dags", "trigger", dag_id, "--run-id", run_id, "--conf", json.dumps(conf))
        return run_id

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.postgres.query(
            "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
        )
        return rows[0][0] if rows else None

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 1200) -> str:
        def finished():
            self._check_alive(workers=False)  # a test may kill a worker on purpose
            state = self.run_state(dag_id, run_id)
            return state if state in ("success", "failed") else None

        return _wait(finished, timeout, f"run {run_id}", poll=2)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Every try of every task instance of the run (the current try and earlier ones)."""
        columns = ("task_id", "map_index", "try_number", "state", "hostname", "queue")
        sql = (
            f"SELECT {', '.join(columns)} FROM task_instance WHERE dag_id = %s AND run_id = %s "
            f"UNION ALL SELECT {', '.join(columns)} FROM task_instance_history "
            "WHERE dag_id = %s AND run_id = %s"
        )
        rows = self.postgres.query(sql, (dag_id, run_id, dag_id, run_id))
        return [dict(zip(columns, row, strict=True)) for row in rows]
