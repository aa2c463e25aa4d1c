"""Run inside .venv-verl (verl 0.9.1 on the CPU), from a job folder that
`webscale_rl.training.verl_launcher.prepare` wrote, with the repository's include/ on
PYTHONPATH. verl's own code reads the job as a verl run would:

1. Hydra composes verl's `ppo_trainer` config with the job's overrides (config.json), as
   `python -m verl.trainer.main_ppo <overrides>` does; the model path alone is replaced by a
   local tokenizer (the cluster default is not on this machine);
2. verl's dataset class (`create_rl_dataset`, the trainer's own factory) loads
   data/train.parquet and data/val.parquet, and its collate function and sampler batch them;
3. verl's custom-reward loader (`get_custom_reward_fn`: the file and function the config
   names) scores answers, then verl's reward worker (`RewardLoopWorker`, the class Ray wraps
   as the reward actor, with its default `naive` manager) scores a tokenized batch.

Prints one JSON object with what it found. Usage:
    verl_check.py TOKENIZER_DIR CASES_JSON
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> None:
    tokenizer_dir, cases = sys.argv[1], json.loads(sys.argv[2])
    import torch
    import verl.trainer.config as verl_config
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from torchdata.stateful_dataloader import StatefulDataLoader
    from verl import DataProto
    from verl.experimental.reward_loop.reward_loop import RewardLoopWorker
    from verl.trainer.ppo.reward import get_custom_reward_fn
    from verl.trainer.ppo.utils import create_rl_dataset, create_rl_sampler
    from verl.utils import hf_tokenizer
    from verl.utils.dataset.rl_dataset import collate_fn
    from verl.utils.tokenizer import normalize_token_ids

    from webscale_rl.training.verl_launcher import VerlJob

    overrides = json.loads(Path("config.json").read_text())
    overrides["actor_rollout_ref.model.path"] = tokenizer_dir
    job = VerlJob(Path.cwd(), overrides)
    with initialize_config_dir(config_dir=os.path.dirname(verl_config.__file__), version_base=None):
        config = compose(config_name="ppo_trainer", overrides=job.hydra_args)
    tokenizer = hf_tokenizer(tokenizer_dir, trust_remote_code=False)

    out: dict = {"verl_data_config": OmegaConf.to_container(config.data, resolve=True)}
    datasets = {}
    for split, files in (("train", config.data.train_files), ("val", config.data.val_files)):
        ds = create_rl_dataset(files, config.data, tokenizer, None, is_train=split == "train")
        datasets[split] = ds
        items = [ds[i] for i in range(len(ds))]
        out[split] = {
            "dataset_class": f"{type(ds).__module__}.{type(ds).__name__}",
            "rows": len(ds),
            "data_source": sorted({it["data_source"] for it in items}),
            "ground_truths": [it["reward_model"]["ground_truth"] for it in items],
            "indexes": [int(it["index"]) for it in items],
            "extra_info_index": [int(it["extra_info"]["index"]) for it in items],
            "extra_info_keys": sorted(items[0]["extra_info"]) if items else [],
            "prompts": [list(it["raw_prompt"]) for it in items[:2]],
        }

    # The reward as the config names it (path + function), loaded by verl.
    score = get_custom_reward_fn(config)
    out["direct_scores"] = [
        score(data_source="webscale_rl", solution_str=sol, ground_truth=truth, extra_info={})
        for sol, truth in cases
    ]

    # A batch as the trainer builds it, scored by verl's reward worker: rows alternately
    # answered right ("Answer: <ground truth>") and wrong.
    train = datasets["train"]
    size = min(4, len(train))
    loader = StatefulDataLoader(
        dataset=train,
        batch_size=size,
        num_workers=0,
        drop_last=True,
        collate_fn=collate_fn,
        sampler=create_rl_sampler(config.data, train),
    )
    batch = next(iter(loader))
    truths = [r["ground_truth"] for r in batch["reward_model"]]
    solutions = [
        f"Let me think.\nAnswer: {t}" if i % 2 == 0 else "Let me think.\nAnswer: zzz-wrong"
        for i, t in enumerate(truths)
    ]
    pad, p_len, r_len = tokenizer.pad_token_id, 96, 32
    prompts, responses, masks = [], [], []
    for messages, solution in zip(batch["raw_prompt"], solutions, strict=True):
        ids = normalize_token_ids(
            tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=True)
        )[-p_len:]
        resp = tokenizer(solution + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        resp = resp[:r_len]
        prompts.append([pad] * (p_len - len(ids)) + ids)
        responses.append(resp + [pad] * (r_len - len(resp)))
        masks.append(
            [0] * (p_len - len(ids)) + [1] * len(ids) + [1] * len(resp) + [0] * (r_len - len(resp))
        )
    tensors = {
        "prompts": torch.tensor(prompts),
        "responses": torch.tensor(responses),
        "attention_mask": torch.tensor(masks),
    }
    tensors["input_ids"] = torch.cat([tensors["prompts"], tensors["responses"]], 1)
    non_tensors = {k: v for k, v in batch.items() if not isinstance(v, torch.Tensor)}
    worker = RewardLoopWorker(config, reward_router_address=None)
    scored = worker.loop.run_until_complete(
        worker.compute_score_batch(DataProto.from_dict(tensors=tensors, non_tensors=non_tensors))
    )
    out["worker"] = {
        "reward_manager": type(worker.reward_manager).__name__,
        "truths": truths,
        "solutions": solutions,
        "scores": [float(s["reward_score"]) for s in scored],
    }
    print("VERL_CHECK " + json.dumps(out, default=str))


if __name__ == "__main__":
    main()
