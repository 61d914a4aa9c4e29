"""`POST /v1/messages`: the same governed path for clients that speak Anthropic's Messages API.

The request is translated into the gateway's ``ChatRequest`` (system prompt, text, ``tool_use``
and ``tool_result`` blocks, tools, ``tool_choice``, stop sequences), goes through exactly the same
``Gateway.chat`` / ``chat_stream`` as an OpenAI request, and the answer is translated back: a
``message`` object, or the ``message_start`` ... ``message_stop`` event stream. Errors use
Anthropic's error shape. Image blocks are passed through to the provider unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from charter.errors import CharterError, InvalidRequest
from charter.providers.types import ChatRequest, ChatResponse

_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
}


def error_body(exc: CharterError) -> dict[str, Any]:
    """Anthropic's error shape, keeping Charter's code and the control behind a refusal."""
    body = exc.to_dict()["error"]
    body["type"] = _ERROR_TYPES.get(exc.status, "api_error")
    return {"type": "error", "error": body}


def _text_of(blocks: Any, where: str) -> str:
    if isinstance(blocks, str):
        return blocks
    if isinstance(blocks, list):
        texts = []
        for i, block in enumerate(blocks):
            if not isinstance(block, Mapping) or block.get("type") != "text":
                raise InvalidRequest(
                    f"{where}[{i}]: only text blocks are allowed here",
                    hint='send {"type": "text", "text": "..."}',
                )
            texts.append(str(block.get("text", "")))
        return "\n".join(texts)
    raise InvalidRequest(f"{where}: expected a string or a list of text blocks")


def _messages(raw: Any) -> list[dict[str, Any]]:
    """Anthropic turns as OpenAI chat messages (tool results become `tool` messages)."""
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest(
            "messages: expected a non-empty list of turns",
            hint='send [{"role": "user", "content": "..."}]',
        )
    out: list[dict[str, Any]] = []
    for index, turn in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(turn, Mapping) or turn.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"{where}: expected a turn with role user or assistant")
        content = turn.get("content")
        if isinstance(content, str):
            out.append({"role": turn["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise InvalidRequest(f"{where}.content: expected a string or a list of blocks")
        texts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for j, block in enumerate(content):
            kind = block.get("type") if isinstance(block, Mapping) else None
            if kind == "text":
                texts.append({"type": "text", "text": str(block.get("text", ""))})
            elif kind == "image":
                texts.append({"type": "image", "anthropic": dict(block)})
            elif kind == "tool_use" and turn["role"] == "assistant":
                calls.append(
                    {
                        "id": str(block.get("id", "")),
                        "type": "function",
                        "function": {
                            "name": str(block.get("name", "")),
                            "arguments": json.dumps(block.get("input", {})),
                        },
                    }
                )
            elif kind == "tool_result" and turn["role"] == "user":
                result = block.get("content", "")
                out.append(
                    {
                        "role": "tool",
                        "tool_call_id": str(block.get("tool_use_id", "")),
                        "content": _text_of(result, f"{where}.content[{j}].content")
                        if not isinstance(result, str)
                        else result,
                    }
                )
            else:
                raise InvalidRequest(
                    f"{where}.content[{j}]: unsupported block {kind!r}",
                    hint="text, image, tool_use (assistant), tool_result (user)",
                )
        if texts or calls:
            message: dict[str, Any] = {"role": turn["role"], "content": texts or None}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
    return out


def to_chat_request(body: Any) -> ChatRequest:
    """An Anthropic Messages request as the gateway's ``ChatRequest``."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("the messages body must be a JSON object")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] <= 0:
        raise InvalidRequest(
            "max_tokens: required, a positive integer", hint="the Messages API requires max_tokens"
        )
    openai: dict[str, Any] = {"model": body.get("model"), "max_tokens": body["max_tokens"]}
    messages = _messages(body.get("messages"))
    if body.get("system") is not None:
        messages.insert(0, {"role": "system", "content": _text_of(body["system"], "system")})
    openai["messages"] = messages
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            raise InvalidRequest("tools: expected a list")
        openai["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema", {"type": "object"}),
                },
            }
            for t in body["tools"]
            if isinstance(t, Mapping)
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, Mapping):
        kind = choice.get("type")
        openai["tool_choice"] = (
            {"type": "function", "function": {"name": choice.get("name")}}
            if kind == "tool"
            else {"any": "required", "auto": "auto", "none": "none"}.get(str(kind), "auto")
        )
    for ours, theirs in (("temperature", "temperature"), ("stop", "stop_sequences")):
        if body.get(theirs) is not None:
            openai[ours] = body[theirs]
    if body.get("stream"):
        openai["stream"] = True
        openai["stream_options"] = {"include_usage": True}
    if isinstance(body.get("metadata"), Mapping) and "charter" in body["metadata"]:
        openai["charter"] = body["metadata"]["charter"]
    for part in openai["messages"]:
        if isinstance(part.get("content"), list):
            part["content"] = [
                p["anthropic"] if p.get("type") == "image" else p for p in part["content"]
            ]
    return ChatRequest.from_openai(openai)


def to_message(response: ChatResponse, model: str) -> dict[str, Any]:
    """A ``ChatResponse`` as an Anthropic ``message`` object."""
    content: list[dict[str, Any]] = []
    if response.content:
        content.append({"type": "text", "text": response.content})
    for call in response.tool_calls:
        content.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.parsed_arguments()}
        )
    usage = response.usage
    return {
        "id": response.id.replace("chatcmpl-", "msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": _STOP_REASONS.get(response.finish_reason, "end_turn"),
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens if usage else 0,
            "output_tokens": usage.output_tokens if usage else 0,
        },
    }


def _event(name: str, data: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n".encode()


async def to_events(
    chunks: AsyncIterator[bytes], model: str, message_id: str
) -> AsyncIterator[bytes]:
    """The gateway's OpenAI-style SSE stream as Anthropic stream events."""
    yield _event(
        "message_start",
        {
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
        },
    )
    block = -1
    text_open = False
    stop = "end_turn"
    usage = {"input_tokens": 0, "output_tokens": 0}
    async for raw in chunks:
        for line in raw.decode().splitlines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if "error" in event:
                yield _event("error", {"error": {**event["error"], "type": "api_error"}})
                return
            if event.get("usage"):
                usage = {
                    "input_tokens": event["usage"].get("prompt_tokens", 0),
                    "output_tokens": event["usage"].get("completion_tokens", 0),
                }
            for choice in event.get("choices", []):
                delta = choice.get("delta", {})
                if delta.get("content"):
                    if not text_open:
                        block += 1
                        text_open = True
                        yield _event(
                            "content_block_start",
                            {"index": block, "content_block": {"type": "text", "text": ""}},
                        )
                    yield _event(
                        "content_block_delta",
                        {"index": block, "delta": {"type": "text_delta", "text": delta["content"]}},
                    )
                for call in delta.get("tool_calls", []):
                    if text_open:
                        yield _event("content_block_stop", {"index": block})
                        text_open = False
                    block += 1
                    function = call.get("function", {})
                    yield _event(
                        "content_block_start",
                        {
                            "index": block,
                            "content_block": {
                                "type": "tool_use",
                                "id": call.get("id"),
                                "name": function.get("name"),
                                "input": {},
                            },
                        },
                    )
                    yield _event(
                        "content_block_delta",
                        {
                            "index": block,
                            "delta": {
                                "type": "input_json_delta",
                                "partial_json": function.get("arguments", ""),
                            },
                        },
                    )
                    yield _event("content_block_stop", {"index": block})
                if choice.get("finish_reason"):
                    stop = _STOP_REASONS.get(choice["finish_reason"], "end_turn")
    if text_open:
        yield _event("content_block_stop", {"index": block})
    yield _event(
        "message_delta",
        {
            "delta": {"stop_reason": stop, "stop_sequence": None},
            "usage": {"output_tokens": usage["output_tokens"]},
        },
    )
    yield _event("message_stop", {})
