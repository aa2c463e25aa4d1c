"""The LLM server's own metrics (vLLM's Prometheus counters): parsing, the run's delta,
and the snapshots kept in DuckDB. Scraped over HTTP from the test server, which serves
vLLM-style counters when asked to (FakeLLM(vllm_metrics=True))."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import duckdb
import pytest

from webscale_rl import warehouse
from webscale_rl.llm import LLMClient, LLMSettings, server_metrics
from webscale_rl.scripted_llm import FakeLLM

TEXT = """# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="m"} 1200.0
vllm:prompt_tokens_total{engine="1",model_name="m"} 300.0
vllm:prompt_tokens_created{engine="0",model_name="m"} 1.7e9
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 9.0
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1.0
vllm:prefix_cache_hits_total{engine="0",model_name="m"} NaN
vllm:generation_tokens_total 42
python_gc_objects_collected_total{generation="0"} 7.0
"""


@pytest.mark.unit
def test_parse_sums_label_sets_and_keeps_only_finite_known_counters():
    counters = server_metrics.parse_prometheus(TEXT)
    assert counters == {
        "vllm:prompt_tokens_total": 1500.0,
        "vllm:request_success_total": 10.0,  # stop + length: both were served
        "vllm:generation_tokens_total": 42.0,
    }


@pytest.mark.unit
def test_metrics_url_is_at_the_server_root():
    assert server_metrics.metrics_url("http://h:8000/v1") == "http://h:8000/metrics"
    assert server_metrics.metrics_url("http://h:8000/v1/") == "http://h:8000/metrics"
    assert server_metrics.metrics_url("http://h/proxy") == "http://h/proxy/metrics"


def counters(**values) -> dict:
    return {f"vllm:{k}": float(v) for k, v in values.items()}


@pytest.mark.unit
def test_summary_is_the_difference_between_snapshots():
    start = counters(
        request_success_total=10,
        prompt_tokens_total=1000,
        generation_tokens_total=100,
        prefix_cache_queries_total=1000,
        prefix_cache_hits_total=0,
        iteration_tokens_total_sum=1100,
        iteration_tokens_total_count=110,
        request_inference_time_seconds_sum=20,
        request_queue_time_seconds_sum=1,
    )
    end = counters(
        request_success_total=30,
        prompt_tokens_total=5000,
        generation_tokens_total=600,
        prefix_cache_queries_total=5000,
        prefix_cache_hits_total=3000,
        iteration_tokens_total_sum=5600,
        iteration_tokens_total_count=200,
        request_inference_time_seconds_sum=220,
        request_queue_time_seconds_sum=5,
    )
    s = server_metrics.summarize(start, end, wall_s=50)
    assert s["requests"] == 20 and s["prompt_tokens"] == 4000 and s["generation_tokens"] == 500
    assert s["prefix_cache_hit_rate"] == 0.75  # 3000 of 4000 prompt tokens
    assert s["mean_tokens_per_step"] == 50.0  # 4500 tokens over 90 steps
    assert s["mean_running_requests"] == 4.0  # 200 request-seconds over 50 s
    assert s["mean_queue_s"] == 0.2 and not s["server_restarted"]


@pytest.mark.unit
def test_a_server_restart_counts_only_what_followed_it():
    s = server_metrics.summarize(
        counters(request_success_total=50, prompt_tokens_total=9000),
        counters(request_success_total=4, prompt_tokens_total=800),
        wall_s=10,
    )
    assert s["server_restarted"] and s["requests"] == 4 and s["prompt_tokens"] == 800
    assert s["prefix_cache_hit_rate"] is None  # no queries counted: not a made-up 0 %


@pytest.mark.e2e
def test_scrape_reads_a_vllm_style_server_and_records_nothing_for_others(tmp_path):
    from webscale_rl import prompts
    from webscale_rl.llm import LLMRequest

    p = prompts.load("llm_filter")
    requests = [
        LLMRequest(
            "llm_filter",
            f"d{i}",
            "fake-model",
            tuple(prompts.filter_messages(f"Document {i}. The bridge opened in 18{i}0.")),
            p.schema,
            "llm_filter",
            p.prompt_id,
        )
        for i in range(4)
    ]
    with FakeLLM(vllm_metrics=True) as vllm_like, FakeLLM() as plain:
        before = server_metrics.scrape(vllm_like.base_url)
        settings = LLMSettings(base_url=vllm_like.base_url, model="fake-model")
        results = LLMClient(settings, tmp_path / "w.duckdb", "r").run(requests)
        after = server_metrics.scrape(vllm_like.base_url)
        assert server_metrics.scrape(plain.base_url) is None  # 404 on /metrics: nothing
    assert server_metrics.scrape("http://127.0.0.1:9/v1", timeout_s=1) is None  # nobody there
    assert before["version"] == "fake-vllm" and before["server"].endswith("/metrics")
    s = server_metrics.summarize(before["counters"], after["counters"], wall_s=1)
    assert s["requests"] == 4 == sum(r.ok for r in results.values())
    # The server's token counts agree with what the ledger recorded from each reply.
    assert s["prompt_tokens"] == sum(r.prompt_tokens for r in results.values())
    assert s["generation_tokens"] == sum(r.completion_tokens for r in results.values())
    # One system prompt, four requests: the last three hit its cached prefix.
    assert 0 < s["prefix_cache_hit_rate"] < 1


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "w.duckdb"
    with warehouse.write(path):
        pass
    return path


@pytest.mark.unit
def test_snapshots_are_upserted_and_summarised_from_duckdb(db):
    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    snap = {"server": "http://h/metrics", "version": "0.32.0"}
    with warehouse.write(db) as con:
        server_metrics.record(
            con, "r1", "start", {**snap, "counters": counters(request_success_total=1)}, t0
        )
        # A retried task replaces its snapshot instead of adding a second one.
        server_metrics.record(
            con, "r1", "start", {**snap, "counters": counters(request_success_total=2)}, t0
        )
        assert server_metrics.run_summary(con, "r1") is None  # no end yet
        server_metrics.record(
            con,
            "r1",
            "end",
            {**snap, "counters": counters(request_success_total=12)},
            t0 + timedelta(seconds=40),
        )
        assert server_metrics.record(con, "r1", "end", None) is False
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM llm_server_metrics").fetchone() == (2,)
        s = server_metrics.run_summary(con, "r1")
    finally:
        con.close()
    assert s["requests"] == 10 and s["wall_s"] == 40.0 and s["version"] == "0.32.0"


@pytest.mark.unit
def test_run_summary_on_a_warehouse_that_never_saw_a_vllm_server(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert server_metrics.run_summary(con, "r1") is None
    finally:
        con.close()
