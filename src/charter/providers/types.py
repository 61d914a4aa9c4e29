"""The wire-independent values the gateway hands to providers, and their OpenAI JSON forms.

Parsing (``ChatRequest.from_openai``) validates as it builds, so a malformed request fails with one
``InvalidRequest`` that names the field (``messages[2].content``) and says what to send instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from charter.errors import InvalidRequest, UpstreamError

Role = Literal["system", "developer", "user", "assistant", "tool"]
ToolChoiceMode = Literal["auto", "none", "required", "function"]

_ROLES: frozenset[str] = frozenset(("system", "developer", "user", "assistant", "tool"))
_TOOL_CHOICE_MODES: frozenset[str] = frozenset(("auto", "none", "required"))
# Fields ChatRequest models explicitly; everything else is passed through untouched in ``extra``.
_KNOWN_FIELDS: frozenset[str] = frozenset(
    (
        "model",
        "messages",
        "tools",
        "tool_choice",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "stop",
        "stream",
        "stream_options",
    )
)
_JSON_SEPARATORS = (",", ":")


def _type_name(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _bad(where: str, problem: str, fix: str) -> InvalidRequest:
    return InvalidRequest(f"{where}: {problem}", hint=fix)


# --------------------------------------------------------------------------------------------------
# Usage


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens one call used; ``estimated`` is True when Charter counted them, not the upstream."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_openai(self) -> dict[str, int]:
        """The OpenAI ``usage`` object."""
        return {
            "prompt_tokens": self.input_tokens,
            "completion_tokens": self.output_tokens,
            "total_tokens": self.input_tokens + self.output_tokens,
        }

    @classmethod
    def from_openai(cls, data: object) -> Usage | None:
        """Read an OpenAI ``usage`` object; None when absent or unusable."""
        if not isinstance(data, Mapping):
            return None
        prompt = data.get("prompt_tokens")
        completion = data.get("completion_tokens", 0)
        if not isinstance(prompt, int) or not isinstance(completion, int):
            return None
        return cls(prompt, completion)


# --------------------------------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True)
class ContentPart:
    """One part of a multi-part message. ``raw`` keeps the original object for non-text parts."""

    type: str
    text: str = ""
    raw: Mapping[str, Any] | None = None

    def to_openai(self) -> dict[str, Any]:
        if self.raw is not None:
            return dict(self.raw)
        return {"type": self.type, "text": self.text}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model proposed. ``arguments`` is the JSON text, as OpenAI sends it."""

    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a dict; ``UpstreamError`` if the model produced invalid JSON."""
        try:
            value = json.loads(self.arguments) if self.arguments else {}
        except json.JSONDecodeError as exc:
            raise UpstreamError(
                f"the model proposed a call to '{self.name}' with arguments that are not JSON: "
                f"{exc.msg}"
            ) from None
        if not isinstance(value, dict):
            raise UpstreamError(
                f"the model proposed a call to '{self.name}' whose arguments are not a JSON object"
            )
        return value

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message in the OpenAI shape. ``content`` is a string or a tuple of parts."""

    role: Role
    content: str | tuple[ContentPart, ...] | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """The text of the message (text parts joined by newlines); '' when there is none."""
        content = self.content
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(p.text for p in content if p.text)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role}
        content = self.content
        if isinstance(content, tuple):
            out["content"] = [p.to_openai() for p in content]
        else:
            out["content"] = content
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; ``parameters`` is its JSON Schema."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(
        default_factory=lambda: {"type": "object", "properties": {}}
    )

    def to_openai(self) -> dict[str, Any]:
        function: dict[str, Any] = {"name": self.name, "parameters": dict(self.parameters)}
        if self.description:
            function["description"] = self.description
        return {"type": "function", "function": function}


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """How the model may use tools: ``auto``, ``none``, ``required``, or one named ``function``."""

    mode: ToolChoiceMode
    name: str | None = None

    def to_openai(self) -> str | dict[str, Any]:
        if self.mode == "function":
            return {"type": "function", "function": {"name": self.name}}
        return self.mode


# --------------------------------------------------------------------------------------------------
# Parsing helpers (each names the field it rejects)


def _parse_part(raw: object, where: str) -> ContentPart:
    if not isinstance(raw, Mapping):
        raise _bad(
            where,
            f"expected a content part object, got {_type_name(raw)}",
            'send {"type": "text", "text": "..."}',
        )
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise _bad(
            f"{where}.type", "missing or not a string", 'set "type", e.g. "text" or "image_url"'
        )
    if kind == "text":
        text = raw.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text", f"expected a string, got {_type_name(text)}", "send text")
        return ContentPart("text", text)
    if kind == "refusal":
        refusal = raw.get("refusal")
        return ContentPart("refusal", refusal if isinstance(refusal, str) else "", raw)
    return ContentPart(kind, "", raw)


def _parse_content(raw: object, where: str) -> str | tuple[ContentPart, ...] | None:
    if raw is None or isinstance(raw, str):
        return raw
    if isinstance(raw, list):
        return tuple(_parse_part(p, f"{where}[{i}]") for i, p in enumerate(raw))
    raise _bad(
        where,
        f"expected a string or a list of content parts, got {_type_name(raw)}",
        'send "content": "text" or [{"type": "text", "text": "..."}]',
    )


def _parse_tool_call(raw: object, where: str) -> ToolCall:
    if not isinstance(raw, Mapping):
        raise _bad(where, f"expected an object, got {_type_name(raw)}", _TOOL_CALL_SHAPE)
    call_id = raw.get("id")
    function = raw.get("function")
    if not isinstance(call_id, str) or not isinstance(function, Mapping):
        raise _bad(where, 'needs a string "id" and a "function" object', _TOOL_CALL_SHAPE)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.function.name", "missing or not a string", _TOOL_CALL_SHAPE)
    arguments = function.get("arguments", "")
    if isinstance(arguments, Mapping):
        # Some clients send the arguments as an object; the wire form is its JSON text.
        arguments = json.dumps(arguments, separators=_JSON_SEPARATORS)
    elif not isinstance(arguments, str):
        raise _bad(
            f"{where}.function.arguments",
            f"expected a JSON string, got {_type_name(arguments)}",
            _TOOL_CALL_SHAPE,
        )
    return ToolCall(call_id, name, arguments)


_TOOL_CALL_SHAPE = (
    'send {"id": "call_1", "type": "function", '
    '"function": {"name": "...", "arguments": "{...json...}"}}'
)


def _parse_message(raw: object, where: str) -> Message:
    if not isinstance(raw, Mapping):
        raise _bad(
            where,
            f"expected a message object, got {_type_name(raw)}",
            'send {"role": "user", "content": "..."}',
        )
    role = raw.get("role")
    if role not in _ROLES:
        raise _bad(
            f"{where}.role",
            f"unknown role {role!r}",
            "use one of system, developer, user, assistant, tool",
        )
    content = _parse_content(raw.get("content"), f"{where}.content")
    calls_raw = raw.get("tool_calls")
    tool_calls: tuple[ToolCall, ...] = ()
    if calls_raw:
        if role != "assistant" or not isinstance(calls_raw, list):
            raise _bad(
                f"{where}.tool_calls",
                "only assistant messages carry a list of tool_calls",
                "move the calls to an assistant message",
            )
        tool_calls = tuple(
            _parse_tool_call(c, f"{where}.tool_calls[{i}]") for i, c in enumerate(calls_raw)
        )
    tool_call_id = raw.get("tool_call_id")
    if role == "tool" and not isinstance(tool_call_id, str):
        raise _bad(
            f"{where}.tool_call_id",
            "a tool message needs the id of the call it answers",
            'set "tool_call_id" to the id of the assistant\'s tool call',
        )
    if content is None and role != "assistant":
        raise _bad(f"{where}.content", f"a {role} message needs content", "send the text")
    name = raw.get("name")
    return Message(
        role,
        content,
        tool_calls,
        tool_call_id if isinstance(tool_call_id, str) else None,
        name if isinstance(name, str) else None,
    )


def _parse_tool(raw: object, where: str) -> Tool:
    shape = (
        'send {"type": "function", "function": {"name": "...", "parameters": {...json schema...}}}'
    )
    if not isinstance(raw, Mapping) or raw.get("type", "function") != "function":
        raise _bad(where, "only function tools are supported", shape)
    function = raw.get("function")
    if not isinstance(function, Mapping):
        raise _bad(f"{where}.function", "missing or not an object", shape)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{where}.function.name", "missing or not a string", shape)
    parameters = function.get("parameters", {"type": "object", "properties": {}})
    if not isinstance(parameters, Mapping):
        raise _bad(f"{where}.function.parameters", "expected a JSON Schema object", shape)
    description = function.get("description", "")
    return Tool(name, description if isinstance(description, str) else "", parameters)


def _parse_tool_choice(raw: object) -> ToolChoice | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw in _TOOL_CHOICE_MODES:
            return ToolChoice(raw)  # type: ignore[arg-type]
    elif isinstance(raw, Mapping):
        function = raw.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            return ToolChoice("function", function["name"])
    raise _bad(
        "tool_choice",
        f"unsupported value {raw!r}",
        'use "auto", "none", "required" or {"type": "function", "function": {"name": "..."}}',
    )


def _parse_stop(raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return tuple(raw)
    raise _bad("stop", f"expected a string or a list of strings, got {_type_name(raw)}", "")


def _optional_number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"expected a number, got {_type_name(value)}", f"send {key} as a number")
    return float(value)


def _optional_positive_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(key, f"expected a positive integer, got {value!r}", f"send {key} >= 1")
    return value


# --------------------------------------------------------------------------------------------------
# Requests and responses


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One chat completion request, independent of the wire format it came in or goes out in.

    ``extra`` holds every OpenAI parameter Charter does not model (top_p, seed, response_format,
    ...): adapters that speak OpenAI pass it through unchanged, others ignore what they cannot map.
    """

    model: str
    messages: tuple[Message, ...]
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop: tuple[str, ...] = ()
    stream: bool = False
    include_usage: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_openai(cls, data: object) -> ChatRequest:
        """Parse and validate an OpenAI ``/v1/chat/completions`` body."""
        if not isinstance(data, Mapping):
            raise _bad("body", f"expected a JSON object, got {_type_name(data)}", "")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("model", "missing or not a string", 'set "model" to a model name')
        raw_messages = data.get("messages")
        if not isinstance(raw_messages, list) or not raw_messages:
            raise _bad(
                "messages",
                "missing or empty",
                'send at least one message: [{"role": "user", "content": "..."}]',
            )
        messages = tuple(_parse_message(m, f"messages[{i}]") for i, m in enumerate(raw_messages))
        raw_tools = data.get("tools")
        tools: tuple[Tool, ...] = ()
        if raw_tools:
            if not isinstance(raw_tools, list):
                raise _bad("tools", f"expected a list, got {_type_name(raw_tools)}", "")
            tools = tuple(_parse_tool(t, f"tools[{i}]") for i, t in enumerate(raw_tools))
        max_tokens = _optional_positive_int(data, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _optional_positive_int(data, "max_tokens")
        stream = data.get("stream", False)
        if not isinstance(stream, bool):
            raise _bad("stream", f"expected true or false, got {stream!r}", "")
        options = data.get("stream_options")
        include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
        n = data.get("n")
        if n is not None and n != 1:
            raise _bad("n", f"only one choice per request is supported, got {n!r}", "omit n")
        extra = {k: v for k, v in data.items() if k not in _KNOWN_FIELDS}
        return cls(
            model=model,
            messages=messages,
            tools=tools,
            tool_choice=_parse_tool_choice(data.get("tool_choice")),
            max_tokens=max_tokens,
            temperature=_optional_number(data, "temperature"),
            stop=_parse_stop(data.get("stop")),
            stream=stream,
            include_usage=include_usage,
            extra=extra,
        )

    def to_openai(self, *, stream: bool | None = None) -> dict[str, Any]:
        """The OpenAI body for an upstream call (``extra`` first, so modelled fields win).

        ``stream`` overrides ``self.stream``; a streamed body always asks for usage.
        """
        out: dict[str, Any] = dict(self.extra)
        out["model"] = self.model
        out["messages"] = [m.to_openai() for m in self.messages]
        if self.tools:
            out["tools"] = [t.to_openai() for t in self.tools]
        if self.tool_choice is not None:
            out["tool_choice"] = self.tool_choice.to_openai()
        if self.max_tokens is not None:
            out["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            out["temperature"] = self.temperature
        if self.stop:
            out["stop"] = list(self.stop)
        if self.stream if stream is None else stream:
            out["stream"] = True
            out["stream_options"] = {"include_usage": True}
        return out

    @property
    def system_prompt(self) -> str:
        """The text of every system and developer message, joined by blank lines."""
        return "\n\n".join(m.text for m in self.messages if m.role in ("system", "developer"))


@dataclass(frozen=True, slots=True)
class ChatResponse:
    """A complete (non-streamed) answer from one provider.

    ``provider`` and ``attempts`` say who answered and after how many tries (fallbacks and retries
    are visible to the audit trail); they are not part of the OpenAI form.
    """

    id: str
    model: str
    content: str | None
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: str = "stop"
    usage: Usage | None = None
    created: int = 0
    provider: str = ""
    attempts: int = 1

    def to_openai(self, *, model: str | None = None) -> dict[str, Any]:
        """The OpenAI ``chat.completion``; ``model`` overrides the name shown to the client."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": model or self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": self.finish_reason}],
        }
        if self.usage is not None:
            out["usage"] = self.usage.to_openai()
        return out

    @classmethod
    def from_openai(cls, data: object) -> ChatResponse:
        """Read an upstream ``chat.completion`` object; ``UpstreamError`` if it is unusable."""
        if not isinstance(data, Mapping):
            raise UpstreamError("the upstream answered with something that is not a JSON object")
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
            raise UpstreamError("the upstream answer has no choices")
        message = choices[0].get("message")
        if not isinstance(message, Mapping):
            raise UpstreamError("the upstream answer's first choice has no message")
        content = message.get("content")
        calls = message.get("tool_calls") or []
        try:
            tool_calls = tuple(_parse_tool_call(c, "tool_calls") for c in calls)
        except InvalidRequest as exc:
            raise UpstreamError(f"the upstream sent a malformed tool call: {exc}") from None
        created = data.get("created")
        return cls(
            id=str(data.get("id") or ""),
            model=str(data.get("model") or ""),
            content=content if isinstance(content, str) else None,
            tool_calls=tool_calls,
            finish_reason=str(choices[0].get("finish_reason") or "stop"),
            usage=Usage.from_openai(data.get("usage")),
            created=created if isinstance(created, int) else 0,
        )


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A fragment of a streamed tool call: ``id`` and ``name`` arrive first, arguments in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index}
        function: dict[str, Any] = {"arguments": self.arguments}
        if self.id is not None:
            out["id"] = self.id
            out["type"] = "function"
        if self.name is not None:
            function["name"] = self.name
        out["function"] = function
        return out


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """One increment of a streamed answer; the last one carries ``finish_reason`` and ``usage``."""

    text: str = ""
    tool_calls: tuple[ToolCallDelta, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None

    def to_openai_events(
        self,
        response_id: str,
        model: str,
        created: int,
        *,
        first: bool = False,
        include_usage: bool = False,
    ) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects for this chunk (usage goes in its own, last one).

        ``first`` adds the assistant role to the delta, as OpenAI does on a stream's first chunk.
        """
        events: list[dict[str, Any]] = []
        if first or self.text or self.tool_calls or self.finish_reason is not None:
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if self.text or first:
                delta["content"] = self.text
            if self.tool_calls:
                delta["tool_calls"] = [d.to_openai() for d in self.tool_calls]
            choice = {"index": 0, "delta": delta, "finish_reason": self.finish_reason}
            events.append(_chunk_envelope(response_id, model, created, [choice]))
        if include_usage and self.usage is not None:
            usage_event = _chunk_envelope(response_id, model, created, [])
            usage_event["usage"] = self.usage.to_openai()
            events.append(usage_event)
        return events

    def to_sse(
        self,
        response_id: str,
        model: str,
        created: int,
        *,
        first: bool = False,
        include_usage: bool = False,
    ) -> bytes:
        """This chunk as Server-Sent Events bytes (``data: {...}\\n\\n`` per event)."""
        events = self.to_openai_events(
            response_id, model, created, first=first, include_usage=include_usage
        )
        return b"".join(
            b"data: " + json.dumps(e, separators=_JSON_SEPARATORS).encode() + b"\n\n"
            for e in events
        )

    @classmethod
    def from_openai(cls, data: object) -> StreamChunk:
        """Read one upstream ``chat.completion.chunk`` object."""
        if not isinstance(data, Mapping):
            raise UpstreamError("the upstream sent a stream event that is not a JSON object")
        usage = Usage.from_openai(data.get("usage"))
        choices = data.get("choices") or []
        if not choices or not isinstance(choices[0], Mapping):
            return cls(usage=usage)
        choice = choices[0]
        delta = choice.get("delta") or {}
        if not isinstance(delta, Mapping):
            raise UpstreamError("the upstream sent a stream chunk whose delta is not an object")
        text = delta.get("content")
        deltas: list[ToolCallDelta] = []
        for raw in delta.get("tool_calls") or ():
            if not isinstance(raw, Mapping):
                raise UpstreamError("the upstream sent a malformed tool call delta")
            function = raw.get("function") or {}
            arguments = function.get("arguments")
            index = raw.get("index", len(deltas))
            deltas.append(
                ToolCallDelta(
                    index=index if isinstance(index, int) else len(deltas),
                    id=raw.get("id"),
                    name=function.get("name"),
                    arguments=arguments if isinstance(arguments, str) else "",
                )
            )
        finish = choice.get("finish_reason")
        return cls(
            text=text if isinstance(text, str) else "",
            tool_calls=tuple(deltas),
            finish_reason=finish if isinstance(finish, str) else None,
            usage=usage,
        )


SSE_DONE = b"data: [DONE]\n\n"
"""The event that ends an OpenAI stream."""


def _chunk_envelope(
    response_id: str, model: str, created: int, choices: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }


# --------------------------------------------------------------------------------------------------
# Embeddings


@dataclass(frozen=True, slots=True)
class EmbeddingRequest:
    """Texts to embed. Token-id inputs are not supported: the guards need the text."""

    model: str
    input: tuple[str, ...]
    dimensions: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_openai(cls, data: object) -> EmbeddingRequest:
        """Parse and validate an OpenAI ``/v1/embeddings`` body."""
        if not isinstance(data, Mapping):
            raise _bad("body", f"expected a JSON object, got {_type_name(data)}", "")
        model = data.get("model")
        if not isinstance(model, str) or not model:
            raise _bad("model", "missing or not a string", 'set "model" to a model name')
        raw = data.get("input")
        if isinstance(raw, str):
            texts: tuple[str, ...] = (raw,)
        elif isinstance(raw, list) and raw and all(isinstance(t, str) for t in raw):
            texts = tuple(raw)
        else:
            raise _bad(
                "input",
                "expected a string or a non-empty list of strings",
                "send the text to embed; token-id arrays are not supported",
            )
        extra = {k: v for k, v in data.items() if k not in ("model", "input", "dimensions")}
        return cls(model, texts, _optional_positive_int(data, "dimensions"), extra)

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out["model"] = self.model
        out["input"] = list(self.input)
        if self.dimensions is not None:
            out["dimensions"] = self.dimensions
        return out


@dataclass(frozen=True, slots=True)
class EmbeddingResponse:
    """One vector per input text, in input order."""

    model: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None = None
    provider: str = ""

    def to_openai(self, *, model: str | None = None) -> dict[str, Any]:
        usage = self.usage or Usage(0, 0)
        return {
            "object": "list",
            "model": model or self.model,
            "data": [
                {"object": "embedding", "index": i, "embedding": list(v)}
                for i, v in enumerate(self.vectors)
            ],
            "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
        }

    @classmethod
    def from_openai(cls, data: object) -> EmbeddingResponse:
        """Read an upstream embeddings list; ``UpstreamError`` if it is unusable."""
        if not isinstance(data, Mapping) or not isinstance(data.get("data"), list):
            raise UpstreamError("the upstream embeddings answer has no data list")
        items: list[tuple[int, tuple[float, ...]]] = []
        for position, item in enumerate(data["data"]):
            vector = item.get("embedding") if isinstance(item, Mapping) else None
            if not isinstance(vector, list):
                raise UpstreamError("the upstream sent an embedding that is not a list of numbers")
            index = item.get("index", position)
            items.append((index if isinstance(index, int) else position, tuple(vector)))
        items.sort(key=lambda pair: pair[0])
        raw_usage = data.get("usage")
        usage = None
        if isinstance(raw_usage, Mapping) and isinstance(raw_usage.get("prompt_tokens"), int):
            usage = Usage(raw_usage["prompt_tokens"], 0)
        return cls(str(data.get("model") or ""), tuple(v for _, v in items), usage)


def messages_text(messages: Sequence[Message]) -> str:
    """All message text and tool-call arguments, for token estimates and scans."""
    parts: list[str] = []
    for m in messages:
        parts.append(m.text)
        parts.extend(c.name + c.arguments for c in m.tool_calls)
    return "\n".join(parts)
