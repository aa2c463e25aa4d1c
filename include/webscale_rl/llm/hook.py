"""The Airflow hook behind the `webscale_rl_llm` connection type: its settings, and the UI's
Test button (GET /models on every replica, as the client's own health check)."""

from __future__ import annotations

from airflow.sdk import BaseHook

from webscale_rl.llm.settings import CONN_ID, LLMSettings
from webscale_rl.provider import CONN_TYPE, HOOK_NAME


class LLMServerHook(BaseHook):
    conn_name_attr = "llm_conn_id"
    default_conn_name = CONN_ID
    conn_type = CONN_TYPE
    hook_name = HOOK_NAME

    def __init__(self, llm_conn_id: str = CONN_ID, **kwargs) -> None:
        super().__init__(**kwargs)
        self.llm_conn_id = llm_conn_id

    def settings(self) -> LLMSettings:
        conn = self.get_connection(self.llm_conn_id)
        return LLMSettings.from_connection(
            conn.host, conn.password, conn.port, conn.schema, conn.extra
        )

    def test_connection(self) -> tuple[bool, str]:
        """(True, the models each replica serves) or (False, what failed, with the URL)."""
        from webscale_rl.llm.client import LLMClient, LLMUnavailable

        try:
            settings = self.settings()
        except ValueError as exc:  # a field the client cannot use: say which
            return False, str(exc)
        client = LLMClient(settings, db_path=None, run_id="connection-test")
        try:
            models, down = client._health()
        except LLMUnavailable as exc:
            return False, str(exc)
        served = ", ".join(models) or "no models"
        if down:
            return False, f"{', '.join(sorted(down))} did not answer; the others serve {served}"
        message = f"{len(settings.replica_urls)} replica(s) answer, serving {served}"
        missing = sorted({settings.model, *settings.stage_models.values()} - set(models))
        if missing and models:
            # llama.cpp's server answers any model name; vLLM refuses one it does not serve.
            message += f"; warning: the configured model(s) {missing} are not among them"
        return True, message
