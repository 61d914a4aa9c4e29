"""The mock upstream speaks the OpenAI API well enough for the official SDK, scripts included."""

from __future__ import annotations

import openai
import pytest

from charter.providers.mock_server import Script, parse_script


def sdk(mock_upstream: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=mock_upstream, api_key="unused", max_retries=0)


def test_sdk_chat_stream_embeddings_and_models(mock_upstream: str) -> None:
    with sdk(mock_upstream) as client:
        messages = [{"role": "user", "content": "hi"}]
        completion = client.chat.completions.create(model="mock-model", messages=messages)  # type: ignore[arg-type]
        assert completion.choices[0].message.content is not None
        assert completion.usage is not None and completion.usage.completion_tokens == 16
        stream = client.chat.completions.create(
            model="mock-model@output-tokens=3",
            messages=messages,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "the quick brown"
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
        vectors = client.embeddings.create(model="mock-model", input=["a", "b"], dimensions=4)
        assert [len(d.embedding) for d in vectors.data] == [4, 4]
        assert [m.id for m in client.models.list()] == ["mock-model"]


def test_sdk_sees_scripted_errors_and_tool_calls(mock_upstream: str) -> None:
    with sdk(mock_upstream) as client:
        messages = [{"role": "user", "content": "refund"}]
        with pytest.raises(openai.RateLimitError):
            client.chat.completions.create(model="m@error=429", messages=messages)  # type: ignore[arg-type]
        with pytest.raises(openai.APIConnectionError):
            client.chat.completions.create(model="m@error=reset", messages=messages)  # type: ignore[arg-type]
        completion = client.chat.completions.create(
            model="m",
            messages=messages,  # type: ignore[arg-type]
            extra_headers={"X-Mock-Tool-Call": "issue_refund", "X-Mock-Tool-Args": '{"a":1}'},
        )
        call = completion.choices[0].message.tool_calls[0]  # type: ignore[index]
        assert call.function.name == "issue_refund" and call.function.arguments == '{"a":1}'  # type: ignore[union-attr]


def test_script_from_headers_and_model_name() -> None:
    assert parse_script({}, "gpt-4o") is None
    script = parse_script({"x-mock-latency-ms": "20"}, "gpt@error=503,fail-first=2")
    assert script == Script(latency_ms=20, error="503", fail_first=2)
    assert parse_script({}, "m@hang-s=999") == Script(hang_s=60.0)
