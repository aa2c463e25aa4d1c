"""A large corpus of real text, built on any machine from what ships with Python and the venv.

Paragraphs come from the docstrings of the standard library (modules, classes, functions)
and the long descriptions (READMEs) of the installed packages: real prose, lists, code
and markup, about 10,000 distinct paragraphs. A document is a title plus 3-6 paragraphs
drawn (seeded, per document) from that pool, so documents are distinct, realistic in length
and shape, and as many as asked for. A share of them are planted duplicates: exact copies
(caught by ingest's content hash) and copies with ~2 % of the words changed (caught by
the near-duplicate stage), as a crawl has.

    .venv/bin/python bench/corpus.py --docs 10000 --out /tmp/scale.jsonl
"""

from __future__ import annotations

import argparse
import importlib
import json
import random
import sys
import warnings
from functools import lru_cache
from importlib import metadata
from pathlib import Path

SKIP_MODULES = {"antigravity", "this", "idlelib", "turtledemo", "tkinter"}
MIN_PARAGRAPH_WORDS = 20


def _paragraphs(text: str) -> list[str]:
    out = []
    for block in text.split("\n\n"):
        block = "\n".join(line.rstrip() for line in block.strip("\n").splitlines())
        if len(block.split()) >= MIN_PARAGRAPH_WORDS:
            out.append(block)
    return out


@lru_cache(maxsize=1)
def paragraph_pool() -> tuple[str, ...]:
    """Distinct paragraphs of real text, in a stable order (sorted), so a seed means one corpus
    on one machine (the installed packages decide the pool)."""
    found: set[str] = set()
    warnings.simplefilter("ignore")
    for name in sorted(sys.stdlib_module_names):
        if name.startswith("_") or name in SKIP_MODULES:
            continue
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        for obj in [module, *(getattr(module, a, None) for a in dir(module))]:
            doc = getattr(obj, "__doc__", None)
            if isinstance(doc, str):
                found.update(_paragraphs(doc))
    for dist in metadata.distributions():
        meta = dist.metadata
        body = meta.get_payload() if hasattr(meta, "get_payload") else None
        found.update(_paragraphs(body or meta.get("Description") or ""))
    return tuple(sorted(found))


def _edit(text: str, rng: random.Random, rate: float) -> str:
    words = text.split(" ")
    for i in rng.sample(range(len(words)), max(1, int(len(words) * rate))):
        words[i] = rng.choice(("also", "then", "often", "here", "still", "now"))
    return " ".join(words)


def documents(
    n: int,
    seed: int = 0,
    exact_dup_share: float = 0.02,
    near_dup_share: float = 0.02,
    paragraphs: tuple[int, int] = (3, 6),
):
    """Yield `n` corpus records ({"id", "url", "text"}), deterministic for (n, seed, pool);
    each original document has between `paragraphs` paragraphs (inclusive)."""
    pool = paragraph_pool()
    rng = random.Random(seed)
    originals: list[str] = []
    for i in range(n):
        roll = rng.random()
        if originals and roll < exact_dup_share:
            text = rng.choice(originals)
        elif originals and roll < exact_dup_share + near_dup_share:
            text = _edit(rng.choice(originals), rng, 0.02)
        else:
            parts = [pool[rng.randrange(len(pool))] for _ in range(rng.randint(*paragraphs))]
            title = " ".join(parts[0].split()[:6]).strip(".,:;")
            text = f"{title} (notes {i})\n\n" + "\n\n".join(parts)
            if len(originals) < 5000:  # duplicates are drawn from the first originals
                originals.append(text)
        yield {"id": f"scale-{i:07d}", "url": f"https://docs.example.org/{i}", "text": text}


def write_jsonl(path: Path, n: int, seed: int = 0, paragraphs: tuple[int, int] = (3, 6)) -> int:
    """Write `n` documents as JSONL; returns the bytes written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for record in documents(n, seed, paragraphs=paragraphs):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    size = write_jsonl(args.out, args.docs, args.seed)
    print(
        f"{args.docs} documents ({size / 1e6:.1f} MB) from a pool of {len(paragraph_pool())} "
        f"paragraphs -> {args.out}"
    )


if __name__ == "__main__":
    main()
