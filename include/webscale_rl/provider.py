"""This project as an Airflow provider (entry point `apache_airflow_provider` in
pyproject.toml): one connection type, `webscale_rl_llm`, whose form in the Airflow UI has
the fields the LLM client reads, and whose Test button asks the server for its models
(webscale_rl.llm.hook). Declarative (`conn-fields`, `ui-field-behaviour`): the UI reads the
form from here without importing the hook. An `openai`-type `llm_default` (the JSON in
AIRFLOW_CONN_LLM_DEFAULT of earlier set-ups) keeps working: the client reads the same
host, password and extras from either type."""

from __future__ import annotations

# Literals, not imports: Airflow loads this in every process that lists providers, and the
# LLM package pulls in the client (~2 s). A test checks the defaults against LLMSettings.
CONN_TYPE = "webscale_rl_llm"
HOOK_NAME = "LLM server (OpenAI-compatible, webscale_rl)"


def _field(label: str, schema: dict, description: str) -> dict:
    return {"label": label, "schema": schema, "description": description}


CONN_FIELDS = {
    "model": _field(
        "Model",
        {"type": ["string", "null"], "default": "default"},
        "The served model name every stage uses (vLLM's --served-model-name).",
    ),
    "structured_output": _field(
        "Structured output",
        {
            "type": ["string", "null"],
            "default": "json_schema",
            "enum": ["json_schema", "json_object", "none"],
        },
        "json_schema for vLLM or OpenAI, json_object for llama.cpp's server, none to rely on "
        "the prompt and strict parsing.",
    ),
    "max_concurrency": _field(
        "Max concurrency",
        {"type": ["integer", "null"], "default": 64, "minimum": 1},
        "Requests in flight per replica.",
    ),
    "base_urls": _field(
        "More replicas",
        {"type": ["string", "null"]},
        "Comma-separated base URLs of more replicas of the same server; each call goes to "
        "the live one with the fewest in flight.",
    ),
    "stage_models": _field(
        "Per-stage models",
        {"type": ["string", "null"]},
        'JSON object of stage to model, e.g. {"verify": "judge-model"}; others use Model.',
    ),
    "timeout_s": _field(
        "Timeout (s)",
        {"type": ["number", "null"], "default": 120},
        "Seconds to wait for one reply before retrying it.",
    ),
    "max_tokens": _field(
        "Max tokens",
        {"type": ["integer", "null"], "default": 512},
        "Completion token limit per call.",
    ),
}


def get_provider_info() -> dict:
    return {
        "package-name": "webscale-rl",
        "name": "webscale_rl",
        "description": "The webscale_rl data engine's LLM server connection.",
        "versions": ["0.1.0"],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "webscale_rl.llm.hook.LLMServerHook",
                "hook-name": HOOK_NAME,
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "http://vllm:8000/v1",
                        "password": "EMPTY (vLLM without --api-key)",
                    },
                },
            }
        ],
    }
