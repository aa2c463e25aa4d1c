"""The one answer-length policy: `max_answer_words` drives the generate prompts' wording, the
output schemas' maxLength, verify's rule and the dataset gate, so they cannot disagree."""

from __future__ import annotations

import pandas as pd
import pytest

from support import gx_check
from webscale_rl import answer_policy, prompts
from webscale_rl.answer_policy import CHARS_PER_WORD, AnswerPolicy
from webscale_rl.params import RunParams
from webscale_rl.stages import export, verify

pytestmark = pytest.mark.unit

DOC = "The Meridian Bridge opened in 1932 over the Kessel River and is 312 metres long."
QUESTION = "Which river does the Meridian Bridge, opened in 1932, cross?"


def dataset_frame(answer_words: int, answer_chars: int) -> pd.DataFrame:
    """One accepted pair's profile row, as export.dataset_frame profiles it."""
    return pd.DataFrame(
        {
            "qa_id": ["q1"],
            "qa_id_missing": [False],
            "has_benchmark": [False],
            "has_duplicate_of": [False],
            "domain": ["Other"],
            "answer_chars": [answer_chars],
            "answer_words": [answer_words],
            "duplicate_qa_ids": [0],
            "duplicate_questions": [0],
            "n_rows": [1],
        }
    )


@pytest.mark.parametrize("max_words", [1, 3, 5, 9])
def test_prompt_schema_verify_and_dataset_gate_take_their_limit_from_the_one_param(max_words):
    policy = answer_policy.from_params(RunParams.from_params({"max_answer_words": max_words}))
    assert (policy.max_words, policy.max_chars) == (max_words, CHARS_PER_WORD * max_words)

    # the prompts ask for it, in both layouts
    wording = f"at most {max_words} words ({CHARS_PER_WORD * max_words} characters at most)"
    method = prompts.generate_messages(DOC, "a civil engineer", [], policy)[0]["content"]
    fused = prompts.generate_pairs_messages(DOC, ["a civil engineer"], [], policy)[1]["content"]
    assert wording in " ".join(method.split()) and wording in " ".join(fused.split())

    # the schemas cut the answer there (a server enforcing the schema stops decoding)
    assert prompts.generate_schema(policy)["properties"]["answer"]["maxLength"] == policy.max_chars
    items = prompts.generate_pairs_schema(2, policy)["properties"]["pairs"]["items"]
    assert items["properties"]["answer"]["maxLength"] == policy.max_chars

    # verify's rule: the limit passes, one word more or one character more does not
    at_limit = " ".join(["Kessel"] * max_words)
    assert verify.rule_check(QUESTION, at_limit, policy, DOC + " " + at_limit) is None
    assert verify.rule_check(QUESTION, at_limit + " River", policy, DOC) == "answer_too_long"
    one_long_word = "K" * (policy.max_chars + 1)
    assert verify.rule_check(QUESTION, one_long_word, policy) == "answer_too_long"

    # the dataset gate: the same two bounds
    def gate(words: int, chars: int) -> list[str]:
        suite = export.dataset_expectations(1, min_pairs=1, policy=policy, work_set=1)
        return gx_check.failures(dataset_frame(words, chars), suite)

    assert gate(max_words, policy.max_chars) == []
    too_many_words = gate(max_words + 1, policy.max_chars)
    too_many_chars = gate(max_words, policy.max_chars + 1)
    assert len(too_many_words) == 1 and "answer_words" in too_many_words[0]
    assert len(too_many_chars) == 1 and "answer_chars" in too_many_chars[0]


def test_the_verify_gate_bounds_kept_answers_by_the_policy():
    params = RunParams.from_params({"max_answer_words": 2})
    bounds = [
        e.max_value
        for e in verify.gate_expectations(params, 1)
        if getattr(e, "column", None) == "answer_chars"
    ]
    assert bounds == [2 * CHARS_PER_WORD]


def test_violation_names_the_bound_it_breaks():
    policy = AnswerPolicy(2)
    assert policy.violation("312 metres") is None
    assert policy.violation("about 312 metres") == "3 words > 2"
    assert policy.violation("x" * 25) == "25 characters > 24"
    with pytest.raises(ValueError):
        AnswerPolicy(0)


def test_the_default_policy_is_the_methods_short_answer():
    policy = answer_policy.from_params(RunParams.from_params({}))
    assert (policy.max_words, policy.max_chars) == (5, 60)
