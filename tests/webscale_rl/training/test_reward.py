"""The verifiable RL reward: answer extraction, normalisation, matching, verl and TRL entry points."""

from __future__ import annotations

import ast
import importlib.util
import sys
import time

import pytest

from webscale_rl.training import reward
from webscale_rl.training.reward import (
    compute_score,
    extract_answer,
    is_match,
    normalize,
    trl_reward,
)

pytestmark = pytest.mark.unit

LONG_PARAGRAPH = (
    "The river rises in the northern hills and flows for many kilometres through farmland, "
    "small towns and a narrow gorge before it finally reaches the sea near the old harbour."
)


def _binary(value) -> bool:
    return type(value) is float and value in (0.0, 1.0)


# --- extraction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("The bridge is 1,864 metres long.\nAnswer: 1864 m", "1864 m"),
        ("**Answer:** Kessel River", "Kessel River"),
        ("**Answer**: Kessel River", "Kessel River"),
        ("Reasoning...\n### Final Answer: 42", "42"),
        ("The final answer is: 42", "42"),
        ("ANSWER: yes", "yes"),
        ("Answer：東京", "東京"),
        ("Ａｎｓｗｅｒ：１２", "12"),
        ("Work.\n**Final Answer:**\n\n$\\boxed{42}$", "42"),
        ("Answer: 12\nWait, let me recheck the sum.\nAnswer: 13", "13"),
        ("Answer: 12\nAnswer: 13\nI double-checked this.", "13"),
        ("Answer: $\\boxed{7}$.", "7"),
        ("Answer: `Paris`", "Paris"),
        ("Answer: Paris.<|im_end|>", "Paris"),
        ("So we get \\boxed{\\frac{1}{2}} in the end.", "\\frac{1}{2}"),
        ("First \\boxed{1}, then corrected: \\boxed{ 2 }", "2"),
        ("Truncated \\boxed{3} then \\boxed{\\frac{1}{", "3"),
        ("The total is 12 + 30.\n\nSo the answer is 42.", "42"),
        ("<answer>Paris</answer>", "Paris"),
        ("<think>Maybe Answer: 5?</think>\nAnswer: 6", "6"),
        ("<think>hmm</think>Lyon", "Lyon"),
        ("Paris.", "Paris"),
        ("Step 1: 3 * 4 = 12.\nStep 2: 12 * 10 = 120.\n120", "120"),
    ],
)
def test_extract_answer_finds_the_final_answer(completion, expected):
    assert extract_answer(completion) == expected


@pytest.mark.parametrize(
    "completion",
    [
        "",
        "   \n\t  \n",
        LONG_PARAGRAPH,
        "Some thoughts.\n\n" + LONG_PARAGRAPH,
        "<think>Answer: 5, but I am still thinking about whether",  # reasoning never closed
        "<think>done</think>   \n",
        "Answer:",
        "**Answer:**\n\n",
        None,
        42,
    ],
)
def test_extract_answer_returns_none_without_an_answer(completion):
    assert extract_answer(completion) is None


# --- normalisation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Kessel River.", "kessel river"),
        ("An apple a day", "apple day"),
        ("The The", "the the"),  # only articles: kept rather than emptied
        ("1,864", "1864"),
        ("1,864,000.5", "1864000.5"),
        ("1\u00a0864", "1864"),  # non-breaking space as thousands separator
        ("1\u202f864", "1864"),  # narrow no-break space
        ("1  864", "1 864"),  # two spaces are not a separator
        ("1,2,3", "1 2 3"),
        ("３.５０", "3.50"),  # full-width digits
        ("\u0661\u0662", "12"),  # Arabic-Indic digits
        ("Zürich", "zurich"),
        ("Øresund", "oresund"),
        ("STRAẞE", "strasse"),
        ("−5", "-5"),
        ("well-known", "well known"),
        ("x-5", "x 5"),
        ("(-5)", "-5"),
        ("3.5.", "3.5"),
        (".5", ".5"),
        ("45%", "45 percent"),
        ("-3.5 °C", "-3.5 degree c"),
        ("$5 million", "dollar 5 million"),
        ("Johnson & Johnson", "johnson and johnson"),
        ("O'Brien’s", "obriens"),
        ("21st century", "21 century"),
        ("500 B.C.", "500 bc"),
        ("$\\frac{3}{4}$", "3/4"),
        ("\\text{Paris}", "paris"),
        ("1{,}864\\,m", "1864 m"),
        ("", ""),
        ("   ", ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


# --- matching ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [
        ("1864 m", "1,864 metres"),
        ("1,864 metres long", "1864 m"),
        ("1864", "1,864 metres"),
        ("330 m", "330"),
        ("about 330 metres", "330 m"),
        ("3.50", "3.5"),
        ("3.5", "3.50"),
        ("12.0000001", "12"),
        ("0", "0.0"),
        ("0.5", "1/2"),
        ("½", "0.5"),
        ("\\frac{1}{2}", "0.5"),
        ("12", "1.2e1"),
        ("-5", "−5"),
        ("minus 5", "-5"),
        ("-3.5 degrees Celsius", "−3.5 °C"),
        ("the Kessel River", "Kessel river"),
        ("KESSEL RIVER.", "The Kessel River"),
        ("Zurich", "Zürich"),
        ("ZÜRICH", "zurich"),
        ("１２", "12"),
        ("1\u00a0864", "1864"),
        ("1\u202f864 m", "1,864 m"),
        ("New\u00a0York", "New York"),
        ("45 percent", "45%"),
        ("45 per cent", "45%"),
        ("45", "45%"),
        ("1.2 million", "1,200,000"),
        ("1,200,000", "1.2 million"),
        ("5 million dollars", "$5 million"),
        ("$5,000,000", "5 million USD"),
        ("three", "3"),
        ("3", "three"),
        ("twenty-five", "25"),
        ("March 12, 1887", "12 March 1887"),
        ("1887-03-12", "12 March 1887"),
        ("12th March 1887", "March 12, 1887"),
        ("Mar 1887", "March 1887"),
        ("May 12", "12 May"),
        ("500 BCE", "500 BC"),
        ("44 B.C", "44 BC"),  # extraction already took the trailing period
        ("1066 A.D.", "1066 CE"),
        ("50 km/h", "50 kilometres per hour"),
        ("50 miles per hour", "50 mph"),
        ("100 m²", "100 square metres"),
        ("5 lbs", "5 pounds"),
        ("20 °C", "20 degrees centigrade"),
        ("7 inches", "7 in"),
        ("21st", "21"),
        ("Apollo 11", "apollo 11"),
        ("One Direction", "One Direction"),
    ],
)
def test_is_match_accepts_equivalent_answers(prediction, truth):
    assert is_match(prediction, truth) is True


@pytest.mark.parametrize(
    ("prediction", "truth"),
    [
        ("120", "12"),
        ("12", "120"),
        ("1", "10"),
        ("Paris Hilton", "Paris"),
        ("Paris", "Paris Hilton"),
        ("Kessel", "Kessel River"),
        ("5", "-5"),
        ("-5", "5"),
        ("3.51", "3.5"),
        ("3,5", "3.5"),  # decimal comma is not read as a decimal point
        ("0.45", "45%"),
        ("1864 feet", "1864 m"),
        ("50 mph", "50 km/h"),
        ("12", "12 May"),
        ("1.864 km", "1864 m"),  # no unit conversion
        ("5 million euros", "$5 million"),
        ("12 million", "12"),
        ("12 or 120", "12"),
        ("12 to 15", "12"),
        ("12 and a half", "12"),
        ("more than 12", "12"),
        ("500", "500 BC"),
        ("500 BC", "500"),
        ("1", "One Direction"),
        ("13 March 1887", "12 March 1887"),
        ("March 1887", "12 March 1887"),
        ("Bern", "Zürich"),
        ("", "Paris"),
        ("   ", "Paris"),
        ("Paris", ""),
        ("the", "Paris"),
        ("1864 m", "The bridge over the Kessel River"),
    ],
)
def test_is_match_rejects_wrong_answers(prediction, truth):
    assert is_match(prediction, truth) is False


def test_relative_tolerance_is_configurable():
    assert is_match("3.14", "3.14159") is False
    assert is_match("3.14", "3.14159", rel_tol=1e-3) is True
    assert is_match("1000001", "1000000") is True  # within the default 1e-6
    assert is_match("1000002", "1000000") is False


@pytest.mark.parametrize(
    ("prediction", "truth", "threshold", "expected"),
    [
        ("Kessel River valley", "Kessel River", None, False),  # off by default
        ("Kessel River valley", "Kessel River", 0.8, True),  # F1 = 0.8
        ("Kessel River valley", "Kessel River", 0.9, False),
        ("Paris Hilton", "Paris", 0.5, True),
        ("Apollo 12 mission", "Apollo 11 mission", 0.5, False),  # number tokens must agree
        ("1865 m", "1864 m", 0.1, False),  # quantities never fall back to F1
        ("12 May 1887", "12 March 1887", 0.1, False),  # nor do dates
    ],
)
def test_token_f1_fallback(prediction, truth, threshold, expected):
    assert is_match(prediction, truth, f1_threshold=threshold) is expected


# --- verl entry point ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("solution", "truth", "expected"),
    [
        ("The bridge is 1,864 metres long.\nAnswer: 1864 m", "1,864 metres", 1.0),
        ("The bridge is 1,864 metres long.\nAnswer: 1864 m", "1864 feet", 0.0),
        ("First 12 + 5 = 17, then 17 * 2 = 34.\nAnswer: 34", "34", 1.0),
        ("First 12 + 5 = 17, then 17 * 2 = 34.\nAnswer: 34", "17", 0.0),
        ("Answer: 17\nOops, I forgot to double it.\nAnswer: 34", "34", 1.0),
        ("Answer: 17\nOops, I forgot to double it.\nAnswer: 34", "17", 0.0),
        ("Answer: The Kessel River", "Kessel river", 1.0),
        ("Answer: Paris Hilton", "Paris", 0.0),
        ("Answer: 120", "12", 0.0),
        ("The temperature fell to −12 °C.\nAnswer: -12 degrees Celsius", "-12 °C", 1.0),
        ("Answer: 12 degrees Celsius", "-12 °C", 0.0),
        ("Answer: 3.50", "3.5", 1.0),
        ("Thus $x = \\boxed{\\frac{1}{2}}$.", "0.5", 1.0),
        ("Thus $x = \\boxed{\\text{Kessel {River}}}$.", "Kessel River", 1.0),
        ("Answer: Zurich", "Zürich", 1.0),
        ("Answer: １２", "12", 1.0),
        ("Answer: 1\u00a0864\u00a0m", "1,864 metres", 1.0),
        ("", "Paris", 0.0),
        ("   \n ", "Paris", 0.0),
        (LONG_PARAGRAPH, "sea", 0.0),
        ("<think>The answer is Paris", "Paris", 0.0),
    ],
)
def test_compute_score(solution, truth, expected):
    score = compute_score("webscale_rl", solution, truth, {"split": "train", "index": 0})
    assert _binary(score)
    assert score == expected


def test_compute_score_takes_verls_keyword_call_and_extra_kwargs():
    score = compute_score(
        data_source="webscale_rl",
        solution_str="Answer: 1,864 m",
        ground_truth="1864 metres",
        extra_info=None,
    )
    assert score == 1.0
    # newer verl passes reward_kwargs through; unknown ones are ignored
    assert (
        compute_score("webscale_rl", "Answer: 1,864 m", "1864 metres", None, some_flag=True) == 1.0
    )
    assert (
        compute_score("x", "Answer: Kessel River valley", "Kessel River", None, f1_threshold=0.8)
        == 1.0
    )


@pytest.mark.parametrize(
    ("solution", "truth", "expected"),
    [
        ("Answer: 1864", 1864, 1.0),
        ("Answer: 3.5", 3.5, 1.0),
        ("Answer: New York City", ["NYC", "New York City"], 1.0),
        ("Answer: Boston", ["NYC", "New York City"], 0.0),
        ("Answer: Paris", None, 0.0),
        ("Answer: True", True, 0.0),
        (None, "Paris", 0.0),
        (["Answer: Paris"], "Paris", 0.0),
    ],
)
def test_compute_score_odd_inputs_stay_binary(solution, truth, expected):
    score = compute_score("webscale_rl", solution, truth)
    assert _binary(score)
    assert score == expected


def _all_cases():
    for mark in (
        "test_is_match_accepts_equivalent_answers",
        "test_is_match_rejects_wrong_answers",
        "test_extract_answer_finds_the_final_answer",
    ):
        test = globals()[mark]
        for args in test.pytestmark[0].args[1]:
            yield args


def test_every_case_scores_exactly_zero_or_one():
    for a, b in _all_cases():
        for solution, truth in ((a, b), (f"Answer: {a}", b), (b, a), (a, a)):
            assert _binary(compute_score("webscale_rl", solution, truth))


# --- TRL entry point -----------------------------------------------------------------------


def test_trl_reward_standard_format():
    completions = ["Reasoning: 3 * 4 = 12.\nAnswer: 12", "Answer: 120", "no idea at all", "", "   "]
    scores = trl_reward(completions, ground_truth=["12"] * 5, prompts=["q"] * 5)
    assert scores == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert all(_binary(s) for s in scores)


def test_trl_reward_conversational_format_scores_last_assistant_message():
    completions = [
        [{"role": "assistant", "content": "Answer: Paris"}],
        [{"role": "assistant", "content": "Answer: Lyon"}],
        [
            {"role": "assistant", "content": "Answer: Lyon"},
            {"role": "tool", "content": "Answer: Paris"},
            {"role": "assistant", "content": "Checked.\nAnswer: Paris"},
        ],
        [
            {"role": "assistant", "content": "Answer: Paris"},
            {"role": "user", "content": "Answer: Lyon"},
        ],
        [{"role": "assistant", "content": [{"type": "text", "text": "Answer: Paris"}]}],
        [],
        [{"role": "assistant", "content": None}],
    ]
    scores = trl_reward(completions, ground_truth=["Paris"] * len(completions))
    assert scores == [1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    assert all(_binary(s) for s in scores)


def test_trl_reward_reads_the_verl_export_columns():
    completions = ["Answer: 1864 m", "Answer: 1865 m"]
    reward_model = [{"style": "rule", "ground_truth": "1,864 metres"}] * 2
    assert trl_reward(completions, reward_model=reward_model, prompts=["q", "q"]) == [1.0, 0.0]
    extra_info = [{"answer": "1,864 metres"}] * 2
    assert trl_reward(completions, extra_info=extra_info) == [1.0, 0.0]
    assert trl_reward(completions, answer=["1864", "1865"]) == [1.0, 1.0]


def test_trl_reward_rejects_misaligned_or_missing_ground_truth():
    with pytest.raises(ValueError, match="2 completions but 1"):
        trl_reward(["Answer: 1", "Answer: 2"], ground_truth=["1"])
    with pytest.raises(ValueError, match="ground_truth"):
        trl_reward(["Answer: 1"], prompts=["q"])


# --- the module loads in a bare training environment ---------------------------------------


@pytest.mark.parametrize(
    "hostile",
    [
        "\\boxed{" * 20000,
        "\\boxed{" + "{" * 100000,
        "$" * 100000,
        "Answer: " + "$" * 100000,
        "answer is " * 20000,
        "1," * 50000,
        "<think>" * 10000 + "</think>" * 10000,
    ],
)
def test_hostile_completions_score_zero_quickly(hostile):
    start = time.perf_counter()
    assert compute_score("webscale_rl", hostile, "12") == 0.0
    assert time.perf_counter() - start < 5


def test_reward_module_imports_only_the_standard_library():
    """At load time only the standard library; the one exception is the LLM judge's lazy
    `import openai` inside a function (the judge falls back when it is missing)."""
    tree = ast.parse(open(reward.__file__, encoding="utf-8").read())
    imported, lazy = set(), set()

    def visit(node, in_function: bool) -> None:
        names = set()
        if isinstance(node, ast.Import):
            names = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import: verl loads this file by path"
            names = {node.module.split(".")[0]}
        (lazy if in_function else imported).update(names)
        inside = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inside)

    visit(tree, False)
    assert imported - {"__future__"} <= sys.stdlib_module_names
    assert lazy - sys.stdlib_module_names == {"openai"}


def test_reward_module_loads_by_file_path_like_verl():
    spec = importlib.util.spec_from_file_location("custom_module", reward.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.compute_score("webscale_rl", "Answer: 1,864 m", "1864 metres", {}) == 1.0


@pytest.mark.parametrize(
    "answer",
    [
        "1" * 5000 + "/3",
        "3/" + "1" * 5000,
        "1" * 5000 + " May 2020",
        "May " + "1" * 5000,
        "2020 " + "1" * 5000 + " 12",
        "1" * 5000,
    ],
)
def test_a_completion_with_thousands_of_digits_scores_instead_of_crashing(answer):
    # int() refuses 4,300+ digits (ValueError): the reward raised and took the trainer down.
    for truth in ("5/3", "12 May 2020", "May 12", "2020 05 12"):
        assert compute_score("webscale_rl", f"<answer>{answer}</answer>", truth) == 0.0
