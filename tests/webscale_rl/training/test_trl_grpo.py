"""The TRL launcher's pure helpers (prompt building, records, eval sets, metrics). They run in
the Airflow venv: the module imports torch/transformers/trl only inside its training functions."""

from __future__ import annotations

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webscale_rl.stages.export import ANSWER_INSTRUCTION, DATA_SOURCE, VERL_SCHEMA
from webscale_rl.training import trl_grpo
from webscale_rl.training.reward import compute_score, trl_reward


def verl_row(question: str, answer: str, index: int = 0, split: str = "train") -> dict:
    """One row exactly as export_run writes it."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": f"{question}\n\n{ANSWER_INSTRUCTION}"}],
        "ability": "science",
        "reward_model": {"style": "rule", "ground_truth": answer},
        "extra_info": {
            "split": split,
            "index": index,
            "qa_id": f"{index:08x}",
            "doc_id": "d1",
            "persona": "p",
            "url": "https://example.org",
            "question": question,
            "answer": answer,
        },
    }


@pytest.mark.e2e
def test_module_imports_without_torch():
    code = (
        "import sys, webscale_rl.training.trl_grpo; "
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'datasets') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.unit
def test_prompt_is_system_then_two_few_shot_turns_then_the_pairs_message():
    user = {"role": "user", "content": f"What is the boiling point?\n\n{ANSWER_INSTRUCTION}"}
    prompt = trl_grpo.build_prompt([user])
    assert [m["role"] for m in prompt] == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert prompt[0] == {"role": "system", "content": trl_grpo.SYSTEM_PROMPT}
    assert prompt[-1] == user
    assert prompt[-1] is not user  # copied, so the trainer's dataset never aliases the input


@pytest.mark.unit
def test_a_pairs_own_system_message_replaces_the_default():
    prompt = trl_grpo.build_prompt(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Q?"}]
    )
    assert prompt[0] == {"role": "system", "content": "Be terse."}
    assert [m["role"] for m in prompt].count("system") == 1
    assert prompt[-1] == {"role": "user", "content": "Q?"}


@pytest.mark.unit
def test_prompt_must_end_with_a_user_message():
    with pytest.raises(ValueError, match="must end with a user message"):
        trl_grpo.build_prompt(
            [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A"}]
        )


@pytest.mark.unit
def test_few_shot_answers_score_one_under_the_project_reward():
    """The demonstrations show a format the reward reads: each assistant turn's "Answer:"
    line scores 1.0 against its own answer and 0.0 against another."""
    answers = [m["content"] for m in trl_grpo.FEW_SHOT if m["role"] == "assistant"]
    assert len(answers) == 2
    assert compute_score(DATA_SOURCE, answers[0], "12") == 1.0
    assert compute_score(DATA_SOURCE, answers[1], "100") == 1.0
    assert compute_score(DATA_SOURCE, answers[1], "12") == 0.0
    assert "Answer: <answer>" in trl_grpo.SYSTEM_PROMPT and "Answer: <answer>" in ANSWER_INSTRUCTION


@pytest.mark.unit
def test_records_from_an_exported_parquet(tmp_path):
    path = tmp_path / "train.parquet"
    rows = [
        verl_row("In ___ Pearson introduced the term.", "1894", 0),
        verl_row("Hours in a day?", "24", 1),
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), path)
    records = trl_grpo.to_records(trl_grpo.read_parquet(path))
    assert [r["ground_truth"] for r in records] == ["1894", "24"]
    assert [r["qa_id"] for r in records] == ["00000000", "00000001"]
    assert records[0]["data_source"] == "webscale_rl"
    assert records[1]["prompt"][-1]["content"] == f"Hours in a day?\n\n{ANSWER_INSTRUCTION}"
    assert len(records[1]["prompt"]) == 6
    # the reward TRL calls reads the `ground_truth` column the launcher builds
    completions = [
        [{"role": "assistant", "content": "Pearson, 1894.\nAnswer: 1894"}],
        [{"role": "assistant", "content": "Answer: 12"}],
    ]
    assert trl_reward(completions, ground_truth=[r["ground_truth"] for r in records]) == [1.0, 0.0]


@pytest.mark.unit
def test_a_row_without_ground_truth_is_refused():
    row = verl_row("Q?", "x")
    row["reward_model"]["ground_truth"] = " "
    with pytest.raises(ValueError, match="ground_truth"):
        trl_grpo.to_records([row])


@pytest.mark.unit
def test_tiny_val_adds_labelled_train_rows():
    val = [{"i": i} for i in range(3)]
    train = [{"i": 100 + i} for i in range(40)]
    sets = trl_grpo.eval_sets(val, train, tiny=16)
    assert list(sets) == ["val", "train_first_16_seen_in_training"]
    assert sets["val"] == val
    assert [r["i"] for r in sets["train_first_16_seen_in_training"]] == list(range(100, 116))
    assert list(trl_grpo.eval_sets(val, train[:5], tiny=16)) == [
        "val",
        "train_first_5_seen_in_training",
    ]
    assert list(trl_grpo.eval_sets([{"i": i} for i in range(16)], train, tiny=16)) == ["val"]


@pytest.mark.unit
def test_accuracy_counts_full_scores_only():
    assert trl_grpo.accuracy([1.0, 0.0, 1.0, 0.0]) == 0.5
    assert trl_grpo.accuracy([1.0, 1.0, 0.0]) == 0.6667
    assert trl_grpo.accuracy([]) is None


@pytest.mark.unit
def test_step_rewards_keeps_one_entry_per_step_and_skips_the_summary():
    history = [
        {
            "loss": 0.0,
            "grad_norm": 0.0,
            "reward": 0.0,
            "reward_std": 0.0,
            "step_time": 14.8,
            "step": 1,
        },
        {
            "loss": 0.02,
            "grad_norm": 1.5,
            "reward": 0.25,
            "reward_std": 0.5,
            "completions/mean_length": 30.5,
            "step_time": 16.1,
            "step": 2,
        },
        {"train_runtime": 31.0, "train_loss": 0.01, "step": 2},
    ]
    steps = trl_grpo.step_rewards(history)
    assert [s["step"] for s in steps] == [1, 2]
    assert [s["reward"] for s in steps] == [0.0, 0.25]
    assert (
        steps[1]["reward_std"] == 0.5
        and steps[1]["grad_norm"] == 1.5
        and steps[1]["step_time_s"] == 16.1
    )
    assert steps[0]["completion_mean_length"] is None


@pytest.mark.unit
def test_reward_line_format():
    assert trl_grpo.reward_line(3, 0.25) == "step 3 reward 0.2500"
    assert (
        trl_grpo.reward_line(3, 0.25, 0.5, 16.14)
        == "step 3 reward 0.2500 reward_std 0.5000 (16.1s)"
    )


@pytest.mark.unit
def test_arguments_defaults_and_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("WEBSCALE_RL_DATA_DIR", str(tmp_path))
    args = trl_grpo.parse_args(["--train", "t.parquet", "--val", "v.parquet", "--out", "o"])
    assert (args.steps, args.batch_size, args.num_generations, args.max_completion_length) == (
        8,
        4,
        4,
        64,
    )
    assert args.model_dir is None
    assert trl_grpo.default_model_dir() == tmp_path / "models" / "smollm2-135m-instruct-hf"
    with pytest.raises(SystemExit):
        trl_grpo.parse_args(["--train", "t", "--val", "v", "--out", "o", "--steps", "0"])
    with pytest.raises(SystemExit):
        trl_grpo.parse_args(["--train", "t", "--val", "v", "--out", "o", "--batch-size", "6"])


@pytest.mark.unit
def test_peak_rss_is_a_positive_number_of_megabytes():
    assert 1 < trl_grpo.peak_rss_mb() < 1024 * 1024


@pytest.mark.unit
def test_the_reward_can_come_from_a_file_shipped_with_the_job(tmp_path):
    """A Ray job ships reward.py in its working_dir (--reward-file), as verl's job does."""
    import shutil

    from webscale_rl.training import reward

    shutil.copyfile(reward.__file__, tmp_path / "reward.py")
    shipped = trl_grpo.load_reward(tmp_path / "reward.py")
    assert shipped is not reward and shipped.__file__ == str(tmp_path / "reward.py")
    assert shipped.compute_score("webscale_rl", "Answer: 13", "13", judge_base_url="") == 1.0
    assert shipped.trl_reward(["Answer: 12"], ground_truth=["13"]) == [0.0]
    assert trl_grpo.load_reward(None) is reward

    (tmp_path / "partial.py").write_text("def compute_score(*a, **k):\n    return 0.0\n")
    with pytest.raises(SystemExit, match="defines no trl_reward"):
        trl_grpo.load_reward(tmp_path / "partial.py")
