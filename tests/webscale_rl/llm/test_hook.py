"""The `webscale_rl_llm` connection type: Airflow discovers it with the client's fields, and
its Test button (the REST API's connection test) asks the server for its models."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from support.airflow_server import free_port
from webscale_rl.llm.settings import DIALECTS, LLMSettings
from webscale_rl.provider import CONN_FIELDS, CONN_TYPE


@pytest.mark.unit
def test_airflow_discovers_the_connection_type_with_the_clients_fields():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    hook = manager.hooks[CONN_TYPE]
    assert hook.hook_class_name == "webscale_rl.llm.hook.LLMServerHook"
    assert hook.connection_testable
    widgets = {k for k in manager.connection_form_widgets if k.startswith(f"extra__{CONN_TYPE}__")}
    assert widgets == {f"extra__{CONN_TYPE}__{name}" for name in CONN_FIELDS}
    behaviour = manager.field_behaviours[CONN_TYPE]
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    # Every form field is an extra the client reads, and shows the client's own default.
    fields = LLMSettings.__dataclass_fields__
    for name, spec in CONN_FIELDS.items():
        assert spec["schema"].get("default") == (
            fields[name].default if name not in ("base_urls", "stage_models") else None
        ), name
    assert CONN_FIELDS["structured_output"]["schema"]["enum"] == list(DIALECTS)


@pytest.mark.unit
def test_what_the_form_saves_is_what_the_client_reads():
    """The UI sends every field, unset ones as null; stage_models arrives as JSON text."""
    settings = LLMSettings.from_connection(
        "http://h:8000/v1",
        "key",
        extra={
            "model": "m",
            "structured_output": "json_object",
            "max_concurrency": 8,
            "base_urls": "",
            "stage_models": '{"verify": "judge"}',
            "timeout_s": None,
            "max_tokens": None,
        },
    )
    assert (settings.model, settings.structured_output, settings.max_concurrency) == (
        "m",
        "json_object",
        8,
    )
    assert settings.stage_models == {"verify": "judge"} and settings.base_urls == ()
    assert (settings.timeout_s, settings.max_tokens) == (120.0, 512)  # the defaults
    with pytest.raises(ValueError, match="'stage_models' is not a JSON object"):
        LLMSettings.from_connection("http://h/v1", extra={"stage_models": "verify=judge"})


@pytest.fixture
def api(monkeypatch, data_dir):
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    monkeypatch.setenv("AIRFLOW__CORE__TEST_CONNECTION", "Enabled")
    client = TestClient(create_app())
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="op", role="admin"))

    def test(host: str, **extra) -> dict:
        response = client.post(
            "/api/v2/connections/test",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "connection_id": "llm_form_test",
                "conn_type": CONN_TYPE,
                "host": host,
                "password": "EMPTY",
                "extra": json.dumps(extra),
            },
        )
        assert response.status_code == 200, response.text
        return response.json()

    return test


@pytest.mark.e2e
def test_the_test_button_lists_the_served_models(api, fake_llm):
    result = api(fake_llm.base_url, model="fake-model", structured_output="json_schema")
    assert result == {"status": True, "message": "1 replica(s) answer, serving fake-model"}
    # A model the server does not serve: still reachable, with a warning naming it.
    warned = api(fake_llm.base_url, model="other-model")
    assert warned["status"] is True and "['other-model'] are not among them" in warned["message"]


@pytest.mark.e2e
def test_the_test_button_names_a_dead_url(api, fake_llm):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    result = api(dead, model="fake-model")
    assert result["status"] is False and f"{dead}/models is not reachable" in result["message"]
    # One dead replica beside a live one: named, with what the live one serves.
    both = api(fake_llm.base_url, model="fake-model", base_urls=dead)
    assert both == {
        "status": False,
        "message": f"{dead} did not answer; the others serve fake-model",
    }
