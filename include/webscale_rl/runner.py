"""The generic stage runner: every registered stage runs and is gated through here.

For a stage with `input_sql` + `process`, the runner reads the shard's input rows, hands
them to the stage with a context (run, params, previous stage, shard, LLM settings), and
writes the rows it returns: to the warehouse, replacing rows by the stage's replace key,
or as staged Parquet when workers are remote. A stage with `run(ctx)` (state across runs)
does its own reads and writes. No Airflow here: `pipeline` wraps these in task steps.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from webscale_rl import gates, staging
from webscale_rl.llm import LLMSettings
from webscale_rl.stages import common, registry


def context(
    name: str,
    db_path: Path,
    run_id: str,
    params,
    shard: dict | None = None,
    llm: LLMSettings | None = None,
) -> common.StageContext:
    shard_range = (shard["lo"], shard["hi"]) if shard else common.WHOLE_RUN
    return common.StageContext(
        db_path=db_path,
        run_id=run_id,
        params=params,
        previous=registry.previous(name),
        shard=shard_range,
        llm=llm,
    )


def execute(name: str, ctx: common.StageContext) -> dict:
    """Run one stage (one shard of it, for a sharded stage); returns counts (XCom-safe)."""
    stage = registry.get(name)
    impl = stage.impl
    if not hasattr(impl, "process"):
        return impl.run(ctx)
    lo, hi = ctx.shard
    inputs = common.read_inputs(ctx.db_path, impl.input_sql(ctx.previous), ctx.run_id, lo, hi)
    rows = impl.process(inputs, ctx)
    staging.write_shard(ctx.db_path, name, rows, run_id=ctx.run_id, stage=name, part=lo)
    return {"stage": name, **common.shard_counts(rows, lo, hi)}


def gate_inputs(name: str, con, run_id: str, params) -> tuple[pd.DataFrame, list]:
    """The frame a stage's gate validates, and its expectations."""
    impl = registry.get(name).impl
    frame = impl.gate_frame(con, run_id, registry.previous(name))
    return frame, impl.gate_expectations(params, gates.rows_of(frame))
