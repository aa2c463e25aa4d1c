"""The conservation check: at the end of every run, nothing it read is lost or counted twice.

Checked against the warehouse and the files themselves, not against the counters that
produced them:
- every record of every corpus file (recounted from the file) is a document this run took
  on, a document an earlier run ingested, a document left for later by `max_docs`, or an
  `ingest_errors` row; the new documents and errors are really in the warehouse;
- every document of the run's work set has exactly one `doc_outcomes` row, and it is final
  (accepted, rejected or failed: nothing left pending);
- every pair generated from the work set went on to verify, every pair verify kept went
  on to decontaminate, and every pair that stopped has a reason;
- every stage table declares its key, and no key appears twice;
- (checked by the export task on its own files) the export holds exactly the pairs the
  warehouse accepted, once each.

A violation fails the run before the export; the message lists each rule with the
offending ids.
"""

from __future__ import annotations

import gzip
from dataclasses import asdict, dataclass, field
from pathlib import Path

from webscale_rl import warehouse
from webscale_rl.errors import FatalError
from webscale_rl.stages import registry
from webscale_rl.stages.ingest import sniff_first_line

MAX_IDS = 10

# Tables that must hold one row per key: the key each declares as its primary key (every
# stage table by its unit, from the registry, besides these).
OTHER_KEYED_TABLES = {
    "documents": ("doc_id",),
    "ingest_errors": ("source_file", "line_no"),
    "ingest_files": ("run_id", "source_file"),
    "run_docs": ("run_id", "doc_id"),
    "doc_minhash": ("doc_id",),
    "llm_calls": ("request_hash",),
    "runs": ("run_id",),
}


def keyed_tables() -> dict[str, tuple[str, ...]]:
    return {**OTHER_KEYED_TABLES, **{s.name: (s.key,) for s in registry.stages()}}


class ConservationError(FatalError):
    """The run's records do not add up; the message names each rule and the offending ids."""


@dataclass
class Violation:
    rule: str
    detail: str
    ids: list = field(default_factory=list)

    def line(self) -> str:
        shown = ", ".join(str(i) for i in self.ids[:MAX_IDS])
        more = f" (+{len(self.ids) - MAX_IDS} more)" if len(self.ids) > MAX_IDS else ""
        return f"- {self.rule}: {self.detail}" + (f" [{shown}{more}]" if self.ids else "")


def count_records(path: Path) -> int | None:
    """Records in a corpus file as the reader yields them (a blank line is not a record; an
    empty or column-less file is one error record), or None when the file cannot be read."""
    try:
        if path.name.endswith(".parquet"):
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            if "text" not in parquet.schema_arrow.names:
                return 1
            return parquet.metadata.num_rows or 1
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as handle:
            first, _, foreign = sniff_first_line(next(handle, b""))
            if foreign:  # UTF-16/32: one error record for the whole file
                return 1
            return bool(first.strip()) + sum(1 for line in handle if line.strip()) or 1
    except Exception:  # the reader recorded it as unreadable_file
        return None


def _ingest(con, run_id: str, files: list[str]) -> list[Violation]:
    found: list[Violation] = []
    tallies = {
        row[0]: row[1:]
        for row in con.execute(
            """SELECT source_file, records_seen, new_docs, already_ingested, deferred, errors
           FROM ingest_files WHERE run_id = ?""",
            [run_id],
        ).fetchall()
    }
    missing = sorted(set(files) - set(tallies))
    if missing:
        found.append(Violation("file_accounted", "corpus files with no ingest record", missing))
    docs = dict(
        con.execute(
            """SELECT source_file, count(*) FROM documents WHERE ingest_run_id = ?
                               GROUP BY ALL""",
            [run_id],
        ).fetchall()
    )
    errors = dict(
        con.execute(
            "SELECT source_file, count(*) FROM ingest_errors WHERE run_id = ? GROUP BY ALL",
            [run_id],
        ).fetchall()
    )
    unreadable = {
        r[0]
        for r in con.execute(
            "SELECT source_file FROM ingest_errors WHERE run_id = ? AND reason = 'unreadable_file'",
            [run_id],
        ).fetchall()
    }
    bad_sum, bad_docs, bad_errors, bad_count = [], [], [], []
    for name, (seen, new, already, deferred, n_errors) in sorted(tallies.items()):
        if seen != new + already + deferred + n_errors:
            bad_sum.append(f"{name}: {seen} != {new}+{already}+{deferred}+{n_errors}")
        if docs.get(name, 0) != new:
            bad_docs.append(f"{name}: {docs.get(name, 0)} in documents, {new} counted")
        if errors.get(name, 0) != n_errors:
            bad_errors.append(f"{name}: {errors.get(name, 0)} in ingest_errors, {n_errors} counted")
        recount = count_records(Path(name)) if name not in unreadable else None
        if recount is not None and recount != seen:
            bad_count.append(f"{name}: {recount} records in the file, {seen} read")
    for rule, detail, ids in (
        ("records_read", "records read differ from the records in the file", bad_count),
        (
            "records_accounted",
            "records read != new + already ingested + deferred + errors",
            bad_sum,
        ),
        ("new_documents_stored", "new documents counted but not in `documents`", bad_docs),
        ("errors_stored", "ingest errors counted but not in `ingest_errors`", bad_errors),
    ):
        if ids:
            found.append(Violation(rule, detail, ids))
    return found


def _outcomes(con, run_id: str) -> list[Violation]:
    found: list[Violation] = []
    # Only the offending documents come back: the run's work set may be millions.
    per_doc = con.execute(
        """SELECT r.doc_id, count(o.doc_id) AS n, min(o.outcome) AS outcome FROM run_docs r
           LEFT JOIN doc_outcomes o USING (doc_id) WHERE r.run_id = ? GROUP BY r.doc_id
           HAVING count(o.doc_id) <> 1 OR min(o.outcome) = 'pending'""",
        [run_id],
    ).fetchall()
    not_one = sorted(d for d, n, _ in per_doc if n != 1)
    if not_one:
        found.append(
            Violation(
                "one_outcome_per_document",
                "work-set documents without exactly one doc_outcomes row",
                not_one,
            )
        )
    pending = sorted(d for d, n, outcome in per_doc if n == 1 and outcome == "pending")
    if pending:
        found.append(
            Violation(
                "outcome_final", "work-set documents still pending at the end of the run", pending
            )
        )
    total, distinct, documents = warehouse.one(
        con,
        "SELECT count(*), count(DISTINCT doc_id), (SELECT count(*) FROM documents) FROM doc_outcomes",
    )
    if not total == distinct == documents:
        found.append(
            Violation(
                "one_outcome_per_document",
                f"doc_outcomes has {total} rows for {distinct} ids and {documents} documents",
            )
        )
    return found


def _pairs(con, run_id: str) -> list[Violation]:
    pair_stages = registry.names("pair")
    cases = [
        f"WHEN p{i}.status = 'kept' AND p{i + 1}.qa_id IS NULL THEN '{a} kept it but {b} never saw it'"
        for i, (a, b) in enumerate(zip(pair_stages, pair_stages[1:], strict=False))
    ]
    cases += [
        f"WHEN p{i}.status <> 'kept' AND p{i}.reason IS NULL THEN '{name} stopped it without a reason'"
        for i, name in enumerate(pair_stages)
    ]
    joins = " ".join(
        f"LEFT JOIN {name} p{i} ON p{i}.qa_id = p0.qa_id" for i, name in enumerate(pair_stages) if i
    )
    rows = con.execute(
        f"""SELECT p0.qa_id, CASE {" ".join(cases)} END AS problem
            FROM run_docs r JOIN {pair_stages[0]} p0 USING (doc_id) {joins}
            WHERE r.run_id = ? AND problem IS NOT NULL ORDER BY ALL""",
        [run_id],
    ).fetchall()
    by_problem: dict[str, list] = {}
    for qa_id, problem in rows:
        by_problem.setdefault(problem, []).append(qa_id)
    return [Violation("pair_decided", problem, ids) for problem, ids in sorted(by_problem.items())]


def check_export(con, run_id: str, export_path: str) -> list[Violation]:
    """Run by the export task on what it wrote, before its Asset event can fire. DuckDB reads
    the files and compares their qa_ids with the accepted pairs, so nothing here holds the
    dataset in memory."""
    folder = Path(export_path)
    qa_file = folder / "qa.jsonl"
    parquets = [str(folder / f"{s}.parquet") for s in ("train", "val")]
    parquets = [p for p in parquets if Path(p).exists()]
    written = {
        "qa.jsonl": (
            "SELECT qa_id FROM read_json(?, format = 'newline_delimited', "
            "columns = {'qa_id': 'VARCHAR'})",
            [str(qa_file)],
        )
        if qa_file.exists()
        else None,
        "train.parquet + val.parquet": (
            "SELECT extra_info.qa_id AS qa_id FROM read_parquet(?)",
            [parquets],
        )
        if parquets
        else None,
    }
    found = []
    for name, source in written.items():
        sql, params = source or ("SELECT NULL::VARCHAR AS qa_id WHERE false", [])
        twice = [
            q
            for (q,) in con.execute(
                f"SELECT qa_id FROM ({sql}) GROUP BY qa_id HAVING count(*) > 1 ORDER BY qa_id",
                params,
            ).fetchall()
        ]
        if twice:
            found.append(Violation("export_exact", f"pairs written twice in {name}", twice))
        differ = [
            q
            for (q,) in con.execute(
                f"""WITH w AS ({sql}), a AS (SELECT qa_id FROM accepted_pairs WHERE run_id = ?)
                    (SELECT qa_id FROM w EXCEPT SELECT qa_id FROM a)
                    UNION (SELECT qa_id FROM a EXCEPT SELECT qa_id FROM w) ORDER BY qa_id""",
                [*params, run_id],
            ).fetchall()
        ]
        if differ:
            found.append(
                Violation("export_exact", f"{name} differs from the accepted pairs", differ)
            )
    return found


def _keys(con) -> list[Violation]:
    declared = {
        (table, tuple(cols))
        for table, cols in con.execute(
            "SELECT table_name, constraint_column_names FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
        ).fetchall()
    }
    found = []
    keyed = keyed_tables()
    undeclared = [f"{t}({', '.join(k)})" for t, k in keyed.items() if (t, k) not in declared]
    if undeclared:
        found.append(Violation("keys_declared", "tables without their primary key", undeclared))
    for table, key in keyed.items():
        cols = ", ".join(key)
        dupes = con.execute(
            f"SELECT {cols} FROM {table} GROUP BY ALL HAVING count(*) > 1 LIMIT {MAX_IDS + 1}"
        ).fetchall()
        if dupes:
            found.append(
                Violation(
                    "unique_keys",
                    f"duplicate keys in {table}",
                    ["/".join(str(v) for v in d) for d in dupes],
                )
            )
    return found


def check(con, run_id: str, files: list[str]) -> list[Violation]:
    """Every rule but the export's (see check_export); runs before anything is exported."""
    return _ingest(con, run_id, files) + _outcomes(con, run_id) + _pairs(con, run_id) + _keys(con)


def summary(violations: list[Violation]) -> dict:
    return {
        "violations": len(violations),
        "rules": [asdict(v) | {"ids": v.ids[:MAX_IDS]} for v in violations],
    }


def enforce(violations: list[Violation], run_id: str) -> None:
    if violations:
        raise ConservationError(
            f"run {run_id} does not add up ({len(violations)} violation(s)), so nothing is exported; "
            "the offending ids follow each rule:\n" + "\n".join(v.line() for v in violations)
        )
