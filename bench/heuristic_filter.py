"""Heuristic filter: false rejections on good text of many kinds, and throughput.

Good text comes from three places on any machine with the project installed: the sample
corpus's 60 good documents, the long descriptions (READMEs) of the installed Python
packages, and the docstrings of standard-library modules. None of it is junk, so every
rejection is a false rejection; the table shows which rule fired (first failing rule).

    .venv/bin/python bench/heuristic_filter.py
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import warnings
from collections import Counter
from importlib import metadata
from pathlib import Path

import results

from webscale_rl.stages.heuristic_filter import evaluate
from webscale_rl.text import normalize_text, tokenize

ROOT = Path(__file__).resolve().parents[1]


def sample_docs() -> list[str]:
    texts = []
    for path in sorted((ROOT / "data" / "sample").glob("docs_*.jsonl")):
        texts += [d["text"] for d in map(json.loads, path.open()) if not d["id"].startswith("bad-")]
    return texts


def package_readmes() -> list[str]:
    texts = []
    for dist in metadata.distributions():
        body = dist.metadata.get_payload() if hasattr(dist.metadata, "get_payload") else None
        body = body or dist.metadata.get("Description") or ""
        if len(tokenize(body)) >= 50:
            texts.append(body)
    return texts


def stdlib_docstrings() -> list[str]:
    texts = []
    warnings.simplefilter("ignore")
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in {
            "antigravity",
            "this",
            "idlelib",
            "turtledemo",
            "tkinter",
        }:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        doc = module.__doc__ or ""
        if len(tokenize(doc)) >= 50:
            texts.append(doc)
    return texts


def main() -> None:
    sources = {
        "sample (good)": sample_docs(),
        "package READMEs": package_readmes(),
        "stdlib docstrings": stdlib_docstrings(),
    }
    print(f"{'source':20} {'docs':>6} {'rejected':>9} {'rate':>7}  first failing rule: count")
    all_texts = []
    figures = []
    for name, texts in sources.items():
        texts = [normalize_text(t) for t in texts]
        all_texts += texts
        rules = Counter(f[0]["rule"] for f in (evaluate(t) for t in texts) if f)
        n_rej = sum(rules.values())
        rate = n_rej / max(len(texts), 1)
        figures.append(
            results.Figure(
                "heuristic filter",
                f"good documents rejected: {name}",
                rate,
                "<= 0.05",
                rate <= 0.05,
            )
        )
        print(
            f"{name:20} {len(texts):6d} {n_rej:9d} {n_rej / max(len(texts), 1):7.1%}  "
            + ", ".join(f"{r}: {n}" for r, n in rules.most_common())
        )
    start = time.perf_counter()
    reps = 0
    while time.perf_counter() - start < 3.0:
        for t in all_texts:
            evaluate(t)
        reps += 1
    elapsed = time.perf_counter() - start
    chars = sum(map(len, all_texts)) * reps
    print(
        f"throughput: {len(all_texts) * reps / elapsed:,.0f} docs/s, {chars / elapsed / 1e6:.1f} MB/s on one core"
    )
    figures.append(
        results.Figure(
            "heuristic filter",
            "docs/s on one core",
            len(all_texts) * reps / elapsed,
            "(reported)",
            None,
        )
    )
    results.emit(figures)


if __name__ == "__main__":
    main()
