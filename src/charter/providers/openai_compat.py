"""An adapter for any server that speaks OpenAI's chat completions API.

OpenAI itself, vLLM, Ollama (``http://host:11434/v1``), llama.cpp's server and Charter's own mock
upstream all fit. ``base_url`` includes the version prefix, as in the OpenAI SDK.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource

from charter.errors import ConfigurationError, UpstreamError
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamChunk,
)

DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=30.0)
"""httpx's own per-operation timeouts; the overall deadlines belong to ``ProviderClient``."""


def resolve_api_key(provider: str, api_key: str | None, api_key_env: str | None) -> str | None:
    """The key given, else the one in ``$api_key_env``; ``ConfigurationError`` if that is unset."""
    if api_key is not None or api_key_env is None:
        return api_key
    value = os.environ.get(api_key_env)
    if not value:
        raise ConfigurationError(
            f"provider '{provider}' reads its API key from ${api_key_env}, which is not set",
            hint=f"export {api_key_env}=... before starting Charter",
        )
    return value


def new_http_client(max_connections: int, timeout: httpx.Timeout | float) -> httpx.AsyncClient:
    """A pooled client: keep-alive connections are what keeps per-call overhead low."""
    return httpx.AsyncClient(
        timeout=timeout,
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
    )


def _json_body(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def _decode(response: httpx.Response, provider: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UpstreamError(
            f"provider '{provider}' answered {response.status_code} with a body that is not JSON"
        ) from None


def _stream_error(data: Mapping[str, Any], provider: str) -> UpstreamError:
    """An error event inside a stream (vLLM and others send ``data: {"error": {...}}``)."""
    error = data.get("error")
    message = error.get("message") if isinstance(error, Mapping) else error
    code = error.get("code") if isinstance(error, Mapping) else None
    return UpstreamError(
        f"provider '{provider}' reported an error mid-stream: {message}",
        upstream_status=code if isinstance(code, int) else None,
    )


class OpenAICompatProvider:
    """Calls ``{base_url}/chat/completions``, ``/embeddings`` over one pooled httpx client.

    Pass ``http_client`` to share one pool between providers (it is then not closed here);
    ``stream_usage=False`` for old servers that reject ``stream_options``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "openai",
        api_key: str | None = None,
        api_key_env: str | None = None,
        headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_connections: int = 100,
        stream_usage: bool = True,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"provider '{name}': base_url must start with http(s)://, got {base_url!r}",
                hint="e.g. https://api.openai.com/v1 or http://127.0.0.1:11434/v1",
            )
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._chat_url = self.base_url + "/chat/completions"
        self._embed_url = self.base_url + "/embeddings"
        self._headers = {"content-type": "application/json", **(headers or {})}
        key = resolve_api_key(name, api_key, api_key_env)
        if key:
            self._headers["authorization"] = f"Bearer {key}"
        self._owns_client = http_client is None
        # httpcore scans its whole pool on every request and release, so one pool of 100
        # connections costs more CPU per request than several small ones; calls are spread
        # round-robin over the shards (measured in bench/gateway: see README, Performance).
        shards = 1 if http_client is not None else max(1, min(8, max_connections // 12))
        per_shard = -(-max_connections // shards)
        self._clients = (
            [http_client]
            if http_client is not None
            else [new_http_client(per_shard, timeout) for _ in range(shards)]
        )
        self._next = 0
        self._stream_usage = stream_usage

    @property
    def _client(self) -> httpx.AsyncClient:
        """The next pool shard, round-robin."""
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]

    def __repr__(self) -> str:
        return f"OpenAICompatProvider({self.name!r}, base_url={self.base_url!r})"

    async def generate(self, req: ChatRequest) -> ChatResponse:
        """One non-streamed chat completion."""
        response = await self._client.post(
            self._chat_url, content=_json_body(req.to_openai(stream=False)), headers=self._headers
        )
        response.raise_for_status()
        return ChatResponse.from_openai(_decode(response, self.name))

    async def stream(self, req: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """A streamed chat completion, one ``StreamChunk`` per SSE event until ``[DONE]``."""
        body = req.to_openai(stream=True)
        if not self._stream_usage:
            body.pop("stream_options", None)
        async with self._client.stream(
            "POST", self._chat_url, content=_json_body(body), headers=self._headers
        ) as response:
            if response.is_error:
                await response.aread()
                response.raise_for_status()
            async for event in EventSource(response).aiter_sse():
                if event.data == "[DONE]":
                    return
                try:
                    data = json.loads(event.data)
                except json.JSONDecodeError:
                    raise UpstreamError(
                        f"provider '{self.name}' sent a stream event that is not JSON"
                    ) from None
                if isinstance(data, dict) and "error" in data and "choices" not in data:
                    raise _stream_error(data, self.name)
                yield StreamChunk.from_openai(data)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings for ``req.input``."""
        response = await self._client.post(
            self._embed_url, content=_json_body(req.to_openai()), headers=self._headers
        )
        response.raise_for_status()
        return EmbeddingResponse.from_openai(_decode(response, self.name))

    async def aclose(self) -> None:
        """Close the connection pool, if this provider created it."""
        if self._owns_client:
            for client in self._clients:
                await client.aclose()
