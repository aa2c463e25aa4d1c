"""The verl launcher: the job folder holds what verl's GRPO entry point reads, every override
names a key of verl 0.9.1's own config, and the Ray submission builds the right entrypoint."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import ROOT
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


def test_every_override_is_a_key_of_verls_config(export_dir, tmp_path):
    job = verl_launcher.prepare(export_dir, tmp_path / "job")
    missing = [key for key in job.overrides if not has_key(VERL_CONFIG, key)]
    assert missing == []
    # The fixture really is verl's config: its defaults are not the reference run's.
    assert (
        VERL_CONFIG["algorithm"]["adv_estimator"] == "gae"
        and VERL_CONFIG["data"]["reward_fn_key"] == "data_source"
    )
    assert not has_key(VERL_CONFIG, "actor_rollout_ref.rollout.num_rollouts")


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


def test_without_a_cluster_the_exact_command_is_printed(export_dir, tmp_path):
    job = verl_launcher.prepare(export_dir, tmp_path / "job")
    result = verl_launcher.launch(job)
    assert result["submitted"] is False
    argv = shlex.split(result["command"])
    assert argv[:3] == ["python3", "-m", "verl.trainer.main_ppo"]
    assert "algorithm.adv_estimator=grpo" in argv and "actor_rollout_ref.rollout.n=16" in argv
    assert "data.train_files=data/train.parquet" in argv and "trainer.logger=[console]" in argv
    assert "actor_rollout_ref.actor.use_kl_loss=true" in argv
    assert shlex.join(job.entrypoint) in (tmp_path / "job" / "run.sh").read_text()


def test_ray_submission_ships_the_folder_and_runs_the_entrypoint(export_dir, tmp_path):
    job = verl_launcher.prepare(
        export_dir,
        tmp_path / "job",
        ray_address="http://ray-head:8265",
        submission_id="webscale-rl-run-7",
    )
    seen = []

    def fake_ray(cmd, **kwargs):  # stands in for the `ray` CLI, which is not installed here
        seen.append(cmd)
        return subprocess.CompletedProcess(
            cmd, 0, stdout="Job 'webscale-rl-run-7' submitted successfully", stderr=""
        )

    result = verl_launcher.launch(job, runner=fake_ray)
    cmd = seen[0]
    assert result["submitted"] is True and cmd[:3] == ["ray", "job", "submit"]
    assert cmd[cmd.index("--address") + 1] == "http://ray-head:8265"
    assert json.loads(cmd[cmd.index("--runtime-env-json") + 1])["working_dir"] == str(
        tmp_path / "job"
    )
    assert cmd[cmd.index("--submission-id") + 1] == "webscale-rl-run-7"
    assert cmd[cmd.index("--") + 1 :] == job.entrypoint

    def failing_ray(cmd, **kwargs):
        return subprocess.CompletedProcess(
            cmd, 1, stdout="", stderr="ConnectionError: could not reach ray-head"
        )

    with pytest.raises(RuntimeError, match="could not reach ray-head"):
        verl_launcher.launch(job, runner=failing_ray)
