"""The gateway's OpenAI-compatible API in-process: auth, routes, budgets, rate limits, errors."""

from __future__ import annotations

import datetime as dt
import json
import time

import httpx
import pytest

from charter.gateway.factory import Services
from charter.storage.base import SpendRow
from tests.gateway.conftest import ADMIN_KEY, MARKETING_KEY, SUPPORT_KEY

pytestmark = pytest.mark.anyio

CHAT = {"model": "sim-small", "messages": [{"role": "user", "content": "Where is my parcel?"}]}


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


async def test_chat_completion(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers=auth(SUPPORT_KEY))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion"
    assert "Where is my parcel?" in body["choices"][0]["message"]["content"]
    assert body["usage"]["prompt_tokens"] > 0
    assert response.headers["x-charter-request-id"].startswith("req_")
    assert len(response.headers["x-charter-version"]) == 12


async def test_models_lists_only_what_the_key_may_use(client: httpx.AsyncClient) -> None:
    support = await client.get("/v1/models", headers=auth(SUPPORT_KEY))
    marketing = await client.get("/v1/models", headers=auth(MARKETING_KEY))
    assert {m["id"] for m in support.json()["data"]} == {"sim-small", "sim-large"}
    assert {m["id"] for m in marketing.json()["data"]} == {"sim-small"}


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer sk-wrong"}])
async def test_bad_or_missing_key_is_401(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_model_not_allowed_names_the_decision(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "model": "sim-large"}
    response = await client.post("/v1/chat/completions", json=body, headers=auth(MARKETING_KEY))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "model_not_allowed"
    assert error["charter"]["decisions"] == ["approved-models"]
    assert "decision approved-models" in error["message"]


async def test_unknown_model_is_404_with_the_allowed_list(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "model": "gpt-9"}
    response = await client.post("/v1/chat/completions", json=body, headers=auth(SUPPORT_KEY))
    assert response.status_code == 404
    assert "sim-small" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1,2]", "JSON object"),
        (b"", "no body"),
        (b'{"model": "sim-small"}', "messages"),
    ],
)
async def test_malformed_requests_are_400(
    client: httpx.AsyncClient, content: bytes, fragment: str
) -> None:
    response = await client.post("/v1/chat/completions", content=content, headers=auth(SUPPORT_KEY))
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


async def test_rate_limit_names_the_decision(client: httpx.AsyncClient) -> None:
    statuses = []
    for _ in range(4):
        response = await client.post("/v1/chat/completions", json=CHAT, headers=auth(MARKETING_KEY))
        statuses.append(response.status_code)
    assert statuses == [200, 200, 200, 429]
    assert "decision fair-use" in response.json()["error"]["message"]


async def test_budget_exceeded_is_429_naming_budget_and_decision(
    client: httpx.AsyncClient, services: Services
) -> None:
    services.store.add_spend(
        [
            SpendRow(
                "old", "marketing-writer", "sim-small", 1, 1, 49_999_900, dt.datetime.now(dt.UTC)
            )
        ]
    )
    response = await client.post("/v1/chat/completions", json=CHAT, headers=auth(MARKETING_KEY))
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert "marketing monthly budget ($50.00)" in error["message"]
    assert error["charter"]["decisions"] == ["team-budgets"]


async def test_spend_is_recorded_in_the_ledger(
    client: httpx.AsyncClient, services: Services
) -> None:
    response = await client.post("/v1/chat/completions", json=CHAT, headers=auth(SUPPORT_KEY))
    assert response.status_code == 200
    usage = response.json()["usage"]
    expected = round(usage["prompt_tokens"] * 0.15 + usage["completion_tokens"] * 0.60 + 0.5)
    deadline = time.monotonic() + 5
    now = dt.datetime.now(dt.UTC)
    while True:
        spent = services.store.spend_between(
            "support-bot", now - dt.timedelta(hours=1), now + dt.timedelta(hours=1)
        )
        if spent or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert abs(spent - expected) <= 1


async def test_stream_with_usage(client: httpx.AsyncClient) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    async with client.stream(
        "POST", "/v1/chat/completions", json=body, headers=auth(SUPPORT_KEY)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] async for line in response.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert "Where is my parcel?" in text
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_embeddings(client: httpx.AsyncClient) -> None:
    body = {"model": "sim-small", "input": ["hello", "world"]}
    response = await client.post("/v1/embeddings", json=body, headers=auth(SUPPORT_KEY))
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 2


async def test_admin_keys_lifecycle(client: httpx.AsyncClient) -> None:
    assert (await client.get("/admin/v1/keys")).status_code == 401
    created = await client.post(
        "/admin/v1/keys", json={"principal": "support-bot"}, headers=auth(ADMIN_KEY)
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["id"]
    assert (
        await client.post("/v1/chat/completions", json=CHAT, headers=auth(key))
    ).status_code == 200
    listed = await client.get("/admin/v1/keys", headers=auth(ADMIN_KEY))
    assert key not in listed.text and key_id in listed.text
    revoked = await client.delete(f"/admin/v1/keys/{key_id}", headers=auth(ADMIN_KEY))
    assert revoked.status_code == 200
    after = await client.post("/v1/chat/completions", json=CHAT, headers=auth(key))
    assert after.status_code == 401
    bad = await client.post("/admin/v1/keys", json={"principal": "nobody"}, headers=auth(ADMIN_KEY))
    assert bad.status_code == 400 and "not a principal" in bad.json()["error"]["message"]
