from __future__ import annotations

import pytest

from webscale_rl.llm import LLMSettings

pytestmark = pytest.mark.unit


def test_json_connection_fields_with_full_url_and_extras():
    s = LLMSettings.from_connection(
        "http://vllm:8000/v1/",
        "sk-1",
        extra='{"model": "qwen", "structured_output": "json_object", '
        '"max_concurrency": "32", "stage_models": {"verify": "small"}}',
    )
    assert (s.base_url, s.api_key, s.model, s.structured_output, s.max_concurrency) == (
        "http://vllm:8000/v1",
        "sk-1",
        "qwen",
        "json_object",
        32,
    )
    assert s.model_for("verify") == "small" and s.model_for("generate") == "qwen"


def test_uri_style_connection_builds_the_base_url():
    s = LLMSettings.from_connection("127.0.0.1", None, port=8080, schema="v1", extra={"model": "m"})
    assert s.base_url == "http://127.0.0.1:8080/v1" and s.api_key == "EMPTY"


def test_run_params_override_stage_models():
    s = LLMSettings(base_url="http://x/v1", model="big", stage_models={"classify": "mid"})
    t = s.with_overrides({"classify": "small", "verify": "small", "generate": ""})
    assert (t.model_for("classify"), t.model_for("verify"), t.model_for("generate")) == (
        "small",
        "small",
        "big",
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": None}, "has no host"),
        ({"host": "http://x/v1", "extra": {"structured_output": "xml"}}, "structured_output"),
        ({"host": "http://x/v1", "extra": {"modle": "typo"}}, "unknown extras"),
        ({"host": "http://x/v1", "extra": {"max_concurrency": 0}}, "max_concurrency"),
        ({"host": "http://x/v1", "extra": {"base_urls": ["vllm-2:8000/v1"]}}, "http://"),
    ],
)
def test_bad_connections_are_refused_with_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LLMSettings.from_connection(**kwargs)


@pytest.mark.parametrize(
    "base_urls",
    [
        ["http://vllm-2:8000/v1/", "http://vllm-3:8000/v1"],
        "http://vllm-2:8000/v1, http://vllm-3:8000/v1/,",
    ],
)
def test_replicas_from_the_base_urls_extra_follow_the_host_each_once(base_urls):
    s = LLMSettings.from_connection(
        "http://vllm-1:8000/v1",
        extra={
            "base_urls": base_urls
            + (["http://vllm-1:8000/v1"] if isinstance(base_urls, list) else "")
        },
    )
    assert s.replica_urls == (
        "http://vllm-1:8000/v1",
        "http://vllm-2:8000/v1",
        "http://vllm-3:8000/v1",
    )
    assert LLMSettings.from_connection("http://vllm-1:8000/v1").replica_urls == (
        "http://vllm-1:8000/v1",
    )
