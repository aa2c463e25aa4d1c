"""A stage added with nothing but its module and a registry entry (issue 13): a toy document
stage between near-dedup and the LLM filter, registered in this test only, runs under
dag.test() as a mapped task with its gate, and reaches doc_outcomes, the conservation
check, the run counts and the dataset card, with no other code change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from support import toy_stage
from support.db import query
from webscale_rl.stages import registry

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("toy_stage")]
TOY = registry.Stage("toy_check", "doc", "kept by the toy check", "support.toy_stage")


def test_a_registered_toy_stage_runs_through_the_dag_gate_outcomes_conservation_and_card(
    sample_data_dir, fake_llm
):
    with registry.registered(TOY, before="llm_filter"):
        dag = DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]
        assert dag.get_task("toy_check").upstream_task_ids >= {"gate_near_dedup"}
        assert dag.get_task("llm_filter").upstream_task_ids >= {"gate_toy_check"}
        run = dag.test(
            run_conf={"corpus": "sample", "max_docs": 24, "max_personas": 2, "run_label": "toy"}
        )
        assert str(run.state) == "success"
        tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
        assert tasks["toy_check"] == tasks["gate_toy_check"] == "success"

        data, run_id = sample_data_dir, run.run_id
        deduped = {
            d
            for (d,) in query(
                data,
                """SELECT n.doc_id FROM near_dedup n JOIN run_docs r USING (doc_id)
                                               WHERE r.run_id = ? AND n.status = 'kept'""",
                [run_id],
            )
        }
        toy = dict(query(data, "SELECT doc_id, status FROM toy_check"))
        assert set(toy) == deduped, "the toy stage read exactly what near-dedup kept"
        rejected = {d for d in deduped if toy_stage.rejects(d)}
        assert rejected and rejected != deduped, "the sample gives the toy both outcomes"
        assert {d for d, s in toy.items() if s == "rejected"} == rejected
        filtered = {d for (d,) in query(data, "SELECT doc_id FROM llm_filter")}
        assert filtered == deduped - rejected, "the LLM filter read only what the toy stage kept"
        outcomes = query(
            data,
            "SELECT DISTINCT last_stage, outcome, reason FROM doc_outcomes WHERE doc_id IN "
            "(SELECT doc_id FROM toy_check WHERE status = 'rejected')",
        )
        assert outcomes == [("toy_check", "rejected", "toy_rejected")]

        counts = json.loads(query(data, "SELECT counts FROM runs WHERE run_id = ?", [run_id])[0][0])
        assert counts["conservation"]["violations"] == 0
        assert counts["toy_check"]["by_reason"] == {"toy_rejected": len(rejected)}
        [export_path] = query(
            data, "SELECT counts->>'$.export.path' FROM runs WHERE run_id = ?", [run_id]
        )[0]
        card = json.loads((Path(export_path) / "card.json").read_text())
        step = next(s for s in card["funnel"] if s.get("stage") == "toy_check")
        assert (step["step"], step["count"]) == (
            "kept by the toy check",
            len(deduped) - len(rejected),
        )
        stage = next(s for s in card["stages"] if s["stage"] == "toy_check")
        assert stage["reasons"][0]["reason"] == "toy_rejected" and stage["reasons"][0][
            "count"
        ] == len(rejected)
    assert "toy_check" not in registry.names()


def test_a_stage_cannot_be_registered_out_of_order():
    with pytest.raises(ValueError, match="document stages come first"):
        with registry.registered(
            registry.Stage("late", "doc", "late", "support.toy_stage"), before="verify"
        ):
            pass
    with pytest.raises(ValueError, match="registered already"):
        with registry.registered(
            registry.Stage("classify", "doc", "again", "support.toy_stage"), before="verify"
        ):
            pass
    assert "late" not in registry.names()
