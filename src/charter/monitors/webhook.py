"""Drift alerts to webhooks: HMAC-signed, Slack-compatible on request, sent off the request path.

One background thread drains a bounded queue and posts each alert with bounded retries (network
errors, 429 and 5xx are retried with backoff; other 4xx are not, they will not get better). The
signature covers a timestamp and the body, so a receiver can reject replays:

    X-Charter-Timestamp: 1767225600
    X-Charter-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from charter.document.model import Charter, Mode, MonitorControl
from charter.errors import ConfigurationError
from charter.monitors.drift import DriftAlert

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Charter-Signature"
TIMESTAMP_HEADER = "X-Charter-Timestamp"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value of ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: bytes, timestamp: str, body: bytes, signature: str) -> bool:
    """True if ``signature`` is ours for this body and timestamp (constant-time comparison)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


@dataclass(frozen=True, slots=True)
class Target:
    """Where one monitor's alerts go, and how."""

    url: str
    secret: bytes | None
    format: str  # "charter" or "slack"

    def body(self, alert: DriftAlert) -> bytes:
        if self.format == "slack":
            payload: dict[str, Any] = {"text": ":warning: " + alert.summary()}
        else:
            payload = alert.to_dict()
        return json.dumps(payload, separators=(",", ":")).encode()


def targets_of(charter: Charter, environ: dict[str, str] | None = None) -> dict[str, Target]:
    """The webhook of each monitor control that has one; a missing secret is an error at start."""
    env = os.environ if environ is None else environ
    out = {}
    for control in charter.controls:
        if not isinstance(control, MonitorControl) or control.mode is Mode.OFF:
            continue
        settings = control.settings
        if settings.webhook is None:
            continue
        secret = None
        if settings.webhook_secret_env:
            value = env.get(settings.webhook_secret_env)
            if not value:
                raise ConfigurationError(
                    f"monitor {control.id} signs alerts with ${settings.webhook_secret_env}, "
                    "which is not set",
                    hint=f"export {settings.webhook_secret_env}=<a long random secret shared "
                    "with the receiver>",
                )
            secret = value.encode()
        out[control.id] = Target(settings.webhook, secret, settings.webhook_format)
    return out


_STOP = object()


class AlertSender:
    """Posts alerts to their monitor's webhook from a background thread."""

    def __init__(
        self,
        targets: dict[str, Target],
        *,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 5.0,
        max_pending: int = 1000,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.targets = targets
        self.retries = retries
        self.backoff_s = backoff_s
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self._queue: queue.Queue[tuple[Target, DriftAlert] | object] = queue.Queue(max_pending)
        self._client = httpx.Client(timeout=timeout_s, transport=transport)
        self._thread = threading.Thread(target=self._run, name="charter-alerts", daemon=True)
        self._thread.start()

    def __call__(self, alert: DriftAlert) -> None:
        """Queue ``alert`` (an ``AlertSink``); shadow alerts and monitors without a webhook skip."""
        target = self.targets.get(alert.monitor)
        if target is None or alert.shadow:
            return
        try:
            self._queue.put_nowait((target, alert))
        except queue.Full:
            self.failed += 1
            log.error("alert queue full; dropped the alert of %s", alert.monitor)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is _STOP:
                    return
                assert isinstance(item, tuple)
                self._deliver(*item)
            finally:
                self._queue.task_done()

    def _deliver(self, target: Target, alert: DriftAlert) -> None:
        body = target.body(alert)
        for attempt in range(self.retries + 1):
            timestamp = str(int(self.clock()))
            headers = {"content-type": "application/json", TIMESTAMP_HEADER: timestamp}
            if target.secret is not None:
                headers[SIGNATURE_HEADER] = sign(target.secret, timestamp, body)
            try:
                response = self._client.post(target.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code != 429:
                    break  # the receiver refused it; sending it again will not help
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        self.failed += 1
        log.error("drift alert of %s not delivered to its webhook: %s", alert.monitor, problem)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued alert was delivered or given up on; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``), then stop."""
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._client.close()


def sender_for(charter: Charter, **kwargs: Any) -> AlertSender | None:
    """An ``AlertSender`` for the charter's monitors with webhooks, or None if none has one."""
    targets = targets_of(charter)
    return AlertSender(targets, **kwargs) if targets else None


__all__: Sequence[str] = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AlertSender",
    "Target",
    "sender_for",
    "sign",
    "targets_of",
    "verify_signature",
]
