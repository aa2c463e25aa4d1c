"""Export: the run's accepted pairs (verified, decontaminated, deduplicated) as verl-style
Parquet (train/val) and plain JSONL.

Files go to $WEBSCALE_RL_DATA_DIR/exports/<run_id>/ and are replaced as a whole
(written to a temporary folder, then renamed), so a re-run never leaves a mix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from webscale_rl import warehouse
from webscale_rl.answer_policy import AnswerPolicy
from webscale_rl.config import run_folder_name
from webscale_rl.text import folded_words, words

ANSWER_INSTRUCTION = (
    'Think briefly, then give your final answer on the last line as "Answer: <answer>".'
)
DATA_SOURCE = "webscale_rl"
POLICY_PROMPT_ID = "export.prompt"  # the prompt a policy sees in training and evaluation


def policy_messages(question: str) -> list[dict]:
    """What the policy is asked for a pair: in the export's `prompt`, and by the
    learnability stage that measures the pass rate before export."""
    return [{"role": "user", "content": f"{question}\n\n{ANSWER_INSTRUCTION}"}]


VERL_SCHEMA = pa.schema(
    [
        ("data_source", pa.string()),
        ("prompt", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("ability", pa.string()),
        ("reward_model", pa.struct([("style", pa.string()), ("ground_truth", pa.string())])),
        (
            "extra_info",
            pa.struct(
                [
                    ("split", pa.string()),
                    ("index", pa.int64()),
                    ("qa_id", pa.string()),
                    ("doc_id", pa.string()),
                    ("persona", pa.string()),
                    ("url", pa.string()),
                    ("question", pa.string()),
                    ("answer", pa.string()),
                    # The policy's pass rate at the learnability stage (None: not measured).
                    ("pass_rate", pa.float64()),
                    ("pass_samples", pa.int64()),
                ]
            ),
        ),
    ]
)

ACCEPTED_SQL = """
SELECT qa_id, doc_id, persona, question, answer, domain, url, source_id, benchmark, duplicate_of,
       pass_rate, pass_samples
FROM accepted_pairs WHERE run_id = ? ORDER BY qa_id
"""


def split_of(qa_id: str, val_fraction: float) -> str:
    return "val" if int(qa_id[:8], 16) / 16**8 < val_fraction else "train"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


EXPORT_BATCH_ROWS = 20_000  # pairs read, and Parquet rows written, at a time


def accepted_pairs(db_path: Path, run_id: str) -> Iterator[dict]:
    """The run's accepted pairs in qa_id order, streamed from DuckDB in batches."""
    with warehouse.read(db_path) as con:
        reader = con.sql(ACCEPTED_SQL, params=[run_id]).to_arrow_reader(EXPORT_BATCH_ROWS)
        for batch in reader:
            yield from batch.to_pylist()


def export_run(db_path: Path, exports_dir: Path, run_id: str, val_fraction: float = 0.1) -> dict:
    return write_export(
        accepted_pairs(db_path, run_id), exports_dir / run_folder_name(run_id), run_id, val_fraction
    )


def _verl_row(p: dict, split: str, index: int) -> dict:
    return {
        "data_source": DATA_SOURCE,
        "prompt": policy_messages(p["question"]),
        "ability": p["domain"],
        "reward_model": {"style": "rule", "ground_truth": p["answer"]},
        "extra_info": {
            "split": split,
            "index": index,
            "qa_id": p["qa_id"],
            "doc_id": p["doc_id"],
            "persona": p["persona"],
            "url": p["url"],
            "question": p["question"],
            "answer": p["answer"],
            "pass_rate": p.get("pass_rate"),
            "pass_samples": p.get("pass_samples"),
        },
    }


def write_export(
    pairs: Iterable[dict], target: Path, run_id: str, val_fraction: float = 0.1
) -> dict:
    """Write pairs (qa_id, doc_id, persona, question, answer, domain, url), in qa_id order,
    as an export folder, replacing it as a whole. Streams: at most EXPORT_BATCH_ROWS rows
    per split are held at a time."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    counts = {"train": 0, "val": 0}
    pending: dict[str, list[dict]] = {"train": [], "val": []}
    writers = {s: pq.ParquetWriter(tmp / f"{s}.parquet", VERL_SCHEMA) for s in counts}

    def flush(split: str) -> None:
        if pending[split]:
            writers[split].write_table(pa.Table.from_pylist(pending[split], schema=VERL_SCHEMA))
            pending[split] = []

    try:
        with open(tmp / "qa.jsonl", "w", encoding="utf-8") as jsonl:
            for p in pairs:
                split = split_of(p["qa_id"], val_fraction)
                pending[split].append(_verl_row(p, split, counts[split]))
                counts[split] += 1
                if len(pending[split]) >= EXPORT_BATCH_ROWS:
                    flush(split)
                record = {k: p[k] for k in ("qa_id", "question", "answer", "domain", "persona")}
                record.update(
                    doc_id=p["doc_id"],
                    url=p["url"],
                    split=split,
                    pass_rate=p.get("pass_rate"),
                    pass_samples=p.get("pass_samples"),
                )
                jsonl.write(json.dumps(record, ensure_ascii=False) + "\n")
            for split in counts:
                flush(split)
    finally:
        for writer in writers.values():
            writer.close()
    manifest = {
        "run_id": run_id,
        "pairs": counts["train"] + counts["val"],
        "train": counts["train"],
        "val": counts["val"],
        "val_fraction": val_fraction,
        "format": "verl (data_source, prompt, ability, reward_model, extra_info)",
        "files": {
            name: _sha256(tmp / name) for name in ("train.parquet", "val.parquet", "qa.jsonl")
        },
    }
    (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return {**manifest, "path": str(target)}


def write_sample_export(
    pairs_jsonl: Path,
    exports_dir: Path,
    name: str = "sample_handwritten",
    val_fraction: float = 0.25,
) -> dict:
    """The bundled hand-written pairs (data/sample_export/pairs.jsonl) as an export, for
    training smoke runs on a machine with no pipeline export yet."""
    pairs = []
    for line in pairs_jsonl.read_text(encoding="utf-8").splitlines():
        if line.strip():
            p = json.loads(line)
            qa_id = hashlib.sha256(f"sample\n{p['question']}".encode()).hexdigest()
            pairs.append({"qa_id": qa_id, "doc_id": "", "persona": "", "url": None, **p})
    return write_export(
        sorted(pairs, key=lambda p: p["qa_id"]), exports_dir / name, name, val_fraction
    )


# --- the final dataset gate (before anything is exported) -----------------------------------


DATASET_BATCH_ROWS = 50_000
# The gate's word counts are checked against bounds far below this; counts above it read cap+1.
WORDS_CAP = 64


def dataset_frame(con, run_id: str):
    """The profile of the pairs the export would write, with the values the dataset gate
    checks: word counts and the folded question, by the same tokenizer the stages use, are
    computed here in batches of DATASET_BATCH_ROWS into a temporary table, so memory does
    not grow with the dataset."""
    from webscale_rl.stages.common import ANSWER_CHARS_CAP, profile_frame

    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dataset_items (qa_id VARCHAR, question_key VARCHAR,
           domain VARCHAR, has_benchmark BOOLEAN, has_duplicate_of BOOLEAN,
           answer_chars INTEGER, answer_words INTEGER)"""
    )
    # The pairs stream from a second cursor while the batches go in through this one.
    cursor = con.cursor()
    reader = cursor.sql(ACCEPTED_SQL, params=[run_id]).to_arrow_reader(DATASET_BATCH_ROWS)
    for batch in reader:
        pairs = batch.to_pydict()
        items = pa.table(
            {
                "qa_id": pairs["qa_id"],
                "question_key": [" ".join(folded_words(q or "")) for q in pairs["question"]],
                "domain": pairs["domain"],
                "has_benchmark": [b is not None for b in pairs["benchmark"]],
                "has_duplicate_of": [d is not None for d in pairs["duplicate_of"]],
                "answer_chars": [min(len(a or ""), ANSWER_CHARS_CAP + 1) for a in pairs["answer"]],
                "answer_words": [min(len(words(a or "")), WORDS_CAP + 1) for a in pairs["answer"]],
            }
        )
        con.register("_dataset_batch", items)
        con.execute("INSERT INTO _dataset_items SELECT * FROM _dataset_batch")
        con.unregister("_dataset_batch")
    cursor.close()
    try:
        return profile_frame(
            con,
            "SELECT * FROM _dataset_items",
            key="qa_id",
            measures={"duplicate_questions": "count(question_key) - count(DISTINCT question_key)"},
            measure_only=("question_key",),
        )
    finally:
        con.execute("DROP TABLE _dataset_items")


def dataset_expectations(
    rows: int,
    *,
    min_pairs: int,
    policy: AnswerPolicy,
    work_set: int,
) -> list:
    """No contamination, no duplicates, a domain from the list, answers within bounds, and
    at least `min_pairs` pairs (when the run had new documents at all)."""
    import great_expectations.expectations as gxe

    from webscale_rl.prompts import DOMAINS

    suite = [
        gxe.ExpectColumnValuesToBeInSet(column="qa_id_missing", value_set=[False]),
        gxe.ExpectColumnValuesToBeInSet(column="has_benchmark", value_set=[False]),
        gxe.ExpectColumnValuesToBeInSet(column="has_duplicate_of", value_set=[False]),
        gxe.ExpectColumnValuesToNotBeNull(column="domain"),
        gxe.ExpectColumnValuesToBeInSet(column="domain", value_set=list(DOMAINS)),
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_chars", min_value=1, max_value=policy.max_chars
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_words", min_value=1, max_value=policy.max_words
        ),
    ]
    if rows:
        suite += [
            gxe.ExpectColumnMaxToBeBetween(column="duplicate_qa_ids", max_value=0),
            gxe.ExpectColumnMaxToBeBetween(column="duplicate_questions", max_value=0),
        ]
    if work_set:  # a run with no new documents has nothing to export and nothing to gate on
        suite.append(gxe.ExpectColumnSumToBeBetween(column="n_rows", min_value=min_pairs))
    return suite
