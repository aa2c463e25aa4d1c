"""P3 heuristic stage: docs/s per core of the non-LLM document path, next to datatrove.

Our path, as the pipeline runs it, every part this project's own code:
  - ingest: `read_jsonl` (bytes -> JSON records) and `to_document` (NFC and whitespace
    normalisation, validation, token count, the doc_id content hash and the dedup key);
  - exact dedup: the first copy per doc_id (ingest's duplicate_content) and per dedup_key
    (heuristic_filter's first_copy, in SQL there, a dict here), kept across rounds as the
    warehouse keeps them across runs; the two hashes themselves are computed by ingest and
    are also timed alone, for information;
  - heuristic filter: `evaluate` on the documents exact dedup kept;
  - near dedup: `signatures` and `find_duplicates` on the documents the filter kept, with
    the documents kept in earlier rounds as `prior`, as the stage does across runs.

The baseline, datatrove 0.10.1 in process on the very same documents (the normalised texts
that reach our heuristic filter): the filter set GopherRepetitionFilter -> GopherQualityFilter
-> C4QualityFilter -> FineWebQualityFilter, chained as in a datatrove pipeline (a document
dropped by one filter never reaches the next), and MinhashDedupSignature (its default
14 x 8 64-bit xxhash signatures, written to a temporary folder) against our `signatures`.
datatrove's English word tokenizer is spaCy's blank "en" pipeline: no model download.
Left out because they need a download (no internet here): LanguageFilter and
FastTextClassifierFilter (fastText models), UnigramLogProbFilter (a word-frequency file),
C4BadWordsFilter (word lists). Left out as not comparable: URLFilter (no URL rule in this
project), the later MinHash stages (buckets, cluster, filter: disk-based batch jobs) and
datatrove's exact-dedup and reader steps (the figures compare the filter set).

Timing: one process, so one core. The corpus (bench/corpus.py, real text) is cut into
--rounds disjoint slices, one round each, like successive incremental runs; no document is
timed twice per side, so a round's ratio is measured on its own documents. Within a round
the filter sets alternate on chunks of --chunk documents (ours first on even chunks,
datatrove first on odd ones), and the signatures likewise on --minhash-docs documents, so
load from other processes falls on both sides alike. Times are the process's CPU seconds
(one thread: seconds on a core), so docs/s is per core even on a busy machine. docs/s are
over all rounds (documents / CPU seconds); a ratio ours/datatrove is the WORST of the
rounds' ratios (no document is timed twice, so there is no best-of-k over repeats).

    .venv-bench/bin/python bench/heuristic_stage.py [--docs 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may reach a hub
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core: no library thread pools
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import corpus
import results
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashDedupSignature
from datatrove.pipeline.filters import (
    C4QualityFilter,
    FineWebQualityFilter,
    GopherQualityFilter,
    GopherRepetitionFilter,
)
from datatrove.utils.logging import logger as dt_logger

from webscale_rl.stages.heuristic_filter import evaluate
from webscale_rl.stages.ingest import IngestLimits, read_jsonl, to_document
from webscale_rl.stages.near_dedup import DEFAULT_THRESHOLD, find_duplicates, signatures
from webscale_rl.text import content_hash, dedup_key

BENCH = "P3 heuristic stage"
# Seconds of this process's CPU time (user + system): one thread, so the time it held a core,
# which other processes on a busy machine do not inflate as they do wall-clock time.
clock = time.process_time
OUR_PARTS = ("ingest", "exact dedup", "heuristic filter", "near dedup signatures", "near dedup LSH")


def dt_filters() -> list:
    return [
        GopherRepetitionFilter(),
        GopherQualityFilter(),
        C4QualityFilter(),
        FineWebQualityFilter(),
    ]


def dt_documents(texts: list[str], ids: list[str]) -> list[Document]:
    """Fresh Documents for each run (C4QualityFilter edits a document's text); made untimed."""
    return [Document(text=t, id=i) for t, i in zip(texts, ids, strict=True)]


def run_dt_filters(filters: list, docs: list[Document]) -> set[str]:
    """The ids datatrove's filters keep, chained as in a pipeline."""
    pipe = iter(docs)
    for f in filters:
        pipe = f.run(pipe)
    return {doc.id for doc in pipe}


def dt_reasons(filters: list) -> Counter:
    reasons: Counter = Counter()
    for f in filters:
        for key, value in f.stats.stats.items():
            if key.startswith("dropped_"):
                reasons[f"{type(f).__name__}:{key[8:]}"] += value.total
    return reasons


def timed(fn, *args):
    t0 = clock()
    out = fn(*args)
    return out, clock() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=250, help="docs per interleaved filter chunk")
    parser.add_argument(
        "--minhash-docs", type=int, default=500, help="docs per round for the signature ratio"
    )
    args = parser.parse_args()
    dt_logger.remove()  # datatrove logs every step at INFO
    started, cpu_started = time.perf_counter(), clock()

    with tempfile.TemporaryDirectory(prefix="p3-") as tmp:
        tmp = Path(tmp)
        records = list(corpus.documents(args.docs))
        bounds = [args.docs * r // args.rounds for r in range(args.rounds + 1)]
        files = []
        for r in range(args.rounds):
            path = tmp / f"round{r}.jsonl"
            with path.open("w", encoding="utf-8") as f:
                for rec in records[bounds[r] : bounds[r + 1]]:
                    f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            files.append(path)
        n_words = sum(len(r["text"].split()) for r in records)
        print(
            f"corpus: {args.docs:,} docs ({sum(p.stat().st_size for p in files) / 1e6:.1f} MB, "
            f"{n_words / args.docs:.0f} words/doc) from {len(corpus.paragraph_pool()):,} "
            f"paragraphs, in {args.rounds} rounds; built in {time.perf_counter() - started:.1f} s"
        )
        del records

        limits = IngestLimits()
        filters = dt_filters()
        minhash = MinhashDedupSignature(output_folder=str(tmp / "minhash"))
        # Warm-up, untimed: regexes, spaCy's pipeline, numpy paths.
        warm = [to_document(rec, limits)[0]["text"] for rec in list(read_jsonl(files[0]))[:20]]
        for t in warm:
            evaluate(t)
        signatures(warm)
        run_dt_filters(filters, dt_documents(warm, [f"w{i}" for i in range(len(warm))]))
        MinhashDedupSignature(output_folder=str(tmp / "warm")).run(
            iter(Document(text=t, id=str(i)) for i, t in enumerate(warm))
        )
        filters = dt_filters()  # fresh stats

        ours_s = Counter()  # part -> seconds
        ours_n = Counter()  # part -> documents in
        keys_s = 0.0
        dt_filter_s = ours_filter_s = 0.0
        dt_sig_s = ours_sig_small_s = 0.0
        filter_docs = sig_docs = 0
        round_ratios: list[tuple[float, float]] = []  # (filter set, signatures)
        seen_ids: set[str] = set()
        first_by_key: dict[str, str] = {}
        prior_sigs: list = []
        agree = both_keep = both_reject = only_ours = only_dt = 0
        our_reasons: Counter = Counter()
        exact_dups = near_dups = 0

        for r, path in enumerate(files):
            n_in = bounds[r + 1] - bounds[r]
            # Ingest.
            t0 = clock()
            docs = []
            for rec in read_jsonl(path):
                if rec.fields is not None:
                    doc, _, _ = to_document(rec, limits)
                    if doc is not None:
                        docs.append(doc)
            ours_s["ingest"] += clock() - t0
            ours_n["ingest"] += n_in
            # The two hashes alone (already inside ingest's time), for information.
            texts = [d["text"] for d in docs]
            t0 = clock()
            for t in texts:
                content_hash(t)
                dedup_key(t)
            keys_s += clock() - t0
            # Exact dedup: the first copy per doc_id and per dedup_key, across rounds.
            t0 = clock()
            kept = []
            for d in docs:
                if d["doc_id"] in seen_ids:
                    continue
                seen_ids.add(d["doc_id"])
                if first_by_key.setdefault(d["dedup_key"], d["doc_id"]) == d["doc_id"]:
                    kept.append(d)
            ours_s["exact dedup"] += clock() - t0
            ours_n["exact dedup"] += len(docs)
            exact_dups += len(docs) - len(kept)

            # Heuristic filter, ours and datatrove's, alternating on the same chunks.
            texts = [d["text"] for d in kept]
            ids = [d["doc_id"] for d in kept]
            ours_keep: dict[str, bool] = {}
            dt_keep: set[str] = set()
            r_ours = r_dt = 0.0
            for c, lo in enumerate(range(0, len(texts), args.chunk)):
                chunk_t, chunk_i = texts[lo : lo + args.chunk], ids[lo : lo + args.chunk]
                for side in ("ours", "dt") if c % 2 == 0 else ("dt", "ours"):
                    if side == "ours":
                        t0 = clock()
                        verdicts = [evaluate(t) for t in chunk_t]
                        r_ours += clock() - t0
                        for i, failed in zip(chunk_i, verdicts, strict=True):
                            ours_keep[i] = not failed
                            if failed:
                                our_reasons[failed[0]["rule"]] += 1
                    else:
                        dt_docs = dt_documents(chunk_t, chunk_i)
                        keep, s = timed(run_dt_filters, filters, dt_docs)
                        r_dt += s
                        dt_keep |= keep
            ours_s["heuristic filter"] += r_ours
            ours_n["heuristic filter"] += len(texts)
            ours_filter_s += r_ours
            dt_filter_s += r_dt
            filter_docs += len(texts)
            for i in ids:
                a, b = ours_keep[i], i in dt_keep
                agree += a == b
                both_keep += a and b
                both_reject += not a and not b
                only_ours += a and not b
                only_dt += b and not a

            # Near dedup on what our filter kept: signatures, then the LSH pass with the
            # documents kept in earlier rounds as prior.
            passed = [(i, t) for i, t in zip(ids, texts, strict=True) if ours_keep[i]]
            sigs, s = timed(signatures, [t for _, t in passed])
            ours_s["near dedup signatures"] += s
            ours_n["near dedup signatures"] += len(passed)
            new = [(i, sig) for (i, _), sig in zip(passed, sigs, strict=True)]
            dups, s = timed(find_duplicates, prior_sigs, new, DEFAULT_THRESHOLD)
            ours_s["near dedup LSH"] += s
            ours_n["near dedup LSH"] += len(new)
            near_dups += len(dups)
            prior_sigs += [(i, sig) for i, sig in new if i not in dups]

            # Signatures against datatrove's MinhashDedupSignature on the same documents.
            small = [t for _, t in passed[: args.minhash_docs]]
            r_sig_ours = r_sig_dt = 0.0
            for side in ("ours", "dt") if r % 2 == 0 else ("dt", "ours"):
                if side == "ours":
                    r_sig_ours += timed(signatures, small)[1]
                else:
                    dt_docs = [Document(text=t, id=str(k)) for k, t in enumerate(small)]
                    r_sig_dt += timed(minhash.run, iter(dt_docs), r)[1]
            ours_sig_small_s += r_sig_ours
            dt_sig_s += r_sig_dt
            sig_docs += len(small)
            # ours/datatrove docs/s on the same documents = datatrove's seconds / ours.
            round_ratios.append((r_dt / r_ours, r_sig_dt / r_sig_ours))

    rate = {p: ours_n[p] / ours_s[p] for p in OUR_PARTS}
    overall = args.docs / sum(ours_s.values())
    near = ours_n["near dedup signatures"] / (
        ours_s["near dedup signatures"] + ours_s["near dedup LSH"]
    )
    exact = ours_n["exact dedup"] / (keys_s + ours_s["exact dedup"])
    dt_rate = filter_docs / dt_filter_s
    dt_sig_rate = sig_docs / dt_sig_s
    ours_filter_rate = filter_docs / ours_filter_s
    worst_filter = min(f for f, _ in round_ratios)
    worst_sig = min(s for _, s in round_ratios)
    agreement = agree / max(filter_docs, 1)

    print(f"\nours, docs/s per core ({args.docs:,} docs in, all {args.rounds} rounds together):")
    for p in OUR_PARTS:
        print(f"  {p:24} {rate[p]:9,.0f} docs/s  ({ours_n[p]:,} docs, {ours_s[p]:6.2f} s)")
    print(
        f"  {'  of ingest: the 2 hashes':24} {ours_n['exact dedup'] / keys_s:9,.0f} docs/s  "
        f"(content_hash + dedup_key, {keys_s:.2f} s, inside ingest's time)"
    )
    print(f"  {'overall':24} {overall:9,.0f} docs/s  ({sum(ours_s.values()):6.2f} s)")
    print(
        f"  funnel: {args.docs:,} in, {exact_dups} exact duplicates, "
        f"{filter_docs - both_keep - only_ours} rejected by the filter, {near_dups} near duplicates"
    )
    print(
        f"\nfilter set on the same {filter_docs:,} docs, the ones exact dedup kept "
        f"(alternating in chunks of {args.chunk}):"
    )
    print(
        f"  ours: evaluate              {ours_filter_rate:9,.0f} docs/s  ({ours_filter_s:6.2f} s)"
    )
    print(f"  datatrove: 4 chained filters {dt_rate:8,.0f} docs/s  ({dt_filter_s:6.2f} s)")
    print(
        "  ratio per round: "
        + ", ".join(f"{f:.2f}" for f, _ in round_ratios)
        + f"  (worst {worst_filter:.2f})"
    )
    print(
        f"  keep/reject agree on {agreement:.1%}: both keep {both_keep}, both reject "
        f"{both_reject}, only ours keeps {only_ours}, only datatrove keeps {only_dt}"
    )
    print(
        "  (datatrove's GopherQualityFilter counts spaCy's punctuation tokens as words, so its\n"
        "   alpha-words ratio (>= 0.8) fails much technical prose; our tokenizer counts words only)"
    )
    print(
        "  our first failing rules: " + ", ".join(f"{k} {v}" for k, v in our_reasons.most_common(6))
    )
    print(
        "  datatrove drop reasons: "
        + ", ".join(f"{k} {v}" for k, v in dt_reasons(filters).most_common(6))
    )
    print(f"\nMinHash signatures on the same {sig_docs:,} docs (what our filter kept):")
    print(
        f"  ours: signatures (128 x 32-bit)            {sig_docs / ours_sig_small_s:8,.0f} docs/s"
    )
    print(f"  datatrove: MinhashDedupSignature (112 x 64) {dt_sig_rate:7,.0f} docs/s")
    print(
        "  ratio per round: "
        + ", ".join(f"{s:.2f}" for _, s in round_ratios)
        + f"  (worst {worst_sig:.2f})"
    )
    print(
        f"\ntotal run time {time.perf_counter() - started:.0f} s wall, {clock() - cpu_started:.0f} s CPU "
        "(docs/s above: per CPU second of this one process)"
    )

    def reported(name: str, value: float) -> results.Figure:
        return results.Figure(BENCH, name, value, "(reported)", None)

    figures = [
        reported("ours docs/s per core: ingest (parse + normalise + hashes)", rate["ingest"]),
        reported("ours docs/s per core: exact dedup (hashes + first copy)", exact),
        reported("ours docs/s per core: heuristic filter", rate["heuristic filter"]),
        reported("ours docs/s per core: near dedup (signatures + LSH)", near),
        reported("ours docs/s per core: overall (docs in / all parts' time)", overall),
        reported("datatrove docs/s per core: Gopher rep. + Gopher + C4 + FineWeb filters", dt_rate),
        reported("datatrove docs/s per core: MinhashDedupSignature", dt_sig_rate),
        results.Figure(
            BENCH,
            f"ours/datatrove docs/s, filter set, same docs (worst of {args.rounds} rounds)",
            worst_filter,
            ">= 1",
            worst_filter >= 1,
        ),
        results.Figure(
            BENCH,
            f"ours/datatrove docs/s, MinHash signatures, same docs (worst of {args.rounds} rounds)",
            worst_sig,
            ">= 1",
            worst_sig >= 1,
        ),
        reported("ours overall path docs/s / datatrove filter set docs/s", overall / dt_rate),
        reported(
            "share of docs where ours and datatrove's filters agree on keep/reject", agreement
        ),
    ]
    results.emit(
        figures,
        details={
            "bench": BENCH,
            "docs": args.docs,
            "rounds": args.rounds,
            "round_ratios": round_ratios,
            "our_reasons": dict(our_reasons),
            "datatrove_reasons": dict(dt_reasons(filters)),
        },
    )


if __name__ == "__main__":
    main()
