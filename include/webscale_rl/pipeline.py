"""What each task of the `webscale_rl` DAG does, as plain functions (no Airflow imports).

Tasks pass a small `run` dict (run id, resolved files, validated params) and counts
through XCom; every piece of data lives in the warehouse.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from webscale_rl import answer_policy, card, conservation, gates, lease, runner, staging, warehouse
from webscale_rl.config import Settings, load_settings, resolve_corpus
from webscale_rl.errors import FatalError
from webscale_rl.llm import LLMSettings, ledger, server_metrics
from webscale_rl.params import RunParams
from webscale_rl.params import default as param_default
from webscale_rl.stages import (
    export,
    ingest,
    registry,
)

log = logging.getLogger(__name__)
MAX_SHARDS = 256  # well under Airflow's max_map_length (1024)


def _now() -> datetime:
    return datetime.now(UTC)


@contextlib.contextmanager
def task_step(settings: Settings, run_id: str, stage: str):
    """Around every task's work: keep the run's warehouse lease alive (stopping at once if
    another run took it over), and on an error mark the run failed at `stage` with the
    error's message before re-raising it."""
    try:
        with lease.kept_alive(settings.db_path, run_id):
            yield
    except Exception as exc:
        with contextlib.suppress(Exception), warehouse.write(settings.db_path) as con:
            con.execute(
                "UPDATE runs SET status = 'failed', failed_stage = ?, message = ?, ended_at = ? WHERE run_id = ?",
                [stage, str(exc)[:4000], _now(), run_id],
            )
        raise


def _storable(text: str) -> str:
    """Text DuckDB stores as given: UTF-8 (unpaired surrogates replaced), NULs spelled out."""
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\\x00")


def _bounded(value, limit: int = 1000) -> str | None:
    """A param as given, if it is a short string (a refused run's label or corpus)."""
    return _storable(value) if isinstance(value, str) and len(value) <= limit else None


def _record_refused(
    db_path: Path, run_id: str, params: dict, started_at: datetime, exc: Exception
) -> None:
    """A run refused before it started (bad params, a corpus outside the roots) still gets
    its `runs` row, status 'refused' with the reason, so the run list says why nothing
    happened. Nothing else is written and no lease is taken: the row names another run_id
    than any running one, and the write is one short locked statement."""
    given = json.dumps(params, default=repr)  # ASCII: any character arrives escaped
    if len(given) > 10_000:
        given = json.dumps({"omitted": f"the params were {len(given)} characters of JSON"})
    params = params if isinstance(params, dict) else {}
    with warehouse.write(db_path) as con:
        con.execute(
            """
            INSERT OR REPLACE INTO runs
                (run_id, run_label, corpus, params, started_at, ended_at, status, failed_stage, message)
            VALUES (?, ?, ?, ?, ?, ?, 'refused', 'start_run', ?)
            """,
            [
                run_id,
                _bounded(params.get("run_label")),
                _bounded(params.get("corpus")),
                given,
                started_at,
                _now(),
                _storable(str(exc)[:4000]),
            ],
        )


def start_run(
    params: dict,
    run_id: str,
    started_at: datetime | None = None,
    event_files: list[str] | None = None,
) -> dict:
    """Validate params, resolve the corpus, and register the run. Refuses bad input clearly.

    A run started by the new-documents Asset processes the files its events name (checked
    against the allowed roots like any corpus) instead of the `corpus` param."""
    settings = load_settings()
    started_at = started_at or _now()
    try:
        p = RunParams.from_params(params)
        if event_files:
            files = sorted({f for path in event_files for f in resolve_corpus(path, settings)})
            p = RunParams.from_params(
                {**asdict(p), "corpus": f"asset:{len(files)} landing file(s)"}
            )
        else:
            files = resolve_corpus(p.corpus, settings)
    except FatalError as exc:
        try:
            _record_refused(settings.db_path, run_id, params, started_at, exc)
        except Exception as record_exc:  # the refusal's own message matters more
            log.warning("could not record refused run %s: %s", run_id, record_exc)
        raise
    # One run at a time per warehouse: wait for a live run, take over from a dead one.
    abandoned = lease.acquire(settings.db_path, run_id)
    with warehouse.write(settings.db_path) as con:
        if abandoned:
            con.execute(
                "UPDATE runs SET status = 'failed', failed_stage = coalesce(failed_stage, 'abandoned'), message = ?, "
                "ended_at = ? WHERE run_id = ? AND status = 'running'",
                [
                    f"abandoned: its process stopped sending heartbeats; run {run_id} took over the warehouse "
                    "and resumes its unfinished documents",
                    _now(),
                    abandoned["run_id"],
                ],
            )
        con.execute(
            """
            INSERT OR REPLACE INTO runs (run_id, run_label, corpus, params, files, started_at, status)
            VALUES (?, ?, ?, ?, ?, ?, 'running')
            """,
            [
                run_id,
                p.run_label,
                p.corpus,
                json.dumps(asdict(p)),
                json.dumps([str(f) for f in files]),
                started_at,
            ],
        )
    record_server_metrics(settings.db_path, run_id, "start", p)
    log.info(
        "run %s: %d corpus file(s) from %r under %s; warehouse %s",
        run_id,
        len(files),
        p.corpus,
        settings.data_dir,
        settings.db_path,
    )
    return {
        "run_id": run_id,
        "files": [str(f) for f in files],
        "params": asdict(p),
        "started_at": started_at.isoformat(),
    }


def run_ingest(run: dict) -> dict:
    settings = load_settings()
    p = RunParams.from_params(run["params"])
    with task_step(settings, run["run_id"], "ingest"):
        report = ingest.ingest_files(
            [Path(f) for f in run["files"]],
            db_path=settings.db_path,
            run_id=run["run_id"],
            ingested_at=datetime.fromisoformat(run["started_at"]),
            max_docs=p.max_docs,
            limits=ingest.IngestLimits(p.max_doc_chars, p.oversize_policy),
        )
    log.info("ingest: %s", json.dumps(report))
    return report


def _gate(run: dict, stage: str, gate_inputs) -> dict:
    """Validate what `gate_inputs(con)` returns, (frame, expectations), as `stage`'s gate."""
    settings = load_settings()
    with task_step(settings, run["run_id"], f"gate_{stage}"):
        # Remote shard workers staged their rows: load them before validating.
        committed = staging.commit(settings.db_path, run["run_id"], stage)
        if committed:
            log.info("committed staged rows of %s: %s", stage, committed)
        with warehouse.read(settings.db_path) as con:
            frame, expectations = gate_inputs(con)
        result = gates.run_gate(
            stage, frame, expectations, data_dir=settings.data_dir, run_name=run["run_id"]
        )
        gates.enforce(result)
    return {
        "stage": stage,
        "rows": result.rows,
        "expectations": result.evaluated,
        "data_docs": result.docs_url,
        "committed_from_staging": committed,
    }


def gate_ingest(run: dict) -> dict:
    p = RunParams.from_params(run["params"])
    return _gate(
        run,
        "ingest",
        lambda con: (
            frame := ingest.gate_frame(con, run["files"]),
            ingest.gate_expectations(p.max_ingest_error_rate, gates.rows_of(frame)),
        ),
    )


def llm_settings(params: RunParams, settings: LLMSettings | None = None) -> LLMSettings:
    """The `llm_default` connection (read through Airflow unless given), with the run's
    per-stage models and sampling (the `sampling` param merged over its default, stage by
    stage and key by key: `{"generate": {"temperature": 0}}` keeps the default top_p)."""
    if settings is None:
        from webscale_rl.llm.settings import from_airflow

        settings = from_airflow()
    # with_overrides merges sampling stage by stage and key by key: the default first, the
    # run's param over it.
    return settings.with_overrides(stage_sampling=param_default("sampling")).with_overrides(
        stage_models=params.models, stage_sampling=params.sampling
    )


def record_server_metrics(db_path: Path, run_id: str, point: str, params: RunParams) -> None:
    """Snapshot the LLM server's own counters (vLLM /metrics) at the run's start or end.
    Best effort: a server without them, or no reachable server, records nothing."""
    try:
        base_url = llm_settings(params).base_url
    except Exception as exc:  # no llm_default connection: nothing to ask
        log.info("LLM server metrics not recorded (%s)", exc)
        return
    snapshot = server_metrics.scrape(base_url)
    if snapshot:
        with warehouse.write(db_path) as con:
            server_metrics.record(con, run_id, point, snapshot)


def run_stage(
    run: dict, name: str, shard: dict | None = None, settings: LLMSettings | None = None
) -> dict:
    """One registered stage (one shard of a sharded one) through the generic runner."""
    data = load_settings()
    p = RunParams.from_params(run["params"])
    llm = llm_settings(p, settings) if registry.get(name).llm else None
    with task_step(data, run["run_id"], name):
        result = runner.execute(
            name, runner.context(name, data.db_path, run["run_id"], p, shard, llm)
        )
    log.info("%s%s: %s", name, f" shard {shard}" if shard else "", json.dumps(result))
    return result


def gate_stage(run: dict, name: str) -> dict:
    p = RunParams.from_params(run["params"])
    return _gate(run, name, lambda con: runner.gate_inputs(name, con, run["run_id"], p))


def plan_shards(run: dict) -> list[dict]:
    """Split the run's work set into doc_id ranges of about `shard_size` documents.

    doc_ids are sha256 hex, uniformly spread, so equal-width ranges of the first 8 hex
    digits give balanced shards. Always at least one shard, so an empty run still flows
    through every stage and gate.
    """
    settings = load_settings()
    p = RunParams.from_params(run["params"])
    with task_step(settings, run["run_id"], "plan_shards"), warehouse.read(settings.db_path) as con:
        n = warehouse.one(con, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run["run_id"]])[0]
    return shard_ranges(n, p.shard_size)


def shard_ranges(n_docs: int, shard_size: int) -> list[dict]:
    count = min(MAX_SHARDS, max(1, math.ceil(n_docs / shard_size)))
    bounds = [f"{(i * 16**8) // count:08x}" for i in range(count)]
    return [
        {"lo": lo, "hi": bounds[i + 1] if i + 1 < count else None} for i, lo in enumerate(bounds)
    ]


def gate_dataset(run: dict) -> dict:
    """The final gate: what the export would write must be clean before it is written."""
    p = RunParams.from_params(run["params"])
    settings = load_settings()
    with warehouse.read(settings.db_path) as con:
        work_set = warehouse.one(
            con, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run["run_id"]]
        )[0]

    def inputs(con):
        frame = export.dataset_frame(con, run["run_id"])
        return frame, export.dataset_expectations(
            gates.rows_of(frame),
            min_pairs=p.min_accepted_pairs,
            policy=answer_policy.from_params(p),
            work_set=work_set,
        )

    return _gate(run, "dataset", inputs)


def run_dataset_card(run: dict) -> dict:
    settings = load_settings()
    p = RunParams.from_params(run["params"])
    with task_step(settings, run["run_id"], "dataset_card"):
        # The run's LLM work is done: what the server did for it goes into the card.
        record_server_metrics(settings.db_path, run["run_id"], "end", p)
        result = card.write_card(
            settings.db_path, settings.exports_dir, run["run_id"], p.audit_per_stratum
        )
    log.info(
        "dataset card: %s/card.md and report.html; audit sample of %d pairs in audit.csv; funnel %s",
        result["path"],
        result["audit_rows"],
        json.dumps(result["funnel"]),
    )
    return result


def run_counts(con, run_id: str) -> dict:
    """Per-stage counts for the run's work set, its LLM ledger, and its documents' outcomes."""
    counts: dict = {
        "work_set": warehouse.one(con, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run_id])[
            0
        ]
    }
    for stage in registry.names():
        counts[stage] = {"by_status": {}, "by_reason": {}}
    for stage, status, reason, n in con.execute(
        "SELECT stage, status, reason, n FROM stage_counts WHERE run_id = ? ORDER BY ALL", [run_id]
    ).fetchall():
        by_status, by_reason = counts[stage]["by_status"], counts[stage]["by_reason"]
        by_status[status] = by_status.get(status, 0) + n
        if reason:
            by_reason[reason] = by_reason.get(reason, 0) + n
    counts["llm_calls"] = {
        stage: {k: v for k, v in s.items() if k != "models"}
        for stage, s in ledger.per_stage(con, run_id).items()
    }
    server = server_metrics.run_summary(con, run_id)
    if server:
        counts["llm_server"] = server
    counts["outcomes"] = dict(
        con.execute(
            """SELECT o.outcome, count(*) FROM run_docs r JOIN doc_outcomes o USING (doc_id)
           WHERE r.run_id = ? GROUP BY ALL ORDER BY ALL""",
            [run_id],
        ).fetchall()
    )
    return counts


def check_conservation(run: dict) -> dict:
    """Fail the run, before anything is exported, if its records do not add up."""
    settings = load_settings()
    with task_step(settings, run["run_id"], "check_conservation"):
        with warehouse.read(settings.db_path) as con:
            violations = conservation.check(con, run["run_id"], run["files"])
            work_set = warehouse.one(
                con, "SELECT count(*) FROM run_docs WHERE run_id = ?", [run["run_id"]]
            )[0]
        conservation.enforce(violations, run["run_id"])
    log.info(
        "conservation: every record of %d file(s) and every one of %d work-set documents and their "
        "pairs is accounted for; no duplicate keys",
        len(run["files"]),
        work_set,
    )
    return {**conservation.summary(violations), "files": len(run["files"]), "work_set": work_set}


def run_export(run: dict) -> dict:
    data = load_settings()
    p = RunParams.from_params(run["params"])
    with task_step(data, run["run_id"], "export"):
        result = export.export_run(data.db_path, data.exports_dir, run["run_id"], p.val_fraction)
        # Check the files against the warehouse before the task (and its Asset event) succeeds.
        with warehouse.read(data.db_path) as con:
            conservation.enforce(
                conservation.check_export(con, run["run_id"], result["path"]), run["run_id"]
            )
    log.info(
        "export: %d accepted pairs (%d train / %d val) in %s",
        result["pairs"],
        result["train"],
        result["val"],
        result["path"],
    )
    return result


def finalize_run(
    run: dict,
    ingest_report: dict,
    export_result: dict | None = None,
    conservation_result: dict | None = None,
) -> dict:
    """Record the run's counts, mark it succeeded and release the warehouse; returns the counts."""
    settings = load_settings()
    with (
        task_step(settings, run["run_id"], "finalize_run"),
        warehouse.write(settings.db_path) as con,
    ):
        counts = run_counts(con, run["run_id"])
        counts["ingest"] = ingest_report
        if export_result:
            counts["export"] = {k: export_result[k] for k in ("pairs", "train", "val", "path")}
        if conservation_result:
            counts["conservation"] = conservation_result
        con.execute(
            "UPDATE runs SET status = 'success', ended_at = ?, counts = ?, failed_stage = NULL, message = NULL WHERE run_id = ?",
            [_now(), json.dumps(counts), run["run_id"]],
        )
    lease.release(settings.db_path, run["run_id"])
    log.info("run %s finished: %s", run["run_id"], json.dumps(counts))
    return counts
