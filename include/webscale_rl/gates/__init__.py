"""Great Expectations gates: validate a stage's output before the next stage may run.

A gate validates its stage's *profile*, computed in DuckDB (stages.common.profile_frame):
one row per distinct combination of the checked values with `n_rows`, the items it stands
for, and run-level measures, so the frame stays small however large the run. It goes
through GX's pandas path (GX 1.x's SQL datasource on a DuckDB file returns wrong results:
its metrics read results after the connection is closed). Failure messages count items,
not profile rows. Results are
kept in a file-backed GX project under $WEBSCALE_RL_DATA_DIR/gx so the Data Docs index in
$WEBSCALE_RL_DATA_DIR/data_docs lists every gate of every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from webscale_rl.errors import FatalError
from webscale_rl.warehouse import file_lock

log = logging.getLogger(__name__)
SITE_NAME = "webscale_rl"
DATASOURCE = "warehouse"


class GateFailed(FatalError):
    """A stage's output violated its expectation suite; the message lists each violation."""


@dataclass
class GateResult:
    stage: str
    success: bool
    rows: int
    failures: list[str] = field(default_factory=list)
    evaluated: int = 0
    docs_url: str | None = None

    def summary(self) -> str:
        head = (
            f"gate {self.stage}: {'PASSED' if self.success else 'FAILED'} "
            f"({self.evaluated - len(self.failures)}/{self.evaluated} expectations met on {self.rows} rows)"
        )
        lines = [head, *[f"  - {f}" for f in self.failures]]
        if self.docs_url:
            lines.append(f"  Data Docs: {self.docs_url}")
        return "\n".join(lines)


def _plain(value):
    """numpy scalars print as np.float64(...); log the plain number."""
    value = value.item() if hasattr(value, "item") else value
    return round(value, 4) if isinstance(value, float) else value


def rows_of(frame: pd.DataFrame) -> int:
    """The items a gate frame stands for: the sum of a profile's n_rows (else its length)."""
    return int(frame["n_rows"].sum()) if "n_rows" in frame.columns else len(frame)


def _item_counts(res: dict, frame: pd.DataFrame | None, condition) -> tuple:
    """(unexpected, checked) in items rather than profile rows, where the frame says how
    many items each row stands for; GX's own counts otherwise."""
    counts = (res.get("unexpected_count"), res.get("element_count"))
    index = res.get("unexpected_index_list")
    if frame is None or "n_rows" not in frame.columns or index is None:
        return counts
    try:
        checked = frame.query(condition) if condition else frame
        return int(frame.loc[list(index), "n_rows"].sum()), int(checked["n_rows"].sum())
    except Exception:  # an index or condition this frame cannot answer: GX's counts
        return counts


def _describe_failure(result, frame: pd.DataFrame | None = None) -> str:
    """One plain-words line for a failed expectation: what, on how many items, examples."""
    config = result.expectation_config
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id",)}
    condition = kwargs.pop("row_condition", None)
    kwargs.pop("condition_parser", None)
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    text = f"{config.type}({args})"
    filt = condition.get("pass_through_filter") if isinstance(condition, dict) else condition
    if filt:
        text += f" where {filt}"
    res = result.result or {}
    if res.get("unexpected_count") is not None:
        unexpected, checked = _item_counts(res, frame, filt)
        examples = [_plain(v) for v in list(res.get("partial_unexpected_list") or [])[:5]]
        text += f": {unexpected} of {checked} rows violate it; examples: {examples!r}"
    elif "observed_value" in res:
        text += f": observed {_plain(res['observed_value'])!r}"
    if result.exception_info and result.exception_info.get("raised_exception"):
        text += f" (error: {result.exception_info.get('exception_message')})"
    return text


def _context(gx_root: Path, docs_dir: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs every config save at INFO; keep task logs to the gate's own summary.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    sites = context.get_site_names()
    if SITE_NAME not in sites:
        context.add_data_docs_site(
            site_name=SITE_NAME,
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
    if "local_site" in sites:
        context.delete_data_docs_site("local_site")
    return context


def run_gate(
    stage: str,
    frame: pd.DataFrame,
    expectations: list,
    *,
    data_dir: Path,
    run_name: str,
) -> GateResult:
    """Validate `frame` against `expectations` (GX Expectation objects), update Data Docs.

    Returns the result; the caller decides to raise (see `enforce`).
    """
    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.run_identifier import RunIdentifier

    gx_root = data_dir / "gx"
    docs_dir = data_dir / "data_docs"
    gx_root.mkdir(parents=True, exist_ok=True)
    # The GX project is a set of files: one gate at a time may change it.
    with file_lock(gx_root / "project", exclusive=True):
        context = _context(gx_root, docs_dir)
        source = context.data_sources.add_or_update_pandas(DATASOURCE)
        asset = next(
            (a for a in source.assets if a.name == stage), None
        ) or source.add_dataframe_asset(stage)
        batch = next((b for b in asset.batch_definitions if b.name == "stage_table"), None)
        batch = batch or asset.add_batch_definition_whole_dataframe("stage_table")
        suite = context.suites.add_or_update(
            gx.ExpectationSuite(name=stage, expectations=expectations)
        )
        validation = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=stage, data=batch, suite=suite)
        )
        checkpoint = context.checkpoints.add_or_update(
            gx.Checkpoint(
                name=stage,
                validation_definitions=[validation],
                actions=[UpdateDataDocsAction(name="data_docs", site_names=[SITE_NAME])],
                result_format={"result_format": "COMPLETE", "partial_unexpected_count": 5},
            )
        )
        outcome = checkpoint.run(
            batch_parameters={"dataframe": frame}, run_id=RunIdentifier(run_name=run_name)
        )
        identifier, suite_result = next(iter(outcome.run_results.items()))
        urls = context.get_docs_sites_urls(resource_identifier=identifier, site_name=SITE_NAME)
    failures = [_describe_failure(r, frame) for r in suite_result.results if not r.success]
    return GateResult(
        stage=stage,
        success=bool(suite_result.success),
        rows=rows_of(frame),
        failures=failures,
        evaluated=len(suite_result.results),
        docs_url=(urls[0].get("site_url") if urls else None),
    )


def enforce(result: GateResult) -> GateResult:
    """Log the result in plain words; raise GateFailed when any expectation failed."""
    text = result.summary()
    if not result.success:
        log.error(text)
        raise GateFailed(text)
    log.info(text)
    return result
