"""A small warehouse with hand-written QA pairs, for tests of the pair-level stages
(decontaminate, audit) without running the LLM stages."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from conftest import SAMPLE_DIR
from webscale_rl import warehouse
from webscale_rl.stages.ingest import ingest_files


def qa_id(doc_id: str, persona: str) -> str:
    return hashlib.sha256(f"{doc_id}\n{persona}".encode()).hexdigest()


def build(
    tmp_path: Path, pairs: list[dict], run_id: str = "r1", domain: str = "Math"
) -> tuple[Path, list[str]]:
    """Ingest docs_stem.jsonl (18 documents) as `run_id`, mark every document kept by the
    document stages, and write `pairs`: dicts with doc (index), question, answer and
    optionally verify (status, default kept), reason, domain (per document)."""
    db = tmp_path / "w.duckdb"
    ingest_files(
        [SAMPLE_DIR / "docs_stem.jsonl"],
        db_path=db,
        run_id=run_id,
        ingested_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    with warehouse.read(db) as con:
        doc_ids = [
            d for (d,) in con.execute("SELECT doc_id FROM documents ORDER BY ingest_seq").fetchall()
        ]
    domains = {p["doc"]: p.get("domain", domain) for p in pairs}
    kept = pd.DataFrame({"doc_id": doc_ids, "run_id": run_id, "status": "kept"})
    classify = kept.assign(
        domain=[domains.get(i, domain) for i in range(len(doc_ids))], personas="[]"
    )
    generate, verify = [], []
    for i, p in enumerate(pairs):
        persona = p.get("persona", f"persona {i}")
        q = qa_id(doc_ids[p["doc"]], persona)
        generate.append(
            {
                "qa_id": q,
                "doc_id": doc_ids[p["doc"]],
                "run_id": run_id,
                "persona_idx": i,
                "persona": persona,
                "question": p["question"],
                "answer": p["answer"],
                "status": "kept",
            }
        )
        verify.append(
            {
                "qa_id": q,
                "doc_id": doc_ids[p["doc"]],
                "run_id": run_id,
                "status": p.get("verify", "kept"),
                "reason": p.get("reason"),
            }
        )
    with warehouse.write(db) as con:
        for table in ("heuristic_filter", "near_dedup", "llm_filter"):
            warehouse.replace_rows(con, table, kept)
        warehouse.replace_rows(con, "classify", classify)
        warehouse.replace_rows(con, "generate", pd.DataFrame(generate), key="qa_id")
        warehouse.replace_rows(con, "verify", pd.DataFrame(verify), key="qa_id")
    return db, doc_ids
