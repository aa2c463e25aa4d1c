"""The one LLM client every stage uses: an OpenAI-compatible server through `openai`."""

from webscale_rl.llm.client import LLMClient, LLMRequest, LLMResult, LLMUnavailable
from webscale_rl.llm.settings import DIALECTS, LLMSettings

__all__ = ["DIALECTS", "LLMClient", "LLMRequest", "LLMResult", "LLMSettings", "LLMUnavailable"]
