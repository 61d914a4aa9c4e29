"""A mock OpenAI-compatible upstream with scripted behaviour, run as its own process.

Tests and benchmarks point a provider at it to get latency, token rates, errors, resets, hangs and
broken streams on demand, with no network beyond loopback::

    python -m charter.providers.mock_server --port 8099      # --port 0 picks a free port

It serves ``POST /v1/chat/completions`` (streamed and not), ``POST /v1/embeddings``,
``GET /v1/models``, ``GET /health`` and ``GET /mock/stats/{request_id}``. Each request is scripted
by ``X-Mock-*`` headers, or by the model name (``gpt-4o@error=503,latency-ms=20``: keys as below,
without the prefix) for clients that cannot set headers:

====================== ==========================================================================
X-Mock-Latency-Ms       wait before answering (time to first byte)
X-Mock-Tokens-Per-S     generation speed: the gap between streamed tokens (a whole answer waits
                        for all its tokens)
X-Mock-Output-Tokens    answer length in tokens (default 16); X-Mock-Reply sets the exact text
X-Mock-Error            429, 400, 500, 502, 503, 504 (an OpenAI error body), ``reset`` (the
                        connection is closed abruptly, with a TCP RST) or ``hang`` (no answer for
                        X-Mock-Hang-S seconds, default and at most 60)
X-Mock-Retry-After-Ms   sent as ``retry-after-ms`` and ``Retry-After`` with an error
X-Mock-Fail-First       fail only the first N requests carrying the same X-Mock-Request-Id (with
                        X-Mock-Error, default 503), then answer normally
X-Mock-Stream-Cut-After the stream stops abruptly after N content chunks
X-Mock-No-Usage         1: report no usage, even when the stream asked for it
X-Mock-Tool-Call        answer with a call to this tool; arguments from X-Mock-Tool-Args (JSON)
X-Mock-Request-Id       groups requests for X-Mock-Fail-First and for /mock/stats/{id}
====================== ==========================================================================

A request with no script takes a fast path with no waits, for benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import socket
import struct
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

_WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog"]
_HANG_MAX_S = 60.0
_HEADER_PREFIX = "x-mock-"
_SEPARATORS = (",", ":")

# Live transports by client address (host, port), so a scripted reset can abort the connection:
# ASGI gives an app no handle on its socket, uvicorn's protocol object does.
_TRANSPORTS: dict[Any, asyncio.Transport] = {}


@dataclass(frozen=True, slots=True)
class Script:
    """What one request asked the mock to do."""

    latency_ms: float = 0.0
    tokens_per_s: float = 0.0
    output_tokens: int = 16
    reply: str | None = None
    error: str | None = None
    retry_after_ms: float | None = None
    hang_s: float = _HANG_MAX_S
    fail_first: int = 0
    stream_cut_after: int | None = None
    no_usage: bool = False
    tool_call: str | None = None
    tool_args: str = "{}"
    request_id: str = ""


class ScriptError(ValueError):
    """A mock script value that cannot be read; answered with 400 and the offending key."""


def parse_script(headers: Mapping[str, str], model: str) -> Script | None:
    """The script from ``X-Mock-*`` headers and ``model@key=value,...``; None when there is none."""
    values: dict[str, str] = {}
    if "@" in model:
        for item in model.split("@", 1)[1].split(","):
            key, _, value = item.partition("=")
            if key:
                values[key.strip().lower()] = value.strip()
    for key, value in headers.items():
        if key.startswith(_HEADER_PREFIX):
            values[key[len(_HEADER_PREFIX) :]] = value
    if not values:
        return None
    try:
        return Script(
            latency_ms=float(values.get("latency-ms", 0)),
            tokens_per_s=float(values.get("tokens-per-s", 0)),
            output_tokens=int(values.get("output-tokens", 16)),
            reply=values.get("reply"),
            error=values.get("error") or None,
            retry_after_ms=float(values["retry-after-ms"]) if "retry-after-ms" in values else None,
            hang_s=min(float(values.get("hang-s", _HANG_MAX_S)), _HANG_MAX_S),
            fail_first=int(values.get("fail-first", 0)),
            stream_cut_after=(
                int(values["stream-cut-after"]) if "stream-cut-after" in values else None
            ),
            no_usage=values.get("no-usage", "0") not in ("", "0", "false"),
            tool_call=values.get("tool-call") or None,
            tool_args=values.get("tool-args", "{}"),
            request_id=values.get("request-id", ""),
        )
    except ValueError as exc:
        raise ScriptError(f"bad X-Mock value: {exc}") from None


@dataclass
class _Group:
    """Counters for one X-Mock-Request-Id."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0


@dataclass
class MockState:
    """Counters the mock keeps across requests."""

    groups: defaultdict[str, _Group] = field(default_factory=lambda: defaultdict(_Group))
    ids: itertools.count[int] = field(default_factory=itertools.count)


def _error_body(status: int, message: str) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 400: "invalid_request_error"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "code": status}}


def _answer_text(script: Script | None) -> tuple[str, int]:
    if script is not None and script.reply is not None:
        return script.reply, max(1, len(script.reply.split()))
    n = script.output_tokens if script is not None else 16
    return " ".join(_WORDS[i % len(_WORDS)] for i in range(n)), n


def _prompt_tokens(data: Mapping[str, Any]) -> int:
    chars = 0
    for message in data.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return (chars + 3) // 4 + 3 * len(data.get("messages") or ()) + 3


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _abort(request: Request) -> None:
    """Close the request's connection at once with a TCP RST, as a crashed upstream would."""
    transport = _TRANSPORTS.get(request.scope.get("client"))
    if transport is None:
        raise RuntimeError("mock server: no transport for this connection (not under uvicorn?)")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _hang(request: Request, seconds: float) -> None:
    """Wait without answering, but stop as soon as the client gives up."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.05)


class MockUpstream:
    """The ASGI application: a Starlette app plus the counters scripted behaviour needs."""

    def __init__(self) -> None:
        self.state = MockState()
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
                Route("/mock/stats/{request_id}", self.stats, methods=["GET"]),
            ]
        )

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok")

    async def models(self, request: Request) -> Response:
        data = [{"id": "mock-model", "object": "model", "created": 0, "owned_by": "charter-mock"}]
        return JSONResponse({"object": "list", "data": data})

    async def stats(self, request: Request) -> Response:
        group = self.state.groups.get(request.path_params["request_id"], _Group())
        return JSONResponse({"requests": group.requests, "max_in_flight": group.max_in_flight})

    async def embeddings(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            texts = [data["input"]] if isinstance(data["input"], str) else list(data["input"])
            dims = int(data.get("dimensions") or 8)
        except (ValueError, KeyError, TypeError):
            return JSONResponse(_error_body(400, "send {model, input}"), status_code=400)
        vectors = [_vector(str(t), dims) for t in texts]
        tokens = sum((len(str(t)) + 3) // 4 for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "model": data.get("model", "mock-model"),
                "data": [
                    {"object": "embedding", "index": i, "embedding": v}
                    for i, v in enumerate(vectors)
                ],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def chat(self, request: Request) -> Response:
        try:
            data = json.loads(await request.body())
            model = str(data["model"])
            script = parse_script(request.headers, model)
        except ScriptError as exc:
            return JSONResponse(_error_body(400, str(exc)), status_code=400)
        except (ValueError, KeyError, TypeError):
            return JSONResponse(_error_body(400, "send a JSON body with a model"), status_code=400)
        if script is None:
            return self._answer(data, model, None)
        group = self.state.groups[script.request_id]
        group.requests += 1
        group.in_flight += 1
        group.max_in_flight = max(group.max_in_flight, group.in_flight)
        try:
            return await self._scripted(request, data, model, script, group)
        finally:
            group.in_flight -= 1

    async def _scripted(
        self, request: Request, data: dict[str, Any], model: str, script: Script, group: _Group
    ) -> Response:
        error = script.error
        if script.fail_first:
            error = (error or "503") if group.requests <= script.fail_first else None
        if script.latency_ms:
            await asyncio.sleep(script.latency_ms / 1000)
        if error == "reset":
            _abort(request)
            await asyncio.sleep(0.01)  # let uvicorn see the connection is gone
            return Response(status_code=500)
        if error == "hang":
            await _hang(request, script.hang_s)
            return JSONResponse(_error_body(504, "mock hang ended"), status_code=504)
        if error is not None:
            return self._error(error, script)
        if not data.get("stream") and script.tokens_per_s:
            await asyncio.sleep(_answer_text(script)[1] / script.tokens_per_s)
        return self._answer(data, model, script, request)

    def _error(self, error: str, script: Script) -> Response:
        try:
            status = int(error)
        except ValueError:
            status = 400
            return JSONResponse(_error_body(400, f"unknown X-Mock-Error {error!r}"), status)
        headers = {}
        if script.retry_after_ms is not None:
            headers["retry-after-ms"] = f"{script.retry_after_ms:g}"
            headers["retry-after"] = str(max(0, round(script.retry_after_ms / 1000)))
        return JSONResponse(_error_body(status, f"mock error {status}"), status, headers)

    def _answer(
        self,
        data: dict[str, Any],
        model: str,
        script: Script | None,
        request: Request | None = None,
    ) -> Response:
        response_id = f"chatcmpl-mock-{next(self.state.ids)}"
        text, n_tokens = _answer_text(script)
        tool_call = _tool_call(data, script)
        if tool_call is not None:
            text, n_tokens = "", max(1, len(tool_call["function"]["arguments"]) // 4)
        prompt = _prompt_tokens(data)
        if data.get("stream"):
            include_usage = bool((data.get("stream_options") or {}).get("include_usage"))
            if script is not None and script.no_usage:
                include_usage = False
            chunks = _stream_events(
                response_id, model, text, tool_call, prompt, n_tokens, include_usage, script
            )
            return StreamingResponse(
                _paced(chunks, script, request), media_type="text/event-stream"
            )
        message: dict[str, Any] = {"role": "assistant", "content": text or None}
        if tool_call is not None:
            message["tool_calls"] = [tool_call]
        body: dict[str, Any] = {
            "id": response_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if tool_call else "stop",
                }
            ],
        }
        if script is None or not script.no_usage:
            body["usage"] = _usage(prompt, n_tokens)
        return Response(json.dumps(body, separators=_SEPARATORS), media_type="application/json")


def _tool_call(data: Mapping[str, Any], script: Script | None) -> dict[str, Any] | None:
    """The tool call to answer with: scripted, or forced by the request's ``tool_choice``."""
    name = script.tool_call if script is not None else None
    choice = data.get("tool_choice")
    tools = data.get("tools") or []
    if name is None and isinstance(choice, Mapping):
        name = (choice.get("function") or {}).get("name")
    if name is None and choice == "required" and tools:
        name = tools[0].get("function", {}).get("name")
    if name is None:
        return None
    arguments = script.tool_args if script is not None else "{}"
    function = {"name": name, "arguments": arguments}
    return {"id": "call_mock_0", "type": "function", "function": function}


def _event(response_id: str, model: str, choices: list[Any], **more: Any) -> bytes:
    body = {
        "id": response_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
        **more,
    }
    return b"data: " + json.dumps(body, separators=_SEPARATORS).encode() + b"\n\n"


def _stream_events(
    response_id: str,
    model: str,
    text: str,
    tool_call: dict[str, Any] | None,
    prompt: int,
    n_tokens: int,
    include_usage: bool,
    script: Script | None,
) -> list[bytes]:
    """Every SSE event of the answer, in order; the content events are the tokens."""

    def delta(d: dict[str, Any], finish: str | None = None) -> bytes:
        return _event(response_id, model, [{"index": 0, "delta": d, "finish_reason": finish}])

    events = [delta({"role": "assistant", "content": ""})]
    if tool_call is not None:
        fn = tool_call["function"]
        head = {"index": 0, "id": tool_call["id"], "type": "function"}
        events.append(delta({"tool_calls": [{**head, "function": {"name": fn["name"]}}]}))
        args = fn["arguments"]
        for i in range(0, len(args), 8):
            piece = {"index": 0, "function": {"arguments": args[i : i + 8]}}
            events.append(delta({"tool_calls": [piece]}))
    else:
        words = text.split(" ")
        for i, word in enumerate(words):
            events.append(delta({"content": word if i == 0 else " " + word}))
    events.append(delta({}, "tool_calls" if tool_call else "stop"))
    if include_usage:
        events.append(_event(response_id, model, [], usage=_usage(prompt, n_tokens)))
    events.append(b"data: [DONE]\n\n")
    return events


async def _paced(
    events: list[bytes], script: Script | None, request: Request | None
) -> AsyncIterator[bytes]:
    """Send the events at the scripted token rate, cutting the connection where scripted."""
    if script is None:
        # Fast path: one write for the whole stream.
        yield b"".join(events)
        return
    gap = 1 / script.tokens_per_s if script.tokens_per_s else 0.0
    for sent, event in enumerate(events):
        # Event 0 is the role chunk; content chunk k is event k.
        if script.stream_cut_after is not None and sent > script.stream_cut_after:
            assert request is not None
            _abort(request)
            await asyncio.sleep(0.01)
            return
        if gap and sent > 1:
            await asyncio.sleep(gap)
        yield event


def _vector(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    digest = hashlib.blake2b(text.encode(), digest_size=64).digest()
    raw = [(digest[i % 64] - 127.5) / 127.5 for i in range(dims)]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [round(x / norm, 6) for x in raw]


def _tracking_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol, recording each connection's transport for scripted resets."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    base: Any = AutoHTTPProtocol

    def connection_made(self: Any, transport: asyncio.Transport) -> None:
        base.connection_made(self, transport)
        _TRANSPORTS[self.client] = transport

    def connection_lost(self: Any, exc: Exception | None) -> None:
        _TRANSPORTS.pop(self.client, None)
        base.connection_lost(self, exc)

    protocol: type[asyncio.Protocol] = type(
        "TrackingHTTPProtocol",
        (base,),
        {"connection_made": connection_made, "connection_lost": connection_lost},
    )
    return protocol


def create_app() -> Starlette:
    """A fresh mock upstream application (its counters start at zero)."""
    return MockUpstream().app


def main(argv: list[str] | None = None) -> None:
    """Serve on ``--host``/``--port``; prints ``listening on http://HOST:PORT`` when ready."""
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, default=8099, help="port; 0 picks a free one")
    args = parser.parse_args(argv)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(),
        http=_tracking_protocol(),
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    # Announce the port only once the socket is bound, so a parent can read it and connect.
    print(f"mock upstream listening on http://{host}:{port}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
