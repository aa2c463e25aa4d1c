"""How many in-flight requests the client should keep against the embedded vLLM server.

Sends the same mix of real pipeline calls (the LLM filter and classify prompts on the
bundled sample documents, json_schema dialect, through the project's LLMClient) at each
concurrency level and prints requests/s and completion tokens/s as ratios to concurrency 1,
measured in this run. Each level's requests carry a level tag at the start of the user
message, so no level reuses another's cached document prefixes (the shared system
prompt still hits the prefix cache, as it does in a real run).

    .venv/bin/python bench/vllm_concurrency.py [--levels 1,4,16,64] [--docs 12] [--backend vllm|llamacpp]
    .venv/bin/python bench/vllm_concurrency.py --url http://127.0.0.1:8000/v1   # a running server

Without --url it starts the embedded vLLM (make vllm) and stops it afterwards; where vLLM
cannot run here it says why and exits 0 (nothing to measure).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import results  # noqa: E402

from webscale_rl import prompts  # noqa: E402
from webscale_rl.embedded_llm import EmbeddedLLM  # noqa: E402
from webscale_rl.embedded_vllm import EmbeddedVLLM, unavailable_reason  # noqa: E402
from webscale_rl.llm import LLMClient, LLMRequest, LLMSettings  # noqa: E402


def sample_docs(n: int) -> list[str]:
    docs = []
    for path in sorted((ROOT / "data" / "sample").glob("*.jsonl")):
        docs += [json.loads(line)["text"] for line in path.read_text().splitlines() if line]
    return docs[:n]


def make_requests(docs: list[str], tag: str, model: str) -> list[LLMRequest]:
    filt, classify = prompts.load("llm_filter"), prompts.load("classify")
    requests = []
    for i, doc in enumerate(docs):
        text = f"[{tag}] {doc}"
        requests.append(
            LLMRequest(
                "llm_filter",
                f"{tag}-f{i}",
                model,
                tuple(prompts.filter_messages(text)),
                filt.schema,
                "llm_filter",
                filt.prompt_id,
                max_tokens=256,
            )
        )
        requests.append(
            LLMRequest(
                "classify",
                f"{tag}-c{i}",
                model,
                tuple(prompts.classify_messages(text, 3)),
                prompts.classify_schema(3),
                "classify",
                classify.prompt_id,
                max_tokens=256,
            )
        )
    return requests


def measure(url: str, model: str, level: int, requests: list[LLMRequest], dialect: str) -> dict:
    db = Path(tempfile.mkdtemp()) / "bench.duckdb"
    settings = LLMSettings(
        base_url=url,
        model=model,
        max_concurrency=level,
        timeout_s=900,
        max_tokens=256,
        structured_output=dialect,
    )
    started = time.perf_counter()
    results = LLMClient(settings, db, f"bench-{level}").run(requests)
    wall = time.perf_counter() - started
    ok = [r for r in results.values() if r.ok]
    return {
        "level": level,
        "wall_s": wall,
        "requests": len(requests),
        "ok": len(ok),
        "req_s": len(requests) / wall,
        "gen_tok_s": sum(r.completion_tokens for r in results.values()) / wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--docs", type=int, default=12, help="documents per level (2 calls each)")
    parser.add_argument(
        "--backend", default="vllm", choices=["vllm", "llamacpp"], help="embedded server to start"
    )
    parser.add_argument("--dialect", help="structured output (default: the server's own)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    levels = [int(x) for x in args.levels.split(",")]
    docs = sample_docs(args.docs)

    server = None
    url = args.url
    if not url:
        reason = unavailable_reason() if args.backend == "vllm" else None
        if reason:
            print(f"vllm_concurrency: skipped, {reason}")
            return 0
        started = time.perf_counter()
        server = (EmbeddedVLLM() if args.backend == "vllm" else EmbeddedLLM()).start()
        url = server.base_url
        dialect = args.dialect or server.connection()["extra"]["structured_output"]
        print(
            f"{args.backend} {getattr(server, 'version', '') or ''} started in "
            f"{time.perf_counter() - started:.0f}s at {url}"
        )
    else:
        dialect = args.dialect or "json_schema"
    try:
        # One untimed call first, so the first level does not pay for warm-up.
        measure(url, args.model, 1, make_requests(docs[:1], "warm-up", args.model), dialect)
        rows = []
        for level in levels:
            rows.append(
                measure(
                    url, args.model, level, make_requests(docs, f"L{level}", args.model), dialect
                )
            )
            print(f"  concurrency {level}: {rows[-1]['req_s']:.3f} req/s", flush=True)
    finally:
        if server:
            server.stop()
    base = rows[0]
    print(
        f"{len(docs)} sample documents x (llm_filter + classify) = {base['requests']} calls per level, "
        f"{dialect}, max_tokens 256; ratios to concurrency {base['level']}"
    )
    print("concurrency | wall s | ok | req/s | x req/s | gen tok/s | x tok/s")
    for r in rows:
        print(
            f"{r['level']:>11} | {r['wall_s']:6.1f} | {r['ok']:>3}/{r['requests']} | {r['req_s']:5.2f} | "
            f"{r['req_s'] / base['req_s']:6.2f} | {r['gen_tok_s']:9.1f} | {r['gen_tok_s'] / base['gen_tok_s']:6.2f}"
        )
    best = max(rows, key=lambda r: r["req_s"])
    print(f"best: concurrency {best['level']} ({best['req_s']:.2f} req/s)")
    results.emit(
        [
            results.Figure(
                f"{args.backend} concurrency",
                f"req/s at concurrency {best['level']} (best) / at {base['level']}",
                best["req_s"] / base["req_s"],
                "(reported)",
                None,
            )
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
