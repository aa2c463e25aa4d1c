"""Run a registered stage in a test through the generic runner, as a DAG task would."""

from __future__ import annotations

from pathlib import Path

from webscale_rl import runner
from webscale_rl.llm import LLMSettings
from webscale_rl.params import RunParams

WHOLE = {"lo": "00000000", "hi": None}


def run(
    db: Path,
    run_id: str,
    name: str,
    llm: LLMSettings | None = None,
    shard: dict | None = None,
    **params,
) -> dict:
    """Stage `name` on one shard (a sharded stage: all doc_ids unless given) with the default
    params overridden by `params`."""
    ctx = runner.context(name, db, run_id, RunParams.from_params(params), shard or WHOLE, llm)
    return runner.execute(name, ctx)


def gate_inputs(con, run_id: str, name: str, **params):
    return runner.gate_inputs(name, con, run_id, RunParams.from_params(params))
