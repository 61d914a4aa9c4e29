"""Two `charter serve` replicas sharing PostgreSQL and Redis, loaded at once (issue 3, item 7).

Everything runs as real processes on loopback: the mock upstream, two gateway replicas started by
the `charter serve` command, the local PostgreSQL (a fresh schema) and Redis (keys under control ids
unique to the run, deleted at the end). The test shows that a budget is never exceeded, that a rate
limit admits exactly its limit across both replicas, and that the spend ledger holds exactly the
cost of every answered request.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import psycopg
import pytest
import redis

from charter.gateway.keys import hash_key
from tests.gateway.conftest import free_port

REDIS_URL = os.environ.get("CHARTER_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = "charter:"  # RedisCounters' default, which `charter serve` uses
START_TIMEOUT_S = 20.0

# Prices in USD per million tokens are micro-dollars per token: a prompt token costs 10, an answer
# token 20, so every cost below is an exact integer.
PRICE_IN, PRICE_OUT = 10, 20
MAX_OUTPUT = 16  # the mock answers 16 tokens, so it honours this max_tokens exactly
BUDGET_USD = 0.02
BUDGET_MICRO = 20_000
RATE_LIMIT = 37  # requests per minute; odd, so that "each replica counted alone" cannot match it
PER_PRINCIPAL = 100  # requests per principal, half to each replica: 200 in flight at once


class Child:
    """A process on loopback whose output goes to a temporary file; ``stop`` ends it."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.log: IO[str] = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            list(argv), stdout=subprocess.PIPE, stderr=self.log, text=True, env=env
        )

    def output(self) -> str:
        """What the process wrote to stderr so far, for failure messages."""
        self.log.flush()
        self.log.seek(0)
        text = self.log.read()
        self.log.seek(0, os.SEEK_END)
        return text

    def wait_ready(self, url: str, timeout: float = START_TIMEOUT_S) -> None:
        """Poll ``url`` until it answers 200; fail with the process's output if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        _, output = self.stop()
        pytest.fail(f"{self.proc.args} did not become ready at {url}:\n{output}")

    def stop(self) -> tuple[int, str]:
        """SIGTERM (a graceful shutdown), then SIGKILL after 10 s; the exit code and the output."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        output = self.output()
        self.log.close()
        return self.proc.returncode, output


def spawn_mock_upstream() -> tuple[Child, str]:
    """The mock upstream in its own process, and its base URL (``http://127.0.0.1:PORT/v1``)."""
    child = Child([sys.executable, "-m", "charter.providers.mock_server", "--port", "0"])
    assert child.proc.stdout is not None
    line = child.proc.stdout.readline()  # printed once the socket is bound
    if "listening on" not in line:
        child.stop()
        pytest.fail(f"mock upstream did not start: {line!r}")
    root = line.rsplit(" ", 1)[-1].strip()
    child.wait_ready(root + "/health")
    return child, root + "/v1"


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[str]:
    child, base_url = spawn_mock_upstream()
    try:
        yield base_url
    finally:
        child.stop()


def clean_env() -> dict[str, str]:
    """This environment without CHARTER_* variables, so only the flags configure a replica."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CHARTER_")}


@dataclass(frozen=True)
class Run:
    """The names one test run uses, unique so that it shares Redis with nothing else."""

    tag: str
    batch_key: str
    chat_key: str
    probe_key: str

    @property
    def budget_control(self) -> str:
        return f"budget-{self.tag}"

    @property
    def rate_control(self) -> str:
        return f"rate-{self.tag}"

    def charter_yaml(self, upstream: str) -> str:
        """A charter with a small budget on `batch` and a request rate on `chat`."""
        return f"""
format: 1
organization: Scale-out test
decisions:
  - id: capped-spend
    statement: The batch app spends at most ${BUDGET_USD} a month.
    owner: finance
    risk: low
    review_by: 2099-01-01
    enforced_by: [{self.budget_control}]
  - id: fair-use
    statement: The chat app makes at most {RATE_LIMIT} requests a minute, however many replicas.
    owner: platform
    risk: low
    review_by: 2099-01-01
    enforced_by: [{self.rate_control}]
controls:
  - id: {self.budget_control}
    kind: budget
    serves: [capped-spend]
    settings:
      limits:
        - {{principal: batch, usd: {BUDGET_USD}, period: month}}
        - {{principal: probe, usd: 1, period: month}}
  - id: {self.rate_control}
    kind: rate_limit
    serves: [fair-use]
    settings:
      limits:
        - {{principal: chat, requests_per_minute: {RATE_LIMIT}}}
principals:
  - id: batch
    kind: app
    keys: [{{id: batch-key, sha256: {hash_key(self.batch_key)}}}]
  - id: chat
    kind: app
    keys: [{{id: chat-key, sha256: {hash_key(self.chat_key)}}}]
  - id: probe
    kind: app
    keys: [{{id: probe-key, sha256: {hash_key(self.probe_key)}}}]
providers:
  - id: mock
    kind: openai
    base_url: {upstream}
    max_retries: 0
    models:
      - name: gpt-test
        # Scripted latency keeps many reservations in flight at once.
        upstream: "mock-model@latency-ms=100"
        price: {{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}
        max_output_tokens: {MAX_OUTPUT}
"""


@pytest.fixture
def run() -> Iterator[Run]:
    """Names for this run; afterwards, every Redis key under its control ids is deleted."""
    tag = uuid.uuid4().hex[:12]
    yield Run(tag, *("sk-" + secrets.token_hex(16) for _ in range(3)))
    client = redis.Redis.from_url(REDIS_URL)
    try:
        mine = list(client.scan_iter(match=f"{REDIS_PREFIX}*-{tag}:*", count=1000))
        if mine:
            client.delete(*mine)
    finally:
        client.close()


@pytest.fixture
def replicas(
    run: Run, mock_upstream: str, postgres_url: str, tmp_path: Path
) -> Iterator[list[str]]:
    """Two `charter serve` processes on one PostgreSQL schema and one Redis; their base URLs."""
    charter = tmp_path / "charter.yaml"
    charter.write_text(run.charter_yaml(mock_upstream))
    children, urls = [], []
    try:
        for _ in range(2):
            port = free_port()
            argv = [sys.executable, "-m", "charter.cli", "serve", "--charter", str(charter)]
            argv += ["--database", postgres_url, "--redis", REDIS_URL]
            argv += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "info"]
            children.append(Child(argv, env=clean_env()))
            urls.append(f"http://127.0.0.1:{port}")
        for child, url in zip(children, urls, strict=True):
            child.wait_ready(url + "/healthz")
        yield urls
    finally:
        ended = [child.stop() for child in children if not child.log.closed]
    # Checked after teardown, so that a replica's failure is reported, never hidden.
    for code, output in ended:
        assert "Traceback" not in output and "ERROR" not in output, output
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it to exit as signalled.
        assert code in (0, -signal.SIGTERM), f"replica exited with {code}:\n{output}"
        assert "Finished server process" in output, output


@dataclass(frozen=True)
class Answer:
    """One response as the client saw it."""

    replica: int
    principal: str
    status: int
    request_id: str
    usage: dict[str, int] | None  # prompt_tokens, completion_tokens (200 only)
    error: dict[str, Any] | None  # the OpenAI error object (refusals only)


async def ask(
    http: httpx.AsyncClient, replica: int, base: str, principal: str, key: str, n: int
) -> Answer:
    """One chat completion; every fourth one streamed, with usage in the stream."""
    body: dict[str, Any] = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": f"Summarise ticket #{n:04d}"}],
    }
    stream = n % 4 == 0
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    headers = {"authorization": f"Bearer {key}"}
    response = await http.post(base + "/v1/chat/completions", json=body, headers=headers)
    request_id = response.headers.get("x-charter-request-id", "")
    if response.status_code != 200:
        return Answer(replica, principal, response.status_code, request_id, None, response.json())
    if not stream:
        return Answer(replica, principal, 200, request_id, response.json()["usage"], None)
    events = [
        line.removeprefix("data: ")
        for line in response.text.splitlines()
        if line.startswith("data: ")
    ]
    assert events[-1] == "[DONE]", response.text
    chunks = [json.loads(e) for e in events[:-1]]
    assert not any("error" in c for c in chunks), response.text
    usages = [c["usage"] for c in chunks if c.get("usage")]
    assert len(usages) == 1, response.text
    return Answer(replica, principal, 200, request_id, usages[0], None)


async def load(urls: list[str], run: Run) -> list[Answer]:
    """One warm-up request per replica (its Redis scripts, its database pool), then 200 requests
    at once: each principal's requests alternate between the two replicas."""
    limits = httpx.Limits(max_connections=4 * PER_PRINCIPAL)
    async with httpx.AsyncClient(timeout=30.0, limits=limits) as http:
        calls = []
        warm = [await ask(http, r, url, "probe", run.probe_key, 1) for r, url in enumerate(urls)]
        assert [a.status for a in warm] == [200, 200], warm
        for n in range(PER_PRINCIPAL):
            replica = n % 2
            calls.append(ask(http, replica, urls[replica], "batch", run.batch_key, n))
            calls.append(ask(http, replica, urls[replica], "chat", run.chat_key, n))
        return warm + list(await asyncio.gather(*calls))


def cost(usage: dict[str, int]) -> int:
    """What the charter's price table says a usage costs, in micro-dollars."""
    return math.ceil(usage["prompt_tokens"] * PRICE_IN + usage["completion_tokens"] * PRICE_OUT)


def ledger(postgres_url: str, expected_rows: int) -> dict[str, tuple[str, int, int, int]]:
    """The spend table by request id, once it holds ``expected_rows`` rows (written in batches
    off the request path) or after 10 s, whichever is first."""
    deadline = time.monotonic() + 10
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        while True:
            rows = conn.execute(
                "SELECT request_id, principal_id, input_tokens, output_tokens, cost_micro_usd"
                " FROM spend"
            ).fetchall()
            if len(rows) >= expected_rows or time.monotonic() > deadline:
                return {r[0]: (r[1], r[2], r[3], r[4]) for r in rows}
            time.sleep(0.05)


def redis_counters(run: Run) -> dict[str, Any]:
    """The budget total, its open reservations and the rate window's count, read from Redis."""
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        pattern = f"{REDIS_PREFIX}budget:{run.budget_control}:batch:*"
        budget_keys = list(client.scan_iter(match=pattern))
        totals = [k for k in budget_keys if not k.endswith(":res")]
        assert len(totals) == 1, budget_keys  # one period
        rate_sum = f"{REDIS_PREFIX}rate:{run.rate_control}:0:chat:req:sum"
        return {
            "budget": int(client.get(totals[0]) or 0),
            "reservations": client.hgetall(totals[0] + ":res"),
            "rate": int(client.get(rate_sum) or 0),
        }
    finally:
        client.close()


def test_two_replicas_hold_budget_and_rate_limit_and_lose_no_spend(
    replicas: list[str], run: Run, postgres_url: str
) -> None:
    started = time.monotonic()
    answers = asyncio.run(load(replicas, run))
    elapsed = time.monotonic() - started

    # Both replicas answered every request sent to them, with a success or a refusal.
    for replica in (0, 1):
        mine = [a for a in answers if a.replica == replica and a.principal != "probe"]
        assert len(mine) == PER_PRINCIPAL
        assert {a.status for a in mine} <= {200, 429}, [a.error for a in mine if a.status != 200]

    batch = [a for a in answers if a.principal == "batch"]
    chat = [a for a in answers if a.principal == "chat"]
    batch_ok = [a for a in batch if a.status == 200]
    chat_ok = [a for a in chat if a.status == 200]

    # The budget: never exceeded (the upstream honours max_tokens, so the bound is zero), and it
    # did run out, naming the control and the decision.
    batch_spend = sum(cost(a.usage) for a in batch_ok if a.usage)
    assert batch_spend <= BUDGET_MICRO
    refused = [a.error["error"] for a in batch if a.error is not None]
    assert refused, "the budget never ran out: the test would show nothing"
    assert all(e["code"] == "budget_exceeded" for e in refused), refused
    assert all(e["charter"]["decisions"] == ["capped-spend"] for e in refused)

    # The rate limit: exactly its limit across both replicas (each counting alone would have let
    # min(50, 37) through on each, 74 in all), every other request refused by it.
    assert len(chat_ok) == RATE_LIMIT, elapsed
    assert all(
        a.error is not None and a.error["error"]["code"] == "rate_limit_exceeded"
        for a in chat
        if a.status != 200
    )

    # No spend lost: the ledger in PostgreSQL has one row per answered request, with its cost.
    answered = {a.request_id: a for a in answers if a.status == 200}
    assert len(answered) == len(batch_ok) + len(chat_ok) + 2  # and the two warm-up requests
    rows = ledger(postgres_url, len(answered))
    assert set(rows) == set(answered)
    for request_id, (principal, input_tokens, output_tokens, micro) in rows.items():
        answer = answered[request_id]
        assert answer.usage is not None
        assert principal == answer.principal
        assert (input_tokens, output_tokens) == (
            answer.usage["prompt_tokens"],
            answer.usage["completion_tokens"],
        )
        assert micro == cost(answer.usage)
    assert sum(r[3] for r in rows.values() if r[0] == "batch") == batch_spend

    # The shared counters agree: every reservation was settled to the real cost, none is left.
    counters = redis_counters(run)
    assert counters == {"budget": batch_spend, "reservations": {}, "rate": RATE_LIMIT}
