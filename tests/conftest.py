"""Test set-up: a project-local Airflow home and an isolated data dir per test.

Airflow reads its configuration at import, so the environment is set here, before any
test module imports it. `make test` migrates the metadata DB; running pytest directly
migrates it here when missing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
SAMPLE_DIR = ROOT / "data" / "sample"
HOSTILE_DIR = ROOT / "tests" / "fixtures" / "hostile"

os.environ.setdefault("AIRFLOW_HOME", str(ROOT / ".airflow"))
_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if _WORKER:
    # Parallel workers (make test runs pytest -n 2) each get their own metadata DB: two
    # dag.test() runs in one SQLite file would lock each other out. A copy of the migrated
    # DB `make airflow-db` made is enough; without one, the worker migrates its own.
    _shared = Path(os.environ["AIRFLOW_HOME"])
    _home = _shared / "workers" / _WORKER
    if (_shared / ".migrated").exists() and not (_home / ".migrated").exists():
        _home.mkdir(parents=True, exist_ok=True)
        shutil.copy(_shared / "airflow.db", _home / "airflow.db")
        (_home / ".migrated").touch()
    os.environ["AIRFLOW_HOME"] = str(_home)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")

_migrated = Path(os.environ["AIRFLOW_HOME"]) / ".migrated"
if not _migrated.exists():
    _airflow = str(Path(sys.executable).with_name("airflow"))
    _migrated.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([_airflow, "db", "migrate"], check=True, capture_output=True)
    subprocess.run(
        [_airflow, "pools", "set", "llm", "4", "LLM shard tasks"], check=True, capture_output=True
    )
    _migrated.touch()


# The tiers (unit, e2e, live, distributed), their enforcement and the live group's
# scheduling live in one plugin.
pytest_plugins = ["support.tiers", "support.live_servers", "pytester"]


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty data dir with its own warehouse, set through the product's env variables."""
    data = tmp_path / "data"
    data.mkdir()
    monkeypatch.setenv("WEBSCALE_RL_DATA_DIR", str(data))
    monkeypatch.delenv("WEBSCALE_RL_DB", raising=False)
    monkeypatch.delenv("WEBSCALE_RL_ALLOWED_ROOTS", raising=False)
    return data


@pytest.fixture
def sample_data_dir(data_dir) -> Path:
    """The data dir with the bundled sample corpus copied to `sample/`."""
    shutil.copytree(SAMPLE_DIR, data_dir / "sample")
    return data_dir


@pytest.fixture
def hostile_data_dir(data_dir) -> Path:
    shutil.copytree(HOSTILE_DIR, data_dir / "hostile")
    return data_dir


@pytest.fixture
def fake_llm(monkeypatch):
    """The deterministic OpenAI-compatible test server, wired in as `llm_default` the
    standard way (AIRFLOW_CONN_LLM_DEFAULT), with fast retries for tests. It serves
    vLLM-style /metrics, so runs record the server's own account as they would on vLLM."""
    from webscale_rl.scripted_llm import FakeLLM

    server = FakeLLM(model="fake-model", vllm_metrics=True).start()
    monkeypatch.setenv("AIRFLOW_CONN_LLM_DEFAULT", json.dumps(server.connection()))
    yield server
    server.stop()
