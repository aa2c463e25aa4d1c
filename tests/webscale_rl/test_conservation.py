"""The conservation check on a warehouse a real run produced, then broken one way at a time:
each break is reported under its rule with the offending ids."""

from __future__ import annotations

import json
import shutil
import threading

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import HOSTILE_DIR, ROOT, SAMPLE_DIR
from support.db import query
from webscale_rl import conservation
from webscale_rl.scripted_llm import FakeLLM
from webscale_rl.stages import registry

# One worker: the module's finished run is computed once.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("conservation")]


def make_corpus(data_dir):
    corpus = data_dir / "mixed"
    corpus.mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", corpus)
    shutil.copy(HOSTILE_DIR / "malformed_line.jsonl", corpus)  # 2 good records and a broken line
    return corpus


@pytest.fixture(scope="module")
def dag():
    return DagBag(dag_folder=str(ROOT / "dags")).dags["webscale_rl"]


def use_server(mp, server: FakeLLM) -> None:
    mp.setenv("AIRFLOW_CONN_LLM_DEFAULT", json.dumps(server.connection()))


@pytest.fixture(scope="module")
def finished_run(dag, tmp_path_factory):
    """A successful run over a clean file and one with a malformed line."""
    data = tmp_path_factory.mktemp("conservation") / "data"
    make_corpus(data)
    with pytest.MonkeyPatch.context() as mp, FakeLLM() as server:
        mp.setenv("WEBSCALE_RL_DATA_DIR", str(data))
        use_server(mp, server)
        run = dag.test(run_conf={"corpus": "mixed"})
    assert str(run.state) == "success"
    [(run_id, files, counts)] = query(data, "SELECT run_id, files, counts FROM runs")
    return {
        "data": data,
        "run_id": run_id,
        "files": json.loads(files),
        "counts": json.loads(counts),
    }


@pytest.fixture
def broken(finished_run, tmp_path):
    """A copy of the finished run's warehouse (and corpus) to break."""
    data = tmp_path / "data"
    shutil.copytree(finished_run["data"], data)
    files = [f.replace(str(finished_run["data"]), str(data)) for f in finished_run["files"]]
    con = duckdb.connect(str(data / "warehouse.duckdb"))
    # The copied corpus lives at a new path: point the ingest records at it.
    for table in ("documents", "ingest_errors", "ingest_files"):
        con.execute(
            f"UPDATE {table} SET source_file = replace(source_file, ?, ?)",
            [str(finished_run["data"]), str(data)],
        )
    yield {"con": con, "data": data, "files": files, "run_id": finished_run["run_id"]}
    con.close()


def violations(b) -> dict[str, list]:
    found: dict[str, list] = {}
    for v in conservation.check(b["con"], b["run_id"], b["files"]):
        found.setdefault(v.rule, []).append((v.detail, v.ids))
    return found


def test_a_real_run_adds_up_and_says_so(finished_run, broken):
    assert finished_run["counts"]["conservation"] == {
        "violations": 0,
        "rules": [],
        "files": 2,
        "work_set": 20,
    }
    assert violations(broken) == {}
    # What the ingest record holds for the file with the broken line: 3 records seen.
    assert broken["con"].execute("""SELECT records_seen, new_docs, already_ingested, deferred, errors
        FROM ingest_files WHERE source_file LIKE '%malformed_line.jsonl'""").fetchall() == [
        (3, 2, 0, 0, 1)
    ]


def test_a_lost_verify_row_leaves_a_pair_undecided_and_a_document_pending(broken):
    qa_id, doc_id = (
        broken["con"]
        .execute("SELECT qa_id, doc_id FROM verify WHERE status = 'kept' ORDER BY qa_id LIMIT 1")
        .fetchone()
    )
    broken["con"].execute("DELETE FROM verify WHERE qa_id = ?", [qa_id])
    broken["con"].execute("DELETE FROM decontaminate WHERE qa_id = ?", [qa_id])
    found = violations(broken)
    assert found["pair_decided"] == [("generate kept it but verify never saw it", [qa_id])]
    still_accepted = (
        broken["con"]
        .execute("SELECT outcome FROM doc_outcomes WHERE doc_id = ?", [doc_id])
        .fetchone()[0]
    )
    assert found.get("outcome_final", [("", [])])[0][1] == (
        [] if still_accepted == "accepted" else [doc_id]
    )


def test_a_rejection_without_a_reason_is_named(broken):
    qa_id = (
        broken["con"]
        .execute("SELECT qa_id FROM verify WHERE status = 'rejected' ORDER BY qa_id LIMIT 1")
        .fetchone()[0]
    )
    broken["con"].execute("UPDATE verify SET reason = NULL WHERE qa_id = ?", [qa_id])
    assert violations(broken) == {"pair_decided": [("verify stopped it without a reason", [qa_id])]}


def test_a_document_missing_from_the_warehouse_breaks_the_ingest_and_outcome_counts(broken):
    doc_id, source = (
        broken["con"]
        .execute("""SELECT doc_id, source_file FROM documents
        WHERE source_file LIKE '%docs_stem.jsonl' ORDER BY doc_id LIMIT 1""")
        .fetchone()
    )
    for table in ("documents", *registry.names("doc"), "doc_minhash"):
        broken["con"].execute(f"DELETE FROM {table} WHERE doc_id = ?", [doc_id])
    found = violations(broken)
    assert found["new_documents_stored"] == [
        ("new documents counted but not in `documents`", [f"{source}: 17 in documents, 18 counted"])
    ]
    assert found["one_outcome_per_document"] == [
        ("work-set documents without exactly one doc_outcomes row", [doc_id])
    ]


def test_a_record_appended_after_ingest_is_not_accounted_for(broken):
    target = next(f for f in broken["files"] if f.endswith("docs_stem.jsonl"))
    with open(target, "a") as handle:
        handle.write(
            json.dumps({"id": "late", "text": "A record written after the run read the file."})
            + "\n"
        )
    assert violations(broken) == {
        "records_read": [
            (
                "records read differ from the records in the file",
                [f"{target}: 19 records in the file, 18 read"],
            )
        ]
    }


def test_a_lost_ingest_error_row_is_named(broken):
    broken["con"].execute("DELETE FROM ingest_errors")
    [(detail, ids)] = violations(broken)["errors_stored"]
    assert ids == [f"{broken['data']}/mixed/malformed_line.jsonl: 0 in ingest_errors, 1 counted"]


def test_a_table_without_its_key_and_with_a_duplicate_is_named(broken):
    con = broken["con"]
    con.execute("CREATE TABLE llm_filter_copy AS SELECT * FROM llm_filter")
    con.execute("DROP TABLE llm_filter")
    con.execute("ALTER TABLE llm_filter_copy RENAME TO llm_filter")
    doc_id = con.execute("SELECT doc_id FROM llm_filter ORDER BY doc_id LIMIT 1").fetchone()[0]
    con.execute("INSERT INTO llm_filter SELECT * FROM llm_filter WHERE doc_id = ?", [doc_id])
    found = violations(broken)
    assert found["keys_declared"] == [("tables without their primary key", ["llm_filter(doc_id)"])]
    assert found["unique_keys"] == [("duplicate keys in llm_filter", [doc_id])]


def test_the_export_must_hold_each_accepted_pair_once(broken, finished_run):
    export_dir = (
        broken["data"] / "exports" / next(p.name for p in (broken["data"] / "exports").iterdir())
    )
    lines = (export_dir / "qa.jsonl").read_text().splitlines()
    dropped, doubled = json.loads(lines[0])["qa_id"], json.loads(lines[1])["qa_id"]
    (export_dir / "qa.jsonl").write_text("\n".join(lines[1:] + [lines[1]]) + "\n")
    found = conservation.check_export(broken["con"], broken["run_id"], str(export_dir))
    assert [(v.rule, v.detail, v.ids) for v in found] == [
        ("export_exact", "pairs written twice in qa.jsonl", [doubled]),
        ("export_exact", "qa.jsonl differs from the accepted pairs", [dropped]),
    ]


def test_a_file_that_grows_during_the_run_fails_it_before_the_export(dag, tmp_path, monkeypatch):
    """A corpus file still being written while the run reads it: the check catches the
    record nobody ingested, the run fails at check_conservation naming the file, and no
    export (or Asset event) is made."""
    data = tmp_path / "data"
    corpus = make_corpus(data)
    growing = corpus / "docs_stem.jsonl"
    monkeypatch.setenv("WEBSCALE_RL_DATA_DIR", str(data))
    with FakeLLM() as server:
        use_server(monkeypatch, server)

        def append_once_the_llm_stages_start() -> None:
            while not server.stats["requests"]:
                threading.Event().wait(0.05)
            with open(growing, "a") as handle:
                handle.write(
                    json.dumps({"id": "late", "text": "Written while the run was reading."}) + "\n"
                )

        writer = threading.Thread(target=append_once_the_llm_stages_start, daemon=True)
        writer.start()
        run = dag.test(run_conf={"corpus": "mixed"})
        writer.join(timeout=5)
    assert str(run.state) == "failed"
    status, stage, message = query(data, "SELECT status, failed_stage, message FROM runs")[0]
    assert (status, stage) == ("failed", "check_conservation")
    assert "records_read: records read differ from the records in the file" in message
    assert f"{growing}: 19 records in the file, 18 read" in message
    assert not (data / "exports").exists()
