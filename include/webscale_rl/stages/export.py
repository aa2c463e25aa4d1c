"""Export: the run's accepted pairs (verified, decontaminated, deduplicated) as verl-style
Parquet (train/val) and plain JSONL.

Files go to $WEBSCALE_RL_DATA_DIR/exports/<run_id>/ and are replaced as a whole
(written to a temporary folder, then renamed), so a re-run never leaves a mix.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from webscale_rl import warehouse
from webscale_rl.config import run_folder_name
from webscale_rl.text import folded_words, words

ANSWER_INSTRUCTION = (
    'Think briefly, then give your final answer on the last line as "Answer: <answer>".'
)
DATA_SOURCE = "webscale_rl"

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
                ]
            ),
        ),
    ]
)

ACCEPTED_SQL = """
SELECT qa_id, doc_id, persona, question, answer, domain, url, source_id, benchmark, duplicate_of
FROM accepted_pairs WHERE run_id = ? ORDER BY qa_id
"""


def split_of(qa_id: str, val_fraction: float) -> str:
    return "val" if int(qa_id[:8], 16) / 16**8 < val_fraction else "train"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def export_run(db_path: Path, exports_dir: Path, run_id: str, val_fraction: float = 0.1) -> dict:
    with warehouse.read(db_path) as con:
        pairs = con.execute(ACCEPTED_SQL, [run_id]).df().to_dict("records")
    return write_export(pairs, exports_dir / run_folder_name(run_id), run_id, val_fraction)


def write_export(pairs: list[dict], target: Path, run_id: str, val_fraction: float = 0.1) -> dict:
    """Write pairs (qa_id, doc_id, persona, question, answer, domain, url) as an export folder,
    replacing it as a whole."""
    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    splits: dict[str, list[dict]] = {"train": [], "val": []}
    with open(tmp / "qa.jsonl", "w", encoding="utf-8") as jsonl:
        for p in pairs:
            split = split_of(p["qa_id"], val_fraction)
            index = len(splits[split])
            splits[split].append(
                {
                    "data_source": DATA_SOURCE,
                    "prompt": [
                        {"role": "user", "content": f"{p['question']}\n\n{ANSWER_INSTRUCTION}"}
                    ],
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
                    },
                }
            )
            jsonl.write(
                json.dumps(
                    {
                        "qa_id": p["qa_id"],
                        "question": p["question"],
                        "answer": p["answer"],
                        "domain": p["domain"],
                        "persona": p["persona"],
                        "doc_id": p["doc_id"],
                        "url": p["url"],
                        "split": split,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
    for split, rows in splits.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=VERL_SCHEMA), tmp / f"{split}.parquet")
    manifest = {
        "run_id": run_id,
        "pairs": len(pairs),
        "train": len(splits["train"]),
        "val": len(splits["val"]),
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


def dataset_frame(con, run_id: str):
    """The pairs the export would write, with the columns the dataset gate checks (word counts
    and the folded question with the same tokenizer the stages use)."""
    frame = con.execute(ACCEPTED_SQL, [run_id]).df()
    frame["question_key"] = [" ".join(folded_words(q or "")) for q in frame["question"]]
    frame["answer_chars"] = [len(a or "") for a in frame["answer"]]
    frame["answer_words"] = [len(words(a or "")) for a in frame["answer"]]
    return frame


def dataset_expectations(
    rows: int, *, min_pairs: int, max_answer_words: int, work_set: int, max_answer_chars: int = 120
) -> list:
    """No contamination, no duplicates, a domain from the list, answers within bounds, and
    at least `min_pairs` pairs (when the run had new documents at all)."""
    import great_expectations.expectations as gxe

    from webscale_rl.prompts import DOMAINS

    suite = [
        gxe.ExpectColumnValuesToBeUnique(column="qa_id"),
        gxe.ExpectColumnValuesToBeUnique(column="question_key"),
        gxe.ExpectColumnValuesToBeNull(column="benchmark"),
        gxe.ExpectColumnValuesToBeNull(column="duplicate_of"),
        gxe.ExpectColumnValuesToNotBeNull(column="domain"),
        gxe.ExpectColumnValuesToBeInSet(column="domain", value_set=list(DOMAINS)),
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_chars", min_value=1, max_value=max_answer_chars
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="answer_words", min_value=1, max_value=max_answer_words
        ),
    ]
    if work_set:  # a run with no new documents has nothing to export and nothing to gate on
        suite.append(gxe.ExpectTableRowCountToBeBetween(min_value=min_pairs))
    return suite
