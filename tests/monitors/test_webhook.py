"""Drift alerts reach a webhook on loopback: HMAC-signed, Slack-shaped on request, retried."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from charter.errors import ConfigurationError
from charter.monitors.drift import DriftAlert, Reading
from charter.monitors.webhook import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertSender,
    Target,
    targets_of,
    verify_signature,
)
from tests.monitors.charters import charter_with

SECRET = b"test-webhook-secret"


class Receiver:
    """A webhook receiver on 127.0.0.1 that answers with scripted statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.received.append((dict(self.headers), body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/charter"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alert(monitor: str = "refusals", *, shadow: bool = False) -> DriftAlert:
    reading = Reading(
        monitor, "refusal_rate", "support-bot", 0.16, 0.08, 0.2, 0.04, 360, 2160, 1.9e9, True
    )
    return DriftAlert(reading, ("no-jailbreaks",), None, "1h", "6h", shadow=shadow)


def test_an_alert_arrives_signed_and_the_signature_verifies(receiver: Receiver) -> None:
    sender = AlertSender({"refusals": Target(receiver.url, SECRET, "charter")})
    sender(alert())
    assert sender.flush(10)
    sender.close()
    ((headers, body),) = receiver.received
    assert verify_signature(SECRET, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    assert not verify_signature(
        b"another secret", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER]
    )
    assert not verify_signature(
        SECRET, headers[TIMESTAMP_HEADER], body + b" ", headers[SIGNATURE_HEADER]
    )
    payload = json.loads(body)
    assert payload["type"] == "charter.drift_alert" and payload["monitor"] == "refusals"
    assert payload["value"] == 0.16 and payload["decisions"] == ["no-jailbreaks"]
    assert sender.sent == 1 and sender.failed == 0


def test_the_slack_format_is_a_text_message(receiver: Receiver) -> None:
    sender = AlertSender({"refusals": Target(receiver.url, None, "slack")})
    sender(alert())
    sender.flush(10)
    sender.close()
    ((headers, body),) = receiver.received
    assert SIGNATURE_HEADER not in headers  # no secret configured: sent unsigned
    payload = json.loads(body)
    assert set(payload) == {"text"} and "refusal_rate" in payload["text"]


def test_server_errors_are_retried_with_a_bound_and_client_errors_are_not() -> None:
    flaky = Receiver([500, 503, 200])
    refusing = Receiver([400, 200])
    down = Receiver([500, 500, 500, 500, 500])
    try:
        sender = AlertSender(
            {
                "flaky": Target(flaky.url, SECRET, "charter"),
                "refusing": Target(refusing.url, SECRET, "charter"),
                "down": Target(down.url, SECRET, "charter"),
            },
            retries=2,
            backoff_s=0.01,
        )
        for monitor in ("flaky", "refusing", "down"):
            sender(alert(monitor))
        assert sender.flush(10)
        sender.close()
    finally:
        for r in (flaky, refusing, down):
            r.close()
    assert len(flaky.received) == 3  # two failures, then delivered
    assert len(refusing.received) == 1  # 400: the receiver will not change its mind
    assert len(down.received) == 3  # 1 try + 2 retries, then given up
    assert sender.sent == 1 and sender.failed == 2


def test_shadow_alerts_and_monitors_without_a_webhook_send_nothing(receiver: Receiver) -> None:
    sender = AlertSender({"refusals": Target(receiver.url, SECRET, "charter")})
    sender(alert(shadow=True))
    sender(alert("unwatched"))
    sender.flush(10)
    sender.close()
    assert receiver.received == []


def test_targets_come_from_the_charter_and_a_missing_secret_fails_at_start() -> None:
    charter = charter_with(
        [
            {
                "id": "refusals",
                "settings": {
                    "statistic": "refusal_rate",
                    "threshold": 0.1,
                    "webhook": "http://127.0.0.1:9/hook",
                    "webhook_secret_env": "CHARTER_TEST_ALERT_SECRET",
                    "webhook_format": "slack",
                },
            }
        ]
    )
    targets = targets_of(charter, {"CHARTER_TEST_ALERT_SECRET": "s3cret"})
    assert targets["refusals"] == Target("http://127.0.0.1:9/hook", b"s3cret", "slack")
    with pytest.raises(ConfigurationError, match="CHARTER_TEST_ALERT_SECRET") as info:
        targets_of(charter, {})
    assert info.value.hint and "export CHARTER_TEST_ALERT_SECRET" in info.value.hint
