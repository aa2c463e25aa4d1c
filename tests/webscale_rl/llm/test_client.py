"""The LLM client against the real local test server: dialects, retries, strict parsing,
the ledger cache, bounded concurrency, health check."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import duckdb
import pytest

from webscale_rl import prompts
from webscale_rl.llm import LLMClient, LLMRequest, LLMSettings, LLMUnavailable
from webscale_rl.llm import ledger as ledger_mod
from webscale_rl.llm.client import _InvalidReply, parse_reply
from webscale_rl.scripted_llm import FakeLLM

pytestmark = pytest.mark.e2e

DOC = (
    "The Harbour Bridge opened in 1932 after eight years of work. Its steel arch spans 503 metres. "
    "About 160,000 vehicles cross it each day. It was designed by John Bradfield."
)


def requests(n: int = 10, stage: str = "llm_filter") -> list[LLMRequest]:
    prompt = prompts.load(stage)
    return [
        LLMRequest(
            stage,
            f"doc{i}",
            "fake-model",
            tuple(prompts.filter_messages(f"{DOC} Item {i}.")),
            prompt.schema,
            stage,
            prompt.prompt_id,
        )
        for i in range(n)
    ]


@pytest.fixture
def server():
    with FakeLLM() as fake:
        yield fake


def client(server, tmp_path, **kw) -> LLMClient:
    settings = LLMSettings(
        base_url=server.base_url,
        model="fake-model",
        backoff_base_s=0.01,
        backoff_cap_s=0.1,
        timeout_s=kw.pop("timeout_s", 2.0),
        **kw,
    )
    return LLMClient(settings, tmp_path / "w.duckdb", "run-1")


def ledger(tmp_path) -> list[tuple]:
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        return con.execute(
            "SELECT status, error_kind, attempts, prompt_tokens, completion_tokens, raw "
            "FROM llm_calls ORDER BY item_id"
        ).fetchall()
    finally:
        con.close()


def kill_after(server: FakeLLM, answered: int, then=None) -> None:
    """In the background: once `server` has answered `answered` calls, stop it (mid-stage,
    after the health check, not at a fixed time a slow start could miss), then call `then`."""

    def kill() -> None:
        deadline = time.monotonic() + 30
        while server.stats["completions_ok"] < answered and time.monotonic() < deadline:
            time.sleep(0.01)
        server.stop()
        if then is not None:
            then()

    threading.Thread(target=kill, daemon=True).start()


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("json_schema", {"type": "json_schema", "name": "llm_filter"}),
        ("json_object", {"type": "json_object"}),
        ("none", None),
    ],
)
def test_structured_output_is_sent_in_the_servers_dialect(server, tmp_path, dialect, expected):
    results = client(server, tmp_path, structured_output=dialect).run(requests(1))
    assert all(r.ok for r in results.values())
    sent = server.requests_log[-1].get("response_format")
    if expected is None:
        assert sent is None
    elif dialect == "json_schema":
        assert sent["type"] == "json_schema" and sent["json_schema"]["name"] == "llm_filter"
        assert sent["json_schema"]["schema"]["required"] == ["reason", "qualified"]
    else:
        assert sent == {"type": "json_object", "schema": prompts.load("llm_filter").schema}


@pytest.mark.parametrize(
    "kind",
    [
        "http_500",
        "http_503",
        "http_429",
        "timeout",
        "malformed_json",
        "missing_fields",
        "truncated",
        "refusal",
    ],
)
def test_each_fault_on_a_first_attempt_is_retried_to_success(server, tmp_path, kind):
    server.set_faults(
        {"fail_first": {"kind": kind, "n": 1}, "retry_after_s": 0.05, "timeout_sleep_s": 1.5}
    )
    results = client(server, tmp_path, timeout_s=0.5).run(requests(4))
    assert [r.ok for r in results.values()] == [True] * 4
    assert [row[2] for row in ledger(tmp_path)] == [2] * 4  # two attempts each
    assert server.stats["faults"][kind] == 4


def test_ledger_tokens_equal_what_the_server_reported_including_failed_attempts(server, tmp_path):
    server.set_faults({"malformed_json": 0.3, "http_500": 0.2})
    client(server, tmp_path).run(requests(20))
    rows = ledger(tmp_path)
    assert sum(r[3] for r in rows) == server.stats["prompt_tokens"]
    assert sum(r[4] for r in rows) == server.stats["completion_tokens"]


def test_retry_after_is_honoured(server, tmp_path):
    server.set_faults({"fail_first": {"kind": "http_429", "n": 1}, "retry_after_s": 0.6})
    started = time.monotonic()
    results = client(server, tmp_path).run(requests(2))
    assert all(r.ok for r in results.values())
    assert time.monotonic() - started >= 0.6


def test_invalid_replies_are_retried_a_bounded_number_of_times_then_recorded_with_raw_text(
    server, tmp_path
):
    server.set_faults({"permanent": {"kind": "malformed_json", "match": "Item 1."}})
    results = client(server, tmp_path, max_invalid_retries=2).run(requests(2))
    by_item = {r.request.item_id: r for r in results.values()}
    assert by_item["doc0"].ok and not by_item["doc1"].ok
    failed = [row for row in ledger(tmp_path) if row[0] == "failed"]
    assert len(failed) == 1
    status, kind, attempts, _, _, raw = failed[0]
    assert (kind, attempts) == ("invalid_json", 3) and raw.startswith("{'reason'")


def test_client_errors_are_not_retried(server, tmp_path):
    server.set_faults({"permanent": {"kind": "http_400", "match": "Item 0."}})
    results = client(server, tmp_path).run(requests(1))
    [result] = results.values()
    assert (result.status, result.error_kind, result.attempts) == ("failed", "http_4xx", 1)


def test_transient_failures_give_up_after_max_retries(server, tmp_path):
    server.set_faults({"permanent": {"kind": "http_503", "match": "Item 0."}})
    [result] = client(server, tmp_path, max_retries=3).run(requests(1)).values()
    assert (result.status, result.error_kind, result.attempts) == ("failed", "http_5xx", 4)
    assert "gave up after 4 tries" in result.error


def test_a_successful_call_is_never_sent_again(server, tmp_path):
    c = client(server, tmp_path)
    c.run(requests(10))
    sent = server.stats["requests"]
    again = c.run(requests(10))
    assert server.stats["requests"] == sent
    assert all(r.cached and r.ok for r in again.values())
    assert server.repeated_successes() == 0


def test_each_call_names_its_ledger_request_hash_to_the_server(server, tmp_path):
    # What lets a server-side log (and the distributed kill test) be joined to llm_calls.
    server.set_faults({"fail_first": {"kind": "malformed_json", "n": 1}})
    client(server, tmp_path).run(requests(3))
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        hashes = {h for (h,) in con.execute("SELECT request_hash FROM llm_calls").fetchall()}
    finally:
        con.close()
    assert len(hashes) == 3
    # One valid reply per call (the invalid first tries carry the same hash, a new seed).
    assert server.successes_by_hash() == dict.fromkeys(hashes, 1)


def test_failed_calls_are_retried_by_the_next_run(server, tmp_path):
    server.set_faults({"permanent": {"kind": "http_400", "match": "Item 3."}})
    c = client(server, tmp_path)
    assert sum(r.ok for r in c.run(requests(5)).values()) == 4
    server.set_faults({})
    assert sum(r.ok for r in c.run(requests(5)).values()) == 5
    assert [row[0] for row in ledger(tmp_path)] == ["success"] * 5


def test_concurrency_is_bounded_and_used(server, tmp_path):
    server.set_faults({"latency_s": 0.1})
    client(server, tmp_path, max_concurrency=4).run(requests(16))
    assert server.max_inflight == 4


def test_health_check_fails_fast_naming_the_url(tmp_path):
    server = FakeLLM().start()
    url = server.base_url
    server.stop()
    c = LLMClient(LLMSettings(base_url=url), tmp_path / "w.duckdb", "r")
    with pytest.raises(LLMUnavailable, match=f"LLM server at {url}/models is not reachable"):
        c.run(requests(1))
    assert ledger(tmp_path) == []  # the stage stopped before any call was sent or recorded


def test_health_check_makes_one_attempt_then_stops(tmp_path):
    """Fast means no retry loop: a server that hangs up gets one health request, no calls."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def hang_up():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return  # listener closed
            accepted.append(conn)
            conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    try:
        c = LLMClient(LLMSettings(base_url=url), tmp_path / "w.duckdb", "r")
        with pytest.raises(LLMUnavailable, match=f"LLM server at {url}/models is not reachable"):
            c.run(requests(3))
    finally:
        listener.close()
    assert len(accepted) == 1
    assert ledger(tmp_path) == []


def test_server_that_dies_mid_stage_and_comes_back(tmp_path):
    server = FakeLLM(latency_s=0.05).start()
    port = server.port

    def come_back():
        time.sleep(0.6)
        FakeLLM(port=port).start()

    kill_after(server, 3, then=come_back)
    # Full-jitter backoff can draw tiny delays: give the retries enough room (expected ~4 s
    # in all) that no request runs out of tries during the 0.6 s outage on a loaded machine.
    c = LLMClient(
        LLMSettings(
            base_url=f"http://127.0.0.1:{port}/v1",
            backoff_base_s=0.2,
            backoff_cap_s=1.0,
            max_retries=10,
            max_concurrency=2,
            timeout_s=2,
        ),
        tmp_path / "w.duckdb",
        "r",
    )
    results = c.run(requests(20))
    assert all(r.ok for r in results.values()), [
        (r.attempts, r.error) for r in results.values() if not r.ok
    ]
    assert any(r.attempts > 1 for r in results.values())


def test_parse_reply_is_strict():
    schema = prompts.load("llm_filter").schema
    assert parse_reply('```json\n{"reason": "ok", "qualified": "Y"}\n```', schema) == {
        "reason": "ok",
        "qualified": "Y",
    }
    for bad in [
        '{"reason": "ok"}',
        '{"reason": "ok", "qualified": "maybe"}',
        'Sure! {"reason": "ok", "qualified": "Y"}',
        '{"reason": "ok", "qualified": "Y", "extra": 1}',
        "",
    ]:
        with pytest.raises(_InvalidReply):
            parse_reply(bad, schema)


def test_api_key_is_not_in_repr():
    assert "sk-secret" not in repr(LLMSettings(base_url="http://x/v1", api_key="sk-secret"))


def test_a_reply_holding_an_unpaired_surrogate_is_invalid_and_stored_safely(server, tmp_path):
    # '\ud800' is a valid JSON escape but no character: UTF-8 (journal, warehouse) cannot hold it.
    server.script("llm_filter", ['{"reason": "half an emoji \\ud83d", "qualified": "Y"}'])
    [result] = client(server, tmp_path, max_invalid_retries=1).run(requests(1)).values()
    assert (result.status, result.error_kind, result.attempts) == ("failed", "invalid_json", 2)
    assert result.error == "reply holds an unpaired surrogate (surrogates not allowed)"
    [(status, kind, attempts, _, _, raw)] = ledger(tmp_path)
    assert (status, kind, attempts) == ("failed", "invalid_json", 2)
    assert raw == '{"reason": "half an emoji \\ud83d", "qualified": "Y"}'


def test_server_text_with_a_raw_surrogate_is_stored_with_a_replacement_mark(server, tmp_path):
    c = client(server, tmp_path)
    assert c.redact("cut \ud83d here") == "cut ? here"


# -- several replicas (llm_default extra `base_urls`) ----------------------------------------


def replicas_client(urls: list[str], tmp_path, **kw) -> LLMClient:
    settings = LLMSettings(
        base_url=urls[0],
        base_urls=tuple(urls[1:]),
        model="fake-model",
        backoff_base_s=0.05,
        backoff_cap_s=0.2,
        timeout_s=5.0,
        **kw,
    )
    return LLMClient(settings, tmp_path / "w.duckdb", "run-1")


def test_calls_spread_over_replicas_each_capped_at_max_concurrency(tmp_path):
    with FakeLLM(latency_s=0.1) as a, FakeLLM(latency_s=0.1) as b:
        results = replicas_client([a.base_url, b.base_url], tmp_path, max_concurrency=3).run(
            requests(24)
        )
        assert all(r.ok and r.attempts == 1 for r in results.values())
        assert a.stats["completions_ok"] + b.stats["completions_ok"] == 24
        assert a.max_inflight == 3 and b.max_inflight == 3  # both used, neither past its cap


def test_a_replica_down_from_the_start_gets_no_calls(tmp_path):
    dead = FakeLLM().start()
    dead_url = dead.base_url
    dead.stop()
    with FakeLLM() as live:
        results = replicas_client([dead_url, live.base_url], tmp_path).run(requests(10))
        assert all(r.ok and r.attempts == 1 for r in results.values())
        assert live.stats["completions_ok"] == 10


def test_a_replica_killed_mid_stage_its_calls_finish_on_the_other(tmp_path):
    with FakeLLM(latency_s=0.05) as a:
        b = FakeLLM(latency_s=0.05).start()
        kill_after(b, 3)
        results = replicas_client([a.base_url, b.base_url], tmp_path, max_concurrency=2).run(
            requests(30)
        )
        assert all(r.ok for r in results.values()), [r.error for r in results.values() if not r.ok]
        assert b.stats["completions_ok"] >= 3  # b answered until it died
        assert a.stats["completions_ok"] >= 30 - b.stats["completions_ok"]
        assert any(r.attempts > 1 for r in results.values())  # the calls cut by the kill


def test_a_replica_that_comes_back_is_probed_and_used_again(tmp_path):
    with FakeLLM(latency_s=0.1) as a:
        b = FakeLLM(latency_s=0.1).start()
        port = b.port
        revived: list[FakeLLM] = []

        def come_back():
            time.sleep(0.3)
            revived.append(FakeLLM(port=port, latency_s=0.1).start())

        kill_after(b, 2, then=come_back)
        try:
            results = replicas_client([a.base_url, b.base_url], tmp_path, max_concurrency=2).run(
                requests(80)
            )
            assert all(r.ok for r in results.values())
            assert revived and revived[0].stats["completions_ok"] > 0
        finally:
            for server in revived:
                server.stop()


def test_all_replicas_down_fails_fast_naming_each_url(tmp_path):
    urls = []
    for _ in range(2):
        dead = FakeLLM().start()
        urls.append(dead.base_url)
        dead.stop()
    with pytest.raises(LLMUnavailable) as err:
        replicas_client(urls, tmp_path).run(requests(2))
    assert all(f"LLM server at {u}/models is not reachable" in str(err.value) for u in urls)
    assert ledger(tmp_path) == []


def test_a_refused_or_cut_connection_is_recorded_as_connection_not_timeout(tmp_path):
    """The SDK's aiohttp transport reports a refused connection as a connect timeout; the
    ledger must say what happened (a dead server, not a slow one)."""
    server = FakeLLM(latency_s=0.2).start()
    kill_after(server, 2)
    with pytest.raises(LLMUnavailable, match="stopped answering mid-stage"):
        client(server, tmp_path, max_concurrency=2, max_retries=0, timeout_s=10).run(requests(10))
    failed = [row for row in ledger(tmp_path) if row[0] == "failed"]
    assert failed and {row[1] for row in failed} == {"connection"}


def test_the_task_log_gets_progress_not_a_line_per_request(server, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    results = client(server, tmp_path).run(requests(20))
    assert all(r.ok for r in results.values())
    http_lines = [r for r in caplog.records if r.name in ("httpx", "httpx2")]
    assert http_lines == []
    assert any("llm_filter: done." in r.getMessage() for r in caplog.records)


# -- a worker killed on another host (journals on shared storage, owned by lease) ------------

_KILLED_WORKER = """
import sys
from pathlib import Path
from webscale_rl import prompts
from webscale_rl.llm import LLMClient, LLMRequest, LLMSettings

url, db, doc, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
prompt = prompts.load("llm_filter")
requests = [
    LLMRequest("llm_filter", f"doc{i}", "fake-model",
               tuple(prompts.filter_messages(f"{doc} Item {i}.")), prompt.schema,
               "llm_filter", prompt.prompt_id)
    for i in range(n)
]
LLMClient(LLMSettings(base_url=url, model="fake-model", max_concurrency=4), db, "run-1").run(requests)
"""


def test_a_worker_killed_on_another_host_its_journal_is_adopted_and_no_answer_bought_twice(
    tmp_path, monkeypatch
):
    """A client on "host-a" is killed with SIGKILL mid-stage, with calls in flight. Its
    journal, on the shared staging storage, cannot be checked by pid from "host-b": it is
    adopted once its lease lapses, and host-b's client sends only the calls never answered."""
    staging_dir = tmp_path / "shared-staging"
    monkeypatch.setenv("WEBSCALE_RL_STAGING_DIR", str(staging_dir))
    monkeypatch.delenv("WEBSCALE_RL_LEASE_TTL_S", raising=False)
    db, n = tmp_path / "w.duckdb", 40
    with FakeLLM(latency_s=0.02) as server:
        worker = subprocess.Popen(
            [sys.executable, "-c", _KILLED_WORKER, server.base_url, str(db), DOC, str(n)],
            env=dict(os.environ, WEBSCALE_RL_HOST_ID="host-a"),
        )
        try:
            deadline = time.monotonic() + 60
            while server.stats["completions_ok"] < 12 and time.monotonic() < deadline:
                assert worker.poll() is None, "the worker ended before it was killed"
                time.sleep(0.01)
            server.hold()  # calls sent from now on stay in flight until the kill
            time.sleep(0.3)
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
            server.release()
        deadline = time.monotonic() + 30
        while server.inflight and time.monotonic() < deadline:  # held replies go to a dead socket
            time.sleep(0.01)
        answered = server.stats["completions_ok"]
        journals = list((staging_dir / "w.llm_journal").glob("*.jsonl"))
        assert [p.name.split("--")[0] for p in journals] == ["host-a"]
        journaled = len(journals[0].read_text().splitlines())
        assert 12 <= journaled <= answered < n

        monkeypatch.setenv("WEBSCALE_RL_HOST_ID", "host-b")
        # Host-b cannot ask host-a's kernel about the pid; within the lease the writer counts
        # as alive and its journal is left alone.
        assert ledger_mod.adopt_orphans(db, "run-1", "llm_filter") == 0
        stamp = time.time() - 121  # the default ttl (120 s) has passed without a heartbeat
        os.utime(journals[0], (stamp, stamp))
        results = LLMClient(
            LLMSettings(base_url=server.base_url, model="fake-model", max_concurrency=4),
            db,
            "run-1",
        ).run(requests(n))
        assert all(r.ok for r in results.values())
        assert sum(r.cached for r in results.values()) == journaled  # adopted, not re-sent
        assert server.stats["completions_ok"] - answered == n - journaled
        # Bought twice: only the replies that never reached host-a's journal (cut in flight).
        assert server.repeated_successes() == answered - journaled
        assert not journals[0].exists()


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (
            '{"reason": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "reply is refused (too_deeply_nested): nested deeper than 64 levels of arrays/objects",
        ),
        (
            '{"reason": "ok", "qualified": ' + "1" * 5000 + "}",
            "reply is refused (number_too_long): Exceeds the limit (4300 digits) for integer "
            "string conversion: value has 5000 digits",
        ),
        ('{"reason": "ok", "qualified": }', "reply is not JSON: Expecting value: column 31"),
    ],
)
def test_a_hostile_reply_is_an_invalid_reply_not_a_crash(reply, detail):
    # json.loads raised RecursionError / ValueError for these, past the caller's except.
    with pytest.raises(_InvalidReply) as refused:
        parse_reply(reply, prompts.load("llm_filter").schema)
    assert refused.value.kind == "invalid_json" and str(refused.value) == detail
