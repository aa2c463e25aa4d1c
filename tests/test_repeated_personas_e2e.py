"""Regression (issue 19): a model that repeats a persona must not fail the run.

Classify answers with a persona list that repeats one persona as it is and in another
spelling ("a student learning about math" twice, then "A STUDENT LEARNING ABOUT MATH."),
which is valid against the classify schema. Before the fix, `generate` built two pairs with the same key
and the shard's write failed on the primary key, three times, failing the run.
"""

from __future__ import annotations

import json

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from support.db import query

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("repeated_personas")]


def repeat_first_persona(default: dict, request: dict) -> dict:
    if len(default["personas"]) < 2:  # the fused layout's reply for an unqualified document
        return default
    first, second = default["personas"][:2]
    return {**default, "personas": [first, first, first.upper() + ".", second]}


@pytest.mark.parametrize(("layout", "task"), [("method", "classify"), ("fused", "filter_classify")])
def test_repeated_persona_run_succeeds_with_one_pair_per_distinct_persona(
    sample_data_dir, fake_llm, layout, task
):
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]
    fake_llm.script(task, repeat_first_persona)
    run = dag.test(
        run_conf={
            "corpus": "sample",
            "max_docs": 24,
            "max_personas": 4,
            "run_label": f"repeats ({layout})",
            "call_layout": layout,
        }
    )
    assert str(run.state) == "success"
    run_id = run.run_id

    classified = query(
        sample_data_dir,
        """SELECT c.doc_id, c.personas, c.personas_dropped FROM classify c
                                           JOIN run_docs r USING (doc_id) WHERE r.run_id = ? AND c.status = 'kept'""",
        [run_id],
    )
    assert classified, "the sample must reach classify"
    raw_personas = [
        json.loads(r)["personas"]
        for (r,) in query(
            sample_data_dir,
            "SELECT result FROM llm_calls WHERE prompt_id = ? AND run_id = ?",
            [f"{task}.v1", run_id],
        )
    ]
    raw_personas = [p for p in raw_personas if p]  # fused: no personas for rejected docs
    assert raw_personas and all(
        len(p) == 4 and p[0] == p[1] and p[2] == p[0].upper() + "." for p in raw_personas
    ), "the model did repeat"
    pairs = dict(
        query(
            sample_data_dir,
            "SELECT doc_id, list(persona ORDER BY persona_idx) FROM generate GROUP BY ALL",
        )
    )
    for doc_id, personas, dropped in classified:
        personas = json.loads(personas)
        assert dropped == 2 and len(personas) == 2
        assert personas[0].islower() and personas[0] != personas[1]
        assert pairs[doc_id] == personas, "one pair per distinct persona, in the model's order"
    assert query(sample_data_dir, "SELECT count(*) = count(DISTINCT qa_id) FROM generate") == [
        (True,)
    ]

    counts = json.loads(
        query(sample_data_dir, "SELECT counts FROM runs WHERE run_id = ?", [run_id])[0][0]
    )
    assert counts["conservation"]["violations"] == 0 and counts["conservation"]["work_set"] == 24
    assert query(
        sample_data_dir, "SELECT count(*) FROM doc_outcomes WHERE outcome = 'pending'"
    ) == [(0,)]
