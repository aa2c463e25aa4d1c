"""verl's own code reads our export: the pipeline's exporter writes train/val Parquet, the
launcher prepares the verl job folder, and inside verl 0.9.1 (CPU, .venv-verl from
`make verl-venv`) verl's trainer config, dataset class, custom-reward loader and reward
worker load and score it (tests/webscale_rl/training/verl_check.py)."""

from __future__ import annotations

import json
import os
import subprocess

import pyarrow.parquet as pq
import pytest

from conftest import ROOT
from webscale_rl.stages.export import ANSWER_INSTRUCTION, DATA_SOURCE, write_sample_export
from webscale_rl.training import verl_launcher

pytestmark = pytest.mark.e2e

VERL_PYTHON = ROOT / ".venv-verl" / "bin" / "python"
TOKENIZER = ROOT / ".models" / "smollm2-135m-instruct"
PAIRS = ROOT / "data" / "sample_export" / "pairs.jsonl"
CHECK = ROOT / "tests" / "webscale_rl" / "training" / "verl_check.py"
CASES = [
    ["Nine plus four.\nAnswer: 13", "13"],
    ["Answer: 1989", "1989"],
    ["Answer: Zurich", "Bern"],
    ["<think>never finished", "13"],
    ["\\boxed{13}", "13"],
]


@pytest.fixture(scope="module")
def verl_run(tmp_path_factory):
    if not VERL_PYTHON.exists():
        pytest.skip(f"verl is not installed: run `make verl-venv` (it creates {VERL_PYTHON})")
    if not (TOKENIZER / "tokenizer.json").exists():
        pytest.skip(f"no local tokenizer at {TOKENIZER}: run `make vllm`")
    base = tmp_path_factory.mktemp("verl")
    write_sample_export(PAIRS, base / "exports")
    export = base / "exports" / "sample_handwritten"
    job = verl_launcher.prepare(export, base / "job")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "include"),
        # datasets' and verl's caches stay in the test's folder; nothing is downloaded
        "HF_HOME": str(base / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "VERL_CACHE_DIR": str(base / "verl-cache"),
    }
    done = subprocess.run(
        [str(VERL_PYTHON), str(CHECK), str(TOKENIZER), json.dumps(CASES)],
        cwd=job.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("VERL_CHECK ")]
    assert done.returncode == 0 and lines, done.stdout[-3000:] + done.stderr[-6000:]
    return json.loads(lines[-1].removeprefix("VERL_CHECK ")), export


def test_verls_dataset_class_loads_every_exported_row(verl_run):
    found, export = verl_run
    for split in ("train", "val"):
        rows = pq.read_table(export / f"{split}.parquet").to_pylist()
        got = found[split]
        assert got["dataset_class"] == "verl.utils.dataset.rl_dataset.RLHFDataset"
        # none dropped by verl's overlong-prompt filter at the launcher's max_prompt_length
        assert got["rows"] == len(rows) > 0
        assert got["data_source"] == [DATA_SOURCE]
        assert got["ground_truths"] == [r["reward_model"]["ground_truth"] for r in rows]
        # verl takes a row's index from extra_info.index, which the exporter numbers per split
        assert got["indexes"] == got["extra_info_index"] == [r["extra_info"]["index"] for r in rows]
        assert {"qa_id", "doc_id", "pass_rate", "question", "answer"} <= set(got["extra_info_keys"])
    first = found["train"]["prompts"][0]
    assert first[0]["role"] == "user" and first[0]["content"].endswith(ANSWER_INSTRUCTION)


def test_verls_reward_loader_and_worker_score_through_our_compute_score(verl_run):
    found, _ = verl_run
    # loaded by verl from the path and name the launcher wrote into the config
    assert found["direct_scores"] == [1.0, 1.0, 0.0, 0.0, 1.0]
    worker = found["worker"]
    assert worker["reward_manager"] == "NaiveRewardManager"
    assert worker["scores"] == [1.0 if i % 2 == 0 else 0.0 for i in range(len(worker["truths"]))]
