"""The Anthropic adapter against a small local fake of the Messages API on loopback."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charter.errors import ConfigurationError, UpstreamError
from charter.providers.anthropic import AnthropicProvider, to_messages_body
from charter.providers.base import ClientSettings, ProviderClient
from charter.providers.types import ChatRequest, StreamChunk

pytestmark = pytest.mark.anyio

KEY = "test-key"
FAST = ClientSettings(backoff_base_s=0.01, backoff_max_s=0.02, timeout_s=10)
REFUND_TOOL = {
    "type": "function",
    "function": {
        "name": "issue_refund",
        "description": "Refund an order",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
    },
}


class FakeMessagesAPI:
    """Answers like the Messages API; the last user text picks a behaviour."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.calls: Counter[str] = Counter()
        self.app = Starlette(routes=[Route("/v1/messages", self.messages, methods=["POST"])])

    async def messages(self, request: Request) -> Response:
        body = json.loads(await request.body())
        self.bodies.append(body)
        self.headers.append(dict(request.headers))
        if request.headers.get("x-api-key") != KEY:
            return _error(401, "authentication_error", "invalid x-api-key")
        last = body["messages"][-1]["content"]
        text = last[-1].get("text", "") if isinstance(last, list) else last
        self.calls[text] += 1
        if text == "overloaded once" and self.calls[text] == 1:
            return _error(529, "overloaded_error", "Overloaded")
        blocks: list[dict[str, Any]]
        if body.get("tools"):
            tool_input = {"order_id": "4821", "amount_usd": 30}
            blocks = [
                {"type": "text", "text": "Refunding."},
                {"type": "tool_use", "id": "toolu_1", "name": "issue_refund", "input": tool_input},
            ]
        else:
            blocks = [{"type": "text", "text": "Hello from fake Claude"}]
        if body.get("stream"):
            error_first = text == "stream overloaded once" and self.calls[text] == 1
            events = _events(body, blocks, error_first)
            return StreamingResponse(_sse(events), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": "tool_use" if body.get("tools") else "end_turn",
                "usage": {"input_tokens": 20, "output_tokens": 7, "cache_read_input_tokens": 5},
            }
        )


def _error(status: int, kind: str, message: str) -> Response:
    body = {"type": "error", "error": {"type": kind, "message": message}}
    return JSONResponse(body, status_code=status)


def _events(
    body: dict[str, Any], blocks: list[dict[str, Any]], error_first: bool
) -> list[tuple[str, dict[str, Any]]]:
    start = {
        "type": "message_start",
        "message": {"id": "msg_2", "model": body["model"], "usage": {"input_tokens": 11}},
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", start)]
    if error_first:
        overloaded = {"type": "overloaded_error", "message": "Overloaded"}
        return [*events, ("error", {"type": "error", "error": overloaded})]
    events.append(("ping", {"type": "ping"}))
    for i, block in enumerate(blocks):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for word in block["text"].split(" "):
                delta = {"type": "text_delta", "text": word + " "}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": i, "delta": delta},
                    )
                )
        else:
            head = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": i, "content_block": head},
                )
            )
            raw = json.dumps(block["input"])
            for j in range(0, len(raw), 6):
                delta = {"type": "input_json_delta", "partial_json": raw[j : j + 6]}
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": i, "delta": delta},
                    )
                )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    stop = "tool_use" if body.get("tools") else "end_turn"
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop},
                "usage": {"output_tokens": 9},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


async def _sse(events: list[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    for name, data in events:
        yield f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[FakeMessagesAPI, str]]:
    api = FakeMessagesAPI()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield api, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=5)
    sock.close()


def client(url: str, key: str = KEY) -> ProviderClient:
    return ProviderClient(AnthropicProvider(url, api_key=key), settings=FAST)


def request(text: str, *, tools: bool = False, stream: bool = False) -> ChatRequest:
    body: dict[str, Any] = {
        "model": "claude-test",
        "messages": [
            {"role": "system", "content": "You are a support agent."},
            {"role": "user", "content": text},
        ],
        "stream": stream,
    }
    if tools:
        body["tools"] = [REFUND_TOOL]
    return ChatRequest.from_openai(body)


async def collect(stream: AsyncIterator[StreamChunk]) -> list[StreamChunk]:
    return [chunk async for chunk in stream]


def test_request_maps_system_tools_and_tool_results() -> None:
    req = ChatRequest.from_openai(
        {
            "model": "claude-test",
            "max_tokens": 50,
            "stop": "END",
            "tool_choice": "required",
            "tools": [REFUND_TOOL],
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "refund order 4821"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {
                                "name": "issue_refund",
                                "arguments": '{"order_id":"4821"}',
                            },
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "call_1", "content": "refunded"},
                {"role": "user", "content": "thanks"},
            ],
        }
    )
    body = to_messages_body(req, default_max_tokens=1000)
    assert body["system"] == "Be brief."
    assert body["max_tokens"] == 50
    assert body["stop_sequences"] == ["END"]
    assert body["tool_choice"] == {"type": "any"}
    assert body["tools"][0]["input_schema"]["properties"] == {"order_id": {"type": "string"}}
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "issue_refund", "input": {"order_id": "4821"}}
    ]
    # The tool result and the next user text merge into one user turn, as the API requires.
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": "refunded"},
        {"type": "text", "text": "thanks"},
    ]


async def test_generate_text(fake: tuple[FakeMessagesAPI, str]) -> None:
    api, url = fake
    c = client(url)
    response = await c.generate(request("hello"))
    await c.aclose()
    assert response.content == "Hello from fake Claude"
    assert response.finish_reason == "stop"
    assert response.usage is not None and not response.usage.estimated
    assert (response.usage.input_tokens, response.usage.output_tokens) == (25, 7)
    assert api.headers[-1]["anthropic-version"] == "2023-06-01"
    assert api.bodies[-1]["system"] == "You are a support agent."
    assert api.bodies[-1]["max_tokens"] == 4096


async def test_generate_tool_use(fake: tuple[FakeMessagesAPI, str]) -> None:
    _, url = fake
    c = client(url)
    response = await c.generate(request("refund order 4821 $30", tools=True))
    await c.aclose()
    assert response.finish_reason == "tool_calls"
    assert response.content == "Refunding."
    (call,) = response.tool_calls
    assert call.id == "toolu_1" and call.name == "issue_refund"
    assert call.parsed_arguments() == {"order_id": "4821", "amount_usd": 30}


async def test_stream_text_with_usage(fake: tuple[FakeMessagesAPI, str]) -> None:
    _, url = fake
    c = client(url)
    chunks = await collect(c.stream(request("hello", stream=True)))
    await c.aclose()
    assert "".join(ch.text for ch in chunks) == "Hello from fake Claude "
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.input_tokens, chunks[-1].usage.output_tokens) == (11, 9)


async def test_stream_tool_use_deltas(fake: tuple[FakeMessagesAPI, str]) -> None:
    _, url = fake
    c = client(url)
    chunks = await collect(c.stream(request("refund order 4821 $30", tools=True, stream=True)))
    await c.aclose()
    deltas = [d for ch in chunks for d in ch.tool_calls]
    assert deltas[0].id == "toolu_1" and deltas[0].name == "issue_refund"
    assert {d.index for d in deltas} == {0}  # block index 1 is the first tool call
    arguments = "".join(d.arguments for d in deltas)
    assert json.loads(arguments) == {"order_id": "4821", "amount_usd": 30}
    assert chunks[-1].finish_reason == "tool_calls"


async def test_overloaded_529_is_retried(fake: tuple[FakeMessagesAPI, str]) -> None:
    api, url = fake
    c = client(url)
    response = await c.generate(request("overloaded once"))
    await c.aclose()
    assert response.attempts == 2
    assert api.calls["overloaded once"] == 2


async def test_overloaded_event_before_content_is_retried(
    fake: tuple[FakeMessagesAPI, str],
) -> None:
    _, url = fake
    c = client(url)
    stream = c.stream(request("stream overloaded once", stream=True))
    chunks = await collect(stream)
    await c.aclose()
    assert stream.attempts == 2
    assert chunks[-1].finish_reason == "stop"


async def test_bad_key_is_not_retried(fake: tuple[FakeMessagesAPI, str]) -> None:
    api, url = fake
    before = len(api.bodies)
    c = client(url, key="wrong")
    with pytest.raises(UpstreamError, match="invalid x-api-key") as caught:
        await c.generate(request("hello"))
    await c.aclose()
    assert "api_key_env" in str(caught.value)
    assert len(api.bodies) == before + 1


def test_missing_key_env_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHARTER_TEST_ANTHROPIC_KEY", raising=False)
    with pytest.raises(ConfigurationError, match=r"\$CHARTER_TEST_ANTHROPIC_KEY"):
        AnthropicProvider(api_key_env="CHARTER_TEST_ANTHROPIC_KEY")
