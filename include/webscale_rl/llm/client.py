"""Async, bounded, retrying, schema-validating, ledger-backed calls to an OpenAI-compatible
server (vLLM, llama.cpp server, OpenAI...).

`LLMClient.run(requests)` is what a stage calls from its (synchronous) shard task: it
answers every request it can from the ledger, sends the rest at most `max_concurrency`
at a time, retries transient failures with exponential backoff and full jitter (honouring
Retry-After), retries invalid replies a bounded number of times with a new seed, journals
every success the moment it arrives, records every finished call in `llm_calls` in small
batches, and logs progress every few seconds.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import json
import logging
import random
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import httpx2
import jsonschema
import openai

from webscale_rl import lease, untrusted_json
from webscale_rl.errors import FatalError
from webscale_rl.llm import ledger
from webscale_rl.llm.settings import LLMSettings

log = logging.getLogger(__name__)
# Both HTTP stacks (httpx for health checks, the SDK's httpx2) log one INFO line per request:
# 240k lines of task log at 100k documents, and formatting each costs CPU between calls.
for _name in ("httpx", "httpx2"):
    logging.getLogger(_name).setLevel(logging.WARNING)
TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Sent with every completion: the ledger's request_hash, so a server-side log (a gateway, a
# router, vLLM's access log) can be joined to `llm_calls` row by row. Not X-Request-Id: vLLM
# takes that as its engine request id, and two identical calls may be in flight at once.
CALL_HASH_HEADER = "X-Webscale-RL-Request-Hash"
_FENCED = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


class LLMUnavailable(FatalError):
    """The server did not answer the health check; the message names the URL and the fix."""


@dataclass(frozen=True)
class LLMRequest:
    stage: str
    item_id: str
    model: str
    messages: tuple  # tuple of {"role", "content"} dicts
    schema: dict | None  # None: free text (e.g. evaluation answers), parsed as {"text": ...}
    schema_name: str
    prompt_id: str
    max_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 1234
    # Invalid replies retried with a new seed before the call is recorded failed; None: the
    # settings' max_invalid_retries. Fused calls retry once, then fall back to per-item calls.
    max_invalid_retries: int | None = None
    # A free-text sample scored as a rollout is (the learnability stage): a reply cut at
    # max_tokens, refused or empty is the answer to score, recorded as a success; not part
    # of the request hash.
    accept_unfinished: bool = False

    @functools.cached_property
    def request_hash(self) -> str:
        """Identity of the call: model + messages + decoding params + output schema (top_p
        only when it restricts sampling, so the identities of earlier calls still hold)."""
        body = json.dumps(
            {
                "model": self.model,
                "messages": list(self.messages),
                "schema": self.schema,
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "seed": self.seed,
                **({"top_p": self.top_p} if self.top_p != 1.0 else {}),
            },
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass
class LLMResult:
    request: LLMRequest
    status: str  # success | failed
    parsed: dict | None = None
    raw: str | None = None
    error_kind: str | None = (
        None  # connection, timeout, http_429, http_5xx, http_4xx, invalid_json, schema_mismatch, truncated, refusal
    )
    error: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "success"


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One CA-bundle load per process (~0.1 s each), shared by the health check and every
    client (each would load its own)."""
    return ssl.create_default_context()


class _InvalidReply(Exception):
    def __init__(self, kind: str, message: str, raw: str | None):
        super().__init__(message)
        self.kind, self.raw = kind, raw


@dataclass
class _Progress:
    stage: str
    total: int
    every_s: float
    started: float = field(default_factory=time.monotonic)
    last: float = field(default_factory=time.monotonic)
    done: int = 0
    failed: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, result: LLMResult) -> None:
        self.done += 1
        self.failed += not result.ok
        self.prompt_tokens += result.prompt_tokens
        self.completion_tokens += result.completion_tokens
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            log.info("%s", self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else float("inf")
        return (
            f"{self.stage}: {self.done}/{self.total} calls ({self.done / max(self.total, 1):.0%}), "
            f"{rate:.1f} calls/s, tokens {self.prompt_tokens:,} in / {self.completion_tokens:,} out, "
            f"failed {self.failed}, retries {self.retries}, ETA {eta:.0f}s"
        )


def _response_format(dialect: str, name: str, schema: dict) -> dict | None:
    if dialect == "json_schema":  # OpenAI, vLLM
        return {
            "type": "json_schema",
            "json_schema": {"name": name, "schema": schema, "strict": True},
        }
    if dialect == "json_object":  # llama.cpp server: rejects json_schema, takes the schema here
        return {"type": "json_object", "schema": schema}
    return None


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    """Checking a schema against the meta-schema costs more than validating a reply: do it once."""
    schema = json.loads(schema_json)
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _text_reply(content: str | None) -> dict:
    if not content or not content.strip():
        raise _InvalidReply("invalid_json", "empty reply", content)
    return {"text": content}


def parse_reply(content: str | None, schema: dict) -> dict:
    """Strict: the whole reply (optionally in one ```json fence) must be a JSON object that
    validates against the schema."""
    if content is None or not content.strip():
        raise _InvalidReply("invalid_json", "empty reply", content)
    text = content.strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group(1)
    try:
        value = untrusted_json.loads(text)
    except untrusted_json.UntrustedJSONError as exc:
        why = "is not JSON" if exc.reason == "malformed_json" else f"is refused ({exc.reason})"
        raise _InvalidReply("invalid_json", f"reply {why}: {exc.detail}"[:500], content) from None
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:  # "\\ud800" is valid JSON but no text: it cannot be stored
        raise _InvalidReply(
            "invalid_json", f"reply holds an unpaired surrogate ({exc.reason})", content
        ) from None
    try:
        _validator(json.dumps(schema, sort_keys=True)).validate(value)
    except jsonschema.ValidationError as exc:
        path = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        raise _InvalidReply("schema_mismatch", f"at {path}: {exc.message}"[:500], content) from None
    return value


def _connection_failure(exc: BaseException) -> str | None:
    """What really happened behind an APITimeoutError, when it was no timeout: the SDK's
    aiohttp transport maps every aiohttp connection error it has no closer match for
    (refused, reset, server disconnected) to httpx's ConnectTimeout."""
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(
            cause, aiohttp.ServerTimeoutError
        ):
            return f"{type(cause).__name__}: {cause}"
        cause = cause.__cause__
    return None


@dataclass(eq=False)
class _Replica:
    url: str
    api: openai.AsyncOpenAI
    in_flight: int = 0
    down: bool = False


async def _renew_lease(journal: ledger.Journal) -> None:
    """Keep the journal's lease while the stage runs: a client on another host adopts it only
    once it goes a whole ttl without this (the writer's host may be gone)."""
    while True:
        await asyncio.sleep(lease.ttl_s() / 4)
        try:
            journal.heartbeat()
        except OSError as exc:  # a missed beat risks only an early, idempotent adoption
            log.warning("could not renew the journal's lease: %s", exc)


# Finished calls go to the ledger in batches: each flush pays a locked open, an upsert and
# a checkpoint, and its thread holds the GIL while the batch is framed and scanned, stalling
# the event loop (at C=64, flushing every 2 s / 500 rows cost ~0.08 of the ideal C/L). A
# success is durable in the journal the moment it arrives, so a crash loses nothing by a
# longer interval: the next client adopts the journal.
FLUSH_EVERY_S = 10.0
FLUSH_ROWS = 5000


class _Replicas:
    """The server's replicas (one, usually). Each call goes to the live replica with the
    fewest calls in flight, at most `cap` each. A replica that refused or dropped a
    connection is down: it gets no calls while another is live, and a probe (GET /models,
    backing off from 0.5 s to 10 s) brings it back. With every replica down, calls still go
    to them, so a lone server that restarts is reached by the callers' own retries."""

    PROBE_FIRST_S, PROBE_MAX_S = 0.5, 10.0

    def __init__(self, replicas: list[_Replica], cap: int):
        self.replicas, self.cap = replicas, cap
        self._waiters: collections.deque[asyncio.Future] = collections.deque()
        self._probes: list[asyncio.Task] = []

    def _pick(self) -> _Replica | None:
        live = [r for r in self.replicas if not r.down] or self.replicas
        free = [r for r in live if r.in_flight < self.cap]
        return min(free, key=lambda r: r.in_flight) if free else None

    async def acquire(self) -> _Replica:
        # One event loop, no await between the pick and the count: no lock needed.
        while (replica := self._pick()) is None:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(1)  # pass on the wake-up this caller will not use
                raise
        replica.in_flight += 1
        return replica

    def release(self, replica: _Replica) -> None:
        replica.in_flight -= 1
        self._wake(1)

    def _wake(self, n: int | None = None) -> None:
        """Wake `n` waiters (None: all); each re-checks for a free replica."""
        while self._waiters and (n is None or n > 0):
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                n = None if n is None else n - 1

    def mark_down(self, replica: _Replica | None) -> None:
        if replica is None or replica.down or len(self.replicas) == 1:
            return  # a lone server is never avoided: there is nowhere else to send
        replica.down = True
        log.warning("LLM replica %s is down: sending to the others until it answers", replica.url)
        self._probes.append(asyncio.create_task(self._probe(replica)))

    async def _probe(self, replica: _Replica) -> None:
        wait = self.PROBE_FIRST_S
        while True:
            await asyncio.sleep(wait)
            try:
                await replica.api.get("/models", cast_to=httpx2.Response)
            except openai.OpenAIError:
                wait = min(wait * 2, self.PROBE_MAX_S)
                continue
            replica.down = False
            log.info("LLM replica %s answers again", replica.url)
            self._wake()
            return

    async def close(self) -> None:
        for probe in self._probes:
            probe.cancel()
        await asyncio.gather(*self._probes, return_exceptions=True)
        for replica in self.replicas:
            await replica.api.close()


class LLMClient:
    def __init__(
        self,
        settings: LLMSettings,
        db_path: Path,
        run_id: str,
        progress_every_s: float = 5.0,
        shard: str = "all",
    ):
        self.settings = settings
        self.db_path = db_path
        self.run_id = run_id
        self.shard = shard  # names the ledger's staged files when workers are remote
        self.progress_every_s = progress_every_s

    def redact(self, text: str | None) -> str | None:
        """Server text made safe to log and store: our API key blanked (some servers quote the
        Authorization header in their errors), unpaired surrogates replaced (UTF-8 cannot
        hold them, and the journal and the warehouse are UTF-8)."""
        if not text:
            return text
        text = text.encode("utf-8", "replace").decode("utf-8")
        key = self.settings.api_key
        return text.replace(key, "[redacted]") if key and key != "EMPTY" else text

    # -- health ----------------------------------------------------------------------
    def health_check(self) -> list[str]:
        """GET /models on every replica: the models of the first that answers. Raises
        LLMUnavailable naming each URL and the fix only when none answers."""
        return self._health()[0]

    def _health(self) -> tuple[list[str], set[str]]:
        """(models of the first replica that answers, the replicas that did not)."""
        models, down, problems = None, set(), []
        for base_url in self.settings.replica_urls:
            try:
                found = self._models(base_url)
            except LLMUnavailable as exc:
                down.add(base_url)
                problems.append(str(exc))
                continue
            models = found if models is None else models
        if models is None:
            raise LLMUnavailable(" ".join(problems))
        for problem in problems:
            log.warning("%s Sending to the other replicas meanwhile.", problem)
        return models, down

    def _models(self, base_url: str) -> list[str]:
        url = f"{base_url}/models"
        try:
            response = httpx.get(
                url,
                headers={"Authorization": f"Bearer {self.settings.api_key}"},
                timeout=10,
                verify=_tls_context(),
            )
        except httpx.HTTPError as exc:
            raise LLMUnavailable(
                self.redact(
                    f"LLM server at {url} is not reachable ({type(exc).__name__}: {exc}). Start the server "
                    f"or point the Airflow connection 'llm_default' at a running one."
                )
            ) from None
        if response.status_code != 200:
            raise LLMUnavailable(
                self.redact(
                    f"LLM server at {url} answered HTTP {response.status_code}: {response.text[:200]!r}. "
                    f"Check the URL and API key of the Airflow connection 'llm_default'."
                )
            )
        return [m.get("id") for m in response.json().get("data", [])]

    # -- one call --------------------------------------------------------------------
    def _delay(self, attempt: int, retry_after: float | None) -> float:
        ceiling = min(self.settings.backoff_cap_s, self.settings.backoff_base_s * 2**attempt)
        delay = random.uniform(0, ceiling)  # full jitter
        return max(delay, retry_after) if retry_after is not None else delay

    @staticmethod
    def _retry_after(exc: openai.APIStatusError) -> float | None:
        value = exc.response.headers.get("retry-after") if exc.response is not None else None
        try:
            return min(float(value), 120.0) if value is not None else None
        except ValueError:
            return None

    async def _call(
        self,
        replicas: _Replicas,
        req: LLMRequest,
        progress: _Progress,
    ) -> LLMResult:
        result = LLMResult(request=req, status="failed")
        transient_tries = invalid_tries = 0
        started = time.monotonic()
        fmt = (
            None
            if req.schema is None
            else _response_format(self.settings.structured_output, req.schema_name, req.schema)
        )
        while True:
            result.attempts += 1
            retry_after = None
            replica = None
            try:
                replica = await replicas.acquire()
                try:
                    # The body is already plain JSON: post it through the official client
                    # (auth, headers, timeouts, typed status errors) without create()'s
                    # recursive param transform, which cost ~25 % of the client's CPU.
                    response = await replica.api.post(
                        "/chat/completions",
                        cast_to=httpx2.Response,
                        # Serialised here: the SDK sends bytes as they are, where a dict
                        # is deep-copied twice and encoded again (a third of its CPU).
                        body=json.dumps(
                            {
                                "model": req.model,
                                "messages": list(req.messages),
                                "max_tokens": req.max_tokens,
                                "temperature": req.temperature,
                                **({"top_p": req.top_p} if req.top_p != 1.0 else {}),
                                # A retried invalid reply gets a new seed, or a deterministic
                                # server would repeat the same bad output.
                                "seed": req.seed + invalid_tries,
                                **({"response_format": fmt} if fmt else {}),
                            },
                            ensure_ascii=False,
                        ).encode("utf-8"),
                        options={"headers": {CALL_HASH_HEADER: req.request_hash}},
                    )
                finally:
                    replicas.release(replica)
                # Read the few fields we need from the JSON reply (a typed pydantic model of
                # every completion cost more CPU than the rest of the call).
                try:
                    body = response.json()
                    usage = body.get("usage") or {}
                    choice = body["choices"][0]
                    message = choice.get("message") or {}
                except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                    raise _InvalidReply(
                        "invalid_json",
                        f"not a chat completion: {exc!r}"[:500],
                        response.text[:2000],
                    ) from None
                result.prompt_tokens += int(usage.get("prompt_tokens") or 0)
                result.completion_tokens += int(usage.get("completion_tokens") or 0)
                content = message.get("content")
                result.raw = content
                if req.accept_unfinished and req.schema is None:
                    finish = "refusal" if message.get("refusal") else choice.get("finish_reason")
                    result.parsed = {"text": content or "", "finish_reason": finish}
                    result.status, result.error_kind, result.error = "success", None, None
                    break
                if message.get("refusal"):
                    raise _InvalidReply(
                        "refusal", f"model refused: {message['refusal']}"[:500], content
                    )
                if choice.get("finish_reason") == "length":
                    raise _InvalidReply(
                        "truncated", f"reply cut at max_tokens={req.max_tokens}", content
                    )
                result.parsed = (
                    parse_reply(content, req.schema)
                    if req.schema is not None
                    else _text_reply(content)
                )
                result.status, result.error_kind, result.error = "success", None, None
                break
            except _InvalidReply as exc:
                result.error_kind, result.error, result.raw = exc.kind, str(exc), exc.raw
                limit = req.max_invalid_retries
                if invalid_tries >= (self.settings.max_invalid_retries if limit is None else limit):
                    break
                invalid_tries += 1
                progress.retries += 1
                log.debug("retrying %s for %s after invalid reply: %s", req.stage, req.item_id, exc)
                continue
            except openai.APITimeoutError as exc:
                cause = _connection_failure(exc)
                if cause:
                    result.error_kind, result.error = "connection", cause
                    replicas.mark_down(replica)
                else:
                    result.error_kind, result.error = (
                        "timeout",
                        f"no reply within {self.settings.timeout_s}s: {exc}",
                    )
            except openai.APIConnectionError as exc:
                result.error_kind, result.error = "connection", f"{type(exc).__name__}: {exc}"
                replicas.mark_down(replica)  # the retry goes to another replica, if one is up
            except openai.APIStatusError as exc:
                code = exc.status_code
                kind = "http_429" if code == 429 else "http_5xx" if code >= 500 else "http_4xx"
                result.error_kind, result.error = kind, f"HTTP {code}: {str(exc)[:300]}"
                if "response_format" in str(exc):
                    result.error += (
                        f" (the server refused structured_output={self.settings.structured_output!r}: "
                        "set the llm_default extra structured_output to json_object for "
                        "llama.cpp's server, json_schema for vLLM/OpenAI, or none)"
                    )
                if code not in TRANSIENT_STATUS:
                    break  # a client error will not fix itself: record it, do not retry
                retry_after = self._retry_after(exc)
            if transient_tries >= self.settings.max_retries:
                result.error = f"gave up after {transient_tries + 1} tries: {result.error}"
                break
            progress.retries += 1
            log.debug("retrying %s for %s after %s", req.stage, req.item_id, result.error)
            await asyncio.sleep(self._delay(transient_tries, retry_after))
            transient_tries += 1
        result.latency_s = time.monotonic() - started
        result.error, result.raw = self.redact(result.error), self.redact(result.raw)
        return result

    # -- a batch -----------------------------------------------------------------------
    def run(self, requests: list[LLMRequest]) -> dict[str, LLMResult]:
        """Results keyed by request_hash, for every request (from the ledger or the server)."""
        return asyncio.run(self.arun(requests))

    async def arun(self, requests: list[LLMRequest]) -> dict[str, LLMResult]:
        unique: dict[str, LLMRequest] = {}
        for req in requests:
            unique.setdefault(req.request_hash, req)
        stage = requests[0].stage if requests else "llm"
        await asyncio.to_thread(ledger.adopt_orphans, self.db_path, self.run_id, stage, self.shard)
        cached = await asyncio.to_thread(
            ledger.successes, self.db_path, list(unique), self.run_id, stage
        )
        results: dict[str, LLMResult] = {
            h: LLMResult(
                request=unique[h],
                status="success",
                parsed=row["result"],
                raw=row["raw"],
                attempts=0,
                cached=True,
            )
            for h, row in cached.items()
        }
        todo = [req for h, req in unique.items() if h not in results]
        log.info(
            "%s: %d calls: %d answered from the ledger, %d to send to %s (model %s, "
            "max concurrency %d per replica, structured output %s)",
            stage,
            len(unique),
            len(results),
            len(todo),
            ", ".join(self.settings.replica_urls),
            todo[0].model if todo else "-",
            self.settings.max_concurrency,
            self.settings.structured_output,
        )
        if not todo:
            return results
        down = self._health()[1]
        progress = _Progress(stage, len(todo), self.progress_every_s)
        replicas = _Replicas(
            [
                _Replica(url, self._api(url, self.settings.max_concurrency))
                for url in self.settings.replica_urls
            ],
            self.settings.max_concurrency,
        )
        for replica in replicas.replicas:
            if replica.url in down:
                replicas.mark_down(replica)
        pending_rows: list[dict] = []
        last_flush = time.monotonic()
        journal = ledger.Journal(self.db_path, self.run_id, stage)
        renewing = asyncio.create_task(_renew_lease(journal))
        try:
            tasks = [asyncio.create_task(self._call(replicas, req, progress)) for req in todo]
            for next_done in asyncio.as_completed(tasks):
                result = await next_done
                results[result.request.request_hash] = result
                row = self._ledger_row(result)
                if result.ok:
                    journal.append(row)  # durable at once: a crash loses only calls in flight
                pending_rows.append(row)
                progress.add(result)
                if time.monotonic() - last_flush > FLUSH_EVERY_S or len(pending_rows) >= FLUSH_ROWS:
                    await asyncio.to_thread(
                        ledger.record, self.db_path, pending_rows, self.run_id, stage, self.shard
                    )
                    pending_rows, last_flush = [], time.monotonic()
        finally:
            renewing.cancel()
            try:
                await asyncio.to_thread(
                    ledger.record, self.db_path, pending_rows, self.run_id, stage, self.shard
                )
                journal.close()  # only once its rows are in the ledger; a failed flush leaves it to adopt
            finally:
                await replicas.close()
        log.info("%s: done. %s", stage, progress.line())
        unreachable = sum(
            1 for r in results.values() if not r.ok and r.error_kind in ("connection", "timeout")
        )
        if unreachable:
            # Many calls could not reach the server: if it is down, stop the stage here (its
            # rows unwritten, its documents pending) instead of recording them all as failed.
            try:
                self.health_check()
            except LLMUnavailable as exc:
                raise LLMUnavailable(
                    f"{stage}: the LLM server stopped answering mid-stage ({unreachable} of {len(todo)} calls "
                    f"could not reach it; the {sum(r.ok for r in results.values())} answered are saved in "
                    f"the ledger and will not be sent again). {exc} Then re-run: the unfinished documents "
                    f"are taken on again."
                ) from None
        return results

    def _api(self, base_url: str, connections: int) -> openai.AsyncOpenAI:
        # The SDK's aiohttp transport (openai[aiohttp]): per call it costs about a third
        # less CPU than httpx/httpcore, whose pool scan also grows with the pool's size.
        return openai.AsyncOpenAI(
            base_url=base_url,
            api_key=self.settings.api_key,
            max_retries=0,  # retries are ours: every transient kind, with jitter and Retry-After
            timeout=self.settings.timeout_s,
            http_client=openai.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=connections, max_keepalive_connections=connections
                ),
                timeout=self.settings.timeout_s,
                verify=_tls_context(),
            ),
        )

    def _ledger_row(self, r: LLMResult) -> dict:
        req = r.request
        return {
            "request_hash": req.request_hash,
            "stage": req.stage,
            "item_id": req.item_id,
            "model": req.model,
            "prompt_id": req.prompt_id,
            "status": r.status,
            "error_kind": r.error_kind,
            "error": r.error,
            "attempts": r.attempts,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "latency_s": round(r.latency_s, 4),
            "raw": r.raw,
            "result": json.dumps(r.parsed, ensure_ascii=False) if r.parsed is not None else None,
            "run_id": self.run_id,
        }
