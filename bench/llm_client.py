"""LLM client throughput against the test server with injected latency.

Prints achieved requests/s at concurrency C with server latency L as a ratio to the ideal
C/L (target >= 0.9 at C=64, L=200 ms), and the speed-up over sending one request at a
time (what the method's reference code does), both measured in this run. The server runs
in its own process so it does not share the client's interpreter.

    .venv/bin/python bench/llm_client.py [--concurrency 64] [--latency-ms 200] [--requests 1280]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from webscale_rl import prompts  # noqa: E402
from webscale_rl.llm import LLMClient, LLMRequest, LLMSettings  # noqa: E402


def make_requests(n: int, tag: str) -> list[LLMRequest]:
    prompt = prompts.load("llm_filter")
    text = (
        "The observatory opened in 1887. Its refractor has a 91 cm lens. It was the largest in the "
        "world until 1897. Visitors come on Saturday evenings. "
    )
    return [
        LLMRequest(
            "llm_filter",
            f"{tag}{i}",
            "fake-model",
            tuple(prompts.filter_messages(f"{text} Record {tag}-{i}.")),
            prompt.schema,
            "llm_filter",
            prompt.prompt_id,
        )
        for i in range(n)
    ]


def timed_run(url: str, concurrency: int, requests: list[LLMRequest]) -> float:
    db = Path(tempfile.mkdtemp()) / "bench.duckdb"
    client = LLMClient(
        LLMSettings(base_url=url, model="fake-model", max_concurrency=concurrency), db, "bench"
    )
    started = time.perf_counter()
    results = client.run(requests)
    elapsed = time.perf_counter() - started
    assert all(r.ok for r in results.values()), "bench calls failed"
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-ms", type=float, default=200)
    parser.add_argument("--requests", type=int, default=1280)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    port_file = Path(tempfile.mkdtemp()) / "port"
    server = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "tests" / "support" / "fake_llm.py"),
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--latency-s",
            str(args.latency_ms / 1000),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        while not (port_file.exists() and port_file.read_text()):
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}/v1"
        latency = args.latency_ms / 1000
        ideal = args.concurrency / latency
        timed_run(
            url, args.concurrency, make_requests(args.concurrency, "warm")
        )  # connections, imports
        elapsed = timed_run(url, args.concurrency, make_requests(args.requests, "run"))
        achieved = args.requests / elapsed
        n_seq = 20
        sequential = n_seq / timed_run(url, 1, make_requests(n_seq, "seq"))
        print(
            f"LLM client, server latency {args.latency_ms:.0f} ms, {args.requests} requests "
            f"(ledger writes included):"
        )
        print(
            f"  concurrency {args.concurrency}: {achieved:,.1f} req/s; ideal C/L = {ideal:,.1f} req/s; "
            f"ratio {achieved / ideal:.3f} (target >= 0.9)"
        )
        print(
            f"  one at a time (baseline): {sequential:,.2f} req/s; speed-up {achieved / sequential:,.1f}x"
        )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
