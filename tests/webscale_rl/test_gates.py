"""Gates run real GX suites on DataFrames read from the warehouse."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from webscale_rl import gates
from webscale_rl.params import RunParams
from webscale_rl.stages import heuristic_filter


def frame(statuses, reasons) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "doc_id": [f"d{i}" for i in range(len(statuses))],
            "status": statuses,
            "reason": reasons,
            "value": [None] * len(statuses),
            "is_kept": [int(s == "kept") for s in statuses],
        }
    )


def kept_rate(low: float) -> RunParams:
    return RunParams(min_heuristic_kept_rate=low, max_heuristic_kept_rate=1.0)


def test_good_stage_output_passes_and_builds_data_docs(data_dir):
    df = frame(["kept", "kept", "rejected"], [None, None, "min_tokens"])
    result = gates.run_gate(
        "heuristic_filter",
        df,
        heuristic_filter.gate_expectations(kept_rate(0.1), len(df)),
        data_dir=data_dir,
        run_name="run-ok",
    )
    assert result.success and result.failures == [] and result.evaluated == 7
    assert (data_dir / "data_docs" / "index.html").exists()
    page = Path(result.docs_url.removeprefix("file://").replace("%3A", ":"))
    assert page.exists() and "run-ok" in str(page)
    assert gates.enforce(result) is result


def test_violations_fail_the_gate_with_plain_words(data_dir):
    df = frame(["kept", "rejected", "weird", None], [None, None, "x", None])
    df.loc[3, "doc_id"] = "d0"
    result = gates.run_gate(
        "heuristic_filter",
        df,
        heuristic_filter.gate_expectations(kept_rate(0.9), len(df)),
        data_dir=data_dir,
        run_name="run-bad",
    )
    assert not result.success
    text = "\n".join(result.failures)
    assert (
        "expect_column_values_to_be_unique(column='doc_id'): 2 of 4 rows violate it; examples: ['d0', 'd0']"
        in text
    )
    assert "expect_column_values_to_not_be_null(column='status')" in text
    assert "expect_column_values_to_be_in_set(column='status'" in text and "['weird']" in text
    assert (
        "expect_column_mean_to_be_between(column='is_kept', min_value=0.9, max_value=1.0): observed 0.25"
        in text
    )
    with pytest.raises(gates.GateFailed, match="gate heuristic_filter: FAILED"):
        gates.enforce(result)


def test_data_docs_index_lists_gates_of_earlier_runs(data_dir):
    df = frame(["kept"], [None])
    for run in ("first-run", "second-run"):
        gates.run_gate(
            "heuristic_filter",
            df,
            heuristic_filter.gate_expectations(kept_rate(0.0), 1),
            data_dir=data_dir,
            run_name=run,
        )
    index = (data_dir / "data_docs" / "index.html").read_text()
    assert "first-run" in index and "second-run" in index
