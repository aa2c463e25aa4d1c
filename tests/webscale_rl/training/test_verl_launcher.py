"""The verl launcher: the job folder holds what verl's GRPO entry point reads, every override
names a key of verl 0.9.1's own config, and the Ray submission builds the right entrypoint."""

from __future__ import annotations

import importlib.util
import json
import shlex

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT
from webscale_rl.config import ConfigError
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages.export import VERL_SCHEMA
from webscale_rl.training import verl_launcher

VERL_CONFIG = yaml.safe_load(
    (ROOT / "tests" / "fixtures" / "verl" / "ppo_trainer.generated.yaml").read_text()
)


def has_key(config: dict, dotted: str) -> bool:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


@pytest.fixture
def export_dir(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    for split, n in (("train", 3), ("val", 1)):
        rows = [
            {
                "data_source": "webscale_rl",
                "prompt": [
                    {"role": "user", "content": f"Question {i}?\n\nAnswer on the last line."}
                ],
                "ability": "Math",
                "reward_model": {"style": "rule", "ground_truth": str(i)},
                "extra_info": {
                    "split": split,
                    "index": i,
                    "qa_id": f"q{i}",
                    "doc_id": "d",
                    "persona": "p",
                    "url": None,
                    "question": f"Question {i}?",
                    "answer": str(i),
                },
            }
            for i in range(n)
        ]
        pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), folder / f"{split}.parquet")
    return folder


@pytest.mark.unit
def test_reference_run_defaults_mirror_the_method():
    o = verl_launcher.reference_overrides()
    assert o["algorithm.adv_estimator"] == "grpo"
    assert o["actor_rollout_ref.model.path"] == "Qwen/Qwen2.5-3B"
    assert (
        o["actor_rollout_ref.rollout.n"],
        o["data.max_response_length"],
        o["data.train_batch_size"],
        o["actor_rollout_ref.actor.optim.lr"],
    ) == (16, 2560, 256, 5e-6)
    assert o["actor_rollout_ref.rollout.name"] == "vllm"


def override_is_valid(key: str) -> bool:
    """A plain override must name a key of verl's config; a "+" (append) override must not
    (Hydra refuses to append an existing key), but its parent must exist."""
    if not key.startswith("+"):
        return has_key(VERL_CONFIG, key)
    dotted = key[1:]
    return not has_key(VERL_CONFIG, dotted) and has_key(
        VERL_CONFIG, "reward.custom_reward_function"
    )


@pytest.mark.unit
def test_every_override_is_a_key_of_verls_config(export_dir, tmp_path):
    job = verl_launcher.prepare(
        export_dir, tmp_path / "job", judge_base_url="http://judge:8000/v1", judge_model="m"
    )
    missing = [key for key in job.overrides if not override_is_valid(key)]
    assert missing == []
    assert any(key.startswith("+") for key in job.overrides)
    # The fixture really is verl's config: its defaults are not the reference run's.
    assert (
        VERL_CONFIG["algorithm"]["adv_estimator"] == "gae"
        and VERL_CONFIG["data"]["reward_fn_key"] == "data_source"
    )
    assert not has_key(VERL_CONFIG, "actor_rollout_ref.rollout.num_rollouts")


@pytest.mark.unit
def test_job_folder_holds_verl_format_data_and_a_loadable_reward(export_dir, tmp_path):
    job = verl_launcher.prepare(
        export_dir, tmp_path / "job", overrides={"trainer.n_gpus_per_node": 4}, experiment="run-7"
    )
    folder = tmp_path / "job"
    train = pq.read_table(folder / job.overrides["data.train_files"])
    # The columns verl's RLHFDataset and reward manager read.
    assert set(train.column_names) >= {
        "data_source",
        "prompt",
        "ability",
        "reward_model",
        "extra_info",
    }
    row = train.to_pylist()[0]
    assert row["prompt"][0]["role"] == "user" and row["reward_model"]["ground_truth"] == "0"
    assert (
        row["data_source"] == "webscale_rl"
    )  # verl picks the reward by this column (data.reward_fn_key)
    # verl loads the reward by file path and calls compute_score(data_source, solution_str, ground_truth, extra_info).
    spec = importlib.util.spec_from_file_location(
        "custom_reward", folder / job.overrides["reward.custom_reward_function.path"]
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    score = getattr(module, job.overrides["reward.custom_reward_function.name"])
    assert (
        score(
            data_source="webscale_rl",
            solution_str="Some thought.\nAnswer: 0",
            ground_truth="0",
            extra_info=row["extra_info"],
        )
        == 1.0
    )
    assert score("webscale_rl", "Answer: 5", "0", None) == 0.0
    assert json.loads((folder / "config.json").read_text())["trainer.n_gpus_per_node"] == 4
    assert job.overrides["trainer.experiment_name"] == "run-7"


@pytest.mark.unit
def test_without_a_cluster_the_exact_command_is_printed(export_dir, tmp_path):
    job = verl_launcher.prepare(export_dir, tmp_path / "job")
    result = verl_launcher.by_hand(job)
    assert result["submitted"] is False
    argv = shlex.split(result["command"])
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert "algorithm.adv_estimator=grpo" in argv and "actor_rollout_ref.rollout.n=16" in argv
    assert "data.train_files=data/train.parquet" in argv and "trainer.logger=[console]" in argv
    assert "actor_rollout_ref.actor.use_kl_loss=true" in argv
    assert shlex.join(job.entrypoint) in (tmp_path / "job" / "run.sh").read_text()


@pytest.mark.unit
def test_an_export_smaller_than_one_train_batch_is_flagged(export_dir, tmp_path):
    """verl drops the last incomplete batch: 3 train rows under the reference batch of 256
    would train zero steps, which the launch result and the task log say."""
    job = verl_launcher.prepare(export_dir, tmp_path / "job")
    [warning] = verl_launcher.by_hand(job)["warnings"]
    assert "3 rows, fewer than data.train_batch_size 256" in warning and "0 steps" in warning
    small = verl_launcher.prepare(export_dir, tmp_path / "small", {"data.train_batch_size": 3})
    assert small.warnings == [] and verl_launcher.by_hand(small)["warnings"] == []


@pytest.mark.unit
def test_the_ray_job_ships_the_folder_and_runs_the_entrypoint_in_it(export_dir, tmp_path):
    """What goes to Ray's job API (submitted for real in tests/test_train_ray_e2e.py)."""
    job = verl_launcher.prepare(export_dir, tmp_path / "job", module="recipe.dapo.main_dapo")
    spec = job.ray_spec("http://ray-head:8265", "webscale-rl-run-7", {"launcher": "verl"})
    assert spec.working_dir == str(tmp_path / "job") and spec.submission_id == "webscale-rl-run-7"
    argv = shlex.split(spec.entrypoint)
    assert argv[:3] == ["python3", "-m", "recipe.dapo.main_dapo"] and argv[3:] == job.hydra_args
    assert "data.train_files=data/train.parquet" in argv  # relative to the working_dir
    assert spec.metadata == {"launcher": "verl"} and spec.env_vars == {}


@pytest.mark.unit
def test_a_module_that_is_not_a_dotted_name_is_refused(export_dir, tmp_path):
    for bad in ("", "verl.trainer.main_ppo; rm -rf /", "-m verl", "verl..x"):
        with pytest.raises(ConfigError, match="dotted Python module"):
            verl_launcher.prepare(export_dir, tmp_path / "job", module=bad)


@pytest.mark.e2e
def test_judge_settings_become_reward_kwargs_and_the_key_is_never_written(
    export_dir, tmp_path, monkeypatch
):
    monkeypatch.setenv("MY_JUDGE_KEY", "sk-judge-secret-123")
    server = FakeLLM(model="judge-model").start()
    try:
        job = verl_launcher.prepare(
            export_dir,
            tmp_path / "job",
            judge_base_url=server.base_url,
            judge_model="judge-model",
            judge_api_key_env="MY_JUDGE_KEY",
            overrides={"+reward.custom_reward_function.reward_kwargs.judge_max_calls": 500},
        )
        prefix = "+reward.custom_reward_function.reward_kwargs."
        kwargs = {
            key.removeprefix(prefix): value
            for key, value in job.overrides.items()
            if key.startswith(prefix)
        }
        assert kwargs == {
            "judge_base_url": server.base_url,
            "judge_model": "judge-model",
            "judge_api_key_env": "MY_JUDGE_KEY",
            "judge_max_calls": 500,
        }
        argv = shlex.split(job.ray_spec("http://ray-head:8265", "run-7").entrypoint)
        assert f"{prefix}judge_model=judge-model" in argv
        assert f"{prefix}judge_api_key_env=MY_JUDGE_KEY" in argv
        written = [
            (tmp_path / "job" / "config.json").read_text(),
            (tmp_path / "job" / "run.sh").read_text(),
            " ".join(argv),
            json.dumps(job.env_vars),
        ]
        assert not any("sk-judge-secret-123" in text for text in written)

        # What verl does with them: load the job's reward by path and call it with the
        # reward_kwargs as keywords (verl.trainer.ppo.reward._call_with_kwargs).
        spec = importlib.util.spec_from_file_location(
            "custom_reward", tmp_path / "job" / "reward.py"
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        result = module.compute_score(
            data_source="webscale_rl",
            solution_str="Answer: Smith, John",
            ground_truth="John Smith",
            extra_info={"question": "Who?"},
            **kwargs,
        )
        assert result == {"score": 1.0, "decided_by": "judge", "judge_error": ""}
        assert server.stats["last_authorization"] == "Bearer sk-judge-secret-123"
    finally:
        server.stop()


@pytest.mark.unit
def test_without_judge_settings_there_are_no_reward_kwargs(export_dir, tmp_path):
    job = verl_launcher.prepare(export_dir, tmp_path / "job")
    assert not [key for key in job.overrides if "reward_kwargs" in key]


@pytest.mark.unit
def test_inconsistent_judge_settings_are_refused(export_dir, tmp_path):
    with pytest.raises(ValueError, match="judge_model"):
        verl_launcher.prepare(export_dir, tmp_path / "a", judge_base_url="http://judge/v1")
    with pytest.raises(ValueError, match="judge_base_url"):
        verl_launcher.prepare(export_dir, tmp_path / "b", judge_model="m")
    with pytest.raises(ValueError, match="NAME of an environment variable") as refused:
        verl_launcher.prepare(
            export_dir,
            tmp_path / "c",
            judge_base_url="http://judge/v1",
            judge_model="m",
            judge_api_key_env="sk-live-abc",
        )
    assert "sk-live-abc" not in str(refused.value)
    assert not (tmp_path / "a").exists()  # refused before anything is written
