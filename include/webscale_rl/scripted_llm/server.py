"""A deterministic OpenAI-compatible chat-completions server for tests and benchmarks.

It answers each pipeline stage from the request itself (the stage is named on the first
line of the system prompt, the document is fenced in <document> tags), so end-to-end
runs produce meaningful, repeatable data. Faults are injected on demand, deterministically
per request body and attempt: HTTP 500/503, 429 with Retry-After, timeouts, malformed
JSON, JSON missing fields, truncated output and refusals, plus extra latency, permanent
faults for documents that contain a marker, and stop/start on the same port.
Scripted replies (FakeLLM.script, or faults {"script": {stage: [reply, ...]}}) replace a
stage's answer: a list of replies (a dict is sent as JSON, a str as is), one picked per
request by a hash of its user message, or (in-process) a function of the default reply
and the request; property tests serve any schema-valid reply this way.
A "compromised" server (FakeLLM(compromised=True) or faults {"compromised": true}) plays a
model that obeys prompt injections: for a document that tells the model to give a certain
answer, generate emits that answer, and verify passes every pair (context=Y correct=Y
leakage=N); the filter and classify stages stay honest.

Run standalone:  python -m webscale_rl.scripted_llm --port 8000
Admin endpoints: GET /admin/stats, POST /admin/faults (JSON), POST /admin/reset.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import re
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from webscale_rl.scripted_llm import faults as faults_mod
from webscale_rl.scripted_llm.answers import (
    answer_classify,
    answer_filter,
    answer_reward_judge,
    answer_verify,
    constrained,
    injected_value,
    make_injected_pair,
    make_pair,
    pairs_after_document,
    policy_answer,
    stable,
    tag,
    task_of,
    words,
)


class PrefixCache:
    """vLLM's automatic prefix caching, emulated: the prompt's words (every message's, the
    role folded into its first word) are cut into blocks of BLOCK words, each keyed by a
    hash chained over all blocks before it, so a block hits only when the whole prefix up
    to it was seen; hits are counted in words (this server's tokens). Bounded like a real
    KV cache: the least recently used blocks go."""

    BLOCK = 16

    def __init__(self, capacity_blocks: int = 1 << 18):
        self.capacity = capacity_blocks
        # Least recently used first. An OrderedDict, not a dict: evicting a dict's first key
        # scans the holes its earlier evictions left, which made a full cache's every request
        # slower until the dict was next resized (a saw-tooth that capped this server at
        # ~40 req/s in a 100k-document run).
        self.blocks: collections.OrderedDict[int, None] = collections.OrderedDict()

    def lookup(self, model: str, messages: list[dict]) -> int:
        words: list[str] = []
        for m in messages:  # the role is folded into the message's first word
            content = (m.get("content") or "").split()
            words += [f"{m.get('role')}:{w}" if i == 0 else w for i, w in enumerate(content)]
        key, hits, missed = hash(model), 0, False
        for start in range(0, len(words) - self.BLOCK + 1, self.BLOCK):
            key = hash((key, *words[start : start + self.BLOCK]))
            if not missed and key in self.blocks:
                self.blocks.move_to_end(key)
                hits += self.BLOCK
            else:
                missed = True
                if key in self.blocks:
                    self.blocks.move_to_end(key)
                else:
                    self.blocks[key] = None
                    if len(self.blocks) > self.capacity:
                        self.blocks.popitem(last=False)
        return hits


CALL_HASH_HEADER = "X-Webscale-RL-Request-Hash"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # the default backlog of 5 resets connections under concurrency
    allow_reuse_address = True  # restart on the same port after stop()


class FakeLLM:
    """The server plus its state: faults, counters, and the per-body attempt counts."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "fake-model",
        faults: dict | None = None,
        latency_s: float = 0.0,
        compromised: bool = False,
        vllm_metrics: bool = False,
    ):
        self.host, self.port, self.model = host, port, model
        # Serve /metrics and /version the way vLLM does (counters from this server's stats).
        self.vllm_metrics = vllm_metrics
        self.lock = threading.Lock()
        self.faults: dict = {}
        self.latency_s = latency_s
        self.compromised = compromised  # obeys injections in documents (see the module doc)
        self.scripted: dict = {}  # stage -> list of replies, or fn(default_reply, request)
        self.reset()
        self.set_faults(faults or {})
        self._server: ThreadingHTTPServer | None = None
        self._connections: set = set()
        self._released = threading.Event()  # cleared by hold(): completions wait unanswered
        self._released.set()
        self.held = 0  # completion requests waiting behind hold()
        self.cut_connections = 0  # open connections stop() cut

    # -- state -------------------------------------------------------------------------
    def reset(self) -> None:
        with self.lock:
            self.stats = {
                "requests": 0,
                "completions_ok": 0,
                "faults": {},
                "by_stage": {},
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "models_requests": 0,
                "prefix_cache_queries": 0,  # prompt tokens looked up in the "cache"
                "prefix_cache_hits": 0,  # prompt tokens in leading blocks seen before
            }
            self.prefix_cache = PrefixCache()
            self.seen_bodies: dict[str, int] = {}
            self.successes_by_identity: dict[str, int] = {}
            self.successes_log: list[str | None] = []  # request-hash header per valid reply
            self.requests_log: list[dict] = []  # parsed bodies, most recent last (capped)
            self.inflight = 0
            self.max_inflight = 0
            self.answers: dict[str, str] = {}  # evaluation prompts: question -> the answer to give
            self.generated: dict[str, str] = {}  # question -> answer of the pairs it generated

    def prometheus_text(self) -> str:
        """vLLM-style counters, labelled the way vLLM labels them (summed by the reader)."""
        with self.lock:
            st = dict(self.stats)
        labels = f'engine="0",model_name="{self.model}"'
        lines = ["# HELP vllm:request_success_total Count of successfully processed requests."]
        lines.append(
            f'vllm:request_success_total{{{labels},finished_reason="stop"}} {st["completions_ok"]}.0'
        )
        lines.append(f'vllm:request_success_total{{{labels},finished_reason="length"}} 0.0')
        for name, value in (
            ("prompt_tokens_total", st["prompt_tokens"]),
            ("generation_tokens_total", st["completion_tokens"]),
            ("prefix_cache_queries_total", st["prefix_cache_queries"]),
            ("prefix_cache_hits_total", st["prefix_cache_hits"]),
            ("iteration_tokens_total_sum", st["prompt_tokens"] + st["completion_tokens"]),
            ("iteration_tokens_total_count", st["requests"]),
            ("request_inference_time_seconds_sum", st["completions_ok"] * self.latency_s),
            ("request_queue_time_seconds_sum", 0),
            ("num_preemptions_total", 0),
        ):
            lines.append(f"vllm:{name}{{{labels}}} {float(value)}")
        lines.append(f"vllm:num_requests_running{{{labels}}} {float(self.inflight)}")
        return "\n".join(lines) + "\n"

    def set_faults(self, faults: dict) -> None:
        """{kind: rate, ..., "retry_after_s": 0.2, "timeout_sleep_s": 3, "latency_s": 0.0,
        "permanent": {"kind": "http_500", "match": "substring"},
        "fail_first": {"kind": "http_429", "n": 1}}  (the first n attempts of every body),
        "compromised": true  (obey injections; see the module doc)"""
        with self.lock:
            self.faults = dict(faults)
            if "latency_s" in faults:
                self.latency_s = float(faults["latency_s"])
            if "compromised" in faults:
                self.compromised = bool(faults["compromised"])
            if "script" in faults:
                self.scripted = dict(faults["script"] or {})

    def script(self, stage: str, replies) -> None:
        """Answer `stage` (as named on the prompt's TASK line: llm_filter, classify, generate,
        verify, and the fused layout's filter_classify, generate_pairs, verify_pairs) with `replies`: a list (picked per request by a hash of the
        user message) or fn(default_reply, request); None restores the default."""
        with self.lock:
            if replies is None:
                self.scripted.pop(stage, None)
            else:
                self.scripted[stage] = replies

    def repeated_successes(self) -> int:
        """Calls that got a valid reply more than once: by the client's request hash (its
        header), else by the request minus its seed (what a retry with a new seed asks again)."""
        with self.lock:
            return sum(1 for n in self.successes_by_identity.values() if n > 1)

    def _remember(self, pair: dict) -> dict:
        with self.lock:
            self.generated[pair.get("question") or ""] = pair.get("answer") or ""
        return pair

    def successes_by_hash(self) -> dict[str | None, int]:
        """Valid replies given so far, by the client's request-hash header (None: not sent)."""
        with self.lock:
            counts: dict[str | None, int] = {}
            for call in self.successes_log:
                counts[call] = counts.get(call, 0) + 1
            return counts

    def hold(self) -> None:
        """Stop answering: new completion requests wait (in flight) until release().
        A test that kills its client now knows no reply is on the wire."""
        self._released.clear()

    def release(self) -> None:
        self._released.set()

    def connection(self, password: str = "sk-test-secret", **extra) -> dict:
        """The `llm_default` connection (as AIRFLOW_CONN_LLM_DEFAULT takes it) for this server,
        with fast retries for tests; `extra` overrides the connection extras."""
        return {
            "conn_type": "webscale_rl_llm",
            "host": self.base_url,
            "password": password,
            "extra": {
                "model": self.model,
                "structured_output": "json_schema",
                "max_concurrency": 16,
                "backoff_base_s": 0.01,
                "backoff_cap_s": 0.2,
                "timeout_s": 2,
                **extra,
            },
        }

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> FakeLLM:
        fake = self

        class Handler(_Handler):
            server_state = fake

        server = _Server((self.host, self.port), Handler)
        self.port = server.server_address[1]
        self._server = server
        # A short poll interval: stop() (shutdown) returns within 50 ms, as a crash would.
        threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fake-llm",
        ).start()
        return self

    def stop(self) -> None:
        """Die like a crashed server: stop listening and cut every open connection. Requests
        in flight then may have been answered (and counted) with the reply lost on the wire:
        at most one per connection cut, counted in `cut_connections`."""
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with self.lock:
            connections, self._connections = list(self._connections), set()
        self.cut_connections += len(connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> FakeLLM:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- behaviour -----------------------------------------------------------------------
    @staticmethod
    def identity(request: dict) -> str:
        """A request minus its seed: what a client retrying with a new seed asks again."""
        return hashlib.sha256(
            json.dumps({k: v for k, v in request.items() if k != "seed"}, sort_keys=True).encode()
        ).hexdigest()

    def pick_fault(self, body: bytes, request: dict, text: str) -> str | None:
        key = hashlib.sha256(body).hexdigest()
        ident = "id:" + self.identity(request)
        with self.lock:
            attempt = self.seen_bodies.get(key, 0)
            self.seen_bodies[key] = attempt + 1
            tries = self.seen_bodies.get(ident, 0)
            self.seen_bodies[ident] = tries + 1
            faults = dict(self.faults)
        return faults_mod.choose(faults, key, attempt, tries, text)

    def reply_for(self, request: dict) -> tuple[str, dict | str]:
        stage, answer = self.default_reply(request)
        response_format = request.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            # Like vLLM's grammar-constrained decoding: a string stops at its maxLength.
            answer = constrained(answer, response_format["json_schema"].get("schema") or {})
        with self.lock:
            scripted = self.scripted.get(stage)
        if scripted is None:
            return stage, answer
        if callable(scripted):
            return stage, scripted(answer, request)
        user = (request.get("messages") or [{}])[-1].get("content") or ""
        return stage, scripted[stable(user) % len(scripted)]

    def default_reply(self, request: dict) -> tuple[str, dict | str]:
        messages = request.get("messages", [])
        system = next((m["content"] for m in messages if m.get("role") == "system"), "")
        user = messages[-1]["content"] if messages else ""
        stage = task_of(system, user)
        if not system and "final answer on the last line" in user:
            # A policy prompt from the export (evaluation, or the learnability stage's
            # samples): answer in free text. Questions listed in `answers` get that answer;
            # those this server generated are answered as a policy would (policy_answer);
            # others get a fixed wrong one.
            question = user.split("\n\n")[0]
            with self.lock:
                known = self.answers.get(question)
                if known is None:
                    known = policy_answer(question, self.generated.get(question), request)
            return (
                "answer",
                f"Let me think about it.\nAnswer: {known if known is not None else 'unknown'}",
            )
        if stage == "reward_judge":
            return stage, answer_reward_judge(user)
        doc = tag(user, "document") or ""
        with self.lock:
            compromised = self.compromised
        injected = (
            injected_value(doc) if compromised and stage in ("generate", "generate_pairs") else None
        )
        if injected is not None and stage == "generate":
            return stage, make_injected_pair(doc, tag(user, "persona") or "", injected)
        if injected is not None:
            personas = [
                re.sub(r"^\d+\.\s*", "", p)
                for p in (tag(user, "persona") or "").splitlines()
                if p.strip()
            ]
            return stage, {"pairs": [make_injected_pair(doc, p, injected) for p in personas]}
        if compromised and stage in ("verify", "verify_pairs"):
            verdict = {
                "reason": "The answer is what the document says it is.",
                "context": "Y",
                "correct": "Y",
                "leakage": "N",
            }
            if stage == "verify":
                return stage, verdict
            return stage, {"verdicts": [verdict] * len(pairs_after_document(user))}
        if stage == "llm_filter":
            return stage, answer_filter(doc)
        if stage in ("classify", "filter_classify"):
            found = re.search(r"up to (\d+) different people", system + user)
            classified = answer_classify(doc, int(found.group(1)) if found else 3)
            if stage == "classify":
                return stage, classified
            verdict = answer_filter(doc)
            if verdict["qualified"] == "N":
                classified = {"domain": "Other", "personas": []}
            return stage, {**verdict, **classified}
        if stage == "generate":
            return stage, self._remember(make_pair(doc, tag(user, "persona") or ""))
        if stage == "generate_pairs":
            personas = [
                re.sub(r"^\d+\.\s*", "", p)
                for p in (tag(user, "persona") or "").splitlines()
                if p.strip()
            ]
            return stage, {"pairs": [self._remember(make_pair(doc, p)) for p in personas]}
        if stage == "verify":
            return stage, answer_verify(doc, tag(user, "question") or "", tag(user, "answer") or "")
        if stage == "verify_pairs":
            return stage, {
                "verdicts": [answer_verify(doc, q, a) for q, a in pairs_after_document(user)]
            }
        return stage, {"error": f"unknown stage {stage!r}"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY, Nagle + delayed ACK
    # stall every keep-alive response by ~40 ms.
    disable_nagle_algorithm = True
    server_state: FakeLLM

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def setup(self) -> None:
        super().setup()
        with self.server_state.lock:
            self.server_state._connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        with self.server_state.lock:
            self.server_state._connections.discard(self.connection)

    def _peer_closed(self) -> bool:
        """True when the client closed its end (a readable socket with nothing to read)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _send(self, code: int, payload: dict | None, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass

    def _send_text(self, text: str) -> None:
        data = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        fake = self.server_state
        if self.path.rstrip("/") == "/v1/models":
            with fake.lock:
                fake.stats["models_requests"] += 1
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": fake.model, "object": "model", "owned_by": "tests"}],
                },
            )
        elif self.path == "/metrics" and fake.vllm_metrics:
            self._send_text(fake.prometheus_text())
        elif self.path == "/version" and fake.vllm_metrics:
            self._send(200, {"version": "fake-vllm"})
        elif self.path == "/admin/stats":
            with fake.lock:
                stats = json.loads(json.dumps(fake.stats))
            stats["repeated_successes"] = fake.repeated_successes()
            self._send(200, stats)
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        fake = self.server_state
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/admin/faults":
            fake.set_faults(json.loads(body or b"{}"))
            return self._send(200, {"faults": fake.faults})
        if self.path == "/admin/reset":
            fake.reset()
            return self._send(200, {"ok": True})
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        with fake.lock:  # what the client authenticated with (a test checks the key was used)
            fake.stats["last_authorization"] = self.headers.get("Authorization")
        try:
            request = json.loads(body)
        except json.JSONDecodeError:
            return self._send(400, {"error": {"message": "body is not JSON"}})
        if not fake._released.is_set():
            with fake.lock:
                fake.held += 1
            fake._released.wait()
            with fake.lock:
                fake.held -= 1
            if self._peer_closed():
                # Like vLLM, abort a request whose client went away: nothing computed, nothing paid.
                with fake.lock:
                    fake.stats["aborted"] = fake.stats.get("aborted", 0) + 1
                return
        text = json.dumps(request.get("messages", []))
        fault = fake.pick_fault(body, request, text)
        with fake.lock:
            fake.requests_log = fake.requests_log[-999:] + [request]
            fake.inflight += 1
            fake.max_inflight = max(fake.max_inflight, fake.inflight)
        try:
            self._complete(fake, request, fault)
        finally:
            with fake.lock:
                fake.inflight -= 1

    def _complete(self, fake: FakeLLM, request: dict, fault: str | None) -> None:
        stage, answer = fake.reply_for(request)
        call_hash = self.headers.get(CALL_HASH_HEADER)
        with fake.lock:
            fake.stats["requests"] += 1
            fake.stats["by_stage"][stage] = fake.stats["by_stage"].get(stage, 0) + 1
            if fault:
                fake.stats["faults"][fault] = fake.stats["faults"].get(fault, 0) + 1
            latency = fake.latency_s
            retry_after = str(fake.faults.get("retry_after_s", 0.2))
            timeout_sleep = float(fake.faults.get("timeout_sleep_s", 3.0))
        if latency:
            time.sleep(latency)
        if fault == "timeout":
            time.sleep(timeout_sleep)
            return self._send(504, {"error": {"message": "gateway timeout"}})
        if fault in ("http_500", "http_503", "http_400"):
            return self._send(int(fault[-3:]), {"error": {"message": f"injected {fault}"}})
        if fault == "http_429":
            return self._send(
                429, {"error": {"message": "rate limited"}}, {"Retry-After": retry_after}
            )
        content: str | None = answer if isinstance(answer, str) else json.dumps(answer)
        finish, refusal = "stop", None
        if fault == "malformed_json":
            content = content[: max(1, len(content) // 2)].replace('"', "'") + " }}"
        elif fault == "missing_fields" and isinstance(answer, dict):
            content = json.dumps({k: v for i, (k, v) in enumerate(answer.items()) if i})
        elif fault == "truncated":
            content, finish = content[: max(1, len(content) // 2)], "length"
        elif fault == "refusal":
            content, refusal = None, "I can't help with that request."
        prompt_tokens = sum(words(m.get("content") or "") for m in request.get("messages", []))
        completion_tokens = words(content or refusal or "")
        with fake.lock:
            fake.stats["prompt_tokens"] += prompt_tokens
            fake.stats["completion_tokens"] += completion_tokens
            fake.stats["prefix_cache_queries"] += prompt_tokens
            fake.stats["prefix_cache_hits"] += fake.prefix_cache.lookup(
                request.get("model") or "", request.get("messages", [])
            )
            if not fault:
                fake.stats["completions_ok"] += 1
                # One logical call: the client's request hash when it names one (its samples
                # differ by seed on purpose), else the request minus its seed.
                key = call_hash or fake.identity(request)
                fake.successes_by_identity[key] = fake.successes_by_identity.get(key, 0) + 1
                fake.successes_log.append(call_hash)
        with fake.lock:
            n = fake.stats["requests"]
        self._send(
            200,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": 0,
                "model": request.get("model"),
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": finish,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            },
        )


def spawn(latency_s: float = 0.0, timeout_s: float = 20.0, vllm_metrics: bool = False) -> tuple:
    """This server in its own process (so it does not share the caller's interpreter) on a
    free port: returns (Popen, base_url). The caller stops it (terminate)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    port_file = Path(tempfile.mkdtemp()) / "port"
    argv = [
        sys.executable,
        "-m",
        "webscale_rl.scripted_llm",
        "--port-file",
        str(port_file),
        "--latency-s",
        str(latency_s),
    ]
    server = subprocess.Popen(
        argv + (["--vllm-metrics"] if vllm_metrics else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_file.exists() and port_file.read_text():
            return server, f"http://127.0.0.1:{port_file.read_text()}/v1"
        time.sleep(0.05)
    server.kill()
    raise RuntimeError("the test server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--model", default="fake-model")
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--vllm-metrics", action="store_true", help="serve /metrics like vLLM")
    args = parser.parse_args()
    fake = FakeLLM(
        args.host, args.port, args.model, latency_s=args.latency_s, vllm_metrics=args.vllm_metrics
    ).start()
    if args.port_file:
        with open(args.port_file, "w") as f:
            f.write(str(fake.port))
    print(f"fake LLM server on {fake.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fake.stop()
