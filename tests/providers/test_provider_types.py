"""Parsing OpenAI bodies into the provider types, and rendering them back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from charter.errors import InvalidRequest, UpstreamError
from charter.providers.types import (
    SSE_DONE,
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    Usage,
)

FULL: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is in this image?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
    "tool_choice": {"type": "function", "function": {"name": "f"}},
    "max_completion_tokens": 64,
    "temperature": 0.2,
    "stop": "END",
    "stream": True,
    "stream_options": {"include_usage": True},
    "seed": 7,
    "response_format": {"type": "json_object"},
}


def test_parses_every_modelled_field_and_keeps_the_rest() -> None:
    req = ChatRequest.from_openai(FULL)
    assert req.model == "gpt-4o-mini"
    assert [m.role for m in req.messages] == ["system", "user", "assistant", "tool"]
    assert req.messages[1].text == "What is in this image?"
    assert req.messages[2].tool_calls == (ToolCall("c1", "f", "{}"),)
    assert req.messages[3].tool_call_id == "c1"
    assert req.tool_choice == ToolChoice("function", "f")
    assert (req.max_tokens, req.temperature, req.stop) == (64, 0.2, ("END",))
    assert req.stream and req.include_usage
    assert req.extra == {"seed": 7, "response_format": {"type": "json_object"}}
    assert req.system_prompt == "Be brief."


def test_round_trips_to_an_equivalent_body() -> None:
    body = ChatRequest.from_openai(FULL).to_openai()
    assert body["messages"][1]["content"][1] == FULL["messages"][1]["content"][1]
    assert body["tool_choice"] == FULL["tool_choice"]
    assert body["seed"] == 7 and body["max_tokens"] == 64 and body["stop"] == ["END"]
    assert ChatRequest.from_openai(body) == ChatRequest.from_openai(FULL)
    assert "stream" not in ChatRequest.from_openai(FULL).to_openai(stream=False)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "text"}]}]},
            "messages[0].content[0].text",
        ),
        (
            {"model": "m", "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].tool_call_id",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "any"},
            "tool_choice",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]},
            "tools[0].function",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
        ),
    ],
)
def test_malformed_requests_name_the_field(body: Any, field: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        ChatRequest.from_openai(body)
    assert str(caught.value).startswith(f"{field}:")
    assert caught.value.status == 400


def test_response_renders_in_openai_shape() -> None:
    response = ChatResponse(
        id="r1",
        model="upstream",
        content=None,
        tool_calls=(ToolCall("c1", "f", '{"a":1}'),),
        finish_reason="tool_calls",
        usage=Usage(10, 5),
        created=123,
    )
    body = response.to_openai(model="public-name")
    assert body["model"] == "public-name"
    assert body["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "f",
        "arguments": '{"a":1}',
    }
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert ChatResponse.from_openai(body).tool_calls == response.tool_calls


def test_chunk_renders_as_sse_with_usage_in_its_own_event() -> None:
    chunk = StreamChunk(text="hi", finish_reason="stop", usage=Usage(3, 1))
    raw = chunk.to_sse("r1", "m", 5, first=True, include_usage=True)
    events = [json.loads(e.removeprefix("data: ")) for e in raw.decode().split("\n\n") if e]
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": "hi"}
    assert events[0]["choices"][0]["finish_reason"] == "stop"
    assert events[1]["choices"] == [] and events[1]["usage"]["total_tokens"] == 4
    assert len(chunk.to_openai_events("r1", "m", 5)) == 1
    assert SSE_DONE == b"data: [DONE]\n\n"


def test_chunk_parses_tool_call_deltas() -> None:
    data = {
        "choices": [
            {
                "delta": {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                },
                "finish_reason": None,
            }
        ]
    }
    assert StreamChunk.from_openai(data).tool_calls == (ToolCallDelta(0, "c1", "f", ""),)
    usage_only = StreamChunk.from_openai({"choices": [], "usage": {"prompt_tokens": 2}})
    assert usage_only.usage == Usage(2, 0)


def test_invalid_tool_arguments_are_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="not JSON"):
        ToolCall("c1", "f", "{oops").parsed_arguments()


def test_embedding_request_rejects_token_ids() -> None:
    assert EmbeddingRequest.from_openai({"model": "e", "input": "hi"}).input == ("hi",)
    with pytest.raises(InvalidRequest, match="token-id arrays"):
        EmbeddingRequest.from_openai({"model": "e", "input": [[1, 2, 3]]})
