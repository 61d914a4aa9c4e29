"""ProviderClient against the mock upstream in its own process: retries, timeouts, limits, usage."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping

import anyio
import httpx
import pytest

from charter.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from charter.providers.base import ClientSettings, ProviderClient
from charter.providers.openai_compat import OpenAICompatProvider
from charter.providers.types import ChatRequest, EmbeddingRequest, Message, StreamChunk

pytestmark = pytest.mark.anyio

FAST = ClientSettings(backoff_base_s=0.01, backoff_max_s=0.02, timeout_s=10)
PROMPT = ChatRequest(model="mock-model", messages=(Message("user", "hello there"),))
STREAM = ChatRequest(model="mock-model", messages=(Message("user", "hello there"),), stream=True)


def script(**values: str | int) -> dict[str, str]:
    """X-Mock-* headers with a fresh request id, so counters are per test."""
    headers = {"x-mock-request-id": uuid.uuid4().hex}
    headers.update({f"x-mock-{k.replace('_', '-')}": str(v) for k, v in values.items()})
    return headers


def client(
    url: str,
    headers: Mapping[str, str],
    settings: ClientSettings = FAST,
    name: str = "primary",
    **kwargs: object,
) -> ProviderClient:
    provider = OpenAICompatProvider(url, name=name, headers=headers)
    return ProviderClient(provider, settings=settings, **kwargs)  # type: ignore[arg-type]


async def requests_seen(url: str, headers: Mapping[str, str]) -> dict[str, int]:
    root = url.removesuffix("/v1")
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{root}/mock/stats/{headers['x-mock-request-id']}")
        stats: dict[str, int] = response.json()
        return stats


async def collect(stream: object) -> list[StreamChunk]:
    chunks: list[StreamChunk] = []
    async for chunk in stream:  # type: ignore[attr-defined]
        chunks.append(chunk)
    return chunks


async def test_retries_503_until_success(mock_upstream: str) -> None:
    headers = script(fail_first=2, error=503)
    c = client(mock_upstream, headers)
    response = await c.generate(PROMPT)
    await c.aclose()
    assert response.attempts == 3
    assert response.content and response.content.startswith("the quick brown")
    assert (await requests_seen(mock_upstream, headers))["requests"] == 3


async def test_429_waits_for_retry_after(mock_upstream: str) -> None:
    headers = script(fail_first=1, error=429, retry_after_ms=300)
    c = client(mock_upstream, headers)
    started = time.monotonic()
    response = await c.generate(PROMPT)
    await c.aclose()
    assert response.attempts == 2
    assert time.monotonic() - started >= 0.3


async def test_retry_after_longer_than_allowed_is_not_waited_for(mock_upstream: str) -> None:
    headers = script(error=429, retry_after_ms=60_000)
    c = client(mock_upstream, headers)
    started = time.monotonic()
    with pytest.raises(UpstreamError) as caught:
        await c.generate(PROMPT)
    await c.aclose()
    assert caught.value.details["upstream_status"] == 429
    assert time.monotonic() - started < 2
    assert (await requests_seen(mock_upstream, headers))["requests"] == 1


async def test_400_is_not_retried(mock_upstream: str) -> None:
    headers = script(error=400)
    c = client(mock_upstream, headers)
    with pytest.raises(InvalidRequest, match="answered 400"):
        await c.generate(PROMPT)
    await c.aclose()
    assert (await requests_seen(mock_upstream, headers))["requests"] == 1


async def test_gives_up_after_max_retries(mock_upstream: str) -> None:
    headers = script(error=503)
    c = client(mock_upstream, headers)
    with pytest.raises(UpstreamError, match="answered 503") as caught:
        await c.generate(PROMPT)
    await c.aclose()
    assert not isinstance(caught.value, UpstreamTimeout)
    assert (await requests_seen(mock_upstream, headers))["requests"] == 3


async def test_hang_becomes_upstream_timeout(mock_upstream: str) -> None:
    settings = ClientSettings(max_retries=1, backoff_base_s=0.01, timeout_s=0.3)
    headers = script(error="hang")
    c = client(mock_upstream, headers, settings)
    started = time.monotonic()
    with pytest.raises(UpstreamTimeout):
        await c.generate(PROMPT)
    await c.aclose()
    assert 0.6 <= time.monotonic() - started < 3
    assert (await requests_seen(mock_upstream, headers))["requests"] == 2


async def test_stream_first_chunk_timeout(mock_upstream: str) -> None:
    settings = ClientSettings(max_retries=0, first_chunk_timeout_s=0.2)
    c = client(mock_upstream, script(latency_ms=2000), settings)
    with pytest.raises(UpstreamTimeout):
        await collect(c.stream(STREAM))
    await c.aclose()


async def test_reset_becomes_upstream_error_after_retries(mock_upstream: str) -> None:
    headers = script(error="reset")
    c = client(mock_upstream, headers, ClientSettings(max_retries=1, backoff_base_s=0.01))
    with pytest.raises(UpstreamError, match="connection failed") as caught:
        await c.generate(PROMPT)
    await c.aclose()
    assert not isinstance(caught.value, UpstreamTimeout)
    assert (await requests_seen(mock_upstream, headers))["requests"] == 2


async def test_stream_reports_upstream_usage_on_last_chunk(mock_upstream: str) -> None:
    c = client(mock_upstream, script(output_tokens=5))
    stream = c.stream(STREAM)
    chunks = await collect(stream)
    await c.aclose()
    assert "".join(ch.text for ch in chunks) == "the quick brown fox jumps"
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 5
    assert not chunks[-1].usage.estimated
    assert all(ch.usage is None for ch in chunks[:-1])
    assert stream.usage == chunks[-1].usage


async def test_stream_cut_mid_way_ends_with_error_after_sent_chunks(mock_upstream: str) -> None:
    headers = script(stream_cut_after=3)
    c = client(mock_upstream, headers)
    stream = c.stream(STREAM)
    received: list[str] = []
    with pytest.raises(UpstreamError, match="stopped after 3 chunks"):
        async for chunk in stream:
            received.append(chunk.text)
    await c.aclose()
    assert "".join(received) == "the quick brown"
    # Nothing is retried once bytes were handed out, and what was sent is still accounted for.
    assert (await requests_seen(mock_upstream, headers))["requests"] == 1
    assert stream.usage.estimated
    assert stream.usage.output_tokens == 4  # ceil(len("the quick brown") / 4)
    assert stream.usage.input_tokens > 0


async def test_usage_is_counted_when_upstream_reports_none(mock_upstream: str) -> None:
    c = client(mock_upstream, script(no_usage=1, output_tokens=8))
    response = await c.generate(PROMPT)
    stream = c.stream(STREAM)
    chunks = await collect(stream)
    await c.aclose()
    assert response.usage is not None and response.usage.estimated
    assert response.content is not None
    assert response.usage.output_tokens == (len(response.content) + 3) // 4
    # 3 reply-priming tokens + 3 for the message + ceil(len("hello there") / 4)
    assert response.usage.input_tokens == 3 + 3 + 3
    last = chunks[-1].usage
    assert last is not None and last.estimated
    assert last == response.usage


async def test_stream_retried_before_first_chunk(mock_upstream: str) -> None:
    headers = script(fail_first=1, error=502)
    c = client(mock_upstream, headers)
    stream = c.stream(STREAM)
    chunks = await collect(stream)
    await c.aclose()
    assert stream.attempts == 2
    assert chunks[-1].finish_reason == "stop"


async def test_fallback_to_second_provider(mock_upstream: str) -> None:
    failing = client(mock_upstream, script(error=503), ClientSettings(max_retries=1))
    backup_headers = script()
    backup = client(mock_upstream, backup_headers, name="backup")
    c = ProviderClient(failing.provider, settings=FAST, fallbacks=[backup])
    response = await c.generate(PROMPT)
    stream = c.stream(STREAM)
    chunks = await collect(stream)
    await c.aclose()
    assert response.provider == "backup"
    assert stream.provider == "backup"
    assert chunks[-1].finish_reason == "stop"
    assert (await requests_seen(mock_upstream, backup_headers))["requests"] == 2


async def test_no_fallback_on_client_error(mock_upstream: str) -> None:
    backup_headers = script()
    c = client(mock_upstream, script(error=400), fallbacks=[client(mock_upstream, backup_headers)])
    with pytest.raises(InvalidRequest):
        await c.generate(PROMPT)
    await c.aclose()
    assert (await requests_seen(mock_upstream, backup_headers))["requests"] == 0


async def test_no_fallback_once_stream_started(mock_upstream: str) -> None:
    backup_headers = script()
    backup = client(mock_upstream, backup_headers, name="backup")
    c = client(mock_upstream, script(stream_cut_after=2), fallbacks=[backup])
    with pytest.raises(UpstreamError, match="stopped after 2 chunks"):
        await collect(c.stream(STREAM))
    await c.aclose()
    assert (await requests_seen(mock_upstream, backup_headers))["requests"] == 0


async def test_concurrency_limit_is_respected(mock_upstream: str) -> None:
    headers = script(latency_ms=100)
    c = client(mock_upstream, headers, ClientSettings(max_concurrency=2))
    seen_in_flight: list[int] = []

    async def one() -> None:
        await c.generate(PROMPT)
        seen_in_flight.append(c.in_flight)

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(one)
    elapsed = time.monotonic() - started
    await c.aclose()
    stats = await requests_seen(mock_upstream, headers)
    assert stats == {"requests": 6, "max_in_flight": 2}
    assert max(seen_in_flight) <= 2
    assert elapsed >= 0.3  # three waves of two


async def test_queue_timeout_when_all_slots_are_busy(mock_upstream: str) -> None:
    settings = ClientSettings(max_concurrency=1, queue_timeout_s=0.05)
    c = client(mock_upstream, script(latency_ms=300), settings)
    results: list[BaseException | None] = []

    async def one() -> None:
        try:
            await c.generate(PROMPT)
            results.append(None)
        except UpstreamTimeout as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    await c.aclose()
    assert results[0] is not None and "no free slot" in str(results[0])
    assert results[1] is None


async def test_model_is_rewritten_to_the_upstream_name(mock_upstream: str) -> None:
    c = client(mock_upstream, script(), model="upstream-name")
    response = await c.generate(PROMPT)
    await c.aclose()
    assert response.model == "upstream-name"


async def test_embeddings_through_the_client(mock_upstream: str) -> None:
    c = client(mock_upstream, {})
    response = await c.embed(EmbeddingRequest("mock-model", ("a", "b"), dimensions=4))
    await c.aclose()
    assert len(response.vectors) == 2 and len(response.vectors[0]) == 4
    assert response.vectors[0] != response.vectors[1]
    assert response.usage is not None and response.usage.input_tokens == 2


async def test_idle_gap_mid_stream_ends_with_error(mock_upstream: str) -> None:
    settings = ClientSettings(max_retries=2, idle_timeout_s=0.2)
    headers = script(tokens_per_s=2)
    c = client(mock_upstream, headers, settings)
    received: list[str] = []
    with pytest.raises(UpstreamError, match=r"stopped after 1 chunks: .*did not answer in time"):
        async with c.stream(STREAM) as stream:
            async for chunk in stream:
                received.append(chunk.text)
    await c.aclose()
    assert received == ["the"]
    assert (await requests_seen(mock_upstream, headers))["requests"] == 1
    assert c.in_flight == 0


async def test_a_finished_stream_hands_its_connection_back() -> None:
    """An upstream that sends ``[DONE]`` and only then ends its chunked body (as servers that
    flush each event do): the stream is read to its end, so the next call reuses the connection
    instead of opening a new one."""
    accepted = 0
    event = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":0,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":"stop"}]}\n\n'
    )

    def chunk(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal accepted
        accepted += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                head = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                head += b"transfer-encoding: chunked\r\n\r\n"
                writer.write(head + chunk(event) + chunk(b"data: [DONE]\n\n"))
                await writer.drain()
                await asyncio.sleep(0.05)  # the end of the body comes in a later packet
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = ProviderClient(OpenAICompatProvider(f"http://127.0.0.1:{port}/v1"), settings=FAST)
    try:
        for _ in range(3):
            chunks = await collect(c.stream(STREAM))
            assert "".join(ch.text for ch in chunks) == "hi"
            assert chunks[-1].finish_reason == "stop"
    finally:
        await c.aclose()
        server.close()
        await server.wait_closed()
    assert accepted == 1
