"""The bundled hand-written pairs become an export in the pipeline's own format, and that
export passes the training DAG's dataset gate."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from webscale_rl import gates
from webscale_rl.stages.export import ANSWER_INSTRUCTION, VERL_SCHEMA, write_sample_export
from webscale_rl.training import tasks

pytestmark = pytest.mark.unit

PAIRS = ROOT / "data" / "sample_export" / "pairs.jsonl"


def test_sample_export_has_the_pipelines_format_and_passes_the_training_gate(tmp_path):
    written = write_sample_export(PAIRS, tmp_path / "exports")
    source = [json.loads(line) for line in PAIRS.open()]
    folder = tmp_path / "exports" / "sample_handwritten"
    rows = (
        pq.read_table(folder / "train.parquet").to_pylist()
        + pq.read_table(folder / "val.parquet").to_pylist()
    )
    assert written["pairs"] == len(rows) == len(source) and written["val"] > 0
    assert pq.read_table(folder / "train.parquet").schema.equals(VERL_SCHEMA)
    assert sorted(r["reward_model"]["ground_truth"] for r in rows) == sorted(
        p["answer"] for p in source
    )
    assert all(r["prompt"][0]["content"].endswith(ANSWER_INSTRUCTION) for r in rows)
    frame = tasks.dataset_frame(folder)
    result = gates.run_gate(
        "training_data",
        frame,
        tasks.dataset_expectations(min_rows=len(source)),
        data_dir=tmp_path,
        run_name="t",
    )
    assert result.success, result.summary()
    failing = gates.run_gate(
        "training_data",
        frame,
        tasks.dataset_expectations(min_rows=len(source) + 1),
        data_dir=tmp_path,
        run_name="t2",
    )
    assert not failing.success
