"""The scripted OpenAI-compatible server: deterministic answers for every pipeline stage,
faults on demand. The test suite, the benchmarks and `make demo SCRIPTED=1` run against it.

    server.py   the HTTP server (chat completions, /models, vLLM-style /metrics, admin)
    answers.py  what it answers, per stage, computed from the request
    faults.py   which fault an attempt gets

Standard library only, and no other webscale_rl module: it stands for a model server.
"""

from webscale_rl.scripted_llm.faults import FAULT_KINDS
from webscale_rl.scripted_llm.server import CALL_HASH_HEADER, FakeLLM, spawn

__all__ = ["CALL_HASH_HEADER", "FAULT_KINDS", "FakeLLM", "spawn"]
