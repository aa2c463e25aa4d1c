"""The `verl` launcher: a GRPO job for a GPU cluster, written next to the dataset.

verl runs on Ray. This module writes a self-contained job folder —

    <out>/data/train.parquet, val.parquet   the export's verl-format files
    <out>/reward.py                         the reward (webscale_rl.training.reward, copied)
    <out>/config.json                       the Hydra overrides, for reading
    <out>/run.sh                            the command, for running by hand

— and hands `python3 -m verl.trainer.main_ppo <overrides>` to Ray's job API with the folder
as the job's working_dir when a cluster address is given (`ray_spec`, submitted and watched
by webscale_rl.training.ray_jobs), or gives the exact command to run by hand otherwise
(`by_hand`). `module` picks another verl entry point (a recipe's main, e.g.
`recipe.dapo.main_dapo`) that takes the same Hydra overrides. The defaults mirror the method's
reference run (Qwen2.5-3B, GRPO, 16 rollouts per prompt, rollout length 2560, batch 256,
lr 5e-6, binary reward); every key can be overridden. The keys are checked against the
config verl 0.9.1 ships (tests/fixtures/verl/).

The optional LLM judge (see webscale_rl.training.reward): `prepare(judge_base_url=...,
judge_model=..., judge_api_key_env=...)` adds Hydra overrides
`+reward.custom_reward_function.reward_kwargs.judge_*`, which verl hands to compute_score as
keywords ("+" because verl's config has no `reward_kwargs` key: Hydra refuses a plain
override of a key its config lacks). Other judge settings (judge_max_calls,
judge_timeout_s, ...) go in `overrides` the same way. Only the NAME of the API key's
environment variable is written; the key is never written to the folder, the command or the
Ray runtime env (whose env_vars Ray keeps with the job and shows on its dashboard). The reward workers read that variable from their own environment: set it where
the job runs (on the Ray nodes when they start, or in the shell that runs run.sh).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from webscale_rl.config import ConfigError
from webscale_rl.training import reward
from webscale_rl.training.ray_jobs import RayJobSpec

DEFAULT_MODULE = "verl.trainer.main_ppo"
# verl 0.9.1 passes reward.custom_reward_function.reward_kwargs to the reward as keywords;
# the key is not in its config, hence Hydra's "+" (append).
REWARD_KWARGS = "+reward.custom_reward_function.reward_kwargs."


def reference_overrides() -> dict[str, object]:
    """Hydra overrides for the method's reference GRPO run (dotted verl config keys)."""
    return {
        "algorithm.adv_estimator": "grpo",
        "algorithm.use_kl_in_reward": False,
        "data.train_batch_size": 256,
        "data.max_prompt_length": 1024,
        "data.max_response_length": 2560,
        "data.filter_overlong_prompts": True,
        "data.truncation": "error",
        "actor_rollout_ref.model.path": "Qwen/Qwen2.5-3B",
        "actor_rollout_ref.model.use_remove_padding": True,
        "actor_rollout_ref.actor.optim.lr": 5e-6,
        "actor_rollout_ref.actor.ppo_mini_batch_size": 64,
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu": 8,
        "actor_rollout_ref.actor.use_kl_loss": True,
        "actor_rollout_ref.actor.kl_loss_coef": 0.001,
        "actor_rollout_ref.actor.kl_loss_type": "low_var_kl",
        "actor_rollout_ref.actor.entropy_coeff": 0,
        "actor_rollout_ref.rollout.name": "vllm",
        "actor_rollout_ref.rollout.n": 16,
        "actor_rollout_ref.rollout.tensor_model_parallel_size": 1,
        "actor_rollout_ref.rollout.gpu_memory_utilization": 0.6,
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu": 16,
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu": 16,
        "trainer.critic_warmup": 0,
        "trainer.logger": ["console"],
        "trainer.project_name": "webscale_rl",
        "trainer.n_gpus_per_node": 8,
        "trainer.nnodes": 1,
        "trainer.save_freq": 50,
        "trainer.test_freq": 10,
        "trainer.total_epochs": 1,
    }


def _hydra_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def judge_overrides(
    base_url: str | None, model: str | None, api_key_env: str | None
) -> dict[str, str]:
    """The reward_kwargs overrides that turn the reward's LLM judge on; {} without a URL."""
    if not base_url:
        if model or api_key_env:
            raise ValueError("judge_model / judge_api_key_env need a judge_base_url")
        return {}
    if not model:
        raise ValueError("judge_base_url needs a judge_model (the reward does not guess one)")
    out = {REWARD_KWARGS + "judge_base_url": base_url, REWARD_KWARGS + "judge_model": model}
    if api_key_env:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            # Never echo it: it may be the key itself, given where its name belongs.
            raise ValueError("judge_api_key_env must be the NAME of an environment variable")
        out[REWARD_KWARGS + "judge_api_key_env"] = api_key_env
    return out


def check_module(module: str) -> str:
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module or ""):
        raise ConfigError(f"verl_module must be a dotted Python module name, got {module!r}")
    return module


@dataclass
class VerlJob:
    folder: Path
    overrides: dict[str, object]
    module: str = DEFAULT_MODULE
    env_vars: dict[str, str] = field(default_factory=dict)
    # What would make the job pointless or fail, found while preparing it (logged by the
    # task and returned by launch()).
    warnings: list[str] = field(default_factory=list)

    @property
    def hydra_args(self) -> list[str]:
        return [f"{key}={_hydra_value(value)}" for key, value in self.overrides.items()]

    @property
    def entrypoint(self) -> list[str]:
        return ["python3", "-m", self.module, *self.hydra_args]

    def ray_spec(
        self, address: str, submission_id: str, metadata: dict | None = None
    ) -> RayJobSpec:
        """The Ray job: the folder ships as the working_dir (data + reward), the entry point
        runs in it on the head node, whose `python3` must have verl."""
        return RayJobSpec(
            address=address,
            submission_id=submission_id,
            entrypoint=shlex.join(self.entrypoint),
            working_dir=str(self.folder),
            env_vars=dict(self.env_vars),
            metadata=dict(metadata or {}),
        )


def prepare(
    export_dir: Path,
    out_dir: Path,
    overrides: dict | None = None,
    experiment: str = "webscale_rl",
    module: str = DEFAULT_MODULE,
    judge_base_url: str | None = None,
    judge_model: str | None = None,
    judge_api_key_env: str | None = None,
) -> VerlJob:
    """Write the job folder for an export. Paths in the config are relative to the folder,
    which Ray ships as the job's working directory (or which you `cd` into).
    `judge_*`: the reward's optional LLM judge (module docstring); the key stays out."""
    judge = judge_overrides(judge_base_url, judge_model, judge_api_key_env)
    data = out_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        shutil.copyfile(export_dir / f"{split}.parquet", data / f"{split}.parquet")
    shutil.copyfile(Path(reward.__file__), out_dir / "reward.py")
    merged = reference_overrides()
    merged.update(
        {
            "data.train_files": "data/train.parquet",
            "data.val_files": "data/val.parquet",
            "reward.custom_reward_function.path": "reward.py",
            "reward.custom_reward_function.name": "compute_score",
            "trainer.experiment_name": experiment,
        }
    )
    merged.update(judge)
    merged.update(overrides or {})
    job = VerlJob(out_dir, merged, check_module(module))
    job.warnings += batch_warnings(data / "train.parquet", merged)
    (out_dir / "config.json").write_text(json.dumps(merged, indent=2))
    script = (
        "#!/usr/bin/env bash\n# Run from this folder on a GPU node with verl installed.\nset -euo pipefail\n"
        f'cd "$(dirname "$0")"\n{shlex.join(job.entrypoint)}\n'
    )
    (out_dir / "run.sh").write_text(script)
    (out_dir / "run.sh").chmod(0o755)
    return job


def batch_warnings(train_parquet: Path, overrides: dict) -> list[str]:
    """verl's train loader drops the last incomplete batch (drop_last): a train split with
    fewer rows than `data.train_batch_size` trains zero steps (verl 0.9.1, seen by loading
    an export with verl's own dataset and loader)."""
    import pyarrow.parquet as pq

    rows = pq.ParquetFile(train_parquet).metadata.num_rows
    batch = int(overrides.get("data.train_batch_size") or 0)
    if batch and rows < batch:
        return [
            f"the train split has {rows} rows, fewer than data.train_batch_size {batch}: verl "
            "drops the last incomplete batch, so this job would train 0 steps; set "
            f'verl_overrides {{"data.train_batch_size": N}} with N <= {rows} (and '
            "actor_rollout_ref.actor.ppo_mini_batch_size <= N)"
        ]
    return []


def by_hand(job: VerlJob) -> dict:
    """Without a cluster address: the exact command and where to run it."""
    return {
        "warnings": job.warnings,
        "submitted": False,
        "command": shlex.join(job.entrypoint),
        "folder": str(job.folder),
        "how": f"cd {job.folder} && ./run.sh   (on a node with verl and GPUs), or set ray_address",
    }
