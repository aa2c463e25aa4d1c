"""What the LLM server did for a run, from its own Prometheus metrics (vLLM's /metrics).

The client's ledger says what the run asked for (per call, as the server reported it);
the server's counters say how it served the load: prefix-cache hit rate, tokens, how many
requests ran at once. The run scrapes the counters when it starts and again when its LLM
work is done (before the dataset card); the difference is what the server did meanwhile.
On a server shared with other runs the difference includes their traffic too: the card
says so. A server without vLLM metrics (llama.cpp, a hosted API) records nothing, and a
scrape that fails never fails the run.
"""

from __future__ import annotations

import json
import logging
import math
import re
import urllib.request
from datetime import datetime, timezone

log = logging.getLogger(__name__)

# vLLM counters (and histogram sums/counts) that a run's summary is built from.
COUNTERS = (
    "vllm:request_success_total",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "vllm:iteration_tokens_total_sum",
    "vllm:iteration_tokens_total_count",
    "vllm:request_inference_time_seconds_sum",
    "vllm:request_queue_time_seconds_sum",
    "vllm:num_preemptions_total",
)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_prometheus(text: str, names=COUNTERS) -> dict[str, float]:
    """Sum each named metric over its label sets (vLLM labels by model and engine)."""
    wanted = set(names)
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if not match or match.group(1) not in wanted:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        if math.isfinite(value):
            totals[match.group(1)] = totals.get(match.group(1), 0.0) + value
    return totals


def metrics_url(base_url: str) -> str:
    """vLLM serves /metrics at the root, beside /v1."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/metrics"


def _get(url: str, timeout_s: float) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode("utf-8", "replace")


def scrape(base_url: str, timeout_s: float = 5.0) -> dict | None:
    """{'server', 'version', 'counters'} or None where the server has no vLLM metrics."""
    url = metrics_url(base_url)
    try:
        counters = parse_prometheus(_get(url, timeout_s))
    except (OSError, ValueError) as exc:
        log.info("no LLM server metrics at %s (%s)", url, exc)
        return None
    if not counters:
        log.info("%s has no vLLM counters: server metrics are not recorded", url)
        return None
    version = None
    try:
        version = json.loads(_get(url.removesuffix("/metrics") + "/version", timeout_s)).get(
            "version"
        )
    except (OSError, ValueError, AttributeError):
        pass
    return {"server": url, "version": version, "counters": counters}


def record(
    con, run_id: str, point: str, snapshot: dict | None, now: datetime | None = None
) -> bool:
    """Upsert the run's snapshot at `point` into `llm_server_metrics` (declared with the
    warehouse schema); a re-run of the task replaces it."""
    if snapshot is None:
        return False
    con.execute(
        "INSERT OR REPLACE INTO llm_server_metrics VALUES (?, ?, ?, ?, ?, ?)",
        [
            run_id,
            point,
            now or datetime.now(timezone.utc),
            snapshot["server"],
            snapshot["version"],
            json.dumps(snapshot["counters"], sort_keys=True),
        ],
    )
    return True


def _ratio(num: float, den: float, digits: int = 3) -> float | None:
    return round(num / den, digits) if den > 0 else None


def summarize(start: dict, end: dict, wall_s: float) -> dict:
    """What the server did between two snapshots of its counters."""
    delta = {name: end.get(name, 0.0) - start.get(name, 0.0) for name in COUNTERS}
    restarted = any(v < 0 for v in delta.values())
    if restarted:  # counters went back to zero: only what came after the restart is known
        delta = {name: end.get(name, 0.0) for name in COUNTERS}
    requests = delta["vllm:request_success_total"]
    return {
        "requests": int(requests),
        "prompt_tokens": int(delta["vllm:prompt_tokens_total"]),
        "generation_tokens": int(delta["vllm:generation_tokens_total"]),
        "prefix_cache_queries": int(delta["vllm:prefix_cache_queries_total"]),
        "prefix_cache_hits": int(delta["vllm:prefix_cache_hits_total"]),
        "prefix_cache_hit_rate": _ratio(
            delta["vllm:prefix_cache_hits_total"], delta["vllm:prefix_cache_queries_total"]
        ),
        # Tokens per engine step (prefill + decode of every scheduled request): the batch.
        "mean_tokens_per_step": _ratio(
            delta["vllm:iteration_tokens_total_sum"], delta["vllm:iteration_tokens_total_count"], 1
        ),
        # Little's law: request-seconds spent running / wall seconds = requests running at once.
        "mean_running_requests": _ratio(
            delta["vllm:request_inference_time_seconds_sum"], wall_s, 2
        ),
        "mean_queue_s": _ratio(delta["vllm:request_queue_time_seconds_sum"], requests, 3),
        "preemptions": int(delta["vllm:num_preemptions_total"]),
        "wall_s": round(wall_s, 1),
        "server_restarted": restarted,
    }


def run_summary(con, run_id: str) -> dict | None:
    """The run's server summary from its start and end snapshots, or None without both."""
    if not con.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_name = 'llm_server_metrics'"
    ).fetchall():
        return None
    rows = {
        point: (scraped_at, server, version, json.loads(counters))
        for point, scraped_at, server, version, counters in con.execute(
            "SELECT point, scraped_at, server, version, counters FROM llm_server_metrics WHERE run_id = ?",
            [run_id],
        ).fetchall()
    }
    if "start" not in rows or "end" not in rows:
        return None
    (t0, _, _, start), (t1, server, version, end) = rows["start"], rows["end"]
    return {
        "server": server,
        "version": version,
        **summarize(start, end, max((t1 - t0).total_seconds(), 1e-9)),
    }
