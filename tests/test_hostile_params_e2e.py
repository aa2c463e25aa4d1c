"""Hostile UI params: a corpus or landing param cannot reach outside the allowed data roots
(traversal, absolute paths, symlinks, globs), and no param value is ever spliced into SQL.

- start_run / resolve_corpus and the ingest DAG's landing scan refuse each escape with a
  message naming the resolved path, and nothing outside is read (no documents row from
  outside the data dir, the planted outside text found nowhere);
- under real Airflow (dag.test) the refusal fails start_run at once (no retry), in the
  task log, and no other task runs;
- a whole pipeline run whose run_label, corpus file name and run id are SQL stores them
  verbatim, keeps every table and row, and no SQL statement it executed contains them
  (every duckdb statement of the run is traced);
- statically, every SQL statement built with an f-string interpolates only identifiers
  from fixed tuples/constants, listed and explained in SQL_INTERPOLATIONS below.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import uuid
from pathlib import Path

import duckdb
import pytest
from airflow.dag_processing.dagbag import DagBag

from conftest import ROOT, SAMPLE_DIR
from support.db import query
from webscale_rl import landing, pipeline, warehouse
from webscale_rl.config import ConfigError
from webscale_rl.llm import LLMSettings
from webscale_rl.stages import registry

pytestmark = pytest.mark.e2e

MARK = f"OUTSIDE-{uuid.uuid4().hex[:12]}"  # the text of the document planted outside the roots
ADVICE = (
    "; put the files under WEBSCALE_RL_DATA_DIR or add their folder to WEBSCALE_RL_ALLOWED_ROOTS"
)


@pytest.fixture(scope="module")
def dags():
    return DagBag(dag_folder=str(ROOT / "dags")).dags


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the data dir holding a perfectly valid corpus file."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "secret.jsonl").write_text(
        json.dumps(
            {
                "id": "secret",
                "text": f"{MARK} is a private document outside the data dir. It has several plain "
                "sentences. Nothing may ever read it into the warehouse.",
            }
        )
        + "\n"
    )
    return folder


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(data dir, outside folder): a data dir with a legitimate run already ingested (so every
    table exists and holds rows) and symlinks planted inside it that point outside. Shared by
    the refusal tests, which add only their refused run's row (each checks that)."""
    base = tmp_path_factory.mktemp("world")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret.jsonl").write_text(
        json.dumps(
            {
                "id": "secret",
                "text": f"{MARK} is a private document outside the data dir. It has several plain "
                "sentences. Nothing may ever read it into the warehouse.",
            }
        )
        + "\n"
    )
    data = base / "data"
    (data / "sample").mkdir(parents=True)
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", data / "sample")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WEBSCALE_RL_DATA_DIR", str(data))
        mp.delenv("WEBSCALE_RL_DB", raising=False)
        mp.delenv("WEBSCALE_RL_ALLOWED_ROOTS", raising=False)
        run = pipeline.start_run({"corpus": "sample"}, "legit")
        pipeline.finalize_run(
            run, pipeline.run_ingest(run)
        )  # ends the run: its warehouse lease is free
        (data / "evil").symlink_to(outside, target_is_directory=True)
        (data / "linked").mkdir()
        (data / "linked" / "x.jsonl").symlink_to(outside / "secret.jsonl")
        yield data, outside


def table_counts(data: Path) -> dict[str, int]:
    con = duckdb.connect(str(data / "warehouse.duckdb"), read_only=True)
    try:
        tables = [
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
            ).fetchall()
        ]
        return {t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        con.close()


def assert_nothing_outside_was_read(data: Path) -> None:
    root = str(data.resolve()) + "/"
    assert (
        query(
            data, "SELECT source_file FROM documents WHERE NOT starts_with(source_file, ?)", [root]
        )
        == []
    )
    assert (
        query(
            data,
            "SELECT source_file FROM ingest_errors WHERE NOT starts_with(source_file, ?)",
            [root],
        )
        == []
    )
    assert query(data, "SELECT count(*) FROM documents WHERE contains(text, ?)", [MARK]) == [(0,)]


def outside_msg(corpus: str, resolved: Path, data: Path) -> str:
    return f"corpus '{corpus}' resolves to {resolved}, outside the allowed roots ({data}){ADVICE}"


# (id, corpus param, expected message given the data dir and the outside folder)
CORPUS_CASES = [
    (
        "dotdot",
        "../../etc/passwd",
        lambda d, o: outside_msg("../../etc/passwd", (d / "../../etc/passwd").resolve(), d),
    ),
    (
        "dotdot_to_root",
        "../" * 40 + "etc/passwd",
        lambda d, o: outside_msg("../" * 40 + "etc/passwd", Path("/etc/passwd"), d),
    ),
    (
        "dotdot_via_sample",
        "sample/../../outside/secret.jsonl",
        lambda d, o: outside_msg("sample/../../outside/secret.jsonl", o / "secret.jsonl", d),
    ),
    (
        "absolute_file",
        "{o}/secret.jsonl",
        lambda d, o: outside_msg(f"{o}/secret.jsonl", o / "secret.jsonl", d),
    ),
    ("absolute_dir", "{o}", lambda d, o: outside_msg(str(o), o, d)),
    (
        "home",
        "~/.ssh/id_rsa",
        lambda d, o: outside_msg("~/.ssh/id_rsa", Path("~/.ssh/id_rsa").expanduser(), d),
    ),
    (
        "proc",
        "/proc/self/environ",
        lambda d, o: outside_msg("/proc/self/environ", Path("/proc/self/environ").resolve(), d),
    ),
    ("symlinked_dir", "evil", lambda d, o: outside_msg("evil", o, d)),
    (
        "file_in_symlinked_dir",
        "evil/secret.jsonl",
        lambda d, o: outside_msg("evil/secret.jsonl", o / "secret.jsonl", d),
    ),
    (
        "symlinked_file_in_a_dir",
        "linked",
        lambda d, o: (
            f"corpus 'linked' matches {d}/linked/x.jsonl, which resolves to {o}/secret.jsonl, outside "
            f"the allowed roots ({d})"
        ),
    ),
    ("glob_through_symlink", "evil/*.jsonl", lambda d, o: outside_msg("evil/*.jsonl", o, d)),
    (
        "recursive_glob_meets_symlink",
        "**/*.jsonl",
        lambda d, o: (
            f"corpus '**/*.jsonl' matches {d}/evil/secret.jsonl, which resolves to {o}/secret.jsonl, "
            f"outside the allowed roots ({d})"
        ),
    ),
    # A glob is checked before it lists anything: no names from outside appear in the error.
    ("glob_outside", "/etc/pass*", lambda d, o: outside_msg("/etc/pass*", Path("/etc"), d)),
    (
        "glob_above_data_dir",
        "../*/secret.jsonl",
        lambda d, o: outside_msg("../*/secret.jsonl", d.parent, d),
    ),
    (
        "dotdot_after_wildcard",
        "sample/*/../../../outside/*.jsonl",
        lambda d, o: (
            "corpus 'sample/*/../../../outside/*.jsonl' has '..' after a wildcard: name the folder without it"
        ),
    ),
    (
        "sql_in_glob",
        "sample/*.jsonl; DROP TABLE documents; --",
        lambda d, o: (
            "corpus 'sample/*.jsonl; DROP TABLE documents; --' matched no corpus files (expected .jsonl, "
            f".jsonl.gz, .parquet) under {d}/sample/*.jsonl; DROP TABLE documents; --"
        ),
    ),
    (
        "sql_quote",
        "sample' OR '1'='1",
        lambda d, o: (
            f"corpus 'sample' OR '1'='1' not found (looked for {d}/sample' OR '1'='1); relative paths "
            f"resolve under the data dir {d}"
        ),
    ),
    (
        "nul_byte",
        "sample/docs_stem.jsonl\x00../../etc/passwd",
        lambda d, o: "param 'corpus' contains a NUL byte",
    ),
    (
        "very_long",
        "a" * 100_000,
        lambda d, o: "param 'corpus' is 100000 characters long; at most 4096",
    ),
    (
        "name_too_long",
        "a" * 300,
        lambda d, o: f"corpus '{'a' * 300}' cannot be resolved: File name too long",
    ),
    (
        "blank",
        "  \t ",
        lambda d, o: "param 'corpus' is empty: give a file, directory or glob under the data dir",
    ),
]


@pytest.mark.parametrize(
    ("corpus", "expected"), [c[1:] for c in CORPUS_CASES], ids=[c[0] for c in CORPUS_CASES]
)
def test_start_run_refuses_a_corpus_outside_the_roots_with_its_message(world, corpus, expected):
    data, outside = world
    before = table_counts(data)
    corpus = corpus.replace("{o}", str(outside))
    run_id = f"hostile-{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigError) as refused:
        pipeline.start_run({"corpus": corpus}, run_id)
    assert str(refused.value) == expected(data, outside)
    # Refused before anything was read: the run's one row says so, with the message, and
    # nothing else was written.
    assert table_counts(data) == {**before, "runs": before["runs"] + 1}
    assert query(
        data, "SELECT status, failed_stage, message, files FROM runs WHERE run_id = ?", [run_id]
    ) == [("refused", "start_run", expected(data, outside)[:4000], None)]
    assert_nothing_outside_was_read(data)


def test_an_allowed_root_admits_the_same_folder(data_dir, outside, monkeypatch):
    """The refusals above are about the roots, not the paths: allow the folder and it is read."""
    monkeypatch.setenv("WEBSCALE_RL_ALLOWED_ROOTS", str(outside))
    run = pipeline.start_run({"corpus": str(outside)}, "allowed")
    assert run["files"] == [str(outside / "secret.jsonl")]
    assert pipeline.run_ingest(run)["new_docs"] == 1


def test_dag_run_with_an_escaping_corpus_fails_start_run_at_once(dags, world, capfd):
    data, outside = world
    before = table_counts(data)
    run = dags["webscale_rl"].test(run_conf={"corpus": "evil", "run_label": "escape"})
    assert str(run.state) == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(tis["start_run"].state) == "failed" and tis["start_run"].try_number == 1, (
        "must not be retried"
    )
    assert {str(ti.state) for task_id, ti in tis.items() if task_id != "start_run"} == {
        "upstream_failed"
    }
    out, err = capfd.readouterr()
    reason = f"corpus 'evil' resolves to {outside}, outside the allowed roots ({data})"
    assert reason in out + err
    assert table_counts(data) == {**before, "runs": before["runs"] + 1}
    [(label, corpus, status, stage, message)] = query(
        data,
        "SELECT run_label, corpus, status, failed_stage, message FROM runs WHERE run_id = ?",
        [run.run_id],
    )
    assert (label, corpus, status, stage) == ("escape", "evil", "refused", "start_run")
    assert reason in message
    assert_nothing_outside_was_read(data)


LANDING_CASES = [
    ("dotdot", "../outside", lambda d, o: outside_msg("../outside", o, d)),
    ("absolute", "{o}", lambda d, o: outside_msg(str(o), o, d)),
    ("symlink", "evil", lambda d, o: outside_msg("evil", o, d)),
    ("etc", "../" * 40 + "etc", lambda d, o: outside_msg("../" * 40 + "etc", Path("/etc"), d)),
]


@pytest.mark.parametrize(
    ("param", "expected"), [c[1:] for c in LANDING_CASES], ids=[c[0] for c in LANDING_CASES]
)
def test_landing_scan_refuses_a_folder_outside_the_roots(world, param, expected):
    data, outside = world
    before = table_counts(data)
    with pytest.raises(ConfigError) as refused:
        landing.scan_and_ingest(param.replace("{o}", str(outside)), "ingest-hostile")
    assert str(refused.value) == expected(data, outside)
    assert table_counts(data) == before and query(data, "SELECT count(*) FROM landing_files") == [
        (0,)
    ]
    assert_nothing_outside_was_read(data)


def test_ingest_dag_with_an_escaping_landing_param_fails_at_once(dags, world, capfd):
    data, outside = world
    before = table_counts(data)
    run = dags["webscale_rl_ingest"].test(run_conf={"landing": "../outside"})
    assert str(run.state) == "failed"
    tis = {ti.task_id: ti for ti in run.get_task_instances()}
    assert str(tis["scan_and_ingest"].state) == "failed" and tis["scan_and_ingest"].try_number == 1
    assert str(tis["publish"].state) == "upstream_failed"
    out, err = capfd.readouterr()
    assert f"resolves to {outside}, outside the allowed roots ({data})" in out + err
    assert table_counts(data) == before
    assert_nothing_outside_was_read(data)


@pytest.mark.parametrize(
    "param", ["/nonexistent-outside-{u}", "a" * 300], ids=["missing_outside", "name_too_long"]
)
def test_landing_param_errors_are_config_errors_that_do_not_probe_outside(world, param):
    """A missing folder outside the roots is refused as outside (not reported as missing, which
    would be an existence probe), and an over-long name is a ConfigError (no Airflow retry)."""
    param = param.replace("{u}", uuid.uuid4().hex)
    with pytest.raises(ConfigError) as failed:
        landing.scan_and_ingest(param, "ingest-hostile")
    assert "does not exist" not in str(failed.value)
    assert "outside the allowed roots" in str(failed.value) or "cannot be resolved" in str(
        failed.value
    )


# --- SQL: params are values, never SQL -------------------------------------------------------

# Each value is SQL and carries a token that no statement of the code can contain.
HOSTILE_LABEL = (
    "x'); DROP TABLE runs; -- \"quoted\" O'Brien ünïcødé 🚀 \\ back\\slash\nnew line\ttab zqLABELzq"
)
HOSTILE_DIR = 'we\'ird "dir"; DELETE FROM documents; -- zqDIRzq'
HOSTILE_FILE = "it's'); DROP TABLE documents; -- zqFILEzq.jsonl"
HOSTILE_RUN_ID = "manual__x'); DROP TABLE llm_calls; -- zqRUNzq"
SQL_MARKERS = ("zqLABELzq", "zqDIRzq", "zqFILEzq", "zqRUNzq")


class TracingConnection:
    """A duckdb connection that records every statement it is asked to run."""

    def __init__(self, con, log: list[str]):
        self._con, self._log = con, log

    def execute(self, sql, *args, **kwargs):
        self._log.append(str(sql))
        return self._con.execute(sql, *args, **kwargs)

    def sql(self, sql, *args, **kwargs):
        self._log.append(str(sql))
        return self._con.sql(sql, *args, **kwargs)

    query = sql

    def __getattr__(self, name):
        return getattr(self._con, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._con.__exit__(*exc)


def schema_tables(tmp_path: Path) -> set[str]:
    with warehouse.write(tmp_path / "reference.duckdb") as con:
        return {
            t
            for (t,) in con.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'main' AND table_type = 'BASE TABLE'"
            ).fetchall()
        }


def test_a_run_named_in_sql_stores_it_verbatim_and_runs_no_sql_built_from_it(
    data_dir, fake_llm, monkeypatch, tmp_path
):
    folder = data_dir / HOSTILE_DIR
    folder.mkdir()
    first = (SAMPLE_DIR / "docs_stem.jsonl").read_text().splitlines()[:8]
    (folder / HOSTILE_FILE).write_text("\n".join(first) + "\n")
    corpus = f"{HOSTILE_DIR}/{HOSTILE_FILE}"
    statements: list[str] = []
    real_connect = duckdb.connect
    monkeypatch.setattr(
        duckdb, "connect", lambda *a, **k: TracingConnection(real_connect(*a, **k), statements)
    )
    llm = LLMSettings(
        base_url=fake_llm.base_url,
        api_key="sk-test",
        model="fake-model",
        max_concurrency=16,
        backoff_base_s=0.01,
        backoff_cap_s=0.2,
        timeout_s=2,
    )

    run = pipeline.start_run({"corpus": corpus, "run_label": HOSTILE_LABEL}, HOSTILE_RUN_ID)
    ingested = pipeline.run_ingest(run)
    pipeline.gate_ingest(run)
    shards = pipeline.plan_shards(run)
    for stage in registry.stages():
        for shard in shards if stage.sharded else [None]:
            pipeline.run_stage(run, stage.name, shard, settings=llm)
        pipeline.gate_stage(run, stage.name)
    pipeline.gate_dataset(run)
    checked = pipeline.check_conservation(run)
    exported = pipeline.run_export(run)
    pipeline.run_dataset_card(run)
    pipeline.finalize_run(run, ingested, exported, checked)
    monkeypatch.setattr(duckdb, "connect", real_connect)

    # Stored verbatim, the run succeeded, and every table is there with its rows.
    path = str((folder / HOSTILE_FILE).resolve())
    assert query(data_dir, "SELECT run_id, run_label, corpus, status, files FROM runs") == [
        (HOSTILE_RUN_ID, HOSTILE_LABEL, corpus, "success", json.dumps([path]))
    ]
    counts = table_counts(data_dir)
    assert set(counts) == schema_tables(tmp_path)
    assert counts["documents"] == counts["run_docs"] == 8 and counts["llm_calls"] > 20
    assert query(data_dir, "SELECT DISTINCT source_file FROM documents") == [(path,)]
    assert exported["pairs"] > 0
    assert f"Label: {HOSTILE_LABEL}" in (Path(exported["path"]) / "card.md").read_text()

    # No statement the run executed carries any of the values: they went in as parameters.
    assert len(statements) > 100 and any("INSERT OR REPLACE INTO runs" in s for s in statements)
    assert any("FROM llm_calls" in s for s in statements) and any(
        "doc_outcomes" in s for s in statements
    )
    leaked = [s for s in statements if any(m in s for m in SQL_MARKERS)]
    assert leaked == []


def test_run_label_with_quotes_and_unicode_round_trips_through_each_run(data_dir):
    (data_dir / "sample").mkdir()
    shutil.copy(SAMPLE_DIR / "docs_stem.jsonl", data_dir / "sample")
    labels = [
        "x'); DROP TABLE runs; --",
        "'; UPDATE runs SET status = 'success'; --",
        "\"double\" and 'single'",
        "ünïcødé ✓ 漢字 🚀",
        "back\\slash %s {} $1 ?",
        "",
        "\u202eRTL override",
    ]
    for i, label in enumerate(labels):
        run = pipeline.start_run({"corpus": "sample", "run_label": label}, f"run-{i}")
        pipeline.finalize_run(run, pipeline.run_ingest(run))
    assert query(data_dir, "SELECT run_label FROM runs ORDER BY run_id") == [
        (label,) for label in labels
    ]
    assert set(table_counts(data_dir)) >= {"runs", "documents", "llm_calls", "ingest_errors"}
    assert query(data_dir, "SELECT count(*) FROM documents") == [(18,)]


# --- static: what SQL f-strings may interpolate ----------------------------------------------

SQL_WORDS = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|JOIN|CREATE|DROP|WHERE|COPY|ALTER|QUALIFY|ORDER BY|GROUP BY|LIMIT|VALUES)\b"
)
SCANNED = [ROOT / "include" / "webscale_rl", ROOT / "dags", ROOT / "plugins"]
# Every expression interpolated into SQL text, per file, and where its value comes from.
# None is a param: a run's values always go in as `?`/`$name` parameters or registered frames.
SQL_INTERPOLATIONS = {
    ("include/webscale_rl/card.py", "key"): "literal column name: doc_id or qa_id",
    ("include/webscale_rl/card.py", "example"): "literal SQL expression chosen by the stage's unit",
    (
        "include/webscale_rl/card.py",
        "example_join",
    ): "literal JOIN text naming documents or registry.first_pair_stage()",
    ("include/webscale_rl/card.py", "ACCEPTED_SQL"): "module constant (a fixed query)",
    ("include/webscale_rl/card.py", "EXAMPLES_PER_REASON"): "int constant",
    (
        "include/webscale_rl/warehouse.py",
        "name",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/common.py",
        "extra",
    ): "column list written as a literal by each stage module",
    (
        "include/webscale_rl/stages/common.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    ("include/webscale_rl/stages/common.py", "stage"): "a stage module's STAGE constant",
    (
        "include/webscale_rl/stages/common.py",
        "join_prev",
    ): "fixed JOIN text naming registry.previous()",
    (
        "include/webscale_rl/stages/common.py",
        "SHARD_FILTER",
    ): "constant predicate on $lo/$hi parameters",
    (
        "include/webscale_rl/conservation.py",
        "sql",
    ): "one of two literal SELECTs on the export files (their paths go in as parameters)",
    (
        "include/webscale_rl/stages/common.py",
        "item_sql",
    ): "a gate's item query, written as a literal by each stage module",
    (
        "include/webscale_rl/stages/common.py",
        "key",
    ): "a gate's key column name, a literal in each stage module",
    (
        "include/webscale_rl/stages/common.py",
        "excluded",
    ): "column names: the key and literal measure-only columns",
    (
        "include/webscale_rl/stages/common.py",
        "totals",
    ): "aggregate expressions: literals in common.py and the stage modules",
    (
        "include/webscale_rl/stages/generate.py",
        'common.capped_length("g.answer", common.ANSWER_CHARS_CAP)',
    ): "a length expression on a literal column with an int constant",
    (
        "include/webscale_rl/stages/verify.py",
        'common.capped_length("g.answer", common.ANSWER_CHARS_CAP)',
    ): "a length expression on a literal column with an int constant",
    ("include/webscale_rl/stages/decontaminate.py", "STAGE"): "module constant",
    ("include/webscale_rl/stages/generate.py", "STAGE"): "module constant",
    ("include/webscale_rl/stages/near_dedup.py", "STAGE"): "module constant",
    ("include/webscale_rl/stages/verify.py", "STAGE"): "module constant",
    ("include/webscale_rl/stages/learnability.py", "STAGE"): "module constant",
    (
        "include/webscale_rl/stages/learnability.py",
        "common.SHARD_FILTER",
    ): "constant predicate on $lo/$hi parameters",
    (
        "include/webscale_rl/stages/learnability.py",
        "pairs",
    ): "registry.first_pair_stage(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/learnability.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/verify.py",
        "common.SHARD_FILTER",
    ): "constant predicate on $lo/$hi parameters",
    ("include/webscale_rl/staging.py", "order"): "one of two literal ORDER BY clauses",
    (
        "include/webscale_rl/card.py",
        "stage.name",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/card.py",
        "registry.first_pair_stage().name",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/conservation.py",
        '" ".join(cases)',
    ): "CASE text built from registry stage names",
    ("include/webscale_rl/conservation.py", "i"): "loop index",
    ("include/webscale_rl/conservation.py", "joins"): "JOIN text built from registry stage names",
    (
        "include/webscale_rl/conservation.py",
        "name",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/conservation.py",
        "pair_stages[0]",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/decontaminate.py",
        "pairs_table",
    ): "registry.first_pair_stage(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/decontaminate.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/decontaminate.py",
        "registry.first_pair_stage().name",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/generate.py",
        "common.SHARD_FILTER",
    ): "constant predicate on $lo/$hi parameters",
    (
        "include/webscale_rl/stages/generate.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/heuristic_filter.py",
        "common.SHARD_FILTER",
    ): "constant predicate on $lo/$hi parameters",
    (
        "include/webscale_rl/stages/near_dedup.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    ("include/webscale_rl/lsh_index.py", "width"): "int: LSH rows per band x 4 bytes",
    ("include/webscale_rl/lsh_index.py", "self.bands"): "int: the LSH band count",
    ("include/webscale_rl/lsh_index.py", "source"): "literal name of a registered frame",
    ("include/webscale_rl/lsh_index.py", "ref"): "literal column name: pos or key",
    (
        "include/webscale_rl/lsh_index.py",
        "self._banded('_add', 'pos')",
    ): "SQL text built from the literals above",
    (
        "include/webscale_rl/lsh_index.py",
        'self._banded("_query", "key")',
    ): "SQL text built from the literals above",
    ("include/webscale_rl/stages/registry.py", "kept"): "JOIN text built from registry stage names",
    (
        "include/webscale_rl/stages/registry.py",
        "made",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/registry.py",
        "s",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/verify.py",
        "pairs",
    ): "registry.first_pair_stage(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/stages/verify.py",
        "previous",
    ): "registry.previous(): a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/staging.py",
        "primary_key",
    ): "staging.keys(): a registry stage's key column or request_hash",
    (
        "include/webscale_rl/warehouse.py",
        'awaiting or "false"',
    ): "predicate text built from registry stage aliases",
    (
        "include/webscale_rl/warehouse.py",
        "failed",
    ): "predicate text built from registry stage aliases",
    ("include/webscale_rl/warehouse.py", "last"): "int: index of the last pair stage",
    (
        "include/webscale_rl/warehouse.py",
        'f"max(CASE {furthest} ELSE 0 END)" if furthest else "0"',
    ): "CASE text built from registry stage aliases and int indexes",
    (
        "include/webscale_rl/warehouse.py",
        "list(pair_stages)",
    ): "a list literal of stage names from the stage registry (fixed Stage declarations)",
    ("include/webscale_rl/warehouse.py", "union"): "SELECT text built from registry stage names",
    (
        "include/webscale_rl/warehouse.py",
        'latest.format("reason")',
    ): "coalesce list of registry stage aliases",
    (
        "include/webscale_rl/warehouse.py",
        'latest.format("status")',
    ): "coalesce list of registry stage aliases",
    ("include/webscale_rl/warehouse.py", "pair_joins"): "JOIN text built from registry stage names",
    (
        "include/webscale_rl/warehouse.py",
        "pair_stages[-1]",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/warehouse.py",
        "pair_stages[0]",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    (
        "include/webscale_rl/warehouse.py",
        "registry.accepted_pairs_sql()",
    ): "SQL text built from registry stage names",
    (
        "include/webscale_rl/warehouse.py",
        '" ".join(stage_cases)',
    ): "CASE text built from registry doc stage names",
    (
        "include/webscale_rl/warehouse.py",
        '" ".join(outcome_cases)',
    ): "CASE text built from registry doc stage names",
    (
        "include/webscale_rl/warehouse.py",
        '" ".join(reason_cases)',
    ): "CASE text built from registry doc stage names",
    (
        "include/webscale_rl/warehouse.py",
        "stages[-1]",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    ("include/webscale_rl/warehouse.py", "joins"): "JOIN text built from registry stage names",
    (
        "include/webscale_rl/warehouse.py",
        "s",
    ): "a stage name from the stage registry (fixed Stage declarations)",
    ("include/webscale_rl/warehouse.py", "i"): "loop index",
    (
        "include/webscale_rl/warehouse.py",
        "table",
    ): "replace_rows' table: a literal stage/table name from its callers (or staging.keys())",
    (
        "include/webscale_rl/warehouse.py",
        "key",
    ): "replace_rows' key column: a literal from its callers",
    (
        "include/webscale_rl/warehouse.py",
        "columns",
    ): "the DataFrame's columns, built by the writing code",
    (
        "include/webscale_rl/conservation.py",
        "table",
    ): "a key of keyed_tables(): constants + registry names",
    ("include/webscale_rl/conservation.py", "cols"): "key columns from keyed_tables()",
    ("include/webscale_rl/conservation.py", "MAX_IDS + 1"): "int constant",
}
# SQL text joined with + (allowed only between constants; % and .format() never).
SQL_CONCATENATIONS = {
    (
        "include/webscale_rl/cli.py",
        'query + " WHERE run_id = ?"',
    ): "constant query + constant clause",
    (
        "include/webscale_rl/cli.py",
        'query + " ORDER BY started_at DESC LIMIT 1"',
    ): "constant query + constant clause",
}
# Names that would carry a run's values (params, label, corpus, files, run id) into SQL text.
PARAM_NAMES = {
    "params",
    "p",
    "run",
    "run_id",
    "run_label",
    "label",
    "corpus",
    "files",
    "path",
    "conf",
    "context",
    "message",
    "text",
    "question",
    "answer",
}


def sql_interpolations() -> tuple[set[tuple[str, str]], list[tuple[str, str]]]:
    """(every (file, expression) interpolated into an f-string that reads as SQL, every SQL
    string built with %, .format() or + instead)."""
    found, other = set(), []
    for base in SCANNED:
        for path in sorted(base.rglob("*.py")):
            rel = str(path.relative_to(ROOT))
            src = path.read_text()
            for node in ast.walk(ast.parse(src)):
                if isinstance(node, ast.JoinedStr):
                    text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                    if SQL_WORDS.search(text):
                        found |= {
                            (rel, ast.get_source_segment(src, v.value))
                            for v in node.values
                            if isinstance(v, ast.FormattedValue)
                        }
                elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Mod, ast.Add)):
                    sides = [
                        s
                        for s in (node.left, node.right)
                        if isinstance(s, ast.Constant)
                        and isinstance(s.value, str)
                        and SQL_WORDS.search(s.value)
                    ]
                    if sides:
                        other.append((rel, ast.get_source_segment(src, node)))
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "format"
                    and isinstance(node.func.value, ast.Constant)
                    and isinstance(node.func.value.value, str)
                    and SQL_WORDS.search(node.func.value.value)
                ):
                    other.append((rel, ast.get_source_segment(src, node)))
    return found, other


def test_sql_fstrings_interpolate_only_the_listed_fixed_identifiers():
    found, other = sql_interpolations()
    assert sorted(set(other) - set(SQL_CONCATENATIONS)) == [], (
        "SQL built with %, .format() or +: use parameters"
    )
    assert sorted(set(SQL_CONCATENATIONS) - set(other)) == [], (
        "listed concatenations no longer in the code"
    )
    unlisted = sorted(found - set(SQL_INTERPOLATIONS))
    assert unlisted == [], (
        f"new interpolation into SQL: make it a parameter, or list it with its source {unlisted}"
    )
    stale = sorted(set(SQL_INTERPOLATIONS) - found)
    assert stale == [], f"listed interpolations no longer in the code: remove them {stale}"
    for _, expr in found:
        names = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
        assert not names & PARAM_NAMES, f"{expr!r} interpolates a run value"


def test_the_interpolated_constants_are_plain_table_names(tmp_path):
    from webscale_rl import conservation, staging
    from webscale_rl.stages import common, registry

    tables = schema_tables(tmp_path)
    assert set(registry.names()) <= tables
    assert all(registry.previous(name) in tables for name in registry.names()[1:])
    assert set(conservation.keyed_tables()) <= tables
    ident = re.compile(r"^[a-z_]+$")
    assert all(ident.match(name) for name in registry.names())
    assert all(
        ident.match(c) for name in [*registry.names(), staging.LEDGER] for c in staging.keys(name)
    )
    assert common.SHARD_FILTER == "d.doc_id >= $lo AND ($hi IS NULL OR d.doc_id < $hi)"
    for key in conservation.keyed_tables().values():
        assert all(ident.match(c) for c in key)
