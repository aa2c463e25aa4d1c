"""The run params are declared once: the trigger form, validation and the README table agree."""

from __future__ import annotations

import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT
from webscale_rl.config import ConfigError
from webscale_rl.params import PARAMS, RunParams, markdown_table

pytestmark = pytest.mark.unit


def test_readme_params_table_is_the_generated_one():
    assert markdown_table() in (ROOT / "README.md").read_text(), (
        "README's params table drifted: paste the output of `python -m webscale_rl.params`"
    )


def test_the_trigger_form_has_one_param_per_declaration_with_its_default_and_schema():
    dag = DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]
    form = dag.params
    assert list(form.keys()) == [p.name for p in PARAMS]
    for p in PARAMS:
        param = form.get_param(p.name)
        assert param.value == p.default
        assert {k: param.schema[k] for k in p.schema} == p.schema
        assert param.schema["title"] == p.title


def test_defaults_are_the_declared_ones_and_given_values_override():
    run_params = RunParams.from_params({"max_personas": 5, "unknown": 1, "run_label": None})
    assert run_params.max_personas == 5
    assert {p.name: getattr(run_params, p.name) for p in PARAMS if p.name != "max_personas"} == {
        p.name: p.default for p in PARAMS if p.name != "max_personas"
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_docs": -1}, "param 'max_docs': -1 is less than the minimum of 0"),
        ({"max_personas": 11}, "param 'max_personas': 11 is greater than the maximum of 10"),
        ({"shard_size": True}, "param 'shard_size': True is not of type 'integer'"),
        (
            {"call_layout": "batched"},
            "param 'call_layout': 'batched' is not one of ['fused', 'method']",
        ),
        (
            {"builtin_benchmarks": ["mmlu"]},
            "param 'builtin_benchmarks' at 0: 'mmlu' is not one of ['humaneval']",
        ),
        ({"models": {"generate": 3}}, "param 'models' at generate: 3 is not of type 'string'"),
        (
            {"models": {"export": "big"}},
            "param 'models' must map LLM stages ['llm_filter', 'classify', 'generate', "
            "'verify', 'learnability']; unknown: ['export']",
        ),
        (
            {"sampling": {"near_dedup": {"temperature": 1.0}}},
            "param 'sampling' must map LLM stages ['llm_filter', 'classify', 'generate', "
            "'verify', 'learnability']; unknown: ['near_dedup']",
        ),
        (
            {"sampling": {"generate": {"temperature": 3}}},
            "param 'sampling' at generate/temperature: 3 is greater than the maximum of 2",
        ),
        (
            {"sampling": {"generate": {"top_k": 5}}},
            "param 'sampling' at generate: Additional properties are not allowed",
        ),
        ({"max_answer_words": 0}, "param 'max_answer_words': 0 is less than the minimum of 1"),
        (
            {"demo_selection": "random"},
            "param 'demo_selection': 'random' is not one of ['per_document', 'per_domain']",
        ),
        (
            {"min_heuristic_kept_rate": 0.9, "max_heuristic_kept_rate": 0.5},
            "param 'min_heuristic_kept_rate' must not exceed max_heuristic_kept_rate",
        ),
        (
            {"heuristic_rule_overrides": {"min_tokenz": 5}},
            "param 'heuristic_rule_overrides': unknown heuristic rule",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_param(params, message):
    with pytest.raises(ConfigError) as refused:
        RunParams.from_params(params)
    assert str(refused.value).startswith(message)
