"""Gates run real GX suites on stage profiles computed in DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest

from support.gx_check import failures
from webscale_rl import gates
from webscale_rl.params import RunParams
from webscale_rl.stages import common, heuristic_filter

pytestmark = pytest.mark.unit


def frame(statuses, reasons, doc_ids=None) -> pd.DataFrame:
    """The gate profile of a stage table holding these rows."""
    con = duckdb.connect()
    con.register(
        "stage_rows",
        pd.DataFrame(
            {
                "doc_id": doc_ids or [f"d{i}" for i in range(len(statuses))],
                "status": pd.Series(statuses, dtype=object),
                "reason": pd.Series(reasons, dtype=object),
            }
        ),
    )
    return common.profile_frame(
        con, "SELECT doc_id, status, reason FROM stage_rows", measures=common.STATUS_MEASURES
    )


def kept_rate(low: float) -> RunParams:
    return RunParams(min_heuristic_kept_rate=low, max_heuristic_kept_rate=1.0)


def test_good_stage_output_passes_and_builds_data_docs(data_dir):
    df = frame(["kept", "kept", "rejected"], [None, None, "min_tokens"])
    result = gates.run_gate(
        "heuristic_filter",
        df,
        heuristic_filter.gate_expectations(kept_rate(0.1), gates.rows_of(df)),
        data_dir=data_dir,
        run_name="run-ok",
    )
    assert result.success and result.failures == [] and result.evaluated == 7
    assert (data_dir / "data_docs" / "index.html").exists()
    page = Path(result.docs_url.removeprefix("file://").replace("%3A", ":"))
    assert page.exists() and "run-ok" in str(page)
    assert gates.enforce(result) is result


def test_violations_fail_the_gate_with_plain_words(data_dir):
    df = frame(
        ["kept", "rejected", "weird", None], [None, None, "x", None], ["d0", "d1", "d2", "d0"]
    )
    result = gates.run_gate(
        "heuristic_filter",
        df,
        heuristic_filter.gate_expectations(kept_rate(0.9), gates.rows_of(df)),
        data_dir=data_dir,
        run_name="run-bad",
    )
    assert not result.success
    text = "\n".join(result.failures)
    assert result.rows == 4
    assert (
        "expect_column_max_to_be_between(column='duplicate_doc_ids', max_value=0.0): observed 1"
        in text
    )
    assert "expect_column_values_to_not_be_null(column='status'): 1 of 4 rows violate it" in text
    assert "expect_column_values_to_be_in_set(column='status'" in text and "['weird']" in text
    assert (
        "expect_column_values_to_not_be_null(column='reason') where status!=\"kept\": 2 of 3"
        in text
    )
    assert (
        "expect_column_max_to_be_between(column='kept_rate', min_value=0.9, max_value=1.0): observed 0.25"
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


def test_a_profile_does_not_grow_with_the_items_and_failures_count_items():
    n = 10_000
    statuses = ["kept" if i % 10 == 0 else "rejected" for i in range(n)]
    reasons = [
        None if s == "kept" else ("min_tokens" if i % 2 else "bogus")
        for i, s in enumerate(statuses)
    ]
    df = frame(statuses, reasons)
    assert len(df) == 3 and gates.rows_of(df) == n  # kept, rejected/min_tokens, rejected/bogus
    text = "\n".join(failures(df, heuristic_filter.gate_expectations(kept_rate(0.5), n)))
    assert "value_set=['" in text and "4000 of 9000 rows violate it; examples: ['bogus']" in text
    assert "column='kept_rate'" in text and "observed 0.1" in text
