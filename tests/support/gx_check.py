"""Validate a frame against a stage's real GX expectations in one in-memory GX context.

The DAG's gates (webscale_rl.gates.run_gate) also write Data Docs to a file-backed project,
which costs about half a second per gate; property tests validate hundreds of frames, so
they run the same expectations through an ephemeral context built once per process."""

from __future__ import annotations

import itertools
from functools import lru_cache

import pandas as pd

from webscale_rl.gates import _describe_failure

_names = itertools.count()


@lru_cache(maxsize=1)
def _batch():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    asset = context.data_sources.add_pandas("frames").add_dataframe_asset("frame")
    return context, asset.add_batch_definition_whole_dataframe("whole")


def failures(frame: pd.DataFrame, expectations: list) -> list[str]:
    """Each failed expectation in the gate's own words; [] when the frame passes."""
    import great_expectations as gx

    context, batch = _batch()
    name = f"check-{next(_names)}"
    suite = context.suites.add(gx.ExpectationSuite(name=name, expectations=expectations))
    result = gx.ValidationDefinition(name=name, data=batch, suite=suite).run(
        batch_parameters={"dataframe": frame},
        result_format={"result_format": "COMPLETE", "partial_unexpected_count": 5},
    )
    context.suites.delete(name)
    return [_describe_failure(r, frame) for r in result.results if not r.success]
