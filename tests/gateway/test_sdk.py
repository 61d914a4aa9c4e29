"""The official `openai` SDK works unchanged against a real uvicorn on loopback."""

from __future__ import annotations

import asyncio
import json

import openai
import pytest

from tests.gateway.conftest import MARKETING_KEY, SUPPORT_KEY, LiveServer

REFUND_TOOL = {
    "type": "function",
    "function": {
        "name": "issue_refund",
        "description": "Refund an order.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}, "amount_usd": {"type": "number"}},
            "required": ["order_id", "amount_usd"],
        },
    },
}


def test_sync_client(live: LiveServer) -> None:
    with openai.OpenAI(base_url=live.base_url, api_key=SUPPORT_KEY, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="sim-small", messages=[{"role": "user", "content": "hello there"}]
        )
        assert completion.choices[0].message.content
        assert completion.usage is not None and completion.usage.total_tokens > 0
        assert {m.id for m in client.models.list()} == {"sim-small", "sim-large"}


def test_async_client_and_streaming(live: LiveServer) -> None:
    async def run() -> tuple[str, int]:
        client = openai.AsyncOpenAI(base_url=live.base_url, api_key=SUPPORT_KEY, max_retries=0)
        stream = await client.chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "Where is order 4821?"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, usage = "", 0
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                usage = chunk.usage.completion_tokens
        await client.close()
        return text, usage

    text, usage = asyncio.run(run())
    assert "order 4821" in text and usage > 0


def test_tool_calls(live: LiveServer) -> None:
    with openai.OpenAI(base_url=live.base_url, api_key=SUPPORT_KEY, max_retries=0) as client:
        completion = client.chat.completions.create(
            model="sim-small",
            messages=[{"role": "user", "content": "Please refund order 4821 $30"}],
            tools=[REFUND_TOOL],  # type: ignore[list-item]
            # Who the assistant acts for, so the charter can check the order is theirs.
            extra_body={
                "charter": {"subject": "cust-9", "attributes": {"customer_orders": ["4821"]}}
            },
        )
    (call,) = completion.choices[0].message.tool_calls or []
    function = call.function  # type: ignore[union-attr]
    assert function.name == "issue_refund"
    assert json.loads(function.arguments) == {"order_id": "4821", "amount_usd": 30}


def test_sdk_raises_its_usual_errors(live: LiveServer) -> None:
    with (
        openai.OpenAI(base_url=live.base_url, api_key=MARKETING_KEY, max_retries=0) as client,
        pytest.raises(openai.PermissionDeniedError) as denied,
    ):
        client.chat.completions.create(
            model="sim-large", messages=[{"role": "user", "content": "hi"}]
        )
    assert "approved-models" in str(denied.value)
    with (
        openai.OpenAI(base_url=live.base_url, api_key="sk-nope", max_retries=0) as bad,
        pytest.raises(openai.AuthenticationError),
    ):
        bad.models.list()
