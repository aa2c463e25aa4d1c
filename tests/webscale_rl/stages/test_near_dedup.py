"""Near-duplicate removal: planted copies are caught and linked to the kept original, within
a run and against earlier runs, and re-runs are idempotent."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import pytest

from conftest import SAMPLE_DIR
from support import stages
from support.db import query
from webscale_rl.stages import near_dedup
from webscale_rl.stages.ingest import ingest_files

pytestmark = pytest.mark.unit

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def edited(text: str, share: float, seed: int = 0) -> str:
    """The text with `share` of its words replaced by words that are in no document."""
    rng = random.Random(seed)
    tokens = text.split(" ")
    for i in rng.sample(range(len(tokens)), max(1, int(len(tokens) * share))):
        tokens[i] = f"zq{rng.randrange(10**6)}"
    return " ".join(tokens)


def sample_texts(n: int) -> list[dict]:
    return [json.loads(line) for line in (SAMPLE_DIR / "docs_stem.jsonl").open()][:n]


def test_shingles_are_casefolded_word_5grams():
    assert set(near_dedup.shingles("One two three four five six")) == set(
        near_dedup.shingles("one, TWO three four five six!")
    )
    assert set(near_dedup.shingles("a b c d e f")) == {b"a b c d e", b"b c d e f"}
    assert near_dedup.shingles("too short") == [b"too short"]


def test_find_duplicates_links_each_copy_to_the_first_kept_document():
    base = [d["text"] for d in sample_texts(3)]
    texts = [
        base[0],
        base[1],
        edited(base[0], 0.02, 1),
        edited(base[0], 0.02, 2),
        base[2],
        edited(base[1], 0.01),
    ]
    ids = [f"d{i}" for i in range(len(texts))]
    dups = near_dedup.find_duplicates(
        [], list(zip(ids, near_dedup.signatures(texts), strict=True)), 0.7
    )
    assert {k: v[0] for k, v in dups.items()} == {"d2": "d0", "d3": "d0", "d5": "d1"}
    assert all(0.7 <= sim <= 1.0 for _, sim in dups.values())


def test_distinct_documents_and_heavily_edited_copies_are_kept():
    base = [d["text"] for d in sample_texts(6)]
    texts = base + [edited(base[0], 0.25)]
    dups = near_dedup.find_duplicates(
        [], list(zip(map(str, range(7)), near_dedup.signatures(texts), strict=True))
    )
    assert dups == {}


def _in_memory_reference(prior, new, threshold):
    """The plain sequential algorithm with datasketch's own in-memory LSH: every kept
    document in one index, each new one queried then inserted when kept."""
    from datasketch import LeanMinHash, MinHashLSH

    lsh = MinHashLSH(
        threshold=threshold, num_perm=near_dedup.NUM_PERM, weights=near_dedup.LSH_WEIGHTS
    )
    sigs = {}
    for doc_id, hv in prior:
        lsh.insert(
            doc_id, LeanMinHash(seed=near_dedup.SEED, hashvalues=hv, scheme=near_dedup.SCHEME)
        )
        sigs[doc_id] = hv
    found = {}
    for doc_id, hv in new:
        hits = [
            (c, near_dedup.estimated_jaccard(hv, sigs[c]))
            for c in lsh.query(
                LeanMinHash(seed=near_dedup.SEED, hashvalues=hv, scheme=near_dedup.SCHEME)
            )
        ]
        hits = [h for h in hits if h[1] >= threshold]
        if hits:
            found[doc_id] = min(hits, key=lambda h: (-h[1], h[0]))
        else:
            lsh.insert(
                doc_id, LeanMinHash(seed=near_dedup.SEED, hashvalues=hv, scheme=near_dedup.SCHEME)
            )
            sigs[doc_id] = hv
    return found


def test_the_batched_duckdb_index_finds_what_one_in_memory_index_finds():
    """Copies, copies of copies and copies of earlier runs' documents, spread so that they
    fall in other batches than their originals: any batch size gives the reference's answer."""
    rng = random.Random(7)
    base = [d["text"] for d in sample_texts(30)]
    texts = list(base[10:])
    for i in range(40):  # edited copies of this run's documents and of the prior ones
        texts.append(edited(rng.choice(base), rng.choice([0.01, 0.02, 0.03, 0.3]), i))
    texts.append(edited(texts[-1], 0.01, 99))  # a copy of a copy
    rng.shuffle(texts)
    prior = list(zip([f"p{i}" for i in range(10)], near_dedup.signatures(base[:10]), strict=True))
    new = list(
        zip([f"n{i:02d}" for i in range(len(texts))], near_dedup.signatures(texts), strict=True)
    )
    expected = _in_memory_reference(prior, new, 0.7)
    assert len(expected) >= 20  # the corpus really has copies, across batches
    assert any(dup.startswith("p") for dup, _ in expected.values())
    for batch_rows in (1, 3, 16, 1000):
        assert near_dedup.find_duplicates(prior, new, 0.7, batch_rows=batch_rows) == expected


def _ingest_and_filter(tmp_path, db, run_id: str, records: list[dict]):
    path = tmp_path / f"{run_id}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    ingest_files([path], db_path=db, run_id=run_id, ingested_at=WHEN)
    stages.run(db, run_id, "heuristic_filter")


def test_stage_is_incremental_against_everything_kept_before_and_idempotent(tmp_path):
    db = tmp_path / "w.duckdb"
    docs = sample_texts(4)
    _ingest_and_filter(tmp_path, db, "r1", [{"id": d["id"], "text": d["text"]} for d in docs[:3]])
    first = stages.run(db, "r1", "near_dedup")
    assert (first["kept"], first["rejected"], first["signatures_computed"]) == (3, 0, 3)

    # Run 2: a 2 %-edited copy of a run-1 document, and a copy of a new document within the run.
    planted = [
        {"id": "copy-of-0", "text": edited(docs[0]["text"], 0.02)},
        {"id": "new-3", "text": docs[3]["text"]},
        {"id": "copy-of-3", "text": edited(docs[3]["text"], 0.01, seed=5)},
    ]
    _ingest_and_filter(tmp_path, db, "r2", planted)
    second = stages.run(db, "r2", "near_dedup")
    assert (second["kept"], second["rejected"], second["compared_with_prior"]) == (1, 2, 3)
    linked = query(
        db,
        """SELECT d.source_id, o.source_id FROM near_dedup n
                         JOIN documents d ON d.doc_id = n.doc_id JOIN documents o ON o.doc_id = n.duplicate_of
                         WHERE n.status = 'rejected' ORDER BY 1""",
    )
    assert linked == [("copy-of-0", docs[0]["id"]), ("copy-of-3", "new-3")]

    # Re-running run 2 gives the same rows, no duplicates, and no signature is recomputed.
    before = query(db, "SELECT * FROM near_dedup ORDER BY doc_id")
    again = stages.run(db, "r2", "near_dedup")
    assert again["signatures_computed"] == 0
    assert query(db, "SELECT * FROM near_dedup ORDER BY doc_id") == before
    assert query(db, "SELECT count(*), count(DISTINCT doc_id) FROM doc_minhash") == [(6, 6)]
    assert query(
        db,
        """SELECT outcome, last_stage, reason FROM doc_outcomes o JOIN documents d USING (doc_id)
                       WHERE d.source_id = 'copy-of-0'""",
    ) == [("rejected", "near_dedup", "near_duplicate")]
