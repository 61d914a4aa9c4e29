"""An adapter for Anthropic's Messages API (``POST /v1/messages``), streamed and not.

It maps OpenAI-shaped requests onto Messages: system and developer messages become ``system``,
tool calls become ``tool_use`` blocks, tool messages ``tool_result`` blocks, consecutive messages of
one role are merged (the API wants turns to alternate); stream events map onto ``StreamChunk``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from charter.errors import InvalidRequest, UpstreamError
from charter.providers.http import (
    Session,
    Timeouts,
    drain,
    post_json,
    raise_for_status,
    sse_data,
)
from charter.providers.openai_compat import json_body, resolve_api_key
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    ContentPart,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)

API_VERSION = "2023-06-01"

_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
# Anthropic's error types and the HTTP status each comes with, so the wrapper can retry.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}
_PASSTHROUGH = ("top_p", "top_k", "metadata")


def _image_block(part: ContentPart) -> dict[str, Any]:
    raw = part.raw or {}
    image = raw.get("image_url")
    url = image.get("url") if isinstance(image, Mapping) else image
    if not isinstance(url, str):
        raise InvalidRequest(
            "an image_url part has no url", hint='send {"image_url": {"url": ...}}'
        )
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header[5:].split(";")[0]
        return {
            "type": "image",
            "source": {"type": "base64", "media_type": media_type, "data": data},
        }
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: str | tuple[ContentPart, ...] | None) -> list[dict[str, Any]]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            blocks.append({"type": "text", "text": part.text})
        elif part.type == "image_url":
            blocks.append(_image_block(part))
        else:
            raise InvalidRequest(
                f"content parts of type '{part.type}' cannot be sent to an Anthropic model",
                hint="send text or image_url parts",
            )
    return blocks


def _tool_use(call: ToolCall) -> dict[str, Any]:
    return {"type": "tool_use", "id": call.id, "name": call.name, "input": call.parsed_arguments()}


def _turn(message: Message) -> tuple[str, list[dict[str, Any]]]:
    if message.role == "tool":
        result = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.text,
        }
        return "user", [result]
    blocks = _blocks(message.content)
    if message.role == "assistant":
        blocks.extend(_tool_use(c) for c in message.tool_calls)
    return message.role, blocks


def _tool_choice(req: ChatRequest) -> dict[str, Any] | None:
    choice = req.tool_choice
    if choice is None:
        return None
    if choice.mode == "function":
        return {"type": "tool", "name": choice.name}
    return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice.mode]}


def to_messages_body(req: ChatRequest, default_max_tokens: int) -> dict[str, Any]:
    """The Messages API body for ``req``."""
    turns: list[dict[str, Any]] = []
    for message in req.messages:
        if message.role in ("system", "developer"):
            continue
        role, blocks = _turn(message)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    if not turns:
        raise InvalidRequest(
            "an Anthropic model needs at least one user message besides the system prompt",
            hint='add {"role": "user", "content": "..."}',
        )
    body: dict[str, Any] = {
        "model": req.model,
        "max_tokens": req.max_tokens or default_max_tokens,
        "messages": turns,
    }
    if system := req.system_prompt:
        body["system"] = system
    if req.tools:
        body["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in req.tools
        ]
        if (choice := _tool_choice(req)) is not None:
            body["tool_choice"] = choice
    if req.temperature is not None:
        body["temperature"] = req.temperature
    if req.stop:
        body["stop_sequences"] = list(req.stop)
    for key in _PASSTHROUGH:
        if key in req.extra:
            body[key] = req.extra[key]
    return body


def _usage(raw: object) -> Usage | None:
    """Messages usage; cache reads and writes are input tokens too."""
    if not isinstance(raw, Mapping) or not isinstance(raw.get("input_tokens"), int):
        return None
    input_tokens = int(raw["input_tokens"])
    for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
        value = raw.get(key)
        if isinstance(value, int):
            input_tokens += value
    output = raw.get("output_tokens")
    return Usage(input_tokens, output if isinstance(output, int) else 0)


def from_messages_response(data: object, provider: str) -> ChatResponse:
    """A ``ChatResponse`` from a Messages API response body."""
    if not isinstance(data, Mapping) or not isinstance(data.get("content"), list):
        raise UpstreamError(f"provider '{provider}' answered without a content list")
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in data["content"]:
        if not isinstance(block, Mapping):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, separators=(",", ":"))
            calls.append(ToolCall(str(block.get("id")), str(block.get("name")), arguments))
    return ChatResponse(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content="".join(texts) if texts or not calls else None,
        tool_calls=tuple(calls),
        finish_reason=_STOP_REASONS.get(str(data.get("stop_reason")), "stop"),
        usage=_usage(data.get("usage")),
    )


def _error_event(data: Mapping[str, Any], provider: str) -> UpstreamError:
    raw = data.get("error")
    error: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    kind = str(error.get("type", "api_error"))
    return UpstreamError(
        f"provider '{provider}' reported {kind}: {error.get('message', '')}",
        upstream_status=_ERROR_STATUS.get(kind, 500),
    )


class _StreamState:
    """Turns Messages stream events into chunks; tool calls are numbered in order of appearance."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.input_usage: Usage | None = None
        self.tool_index: dict[int, int] = {}  # content block index -> OpenAI tool-call index

    def chunk(self, data: Mapping[str, Any]) -> StreamChunk | None:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message")
            self.input_usage = (
                _usage(message.get("usage")) if isinstance(message, Mapping) else None
            )
            return None
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") != "tool_use":
                text = block.get("text")
                return StreamChunk(text=text) if isinstance(text, str) and text else None
            index = self.tool_index.setdefault(int(data.get("index", 0)), len(self.tool_index))
            start = ToolCallDelta(index, str(block.get("id")), str(block.get("name")))
            return StreamChunk(tool_calls=(start,))
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return StreamChunk(text=str(delta.get("text", "")))
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(int(data.get("index", 0)), 0)
                fragment = str(delta.get("partial_json", ""))
                return StreamChunk(tool_calls=(ToolCallDelta(index, arguments=fragment),))
            return None
        if kind == "message_delta":
            return self._finish(data)
        if kind == "error":
            raise _error_event(data, self.provider)
        return None  # ping, content_block_stop, message_stop

    def _finish(self, data: Mapping[str, Any]) -> StreamChunk:
        delta = data.get("delta") or {}
        reason = _STOP_REASONS.get(str(delta.get("stop_reason")), "stop")
        usage = None
        raw = data.get("usage")
        output = raw.get("output_tokens") if isinstance(raw, Mapping) else None
        if isinstance(output, int):
            # message_delta usage is cumulative; input counts arrive in message_start.
            later_input = _usage(raw) if isinstance(raw, Mapping) else None
            input_tokens = (later_input or self.input_usage or Usage(0, 0)).input_tokens
            usage = Usage(input_tokens, output)
        return StreamChunk(finish_reason=reason, usage=usage)


class AnthropicProvider:
    """Calls ``{base_url}/v1/messages`` with ``x-api-key`` over one keep-alive pool.

    ``default_max_tokens`` is sent when the request sets none: the Messages API requires it.
    """

    def __init__(
        self,
        base_url: str = "https://api.anthropic.com",
        *,
        name: str = "anthropic",
        api_key: str | None = None,
        api_key_env: str | None = "ANTHROPIC_API_KEY",
        default_max_tokens: int = 4096,
        headers: Mapping[str, str] | None = None,
        timeouts: Timeouts | None = None,
        max_connections: int = 100,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._url = self.base_url + "/v1/messages"
        key = resolve_api_key(name, api_key, api_key_env)
        self._headers = {
            "content-type": "application/json",
            "anthropic-version": API_VERSION,
            **({"x-api-key": key} if key else {}),
            **(headers or {}),
        }
        self.default_max_tokens = default_max_tokens
        self._session = Session(max_connections, timeouts)

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.name!r}, base_url={self.base_url!r})"

    def _body(self, req: ChatRequest, stream: bool) -> bytes:
        body = to_messages_body(req, self.default_max_tokens)
        if stream:
            body["stream"] = True
        return json_body(body)

    async def generate(self, req: ChatRequest) -> ChatResponse:
        """One non-streamed Messages call."""
        body = self._body(req, False)
        data = await post_json(self._session, self._url, body, self._headers, self.name)
        return from_messages_response(data, self.name)

    async def stream(self, req: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """A streamed Messages call, mapped event by event."""
        state = _StreamState(self.name)
        session = self._session.get()
        async with session.post(self._url, data=self._body(req, True), headers=self._headers) as r:
            await raise_for_status(r)
            async for event in sse_data(r, self.name):
                try:
                    data = json.loads(event)
                except json.JSONDecodeError:
                    raise UpstreamError(
                        f"provider '{self.name}' sent a stream event that is not JSON"
                    ) from None
                if not isinstance(data, Mapping):
                    raise UpstreamError(f"provider '{self.name}' sent a malformed stream event")
                chunk = state.chunk(data)
                if chunk is not None:
                    yield chunk
                if data.get("type") == "message_stop":
                    await drain(r)
                    return

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """Anthropic has no embeddings API; route embeddings to another provider."""
        raise InvalidRequest(
            f"provider '{self.name}' (Anthropic Messages API) has no embeddings endpoint",
            hint="route embedding models to an OpenAI-compatible provider",
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._session.aclose()
