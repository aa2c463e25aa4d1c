"""Diversity of the generated questions: greedy generation with one fixed draw of
demonstrations per domain (before) against the method's choices, now the defaults: sampled
generation (temperature 1.0, each request seeded from its content) with demonstrations
drawn per document (after). Both call layouts, on the bundled sample corpus.

Each configuration runs the real stage code (ingest through learnability, which measures
nothing at pass_samples 0, through the generic runner as DAG tasks do) on a fresh
warehouse, with the LLM settings the DAG would build from the run's params
(`pipeline.llm_settings`). Reported, as the dataset card computes them
(`card.diversity_of_generated`, `card.diversity_of_run`), over every generated pair
(before verify) and over the accepted pairs: distinct-1/2/3 of the questions, the share of generated questions that
near-duplicate an earlier one (decontaminate's own Jaccard test), question- and answer-type
mixes, pairs per document.

- test server: it answers by content and ignores temperature, seed and demonstrations
  (tests rely on that), so before = after there: a check of the mechanics, not a
  measurement of diversity;
- the embedded real model (SmolLM2-135M on vLLM's CPU build): the measurement. In the
  fused layout this 135M model marks every sample document unqualified in the fused
  filter+classify call (measured: 12 of 12, in both configurations), so it generates
  nothing there; `make bench-real` runs the method layout.

    .venv/bin/python bench/diversity.py [--real-docs 12] [--no-real | --real-only]
                                        [--layouts method,fused] [--keep]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import stages  # noqa: E402
from webscale_rl import card, pipeline  # noqa: E402
from webscale_rl.embedded_llm import wait_for_models  # noqa: E402
from webscale_rl.llm import LLMSettings  # noqa: E402
from webscale_rl.params import RunParams  # noqa: E402
from webscale_rl.scripted_llm import spawn  # noqa: E402
from webscale_rl.stages import registry  # noqa: E402
from webscale_rl.stages.ingest import ingest_files  # noqa: E402

RUN = "bench-diversity"
SAMPLE = ROOT / "data" / "sample"
CONFIGS = {
    # temperature 0 and one draw of demonstrations for every document of a domain
    "before": {"sampling": {"generate": {"temperature": 0.0}}, "demo_selection": "per_domain"},
    "after": {},  # the defaults: sampled generation, demonstrations drawn per document
}
LAYOUTS = ["method", "fused"]


def run_config(corpus: list[Path], db: Path, llm: LLMSettings, params: dict) -> dict:
    """Every stage up to the export (learnability measuring nothing: pass_samples 0); the
    card's own diversity figures of the generated and the accepted pairs."""
    ingest_files(corpus, db_path=db, run_id=RUN, ingested_at=datetime(2026, 1, 1, tzinfo=UTC))
    settings = pipeline.llm_settings(RunParams.from_params(params), llm)
    for stage in registry.stages():
        if stage.name != "export":
            stages.run(db, RUN, stage.name, settings if stage.llm else None, **params)
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "generated": card.diversity_of_generated(con, RUN),
            "accepted": card.diversity_of_run(con, RUN),
        }
    finally:
        con.close()


def table(label: str, runs: dict) -> None:
    print(f"\n{label}")
    print(
        f"  {'config':7} {'layout':7} {'generated':>9} {'dist-1':>7} {'dist-2':>7} {'dist-3':>7} "
        f"{'near-dup':>9} {'accepted':>9} {'acc dist-2':>10}  question types (generated)"
    )
    for (config, layout), r in runs.items():
        g, a = r["generated"], r["accepted"]
        types = ", ".join(f"{k} {100 * v:.0f}%" for k, v in g["question_types"].items())
        print(
            f"  {config:7} {layout:7} {g['pairs']:9} {fmt(g['distinct_1'])} "
            f"{fmt(g['distinct_2'])} {fmt(g['distinct_3'])} "
            f"{100 * (g['duplicate_question_share'] or 0):8.1f}% {a['pairs']:9} "
            f"{fmt(a['distinct_2'], 10)}  {types}"
        )
    for (config, layout), r in runs.items():
        answers = ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in r["generated"]["answer_types"].items()
        )
        print(f"  {config:7} {layout:7} answer types (generated): {answers}")


def fmt(value: float | None, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width}.3f}"


def measure(label: str, llm: LLMSettings, corpus: list[Path], workdir: Path, base: dict) -> list:
    runs = {}
    for config, params in CONFIGS.items():
        for layout in LAYOUTS:
            db = workdir / f"{label}-{config}-{layout}.duckdb"
            runs[config, layout] = run_config(
                corpus, db, llm, {**base, **params, "call_layout": layout}
            )
            print(
                f"  {label} {config} {layout}: {runs[config, layout]['generated']['pairs']} pairs"
            )
    table(label, runs)
    figures = []
    for layout in LAYOUTS:
        before, after = runs["before", layout]["generated"], runs["after", layout]["generated"]
        for key, name in (
            ("distinct_2", "distinct-2"),
            ("duplicate_question_share", "near-duplicate share"),
        ):
            for config, r in (("before", before), ("after", after)):
                figures.append(
                    results.Figure(
                        "diversity",
                        f"{label}, {layout}: {name} of generated questions, {config}",
                        r[key] or 0.0,
                        "(reported)",
                        None,
                    )
                )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real-docs", type=int, default=12)
    parser.add_argument("--no-real", action="store_true", help="the test server only")
    parser.add_argument("--real-only", action="store_true", help="the real model only")
    parser.add_argument("--keep", action="store_true", help="keep the warehouses")
    parser.add_argument("--layouts", default=",".join(LAYOUTS), help="e.g. method or fused")
    args = parser.parse_args()
    LAYOUTS[:] = args.layouts.split(",")
    workdir = Path(tempfile.mkdtemp(prefix="webscale-rl-diversity-"))
    corpus = sorted(SAMPLE.glob("*.jsonl")) + sorted(SAMPLE.glob("*.parquet"))
    # No rate bounds: the gates are not what is measured; pass_samples 0: no policy calls.
    base = {"pass_samples": 0, "min_accepted_rate": 0.0, "builtin_benchmarks": []}
    figures = []
    try:
        if not args.real_only:
            server, url = spawn()
            try:
                llm = LLMSettings(base_url=url, model="fake-model", max_concurrency=64)
                figures += measure("test server", llm, corpus, workdir, base)
            finally:
                server.terminate()
                server.wait(10)
        if not args.no_real:
            figures += real_model(args.real_docs, workdir, base)
    finally:
        if args.keep:
            print(f"warehouses kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results.emit(figures)
    return 0


def real_model(n_docs: int, workdir: Path, base: dict) -> list:
    from webscale_rl import embedded_server

    backend, why = embedded_server.choose_backend("vllm")
    if backend != "vllm":
        print(f"\nreal model: skipped ({why})")
        return []
    # The sample's good documents of several domains, the first n_docs in file order.
    lines = []
    for name in ("docs_stem.jsonl", "docs_science_society.jsonl", "docs_life_commerce.jsonl"):
        lines += [ln for ln in (SAMPLE / name).read_text().splitlines() if ln.strip()][
            : n_docs // 3
        ]
    path = workdir / "real.jsonl"
    path.write_text("\n".join(lines) + "\n")
    server, line = embedded_server.start("vllm", workdir)
    print(f"\n{line}")
    try:
        conn = server.connection()
        wait_for_models(conn["host"], 600)
        llm = LLMSettings.from_connection(conn["host"], extra=conn["extra"])
        return measure(f"embedded SmolLM2-135M, {len(lines)} documents", llm, [path], workdir, base)
    finally:
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
