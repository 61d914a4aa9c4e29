"""Faults on the request path (issue 3, item 8), through the in-process gateway.

The upstream is the mock upstream in its own process, its faults scripted through the model names
of the test charter (the gateway forwards no X-Mock-* headers): a hang past the provider's timeout,
a 503, a connection reset, a stream cut mid-way. For each, the client gets an OpenAI-shaped error,
the budget reservation is given back, and the ledger holds what was really used. Then Redis and the
database go away: the control's ``on_error`` decides, and a key seen before the outage still works.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from charter.budgets import period_bounds
from charter.counters import Claim
from charter.document.model import Period
from charter.errors import StorageUnavailable
from charter.gateway.admin import create_key
from charter.gateway.app import build_app
from charter.gateway.factory import Services, build_services
from charter.gateway.keys import hash_key
from charter.policy.verdict import Action
from charter.providers.tokens import estimate_input_tokens, tokens_for_chars
from charter.providers.types import ChatRequest
from charter.settings import resolve
from charter.storage.base import KeyRow, Store
from tests.gateway.test_scale_out import spawn_mock_upstream

pytestmark = pytest.mark.anyio

KEY = "sk-faults-test-key"
PRICE_IN, PRICE_OUT = 10, 20  # micro-dollars per token
MAX_OUTPUT = 16
BUDGET = "app-budget"
RATE = "app-rate"
DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1: connections are refused
PROMPT = "Where is my parcel?"
FULL_ANSWER = "the quick brown fox jumps over the lazy dog the quick brown fox jumps over the"


@pytest.fixture(scope="module")
def mock_upstream() -> Iterator[str]:
    child, base_url = spawn_mock_upstream()
    try:
        yield base_url
    finally:
        child.stop()


def charter_yaml(upstream: str, budget_on_error: str, rate_on_error: str) -> str:
    """One app under a budget and a rate limit; one model per scripted fault."""
    price = f"{{input_per_mtok: {PRICE_IN}, output_per_mtok: {PRICE_OUT}}}"

    def model(name: str, script: str) -> str:
        return (
            f'      - {{name: {name}, upstream: "{script}", price: {price}, '
            f"max_output_tokens: {MAX_OUTPUT}}}\n"
        )

    return f"""
format: 1
organization: Faults test
decisions:
  - id: capped-spend
    statement: The app spends at most $1 a month.
    owner: finance
    risk: low
    review_by: 2099-01-01
    enforced_by: [{BUDGET}]
  - id: fair-use
    statement: The app makes at most 1000 requests a minute.
    owner: platform
    risk: low
    review_by: 2099-01-01
    enforced_by: [{RATE}]
controls:
  - id: {BUDGET}
    kind: budget
    serves: [capped-spend]
    on_error: {budget_on_error}
    settings:
      limits: [{{principal: app, usd: 1, period: month}}]
  - id: {RATE}
    kind: rate_limit
    serves: [fair-use]
    on_error: {rate_on_error}
    settings:
      limits: [{{principal: app, requests_per_minute: 1000}}]
principals:
  - id: app
    kind: app
    keys: [{{id: app-key, sha256: {hash_key(KEY)}}}]
providers:
  - id: mock
    kind: openai
    base_url: {upstream}
    max_retries: 0
    models:
{model("ok", "mock-model")}{model("e503", "mock-model@error=503")}\
{model("reset", "mock-model@error=reset")}{model("cut", "mock-model@stream-cut-after=5")}
  - id: slow
    kind: openai
    base_url: {upstream}
    max_retries: 0
    timeout_s: 0.5
    models:
{model("hang", "mock-model@error=hang,hang-s=10")}"""


@dataclass
class Harness:
    """The in-process gateway on a fresh SQLite file, and a client for it."""

    services: Services
    http: httpx.AsyncClient

    async def chat(self, model: str, *, stream: bool = False, key: str = KEY) -> httpx.Response:
        return await self.http.post(
            "/v1/chat/completions", json=body(model, stream), headers=auth(key)
        )

    async def budget_used(self) -> int:
        """What the budget counter holds now: settled spend plus open reservations."""
        start, end = period_bounds(Period.MONTH, time.time())
        claim = Claim(
            key=f"budget:{BUDGET}:app:{start:%Y-%m-%d}",
            amount=0,
            limit=1,
            kind="period",
            window_s=int((end - start).total_seconds()),
        )
        return await self.services.counters.usage(claim, time.time())

    def ledger(self) -> int:
        """The app's spend in the durable ledger, after the writer has flushed what it holds."""
        self.services.spend.close()  # flushes and stops the writer: call it last
        now = dt.datetime.now(dt.UTC)
        return self.services.store.spend_between(
            "app", now - dt.timedelta(days=1), now + dt.timedelta(days=1)
        )


def body(model: str, stream: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return payload


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def cost(input_tokens: int, output_tokens: int) -> int:
    return math.ceil(input_tokens * PRICE_IN + output_tokens * PRICE_OUT)


def events(response: httpx.Response) -> list[Any]:
    """The data events of an SSE body, JSON-decoded, with the final ``[DONE]`` kept as a string."""
    out: list[Any] = []
    for line in response.text.splitlines():
        if line.startswith("data: "):
            data = line.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def client_error(response: httpx.Response) -> tuple[int, dict[str, Any]]:
    """The status and the OpenAI error object a client gets, as a JSON body or, once a stream
    has started, as its only event before a clean ``[DONE]``."""
    if response.headers["content-type"].startswith("text/event-stream"):
        stream = events(response)
        assert len(stream) == 2 and stream[1] == "[DONE]", response.text
        return response.status_code, stream[0]["error"]
    return response.status_code, response.json()["error"]


async def open_harness(
    tmp_path: Path,
    upstream: str,
    *,
    redis: str | None = None,
    budget_on_error: str = "fail_closed",
    rate_on_error: str = "fail_closed",
) -> Harness:
    charter = tmp_path / "charter.yaml"
    charter.write_text(charter_yaml(upstream, budget_on_error, rate_on_error))
    flags = {"charter": str(charter), "database": f"sqlite:///{tmp_path}/charter.db"}
    if redis is not None:
        flags["redis"] = redis
    services = build_services(resolve(flags, environ={}))
    transport = httpx.ASGITransport(app=build_app(services.gateway))
    return Harness(services, httpx.AsyncClient(transport=transport, base_url="http://charter"))


@pytest.fixture
async def harness(tmp_path: Path, mock_upstream: str) -> AsyncIterator[Harness]:
    opened = await open_harness(tmp_path, mock_upstream)
    yield opened
    await opened.http.aclose()
    await opened.services.aclose()


async def answer(harness: Harness) -> int:
    """One request that succeeds; its cost from the usage the client got."""
    response = await harness.chat("ok")
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    return cost(usage["prompt_tokens"], usage["completion_tokens"])


# --- the upstream fails -----------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("model", "status", "code", "fragment"),
    [
        ("hang", 504, "upstream_timeout", "provider 'slow' did not answer in time"),
        ("e503", 502, "upstream_error", "provider 'mock' answered 503"),
        ("reset", 502, "upstream_error", "provider 'mock' connection failed"),
    ],
)
async def test_upstream_failure_is_an_openai_error_and_costs_nothing(
    harness: Harness, model: str, status: int, code: str, fragment: str, stream: bool
) -> None:
    spent = await answer(harness)
    started = time.monotonic()
    response = await harness.chat(model, stream=stream)
    took = time.monotonic() - started

    got_status, error = client_error(response)
    # A stream waits for the upstream's first chunk before its status line, so an upstream that
    # fails before answering gets the same status and JSON error as a whole answer.
    assert response.headers["content-type"].startswith("application/json")
    assert got_status == status
    assert error["type"] == "upstream_error" and error["code"] == code
    assert fragment in error["message"]
    outcome = harness.services.gateway.recent[-1]
    assert (outcome.status, outcome.cost_micro_usd) == (status, 0)
    if model == "hang":
        assert took < 5, "the provider's timeout_s (0.5 s) did not cut the wait"
    # The failed request's reservation was given back: only the first answer is counted.
    assert await harness.budget_used() == spent
    assert harness.ledger() == spent


async def test_stream_cut_mid_way_ends_with_an_error_event_and_costs_what_was_sent(
    harness: Harness,
) -> None:
    # An answer first, so the stream reuses its keep-alive connection to the upstream (where the
    # mock once lost the chunks before a scripted cut).
    spent = await answer(harness)
    response = await harness.chat("cut", stream=True)
    assert response.status_code == 200
    stream = events(response)
    assert stream[-1] == "[DONE]"
    error = stream[-2]["error"]
    assert error["type"] == "upstream_error"
    assert "stopped after 5 chunks" in error["message"]
    chunks = stream[:-2]
    assert not any("error" in c for c in chunks)
    received = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert received == "the quick brown fox jumps"  # the 5 chunks before the cut, nothing more
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)  # no fake "stop"

    # No usage came from the upstream, so the tokens handed out are counted: the prompt and
    # ceil(25 / 4) = 7 answer tokens, not the 16 the full answer would have had.
    outcome = harness.services.gateway.recent[-1]
    assert outcome.usage is not None and outcome.usage.estimated
    request = ChatRequest.from_openai(body("cut", True))
    expected = cost(estimate_input_tokens(request), tokens_for_chars(len(received)))
    assert outcome.cost_micro_usd == expected
    assert 0 < expected < cost(estimate_input_tokens(request), len(FULL_ANSWER.split()))
    # The reservation (the worst case, 16 answer tokens) was settled to that cost.
    assert await harness.budget_used() == spent + expected
    assert harness.ledger() == spent + expected


# --- Redis is unreachable ---------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
async def test_redis_down_fails_closed_with_a_503_naming_the_cause(
    tmp_path: Path, mock_upstream: str, stream: bool
) -> None:
    harness = await open_harness(tmp_path, mock_upstream, redis=DEAD_REDIS)
    try:
        response = await harness.chat("ok", stream=stream)
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["type"] == "service_unavailable"
        assert error["code"] == "storage_unavailable"
        assert "Redis at redis://127.0.0.1:1/0 is unreachable" in error["message"]
        assert "fail_closed: blocked" in error["message"]
        assert error["charter"]["control"] == BUDGET
        assert error["charter"]["decisions"] == ["capped-spend"]
        verdicts = harness.services.gateway.recent[-1].verdicts
        blocked = {v.control_id for v in verdicts if v.action is Action.BLOCK}
        assert blocked == {BUDGET, RATE}  # both counters live in the unreachable Redis
        assert harness.ledger() == 0
    finally:
        await harness.http.aclose()
        await harness.services.aclose()


async def test_redis_down_with_fail_open_passes_and_the_verdict_says_why(
    tmp_path: Path, mock_upstream: str
) -> None:
    harness = await open_harness(
        tmp_path,
        mock_upstream,
        redis=DEAD_REDIS,
        budget_on_error="fail_open",
        rate_on_error="fail_open",
    )
    try:
        response = await harness.chat("ok")
        assert response.status_code == 200, response.text
        usage = response.json()["usage"]
        verdicts = harness.services.gateway.recent[-1].verdicts
        failed_open = {v.control_id: v for v in verdicts if "fail_open" in v.reason}
        assert set(failed_open) == {BUDGET, RATE}
        for verdict in failed_open.values():
            assert verdict.action is Action.ALLOW and verdict.enforced
            assert verdict.evidence == {"error": "StorageUnavailable"}
            assert "Redis at redis://127.0.0.1:1/0 is unreachable" in verdict.reason
        # Counters were down, but the spend is still recorded for when they come back.
        assert harness.ledger() == cost(usage["prompt_tokens"], usage["completion_tokens"])
    finally:
        await harness.http.aclose()
        await harness.services.aclose()


async def test_each_control_decides_its_own_on_error(tmp_path: Path, mock_upstream: str) -> None:
    harness = await open_harness(
        tmp_path, mock_upstream, redis=DEAD_REDIS, budget_on_error="fail_open"
    )
    try:
        response = await harness.chat("ok")
        assert response.status_code == 503, response.text
        error = response.json()["error"]
        assert error["charter"]["control"] == RATE  # the budget let it through; the rate limit not
        assert "decision fair-use" in error["message"]
    finally:
        await harness.http.aclose()
        await harness.services.aclose()


# --- the database is unreachable --------------------------------------------------------------


class OutageStore:
    """The real store, except that ``find_key`` raises while ``down`` is set."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.down = False
        self.lookups = 0

    def find_key(self, key_hash: str) -> KeyRow | None:
        self.lookups += 1
        if self.down:
            raise StorageUnavailable(
                "PostgreSQL at 127.0.0.1:5432 is unreachable (connection refused)",
                hint="check that the database is running",
            )
        return self.store.find_key(key_hash)


async def test_a_key_seen_before_a_database_outage_keeps_working(harness: Harness) -> None:
    services = harness.services
    seen, _ = create_key(services.store, services.gateway.charter, "app", "used before")
    unseen, _ = create_key(services.store, services.gateway.charter, "app", "first used during")
    outage = OutageStore(services.store)
    keys = services.gateway.keys
    keys.store = outage  # type: ignore[assignment]  # KeyRing only calls find_key
    keys.ttl_s = 0.0  # every lookup goes to the store, so the outage path is the one taken

    assert (await harness.chat("ok", key=seen)).status_code == 200
    outage.down = True
    before = outage.lookups
    during = await harness.chat("ok", key=seen)
    assert during.status_code == 200, during.text
    assert outage.lookups == before + 1  # the store was asked, failed, and the cache answered

    # A key never seen cannot be checked: 503 naming the database, not a 401 that blames the key.
    refused = await harness.chat("ok", key=unseen)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error"]["code"] == "storage_unavailable"
    assert "PostgreSQL at 127.0.0.1:5432 is unreachable" in refused.json()["error"]["message"]

    outage.down = False
    assert (await harness.chat("ok", key=unseen)).status_code == 200  # and it recovers
