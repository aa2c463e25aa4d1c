"""LLM endpoint settings, built from the Airflow connection `llm_default` (or its fields)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

DIALECTS = ("json_schema", "json_object", "none")
CONN_ID = "llm_default"


@dataclass(frozen=True)
class LLMSettings:
    base_url: str
    api_key: str = field(default="EMPTY", repr=False)  # never printed, logged or stored
    model: str = "default"
    structured_output: str = "json_schema"
    max_concurrency: int = 64  # requests in flight per replica
    # More replicas of the same server (the same model behind each), besides base_url:
    # requests go to the live one with the fewest in flight.
    base_urls: tuple = ()
    stage_models: dict = field(default_factory=dict)
    # Per-stage decoding: {stage: {"temperature", "top_p", "seed"}} (the run's `sampling`
    # param); a stage not named decodes with `temperature` below, top_p 1 and `seed`.
    stage_sampling: dict = field(default_factory=dict)
    timeout_s: float = 120.0
    max_retries: int = 8  # transient failures: connection, timeout, 429, 5xx
    max_invalid_retries: int = 3  # replies that are not valid JSON for the schema
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 20.0
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int = 1234

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_urls", tuple(self.base_urls))
        if self.structured_output not in DIALECTS:
            raise ValueError(
                f"llm_default extra 'structured_output' must be one of {DIALECTS}, "
                f"got {self.structured_output!r}"
            )
        if self.max_concurrency < 1:
            raise ValueError(
                f"llm_default extra 'max_concurrency' must be >= 1, got {self.max_concurrency}"
            )
        for url in self.replica_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"LLM base URL must start with http:// or https://, got {url!r}")

    @property
    def replica_urls(self) -> tuple[str, ...]:
        """base_url first, then the other replicas, each once."""
        return tuple(dict.fromkeys((self.base_url, *self.base_urls)))

    def model_for(self, stage: str) -> str:
        return self.stage_models.get(stage) or self.model

    def sampling_for(self, stage: str) -> tuple[float, float, int]:
        """(temperature, top_p, base seed) of the stage's requests."""
        entry = self.stage_sampling.get(stage) or {}
        return (
            float(entry.get("temperature", self.temperature)),
            float(entry.get("top_p", 1.0)),
            int(entry.get("seed", self.seed)),
        )

    def with_overrides(
        self, stage_models: dict | None = None, stage_sampling: dict | None = None, **changes
    ) -> LLMSettings:
        """Per-stage models and sampling merged over these settings' (a stage's sampling
        entry key by key)."""
        merged = {**self.stage_models, **{k: v for k, v in (stage_models or {}).items() if v}}
        sampling = {k: dict(v) for k, v in self.stage_sampling.items()}
        for stage, entry in (stage_sampling or {}).items():
            sampling[stage] = {**sampling.get(stage, {}), **entry}
        return replace(self, stage_models=merged, stage_sampling=sampling, **changes)

    @classmethod
    def from_connection(
        cls,
        host: str | None,
        password: str | None = None,
        port: int | None = None,
        schema: str | None = None,
        extra: dict | str | None = None,
    ) -> LLMSettings:
        """Fields of the `webscale_rl_llm` (or an `openai`) connection: host = base URL (or a
        bare host with port and schema as the path), password = API key, extras = model,
        structured_output, max_concurrency (per replica), base_urls (more replicas: a list or
        a comma-separated string of base URLs), stage_models, timeout_s, max_retries,
        max_tokens."""
        if not host:
            raise ValueError(
                f"connection '{CONN_ID}' has no host: set it to the server's base URL, "
                "e.g. http://127.0.0.1:8000/v1"
            )
        extras = json.loads(extra) if isinstance(extra, str) and extra else dict(extra or {})
        if host.startswith(("http://", "https://")):
            base_url = host.rstrip("/")
        else:
            base_url = f"http://{host}{f':{port}' if port else ''}/{(schema or 'v1').strip('/')}"
        known = {f for f in cls.__dataclass_fields__} - {"base_url", "api_key"}
        unknown = sorted(set(extras) - known)
        if unknown:
            raise ValueError(
                f"connection '{CONN_ID}' has unknown extras {unknown}; known: {sorted(known)}"
            )
        # The UI's form sends every field, unset ones as null or "": those take the defaults.
        values = {k: v for k, v in extras.items() if v is not None and v != ""}
        if isinstance(values.get("stage_models"), str):
            try:
                values["stage_models"] = json.loads(values["stage_models"])
            except ValueError:
                raise ValueError(
                    f"connection '{CONN_ID}' extra 'stage_models' is not a JSON object: "
                    f"{values['stage_models'][:200]!r}"
                ) from None
        if not isinstance(values.get("stage_models", {}), dict):
            raise ValueError(f"connection '{CONN_ID}' extra 'stage_models' must be a JSON object")
        if "base_urls" in values:
            urls = values["base_urls"]
            urls = urls.split(",") if isinstance(urls, str) else list(urls or [])
            values["base_urls"] = tuple(u.strip().rstrip("/") for u in urls if u.strip())
        for name in ("max_concurrency", "max_retries", "max_invalid_retries", "max_tokens", "seed"):
            if name in values:
                values[name] = int(values[name])
        for name in ("timeout_s", "backoff_base_s", "backoff_cap_s", "temperature"):
            if name in values:
                values[name] = float(values[name])
        return cls(base_url=base_url, api_key=password or "EMPTY", **values)


def from_airflow(conn_id: str = CONN_ID) -> LLMSettings:
    """Read the connection through Airflow (metastore, secrets backend or AIRFLOW_CONN_*)."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(conn_id)
    return LLMSettings.from_connection(conn.host, conn.password, conn.port, conn.schema, conn.extra)
