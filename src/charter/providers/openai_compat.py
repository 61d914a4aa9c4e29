"""An adapter for any server that speaks OpenAI's chat completions API.

OpenAI itself, vLLM, Ollama (``http://host:11434/v1``), llama.cpp's server and Charter's own mock
upstream all fit. ``base_url`` includes the version prefix, as in the OpenAI SDK.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any

from charter.errors import ConfigurationError, UpstreamError
from charter.providers.http import (
    Session,
    Timeouts,
    drain,
    post_json,
    raise_for_status,
    sse_data,
)
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamChunk,
)


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


def json_body(body: Mapping[str, Any]) -> bytes:
    """Compact JSON, as providers receive it."""
    return json.dumps(body, separators=(",", ":")).encode()


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
    """Calls ``{base_url}/chat/completions`` and ``/embeddings`` over one keep-alive pool.

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
        timeouts: Timeouts | None = None,
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
        self._session = Session(max_connections, timeouts)
        self._stream_usage = stream_usage

    def __repr__(self) -> str:
        return f"OpenAICompatProvider({self.name!r}, base_url={self.base_url!r})"

    async def generate(self, req: ChatRequest) -> ChatResponse:
        """One non-streamed chat completion."""
        body = json_body(req.to_openai(stream=False))
        data = await post_json(self._session, self._chat_url, body, self._headers, self.name)
        return ChatResponse.from_openai(data)

    async def stream(self, req: ChatRequest) -> AsyncGenerator[StreamChunk, None]:
        """A streamed chat completion, one ``StreamChunk`` per SSE event until ``[DONE]``."""
        body = req.to_openai(stream=True)
        if not self._stream_usage:
            body.pop("stream_options", None)
        session = self._session.get()
        async with session.post(self._chat_url, data=json_body(body), headers=self._headers) as r:
            await raise_for_status(r)
            async for event in sse_data(r, self.name):
                if event == "[DONE]":
                    await drain(r)
                    return
                try:
                    data = json.loads(event)
                except json.JSONDecodeError:
                    raise UpstreamError(
                        f"provider '{self.name}' sent a stream event that is not JSON"
                    ) from None
                if isinstance(data, dict) and "error" in data and "choices" not in data:
                    raise _stream_error(data, self.name)
                yield StreamChunk.from_openai(data)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """Embeddings for ``req.input``."""
        body = json_body(req.to_openai())
        data = await post_json(self._session, self._embed_url, body, self._headers, self.name)
        return EmbeddingResponse.from_openai(data)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._session.aclose()
