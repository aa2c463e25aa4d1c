"""The audit loop: a person checks a sample of pairs, and the card reports how well the
verifier agrees with them.

Each run writes `audit.csv` next to its export: a stratified sample by domain and by the
verifier's verdict (accepted and rejected pairs both, so recall can be measured), with
empty label columns. After filling them in (y / n, blank = not judged), load the file
with `python -m webscale_rl.cli audit-load FILE`: labels go to `audit_labels` and the
run's card is rewritten with the verifier's precision and recall against the labels.

A pair is "good" to a person when it is correct, not leaked and self-contained. The
verifier's positive is verify's `kept`. Precision = good among labelled accepted pairs;
recall = accepted among labelled good pairs. The sample over-represents rejected pairs
and small domains on purpose, so the figures describe the sample, not the population.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from webscale_rl import warehouse

PER_STRATUM = 3
LABELS = ("correct", "leaked", "self_contained")
COLUMNS = [
    "qa_id",
    "run_id",
    "domain",
    "persona",
    "verifier_verdict",
    "verifier_reason",
    "final_status",
    "question",
    "answer",
    "document_excerpt",
    *LABELS,
    "notes",
]
TRUE = {"y", "yes", "true", "1", "t"}
FALSE = {"n", "no", "false", "0", "f"}


class AuditFileError(ValueError):
    """The filled-in audit file cannot be loaded; the message names the line and column."""


def sample(con, run_id: str, per_stratum: int = PER_STRATUM) -> pd.DataFrame:
    """Up to `per_stratum` pairs per (domain, verifier verdict), chosen by a stable hash
    (sha256 of run id and qa_id). DuckDB picks them, so only the sample leaves the warehouse."""
    # Strata are drawn on keys only; texts are joined for the picked pairs alone, so the
    # query's memory does not grow with the run's pairs.
    picked = con.execute(
        """WITH keyed AS (
               SELECT g.qa_id, g.doc_id, c.domain,
                      CASE WHEN v.status = 'kept' THEN 'accepted' ELSE 'rejected' END AS verifier_verdict,
                      v.reason AS verifier_reason,
                      CASE WHEN coalesce(x.status, v.status) = 'kept' THEN 'accepted' ELSE 'rejected'
                      END AS final_status,
                      sha256($run || chr(10) || g.qa_id) AS _order
               FROM run_docs r JOIN generate g ON g.doc_id = r.doc_id AND g.status = 'kept'
               JOIN verify v ON v.qa_id = g.qa_id AND v.status IN ('kept', 'rejected')
               LEFT JOIN decontaminate x ON x.qa_id = g.qa_id
               JOIN classify c ON c.doc_id = g.doc_id
               WHERE r.run_id = $run AND c.domain IS NOT NULL
               QUALIFY row_number() OVER (
                   PARTITION BY c.domain, verifier_verdict ORDER BY _order
               ) <= $per_stratum
           )
           SELECT k.qa_id, k.doc_id, k.domain, g.persona, k.verifier_verdict, k.verifier_reason,
                  k.final_status, g.question, g.answer, left(d.text, 1500) AS document_excerpt
           FROM keyed k JOIN generate g ON g.qa_id = k.qa_id
           JOIN documents d ON d.doc_id = k.doc_id
           ORDER BY k.domain, k.verifier_verdict, k._order""",
        {"run": run_id, "per_stratum": per_stratum},
    ).df()
    if picked.empty:
        return pd.DataFrame(columns=COLUMNS)
    picked = picked.assign(run_id=run_id, correct="", leaked="", self_contained="", notes="")
    return picked[COLUMNS].reset_index(drop=True)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)


def _label(value, line: int, column: str) -> bool | None:
    text = (
        ""
        if value is None or (isinstance(value, float) and pd.isna(value))
        else str(value).strip().lower()
    )
    if text == "":
        return None
    if text in TRUE:
        return True
    if text in FALSE:
        return False
    raise AuditFileError(
        f"line {line}, column '{column}': {value!r} is not a label; use y or n (blank = not judged)"
    )


def read_labels(path: Path) -> pd.DataFrame:
    """The labelled rows of a filled-in audit CSV (rows with no label at all are skipped)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise AuditFileError(f"cannot read audit file {path}: {exc}") from None
    missing = [c for c in ("qa_id", "run_id", *LABELS) if c not in frame.columns]
    if missing:
        raise AuditFileError(
            f"audit file {path} lacks column(s) {missing}; start from the run's audit.csv"
        )
    rows = []
    for i, record in enumerate(frame.to_dict("records"), start=2):  # line 1 is the header
        labels = {c: _label(record[c], i, c) for c in LABELS}
        if all(v is None for v in labels.values()):
            continue
        rows.append(
            {
                "qa_id": record["qa_id"].strip(),
                "run_id": record["run_id"].strip(),
                **labels,
                "notes": record.get("notes") or None,
            }
        )
    return pd.DataFrame(rows, columns=["qa_id", "run_id", *LABELS, "notes"])


def load_labels(db_path: Path, path: Path) -> dict:
    """Upsert the file's labels into `audit_labels`; unknown pairs are refused."""
    labels = read_labels(path)
    with warehouse.write(db_path) as con:
        if len(labels):
            con.register("_labels", labels)
            try:
                unknown = [
                    q
                    for (q,) in con.execute(
                        "SELECT qa_id FROM _labels WHERE qa_id NOT IN (SELECT qa_id FROM generate)"
                    ).fetchall()
                ]
            finally:
                con.unregister("_labels")
            if unknown:
                raise AuditFileError(
                    f"audit file {path} names {len(unknown)} pair(s) not in the warehouse, "
                    f"e.g. {unknown[:3]}; was it made from another warehouse?"
                )
        labels = labels.assign(source_file=str(path), loaded_at=datetime.now(UTC))
        warehouse.replace_rows(con, "audit_labels", labels, key="qa_id")
    return {"labelled": len(labels), "runs": sorted(set(labels["run_id"]))}


def metrics(con, run_id: str) -> dict:
    """Verifier precision / recall against the labels of this run's pairs (fully labelled rows)."""
    rows = con.execute(
        """SELECT v.status = 'kept' AS accepted, a.correct AND NOT a.leaked AND a.self_contained AS good
           FROM audit_labels a JOIN verify v USING (qa_id)
           WHERE a.run_id = ? AND a.correct IS NOT NULL AND a.leaked IS NOT NULL
             AND a.self_contained IS NOT NULL""",
        [run_id],
    ).fetchall()
    tp = sum(1 for acc, good in rows if acc and good)
    fp = sum(1 for acc, good in rows if acc and not good)
    fn = sum(1 for acc, good in rows if not acc and good)
    tn = sum(1 for acc, good in rows if not acc and not good)
    return {
        "labelled": len(rows),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
    }


def describe(m: dict) -> list[str]:
    if not m["labelled"]:
        return [
            "- No labels loaded yet: fill in audit.csv (y / n) and run "
            "`python -m webscale_rl.cli audit-load audit.csv`."
        ]

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    return [
        f"- {m['labelled']} pairs labelled by a person.",
        f"- Verifier precision {fmt(m['precision'])} (accepted pairs a person judged good: "
        f"{m['tp']} of {m['tp'] + m['fp']}).",
        f"- Verifier recall {fmt(m['recall'])} (good pairs the verifier accepted: {m['tp']} of {m['tp'] + m['fn']}).",
        f"- Confusion: tp {m['tp']}, fp {m['fp']}, fn {m['fn']}, tn {m['tn']}.",
    ]
