"""Heuristic filter on the labelled development set: reject precision and recall, false
rejections per text kind, per-rule precision/recall, and docs/s beside datatrove.

Two labelled sets (see tests/data/heuristic_devset/README.md): documents.jsonl, 429 real
documents labelled keep or reject by a reader and split dev/eval, and holdout.jsonl, 198
more, labelled later by the same guide from packages the first set does not use. The
rules were first calibrated on the dev half with eval held out; once eval had been looked
at, both halves became the tuning set (`--split tuning`) and the holdout (the default
here) is only looked at to report.

Each text goes through the ingest stage's `normalize_text` first, as in the pipeline. A
document is "rejected" when `evaluate` returns any failing rule. The per-rule table counts
each rule twice: as the first failing rule (the `reason` the stage records) and as any
failing rule (every rule that would reject the document alone).

datatrove's baseline: GopherRepetitionFilter -> GopherQualityFilter (datatrove 0.10.x,
default thresholds), each called with `.filter(doc)` on a fresh `datatrove.data.Document`,
chained (a document the repetition filter drops is not shown to the quality filter).
datatrove's English word tokenizer is spaCy's blank "en" pipeline (rule-based; no model
or NLTK data is downloaded), so it runs offline as shipped, but spaCy itself is only in the
bench venv (.venv-bench, `make bench-venv`, requirements-bench.txt), not in Airflow's .venv:
run it there for the datatrove columns. Under .venv the datatrove baseline is skipped with a
note (our own figures are the same in both venvs). Speed is this process's CPU
seconds on one thread (time.process_time), ours and datatrove's alternated over several
rounds on the same normalised texts; docs/s is the best round of each.

    .venv-bench/bin/python bench/heuristic_devset.py [--split holdout|tuning|dev|eval|all] [--rounds 3]
    .venv/bin/python bench/heuristic_devset.py --split tuning  # ours only, no spaCy
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import results
from datatrove.data import Document
from datatrove.pipeline.filters import GopherQualityFilter, GopherRepetitionFilter
from datatrove.utils.logging import logger as dt_logger

from webscale_rl.stages.heuristic_filter import DEFAULT_RULES, evaluate
from webscale_rl.text import normalize_text

ROOT = Path(__file__).resolve().parents[1]
DEVSET = ROOT / "tests" / "data" / "heuristic_devset" / "documents.jsonl"
HOLDOUT = ROOT / "tests" / "data" / "heuristic_devset" / "holdout.jsonl"
KEEP_KINDS = ("manual", "reference", "definition", "tutorial", "readme", "faq", "prose")
REJECT_KINDS = ("licence", "changelog", "toc_index", "navigation", "code", "fragment", "listing")
BENCH = "heuristic devset"
clock = time.process_time
HAVE_SPACY = importlib.util.find_spec("spacy") is not None


def load(split: str) -> list[dict]:
    """`holdout`: the untouched set; `tuning`: dev + eval (429, tuned on); `all`: every one."""
    paths = {"holdout": [HOLDOUT], "all": [DEVSET, HOLDOUT]}.get(split, [DEVSET])
    docs = [json.loads(line) for path in paths for line in path.open(encoding="utf-8")]
    if split in ("dev", "eval"):
        docs = [d for d in docs if d["split"] == split]
    for d in docs:
        d["norm"] = normalize_text(d["text"])
    return docs


def dt_filters() -> list:
    return [GopherRepetitionFilter(), GopherQualityFilter()]


def dt_verdict(filters: list, text: str, doc_id: str) -> str | None:
    """None when datatrove keeps the document, else 'Filter:reason'."""
    doc = Document(text=text, id=doc_id)
    for f in filters:
        out = f.filter(doc)
        ok, reason = (out, None) if isinstance(out, bool) else (out[0], out[1])
        if not ok:
            return f"{type(f).__name__}:{reason}"
    return None


def pr(tp: int, fp: int, positives: int) -> tuple[float, float]:
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / positives if positives else 0.0)


def summarise(name: str, docs: list[dict], rejected: list[bool]) -> dict:
    n_rej = sum(d["label"] == "reject" for d in docs)
    n_keep = len(docs) - n_rej
    tp = sum(r and d["label"] == "reject" for d, r in zip(docs, rejected, strict=True))
    fp = sum(r and d["label"] == "keep" for d, r in zip(docs, rejected, strict=True))
    precision, recall = pr(tp, fp, n_rej)
    by_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for d, r in zip(docs, rejected, strict=True):
        by_kind[d["kind"]][0] += r
        by_kind[d["kind"]][1] += 1
    print(
        f"{name}: reject precision {precision:.1%} ({tp}/{tp + fp}), recall {recall:.1%} "
        f"({tp}/{n_rej}); good documents rejected {fp / max(n_keep, 1):.1%} ({fp}/{n_keep})"
    )
    cells = []
    for kind in KEEP_KINDS + REJECT_KINDS:
        hit, n = by_kind.get(kind, (0, 0))
        verb = "FR" if kind in KEEP_KINDS else "caught"
        cells.append(f"{kind} {verb} {hit}/{n}")
    print("  " + ", ".join(cells[:7]))
    print("  " + ", ".join(cells[7:]))
    return {
        "precision": precision,
        "recall": recall,
        "false_rejection": fp / max(n_keep, 1),
        "by_kind": {k: v for k, v in by_kind.items()},
    }


def rule_table(docs: list[dict], verdicts: list[list[dict]]) -> None:
    n_rej = sum(d["label"] == "reject" for d in docs)
    first: dict[str, Counter] = defaultdict(Counter)
    anyf: dict[str, Counter] = defaultdict(Counter)
    for d, failed in zip(docs, verdicts, strict=True):
        if failed:
            first[failed[0]["rule"]][d["label"]] += 1
        for f in failed:
            anyf[f["rule"]][d["label"]] += 1
    print(
        f"\n{'rule':30} {'first: rej keep  prec  recall':>30}   {'any: rej keep  prec  recall':>28}"
    )
    for rule in [r.name for r in DEFAULT_RULES]:
        if not anyf[rule]:
            continue
        row = f"{rule:30}"
        for table in (first, anyf):
            c = table[rule]
            p, r = pr(c["reject"], c["keep"], n_rej)
            row += f"  {c['reject']:4d} {c['keep']:4d} {p:6.1%} {r:6.1%}      "
        print(row)


def speed(docs: list[dict], rounds: int) -> tuple[float, float | None]:
    texts = [d["norm"] for d in docs]
    ids = [d["id"] for d in docs]
    ours, theirs = [], []
    for _ in range(rounds):
        t0 = clock()
        for t in texts:
            evaluate(t)
        ours.append(len(texts) / (clock() - t0))
        if not HAVE_SPACY:
            continue
        filters = dt_filters()
        t0 = clock()
        for t, i in zip(texts, ids, strict=True):
            dt_verdict(filters, t, i)
        theirs.append(len(texts) / (clock() - t0))
    return max(ours), max(theirs) if theirs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--split", choices=("holdout", "tuning", "dev", "eval", "all"), default="holdout"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-speed", action="store_true", help="skip the timing")
    parser.add_argument("--show", action="store_true", help="list every wrong decision")
    args = parser.parse_args()
    dt_logger.remove()
    docs = load(args.split)
    print(
        f"split {args.split}: {len(docs)} documents, "
        f"{sum(d['label'] == 'keep' for d in docs)} keep, "
        f"{sum(d['label'] == 'reject' for d in docs)} reject\n"
    )
    verdicts = [evaluate(d["norm"]) for d in docs]
    ours = summarise("ours", docs, [bool(v) for v in verdicts])
    rule_table(docs, verdicts)
    theirs = None
    if HAVE_SPACY:
        filters = dt_filters()
        dt = [dt_verdict(filters, d["norm"], d["id"]) for d in docs]
        print()
        theirs = summarise("datatrove Gopher rep. + quality", docs, [v is not None for v in dt])
        print(
            "  datatrove reasons: "
            + ", ".join(f"{r} {n}" for r, n in Counter(dt).most_common() if r)
        )
    else:
        print(
            "\ndatatrove baseline skipped: spaCy (its English word tokenizer) is not installed "
            "in this venv; run with .venv-bench/bin/python (make bench-venv)"
        )
    if args.show:
        print("\nwrong decisions (ours):")
        for d, v in zip(docs, verdicts, strict=True):
            if bool(v) != (d["label"] == "reject"):
                why = (
                    f"{v[0]['rule']}={v[0]['value']:g} (thr {v[0]['threshold']:g})" if v else "kept"
                )
                print(f"  {d['label']:6} {d['kind']:10} {d['id']:50} {why}")
    figures = [
        results.Figure(
            BENCH, f"{args.split}: reject precision", ours["precision"], "(reported)", None
        ),
        results.Figure(
            BENCH, f"{args.split}: reject recall", ours["recall"], ">= 0.8", ours["recall"] >= 0.8
        ),
        results.Figure(
            BENCH,
            f"{args.split}: good documents rejected",
            ours["false_rejection"],
            "<= 0.05",
            ours["false_rejection"] <= 0.05,
        ),
    ]
    if theirs:
        figures += [
            results.Figure(
                BENCH,
                f"{args.split}: datatrove Gopher reject recall",
                theirs["recall"],
                "(reported)",
                None,
            ),
            results.Figure(
                BENCH,
                f"{args.split}: datatrove Gopher good documents rejected",
                theirs["false_rejection"],
                "(reported)",
                None,
            ),
        ]
    for kind in KEEP_KINDS:
        hit, n = ours["by_kind"].get(kind, (0, 0))
        figures.append(
            results.Figure(
                BENCH, f"{args.split}: good rejected, {kind}", hit / max(n, 1), "(reported)", None
            )
        )
    for kind in REJECT_KINDS:
        hit, n = ours["by_kind"].get(kind, (0, 0))
        figures.append(
            results.Figure(
                BENCH, f"{args.split}: recall, {kind}", hit / max(n, 1), "(reported)", None
            )
        )
    if not args.no_speed:
        our_rate, dt_rate = speed(docs, args.rounds)
        print(f"\nspeed, one core (best of {args.rounds}): ours {our_rate:,.0f} docs/s")
        figures.append(results.Figure(BENCH, "ours docs/s per core", our_rate, "(reported)", None))
    if not args.no_speed and dt_rate:
        print(
            f"  datatrove Gopher rep. + quality {dt_rate:,.0f} docs/s, "
            f"ours / datatrove {our_rate / dt_rate:.2f}"
        )
        figures += [
            results.Figure(
                BENCH,
                "datatrove Gopher rep. + quality docs/s per core",
                dt_rate,
                "(reported)",
                None,
            ),
            results.Figure(
                BENCH,
                "ours / datatrove docs/s, same docs",
                our_rate / dt_rate,
                ">= 1",
                our_rate >= dt_rate,
            ),
        ]
    results.emit(figures)


if __name__ == "__main__":
    main()
