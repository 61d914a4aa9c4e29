"""HTTP to upstream providers: one pooled aiohttp session per adapter, JSON calls, and SSE.

aiohttp rather than httpx on this path because the upstream call is most of a gateway's own cost:
on loopback against the mock upstream, one serial call costs about 0.2 ms of CPU through aiohttp
and 1.1 ms through httpx (``bench/gateway``, README "Performance"). httpx stays for everything
off the hot path (webhooks, the demo, tests).

What adapters raise, for ``ProviderClient`` to classify (see ``charter.providers.base``):

* ``UpstreamStatus``: the upstream answered 4xx or 5xx; its body and headers are kept so the
  client sees the upstream's own message and ``Retry-After`` is honoured;
* ``aiohttp.ClientError`` (refused, reset, cut mid-body) and ``TimeoutError``, as aiohttp raises
  them.

The SSE reader is the WHATWG event-stream parsing rules for the one field providers use
(``data``), in twenty lines rather than a dependency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from charter.errors import UpstreamError

CONNECT_TIMEOUT_S = 5.0
"""Opening a connection to a provider; the overall deadlines belong to ``ProviderClient``."""
READ_TIMEOUT_S = 300.0
"""The longest silence on an open connection before the call fails."""
READ_BUFFER = 2**20
"""Largest single SSE line (a big tool-call argument can arrive in one event)."""
DRAIN_S = 1.0
"""How long a finished stream's leftovers are read for, to keep its connection."""


class UpstreamStatus(Exception):
    """The upstream answered with an error status; ``body`` is its text (truncated)."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str], body: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers: Mapping[str, str] = headers
        self.body = body


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-operation timeouts of one adapter's connections, in seconds."""

    connect_s: float = CONNECT_TIMEOUT_S
    read_s: float = READ_TIMEOUT_S


class Session:
    """A keep-alive pool of at most ``max_connections`` connections, made on first use.

    aiohttp binds a session to the event loop that made it, so it is created lazily inside the
    running loop, and made again if an earlier loop has gone (tests run one loop per test).
    """

    def __init__(self, max_connections: int, timeouts: Timeouts | None = None) -> None:
        self.max_connections = max_connections
        self.timeouts = timeouts or Timeouts()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> aiohttp.ClientSession:
        """The session for the running loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0)
            timeout = aiohttp.ClientTimeout(
                total=None, sock_connect=self.timeouts.connect_s, sock_read=self.timeouts.read_s
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                read_bufsize=READ_BUFFER,
                max_line_size=READ_BUFFER,
                max_field_size=READ_BUFFER,
            )
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the pool (a no-op if it was never used, or its loop is gone)."""
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


async def raise_for_status(response: aiohttp.ClientResponse) -> None:
    """``UpstreamStatus`` with the body read, when ``response`` is an error."""
    if response.status < 400:
        return
    body = await response.text(errors="replace")
    raise UpstreamStatus(response.status, response.reason or "", response.headers, body[:2000])


async def post_json(
    session: Session, url: str, body: bytes, headers: Mapping[str, str], provider: str
) -> Any:
    """POST ``body`` and return the decoded JSON answer."""
    async with session.get().post(url, data=body, headers=headers) as response:
        await raise_for_status(response)
        raw = await response.read()
    try:
        return json.loads(raw)
    except ValueError:
        raise UpstreamError(
            f"provider '{provider}' answered {response.status} with a body that is not JSON"
        ) from None


async def drain(response: aiohttp.ClientResponse) -> None:
    """Read what is left of a stream whose last event has arrived (normally only the end of the
    chunked body), so its connection goes back to the pool instead of being closed: a closed one
    costs the next call a new TCP (and TLS) handshake. A server that keeps talking for longer
    than ``DRAIN_S`` just loses the connection."""
    try:
        async with asyncio.timeout(DRAIN_S):
            while await response.content.readany():
                pass
    except (TimeoutError, aiohttp.ClientError):
        pass


async def sse_data(response: aiohttp.ClientResponse, provider: str) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event of ``response``, in order.

    Reads whatever bytes have arrived and splits them into lines itself: a stream's events come
    several to a read, and asking the client for one line at a time cost more than the rest of
    relaying a chunk. A line is decoded only once it is whole, so a character split between two
    reads stays intact."""
    data: list[str] = []
    partial = b""
    async for block in response.content.iter_any():
        lines = (partial + block).split(b"\n")
        partial = lines.pop()
        if len(partial) > READ_BUFFER:
            raise UpstreamError(
                f"provider '{provider}' sent a stream event larger than {READ_BUFFER} bytes"
            )
        for raw in lines:
            for line in raw.decode("utf-8", errors="replace").rstrip("\r").split("\r"):
                if not line:
                    if data:
                        yield "\n".join(data)
                        data = []
                    continue
                field, _, value = line.partition(":")
                if field == "data":
                    data.append(value[1:] if value.startswith(" ") else value)
    for line in partial.decode("utf-8", errors="replace").rstrip("\r").split("\r"):
        field, _, value = line.partition(":")
        if field == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)
