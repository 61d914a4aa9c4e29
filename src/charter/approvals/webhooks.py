"""Signed webhook calls: approval notifications, executing approved actions, compensating calls.

Each call is a JSON POST with ``X-Charter-Timestamp`` and ``X-Charter-Signature:
sha256=<hex>``, the HMAC-SHA256 of ``timestamp + "." + body`` under a secret the charter names by
environment variable; receivers check it with ``verify`` (and reject old timestamps). Failures
are retried a bounded number of times with exponential backoff: transport errors, timeouts, 429
and 5xx; any other status is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Charter-Signature"
TIMESTAMP_HEADER = "X-Charter-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_BODY_EXCERPT = 500
_MAX_BACKOFF_S = 10.0


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: float = 300,
) -> bool:
    """True when ``signature`` is ours for this body and the timestamp is recent (replays fail)."""
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    moment = time.time() if now is None else now
    if abs(moment - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def canonical_body(payload: Mapping[str, Any]) -> bytes:
    """The bytes that are sent and signed: compact JSON with sorted keys."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True, slots=True)
class Delivery:
    """What happened to one webhook call after every attempt."""

    ok: bool
    attempts: int
    status: int | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "attempts": self.attempts,
            "status": self.status,
            "detail": self.detail,
        }


class WebhookSender:
    """Posts signed JSON with bounded retries; one shared ``httpx.AsyncClient``."""

    def __init__(self, client: httpx.AsyncClient | None = None, *, backoff_s: float = 0.5) -> None:
        self._client = client
        self._owns_client = client is None
        self.backoff_s = backoff_s

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            import httpx

            # No proxies from the environment: webhooks go where the charter says, nowhere else.
            self._client = httpx.AsyncClient(trust_env=False, follow_redirects=False)
        return self._client

    async def post(
        self,
        url: str,
        payload: Mapping[str, Any],
        secret: bytes,
        *,
        attempts: int = 3,
        timeout_s: float = 10.0,
        idempotency_key: str | None = None,
    ) -> Delivery:
        """POST ``payload`` to ``url``, retrying transient failures up to ``attempts`` times."""
        import httpx

        body = canonical_body(payload)
        last = Delivery(False, 0, None, "not attempted")
        for attempt in range(1, attempts + 1):
            stamp = f"{time.time():.3f}"
            headers = {
                "Content-Type": "application/json",
                TIMESTAMP_HEADER: stamp,
                SIGNATURE_HEADER: sign(secret, stamp, body),
            }
            if idempotency_key is not None:
                headers[IDEMPOTENCY_HEADER] = idempotency_key
            try:
                response = await self._http().post(
                    url, content=body, headers=headers, timeout=timeout_s
                )
            except httpx.HTTPError as exc:
                last = Delivery(
                    False, attempt, None, f"{type(exc).__name__}: {exc}"[:_BODY_EXCERPT]
                )
            else:
                excerpt = response.text[:_BODY_EXCERPT]
                if response.is_success:
                    return Delivery(True, attempt, response.status_code, excerpt)
                last = Delivery(False, attempt, response.status_code, excerpt)
                if response.status_code != 429 and response.status_code < 500:
                    return last  # the receiver refused this call; repeating it will not help
            if attempt < attempts:
                await asyncio.sleep(min(self.backoff_s * 2 ** (attempt - 1), _MAX_BACKOFF_S))
        log.warning("webhook %s failed after %d attempts: %s", url, last.attempts, last.detail)
        return last

    async def aclose(self) -> None:
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None


class Notifier:
    """Sends notifications off the request path: each is a task; ``drain`` waits for them."""

    def __init__(self, sender: WebhookSender, *, attempts: int = 3, timeout_s: float = 10.0):
        self.sender = sender
        self.attempts = attempts
        self.timeout_s = timeout_s
        self._tasks: set[asyncio.Task[Delivery]] = set()
        self.delivered: list[Delivery] = []  # the last few outcomes, for health checks and tests

    def send(self, url: str, payload: Mapping[str, Any], secret: bytes) -> None:
        """Schedule a notification and return at once."""
        task = asyncio.get_running_loop().create_task(
            self.sender.post(url, payload, secret, attempts=self.attempts, timeout_s=self.timeout_s)
        )
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Delivery]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is None:
            self.delivered = [*self.delivered[-99:], task.result()]
        elif not task.cancelled():
            log.warning("approval notification failed: %s", task.exception())

    async def drain(self) -> None:
        """Wait until every scheduled notification has been delivered or given up."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
