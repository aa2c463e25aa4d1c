"""Near-duplicate documents: MinHash + LSH over 5-word shingles, after the heuristic filter.

Exact copies are already gone (heuristic_filter's folded-text key); this catches copies
with small edits: mirrors, re-posts with a changed footer, lightly edited versions.

Incremental: every document this stage ever kept stays in the index, so new documents
are compared against everything kept before, not only against each other. Signatures are
stored in `doc_minhash` and computed once per document. Within a run, documents are taken
in arrival order (ingest_seq), so the first copy is kept and later copies are rejected
with `duplicate_of` naming it and the estimated Jaccard similarity.

Why 0.7 by default: with 5-word shingles a copy with a share p of its words edited has a
Jaccard similarity of about (1-p)^5 / (2 - (1-p)^5): 0.91 at 1 %, 0.75 at 3 %, 0.63 at
5 %, 0.42 at 10 % (bench/near_dedup.py measures it and the recall per threshold).
FineWeb's 0.75 target would miss about half of the 3 %-edited copies, since a 128-
permutation estimate has a standard error of ~0.04 there; 0.7 catches most of them while
distinct sample documents stay below 0.01. Lower it (0.6) to also catch 5 % edits at the
cost of more false merges of templated pages.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from datasketch import MinHash

from webscale_rl import lsh_index, warehouse
from webscale_rl.params import default as param_default
from webscale_rl.stages import common
from webscale_rl.stages.common import StageContext
from webscale_rl.text import folded_words

STAGE = "near_dedup"
NUM_PERM = 128
SHINGLE_WORDS = 5
SEED = 1
SCHEME = "affine32"  # datasketch 2.0's default, named so stored signatures stay comparable
DEFAULT_THRESHOLD = param_default("near_dup_threshold")
# LSH band layout weighted towards recall (datasketch's default 0.5/0.5 picks 14 bands x 9
# rows at 0.7, which makes a 0.75 pair a candidate only 2 times in 3); the estimated-
# Jaccard check after the query keeps precision.
LSH_WEIGHTS = (0.1, 0.9)  # (false-positive weight, false-negative weight)
# Stored with each signature: a change of any of these makes old signatures incomparable.
SIGNATURE_VERSION = f"datasketch-2:{SCHEME}:perm{NUM_PERM}:seed{SEED}:words{SHINGLE_WORDS}"
REASONS = ["near_duplicate"]
DOCS_BATCH_ROWS = 5_000  # documents read (and signed) at a time
TABLE_DDL = """
CREATE TABLE IF NOT EXISTS near_dedup (
    doc_id       VARCHAR PRIMARY KEY,
    run_id       VARCHAR NOT NULL,
    status       VARCHAR NOT NULL,
    reason       VARCHAR,                -- near_duplicate
    duplicate_of VARCHAR,                -- the kept document it near-duplicates
    similarity   DOUBLE,                 -- estimated Jaccard of 5-word shingles
    threshold    DOUBLE
);
CREATE TABLE IF NOT EXISTS doc_minhash (
    doc_id     VARCHAR PRIMARY KEY,
    version    VARCHAR NOT NULL,         -- library, permutations, seed, shingle size
    hashvalues BLOB NOT NULL             -- uint32 MinHash signature
);"""


def shingles(text: str, size: int = SHINGLE_WORDS) -> list[bytes]:
    """Distinct casefolded word n-grams; a text shorter than `size` words is one shingle."""
    folded = folded_words(text)
    if len(folded) <= size:
        return [" ".join(folded).encode()]
    return list({" ".join(folded[i : i + size]).encode() for i in range(len(folded) - size + 1)})


def signatures(texts: list[str]) -> list[np.ndarray]:
    """MinHash signatures, one uint32 array per text (whole shingle sets hashed at once)."""
    sigs = MinHash.bulk([shingles(t) for t in texts], num_perm=NUM_PERM, seed=SEED, scheme=SCHEME)
    return [np.asarray(m.hashvalues, dtype=np.uint32) for m in sigs]


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.count_nonzero(a == b)) / len(a)


def _signature_similarity(a: bytes, b: bytes) -> float:
    return estimated_jaccard(np.frombuffer(a, dtype=np.uint32), np.frombuffer(b, dtype=np.uint32))


def _batches(con, sql: str, params: list):
    """A query's rows as dicts of columns, DOCS_BATCH_ROWS at a time. The reader is opened
    on first use: DuckDB keeps one open result per connection, so this stream must end
    before the next query on the connection."""
    for batch in con.sql(sql, params=params).to_arrow_reader(DOCS_BATCH_ROWS):
        yield batch.to_pydict()


def find_duplicates(
    prior: Iterable[tuple[str, np.ndarray]],
    new: Iterable[tuple[str, np.ndarray]],
    threshold: float = DEFAULT_THRESHOLD,
    batch_rows: int = DOCS_BATCH_ROWS,
) -> dict[str, tuple[str, float]]:
    """For each new document that near-duplicates one kept before it: (kept doc_id, Jaccard).

    Prior documents are all in the index; new ones are taken in order and indexed only when
    kept, so a chain of copies links every copy to the first one. The index lives in DuckDB
    (webscale_rl.lsh_index), so memory is bounded by `batch_rows`, not by the corpus;
    candidates are confirmed on the signatures' estimated Jaccard.
    """

    def items(docs):
        for doc_id, hv in docs:
            yield doc_id, hv, hv.tobytes()

    return lsh_index.keep_first(
        items(prior),
        items(new),
        threshold=threshold,
        num_perm=NUM_PERM,
        weights=LSH_WEIGHTS,
        similarity=_signature_similarity,
        batch_rows=batch_rows,
    )


def run(ctx: StageContext) -> dict:
    """The stage contract: a run-level stage with its own reads and writes (signatures and
    the documents kept by earlier runs are state across runs)."""
    return dedup(ctx.db_path, ctx.run_id, ctx.previous, ctx.params.near_dup_threshold)


def dedup(db_path: Path, run_id: str, previous: str, threshold: float = DEFAULT_THRESHOLD) -> dict:
    """Dedup this run's documents kept by `previous` against each other and against every
    document kept by this stage in earlier runs; replace the run's rows."""
    order: list[str] = []
    prior_count = signatures_computed = 0
    # New signatures go to a Parquet spool a window at a time, not a dict of the whole run:
    # 100k documents held ~55 MB of them in memory until the final write.
    spool = tempfile.TemporaryDirectory(prefix="webscale-rl-minhash-")
    sig_path = Path(spool.name) / "doc_minhash.parquet"
    sig_writer: pq.ParquetWriter | None = None
    try:
        with warehouse.read(db_path, 1 - lsh_index.MEMORY_SHARE) as con:

            def prior():
                """Everything kept before this run (a re-run of this run must not see itself)."""
                nonlocal prior_count
                for docs in _batches(
                    con,
                    f"""SELECT s.doc_id, m.hashvalues FROM {STAGE} s
                        JOIN doc_minhash m ON m.doc_id = s.doc_id AND m.version = ?
                        WHERE s.status = 'kept'
                          AND s.doc_id NOT IN (SELECT doc_id FROM run_docs WHERE run_id = ?)""",
                    [SIGNATURE_VERSION, run_id],
                ):
                    prior_count += len(docs["doc_id"])
                    for doc_id, blob in zip(docs["doc_id"], docs["hashvalues"], strict=True):
                        yield doc_id, np.frombuffer(blob, dtype=np.uint32)

            def ordered():
                """The run's documents in arrival order; a text is read only where its signature
                is not stored yet; a window of ingest_seq at a time (common.ingest_windows)."""
                nonlocal sig_writer, signatures_computed
                for lo, hi in common.ingest_windows(con, run_id, DOCS_BATCH_ROWS):
                    docs = (
                        con.sql(
                            f"""SELECT d.doc_id, CASE WHEN m.hashvalues IS NULL THEN d.text END AS text,
                                   m.hashvalues FROM run_docs r
                            JOIN documents d USING (doc_id)
                            JOIN {previous} p ON p.doc_id = d.doc_id AND p.status = 'kept'
                            LEFT JOIN doc_minhash m ON m.doc_id = d.doc_id AND m.version = $version
                            WHERE r.run_id = $run AND d.ingest_seq >= $lo AND d.ingest_seq < $hi
                            ORDER BY d.ingest_seq""",
                            params={
                                "version": SIGNATURE_VERSION,
                                "run": run_id,
                                "lo": lo,
                                "hi": hi,
                            },
                        )
                        .to_arrow_table()
                        .to_pydict()
                    )
                    missing = [i for i, blob in enumerate(docs["hashvalues"]) if blob is None]
                    computed = signatures([docs["text"][i] for i in missing]) if missing else []
                    fresh = dict(zip(missing, computed, strict=True))
                    if fresh:
                        window = _signature_table(
                            [docs["doc_id"][i] for i in fresh], [hv.tobytes() for hv in computed]
                        )
                        if sig_writer is None:
                            sig_writer = pq.ParquetWriter(sig_path, window.schema)
                        sig_writer.write_table(window)
                        signatures_computed += len(fresh)
                    for i, doc_id in enumerate(docs["doc_id"]):
                        hv = (
                            fresh[i]
                            if i in fresh
                            else np.frombuffer(docs["hashvalues"][i], np.uint32)
                        )
                        order.append(doc_id)
                        yield doc_id, hv

            duplicates = find_duplicates(prior(), ordered(), threshold)
        if sig_writer is not None:
            sig_writer.close()
        found = [duplicates.get(d) for d in order]  # (kept doc_id, Jaccard) or None
        rows = pa.table(
            {
                "doc_id": pa.array(order, pa.string()),
                "run_id": pa.array([run_id] * len(order), pa.string()),
                "status": pa.array(["rejected" if f else "kept" for f in found], pa.string()),
                "reason": pa.array(["near_duplicate" if f else None for f in found], pa.string()),
                "duplicate_of": pa.array([f[0] if f else None for f in found], pa.string()),
                "similarity": pa.array([f[1] if f else None for f in found], pa.float64()),
                "threshold": pa.array([threshold] * len(order), pa.float64()),
            }
        )
        with warehouse.write(db_path) as con:
            if sig_writer is not None:
                warehouse.replace_rows(con, "doc_minhash", sig_path)
            warehouse.replace_rows(con, STAGE, rows)
    finally:
        spool.cleanup()
    return {
        "stage": STAGE,
        "docs": len(order),
        "kept": len(order) - len(duplicates),
        "rejected": len(duplicates),
        "compared_with_prior": prior_count,
        "signatures_computed": signatures_computed,
        "threshold": threshold,
    }


def _signature_table(doc_ids: list[str], hashvalues: list[bytes]) -> pa.Table:
    return pa.table(
        {
            "doc_id": pa.array(doc_ids, pa.string()),
            "version": pa.array([SIGNATURE_VERSION] * len(doc_ids), pa.string()),
            "hashvalues": pa.array(hashvalues, pa.binary()),
        }
    )


# --- gate -------------------------------------------------------------------------------


def gate_frame(con, run_id: str, previous: str | None) -> pd.DataFrame:
    return common.doc_gate_frame(
        con, run_id, STAGE, previous, columns="s.duplicate_of IS NOT NULL AS has_duplicate_of"
    )


def gate_expectations(params, rows: int) -> list:
    import great_expectations.expectations as gxe

    rejected = {"row_condition": 'status=="rejected"', "condition_parser": "pandas"}
    return common.status_expectations(rows, reasons=REASONS) + [
        gxe.ExpectColumnValuesToBeInSet(column="has_duplicate_of", value_set=[True], **rejected),
    ]
