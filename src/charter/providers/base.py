"""The provider interface, and the one wrapper that gives every provider retries and limits.

A ``Provider`` only speaks its upstream's protocol. ``ProviderClient`` owns everything else, once:
timeouts, retries with full-jitter exponential backoff (honouring ``Retry-After``), a concurrency
limit, fallback to other providers, usage accounting (estimated when the upstream reports none) and
the translation of HTTP errors into ``UpstreamError`` / ``UpstreamTimeout``.

What an adapter may raise, and how the wrapper treats it:

* ``UpstreamStatus`` (``charter.providers.http``, with the body read so the message can be
  shown): 429, 500, 502, 503, 504 and 529 are retried; 400 and 422 become ``InvalidRequest``;
  anything else ``UpstreamError``.
* ``TimeoutError`` -> ``UpstreamTimeout``; ``aiohttp.ClientConnectionError`` and
  ``aiohttp.ClientPayloadError`` (refused, reset, cut mid-body) -> ``UpstreamError``; both retried.
  Any other ``aiohttp.ClientError`` -> ``UpstreamError``, not retried.
* ``UpstreamError`` with an ``upstream_status`` detail: retried when the status is retryable.
* Any other ``CharterError`` passes through unchanged and is not retried.

A stream is never retried, nor sent to a fallback, once its first chunk has been handed out: the
client already has those bytes, so a failure after that ends the stream with an ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

import aiohttp

from charter.errors import (
    CharterError,
    ConfigurationError,
    InvalidRequest,
    UpstreamError,
    UpstreamTimeout,
)
from charter.providers.http import UpstreamStatus
from charter.providers.tokens import (
    estimate_embedding_usage,
    estimate_input_tokens,
    estimate_usage,
    tokens_for_chars,
)
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    EmbeddingResponse,
    StreamChunk,
    Usage,
)

log = logging.getLogger("charter.providers")

RETRYABLE_STATUS: frozenset[int] = frozenset((429, 500, 502, 503, 504, 529))
"""Upstream HTTP statuses worth another try (529 is Anthropic's 'overloaded')."""

T = TypeVar("T")

_UPSTREAM_FAILURES = (CharterError, UpstreamStatus, aiohttp.ClientError, TimeoutError)
"""What one try may fail with, to be classified; anything else is a bug and propagates."""


@runtime_checkable
class Provider(Protocol):
    """One upstream model API. Implementations do no retries, no limits, no accounting."""

    name: str

    async def generate(self, req: ChatRequest) -> ChatResponse:
        """Answer ``req`` in one piece."""
        ...

    def stream(self, req: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Answer ``req`` as chunks; the last one carries ``finish_reason`` (and usage if known)."""
        ...

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """Embed ``req.input``."""
        ...

    async def aclose(self) -> None:
        """Release connections; the provider is not used afterwards."""
        ...


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How ``ProviderClient`` calls one provider. Times are in seconds.

    ``timeout_s`` bounds one attempt (a whole non-streamed call, or a whole stream);
    ``first_chunk_timeout_s`` bounds the wait for a stream's first chunk and ``idle_timeout_s``
    the gap between later chunks. ``queue_timeout_s`` bounds the wait for one of the
    ``max_concurrency`` slots. A ``Retry-After`` longer than ``max_retry_after_s`` is not waited
    for: the call goes to the fallback (or fails) at once.
    """

    max_retries: int = 2
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    max_retry_after_s: float = 30.0
    timeout_s: float = 600.0
    first_chunk_timeout_s: float = 120.0
    idle_timeout_s: float = 60.0
    max_concurrency: int = 64
    queue_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be 0 or more")
        if self.max_concurrency < 1:
            raise ConfigurationError("max_concurrency must be at least 1")
        for name in (
            "backoff_base_s",
            "backoff_max_s",
            "max_retry_after_s",
            "timeout_s",
            "first_chunk_timeout_s",
            "idle_timeout_s",
            "queue_timeout_s",
        ):
            if getattr(self, name) < 0:
                raise ConfigurationError(f"{name} must not be negative")


@dataclass(frozen=True, slots=True)
class _Failure:
    """One failed attempt, translated: the error to raise and whether another try may help."""

    error: CharterError
    retryable: bool
    retry_after: float | None = None


class _Exhausted(Exception):
    """Internal: every try on one provider failed retryably, so a fallback may take over."""

    def __init__(self, error: CharterError) -> None:
        super().__init__(str(error))
        self.error = error


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the upstream asked us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000)
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _upstream_message(status: UpstreamStatus) -> str:
    """The upstream's error message (OpenAI and Anthropic shapes), else the start of the body."""
    try:
        body = json.loads(status.body)
    except ValueError:
        return status.body[:300].strip() or status.reason
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])[:300]
        if isinstance(error, str):
            return error[:300]
    return str(body)[:300]


def translate_error(exc: BaseException, provider: str) -> CharterError:
    """The Charter error for a failure of ``provider`` (for callers outside ``ProviderClient``)."""
    if isinstance(exc, CharterError):
        return exc
    return _classify(exc, provider).error


def _classify(exc: BaseException, provider: str) -> _Failure:
    if isinstance(exc, CharterError):
        status = exc.details.get("upstream_status")
        retryable = isinstance(exc, UpstreamTimeout) or status in RETRYABLE_STATUS
        return _Failure(exc, retryable)
    if isinstance(exc, UpstreamStatus):
        return _classify_status(exc, provider)
    if isinstance(exc, TimeoutError):  # aiohttp's timeouts are TimeoutErrors too
        kind = type(exc).__name__
        return _Failure(
            UpstreamTimeout(
                f"provider '{provider}' did not answer in time ({kind})",
                hint="the provider may be overloaded; the timeouts are set per provider",
            ),
            True,
        )
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return _Failure(
            UpstreamError(
                f"provider '{provider}' connection failed: {type(exc).__name__}: {exc}",
                hint="check that the provider's base_url is reachable",
            ),
            True,
        )
    if isinstance(exc, aiohttp.ClientError):
        return _Failure(UpstreamError(f"provider '{provider}' failed: {exc}"), False)
    raise exc


def _classify_status(answer: UpstreamStatus, provider: str) -> _Failure:
    status = answer.status
    message = f"provider '{provider}' answered {status}: {_upstream_message(answer)}"
    if status in (400, 422):
        return _Failure(InvalidRequest(message, hint="fix the request; it was not retried"), False)
    if status in (401, 403):
        return _Failure(
            UpstreamError(
                message,
                hint="the provider rejected Charter's credentials; check its api_key_env",
                upstream_status=status,
            ),
            False,
        )
    return _Failure(
        UpstreamError(message, upstream_status=status),
        status in RETRYABLE_STATUS,
        _retry_after(answer.headers),
    )


class ProviderClient:
    """Calls one provider with retries, timeouts, a concurrency limit and usage accounting.

    ``model`` rewrites ``req.model`` to the upstream's own name for it (e.g. the charter's
    ``support-chat`` -> ``gpt-4o-mini``); ``fallbacks`` are tried in order when this provider
    fails retryably after its retries (and, for a stream, before its first chunk).
    """

    def __init__(
        self,
        provider: Provider,
        *,
        settings: ClientSettings | None = None,
        model: str | None = None,
        fallbacks: Sequence[ProviderClient | Provider] = (),
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings or ClientSettings()
        self.model = model
        self.fallbacks: tuple[ProviderClient, ...] = tuple(
            f if isinstance(f, ProviderClient) else ProviderClient(f, settings=self.settings)
            for f in fallbacks
        )
        # Full jitter needs randomness; a seeded Random makes tests and replays reproducible.
        self._rng = rng or random.Random()
        self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        self._in_flight = 0

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def in_flight(self) -> int:
        """Calls holding one of this provider's concurrency slots right now."""
        return self._in_flight

    def __repr__(self) -> str:
        fallbacks = ", ".join(f.name for f in self.fallbacks)
        return f"ProviderClient({self.name!r}, model={self.model!r}, fallbacks=[{fallbacks}])"

    # -- public API --------------------------------------------------------------------------

    async def generate(self, req: ChatRequest) -> ChatResponse:
        """Answer ``req`` in one piece; ``usage`` is always set (estimated if none was reported)."""
        return await self._with_fallbacks(lambda client: client._generate_here(req))

    def stream(self, req: ChatRequest) -> ChatStream:
        """Answer ``req`` as chunks. Use ``async with`` (or ``aclose``) so the slot is released."""
        return ChatStream(self, req)

    async def embed(self, req: EmbeddingRequest) -> EmbeddingResponse:
        """Embed ``req.input``; ``usage`` is always set."""
        return await self._with_fallbacks(lambda client: client._embed_here(req))

    async def aclose(self) -> None:
        """Close this provider and every fallback."""
        await self.provider.aclose()
        for fallback in self.fallbacks:
            await fallback.aclose()

    # -- retries -----------------------------------------------------------------------------

    def _chain(self) -> tuple[ProviderClient, ...]:
        return (self, *self.fallbacks)

    async def _with_fallbacks(self, call: Callable[[ProviderClient], Awaitable[T]]) -> T:
        error: CharterError | None = None
        for client in self._chain():
            try:
                return await call(client)
            except _Exhausted as exhausted:
                error = exhausted.error
                if client is not self._chain()[-1]:
                    log.warning("provider %s failed (%s); falling back", client.name, error)
        assert error is not None  # the loop ran at least once
        raise error

    def _backoff(self, attempt: int, failure: _Failure) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None to give up on this provider."""
        s = self.settings
        if attempt >= s.max_retries:
            return None
        delay = self._rng.uniform(0, min(s.backoff_max_s, s.backoff_base_s * 2**attempt))
        if failure.retry_after is not None:
            if failure.retry_after > s.max_retry_after_s:
                return None
            delay = max(delay, failure.retry_after)
        return delay

    async def _acquire(self) -> None:
        if not self._slots.locked():
            # A free slot is taken without suspending: no timer needed on the common path.
            await self._slots.acquire()
            self._in_flight += 1
            return
        try:
            async with asyncio.timeout(self.settings.queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise _Exhausted(
                UpstreamTimeout(
                    f"provider '{self.name}' had no free slot for "
                    f"{self.settings.queue_timeout_s:g}s "
                    f"({self.settings.max_concurrency} calls in flight)",
                    hint="raise max_concurrency or add a fallback provider",
                )
            ) from None
        self._in_flight += 1

    def _release(self) -> None:
        self._in_flight -= 1
        self._slots.release()

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        attempt = 0
        while True:
            await self._acquire()
            try:
                async with asyncio.timeout(self.settings.timeout_s):
                    return await call(), attempt + 1
            except _UPSTREAM_FAILURES as exc:
                failure = _classify(exc, self.name)
            finally:
                self._release()
            attempt = await self._after_failure(attempt, failure)

    async def _after_failure(self, attempt: int, failure: _Failure) -> int:
        """Wait before the next try, or raise: the error itself, or ``_Exhausted`` to fall back."""
        if not failure.retryable:
            raise failure.error
        delay = self._backoff(attempt, failure)
        if delay is None:
            raise _Exhausted(failure.error)
        log.info("provider %s: try %d failed (%s), retrying", self.name, attempt + 1, failure.error)
        await asyncio.sleep(delay)
        return attempt + 1

    def _upstream_request(self, req: ChatRequest) -> ChatRequest:
        return (
            req if self.model is None or req.model == self.model else replace(req, model=self.model)
        )

    async def _generate_here(self, req: ChatRequest) -> ChatResponse:
        upstream_req = self._upstream_request(req)
        response, attempts = await self._retrying(lambda: self.provider.generate(upstream_req))
        usage = response.usage or estimate_usage(req, response.content or "", response.tool_calls)
        return replace(response, usage=usage, provider=self.name, attempts=attempts)

    async def _embed_here(self, req: EmbeddingRequest) -> EmbeddingResponse:
        upstream_req = req if self.model is None else replace(req, model=self.model)
        response, _ = await self._retrying(lambda: self.provider.embed(upstream_req))
        return replace(
            response,
            usage=response.usage or estimate_embedding_usage(req),
            provider=self.name,
        )


class _Watchdog:
    """Deadlines for the waits of one stream, with one lazily re-armed timer.

    ``asyncio.timeout`` per chunk costs a timer heap push and cancel for every chunk; here a wait
    only stores its deadline, and the timer, when it fires early, re-arms itself for the latest
    deadline. Only the wait itself is timed, never the consumer's work between chunks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._task: asyncio.Task[object] | None = None
        self._deadline: float | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._fired = False

    async def run(self, awaitable: Awaitable[T], deadline: float) -> T:
        """Await ``awaitable``; ``TimeoutError`` if it is not done by ``deadline`` (loop time)."""
        self._task = asyncio.current_task()
        self._deadline = deadline
        handle = self._handle
        if handle is None or handle.when() > deadline:
            if handle is not None:
                handle.cancel()
            self._handle = self._loop.call_at(deadline, self._check)
        try:
            return await awaitable
        except asyncio.CancelledError:
            if self._fired and self._task is not None and self._task.uncancel() == 0:
                self._fired = False
                raise TimeoutError from None
            raise
        finally:
            self._deadline = None

    def _check(self) -> None:
        self._handle = None
        deadline = self._deadline
        if deadline is None or self._task is None:
            return  # not waiting: the next wait arms a new timer
        if self._loop.time() >= deadline:
            self._fired = True
            self._task.cancel()
        else:
            self._handle = self._loop.call_at(deadline, self._check)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class _StreamTally:
    """What a stream has handed out so far, to estimate usage the upstream did not report."""

    def __init__(self) -> None:
        self.text_chars = 0
        self.tool_chars = 0
        self.chunks = 0
        self.reported: Usage | None = None

    def add(self, chunk: StreamChunk) -> None:
        self.text_chars += len(chunk.text)
        for delta in chunk.tool_calls:
            self.tool_chars += len(delta.arguments) + len(delta.name or "")

    def output_tokens(self) -> int:
        # Text and tool-call characters are estimated separately, as for whole answers.
        return tokens_for_chars(self.text_chars) + tokens_for_chars(self.tool_chars)


class ChatStream(AsyncIterator[StreamChunk]):
    """A stream from a ``ProviderClient``; after it ends (or fails) ``usage`` says what it cost.

    ``usage`` is the upstream's report when it sent one, else an estimate of what was handed out;
    ``provider`` and ``attempts`` say which provider served it and after how many tries.
    """

    def __init__(self, client: ProviderClient, req: ChatRequest) -> None:
        self._client = client
        self._req = req
        self._tally = _StreamTally()
        self._input_tokens = estimate_input_tokens(req)
        self.provider = ""
        self.attempts = 0
        self._gen = self._run()

    @property
    def usage(self) -> Usage:
        """Tokens used so far: as reported by the upstream, or estimated (``estimated=True``)."""
        if self._tally.reported is not None:
            return self._tally.reported
        return Usage(self._input_tokens, self._tally.output_tokens(), True)

    @property
    def started(self) -> bool:
        """True once a chunk has been handed out: from then on nothing is retried."""
        return self._tally.chunks > 0

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its concurrency slot."""
        await self._gen.aclose()

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncGenerator[StreamChunk, None]:
        chain = self._client._chain()
        for position, client in enumerate(chain):
            try:
                async for chunk in self._attempts(client):
                    yield chunk
                return
            except _Exhausted as exhausted:
                if position == len(chain) - 1:
                    raise exhausted.error from None
                log.warning("provider %s failed (%s); falling back", client.name, exhausted.error)

    async def _attempts(self, client: ProviderClient) -> AsyncIterator[StreamChunk]:
        upstream_req = client._upstream_request(self._req)
        attempt = 0
        while True:
            self.provider = client.name
            self.attempts += 1
            await client._acquire()
            try:
                async for chunk in self._one_attempt(client, upstream_req):
                    yield chunk
                return
            except _UPSTREAM_FAILURES as exc:
                failure = _classify(exc, client.name)
                if self.started:
                    raise self._cut(failure.error) from exc
            finally:
                client._release()
            attempt = await client._after_failure(attempt, failure)

    def _cut(self, error: CharterError) -> UpstreamError:
        return UpstreamError(
            f"the stream from provider '{self.provider}' stopped after "
            f"{self._tally.chunks} chunks: {error.message}",
            hint="the answer is incomplete; the tokens already sent are accounted for",
        )

    async def _one_attempt(
        self, client: ProviderClient, req: ChatRequest
    ) -> AsyncIterator[StreamChunk]:
        s = client.settings
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.timeout_s
        upstream = client.provider.stream(req)
        watchdog = _Watchdog(loop)
        held: StreamChunk | None = None  # the finish chunk, held back to carry trailing usage
        try:
            while True:
                wait = s.idle_timeout_s if self.started else s.first_chunk_timeout_s
                try:
                    chunk = await watchdog.run(anext(upstream), min(deadline, loop.time() + wait))
                except StopAsyncIteration:
                    break
                if chunk.usage is not None:
                    self._tally.reported = chunk.usage
                if held is not None:
                    if not (chunk.text or chunk.tool_calls):
                        continue
                    # Content after the finish chunk: pass the finish on as it came.
                    yield self._hand_out(held)
                    held = None
                if chunk.finish_reason is not None:
                    held = chunk
                elif chunk.text or chunk.tool_calls:
                    yield self._hand_out(
                        chunk if chunk.usage is None else replace(chunk, usage=None)
                    )
        finally:
            watchdog.close()
            # Close the adapter's generator (and its HTTP response) whatever happened.
            closer = getattr(upstream, "aclose", None)
            if closer is not None:
                await closer()
        if held is None:
            raise UpstreamError(f"the stream from provider '{client.name}' ended without finishing")
        yield self._hand_out(replace(held, usage=self.usage))

    def _hand_out(self, chunk: StreamChunk) -> StreamChunk:
        self._tally.add(chunk)
        self._tally.chunks += 1
        return chunk
