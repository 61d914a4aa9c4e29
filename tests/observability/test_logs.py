"""JSON-line logs: request ids on every line, content redacted unless switched on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from charter.errors import ConfigurationError
from charter.gateway.service import Outcome
from charter.observability import Observer, bind_request_id, scrub, setup_logging
from charter.policy.verdict import Action, Stage, Verdict
from tests.monitors.charters import charter_with


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    setup_logging("info", stream=out)
    yield out
    for handler in list(logging.getLogger("charter").handlers):
        logging.getLogger("charter").removeHandler(handler)
    logging.getLogger("charter").propagate = True


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_line_is_json_with_the_request_id(stream: io.StringIO) -> None:
    log = logging.getLogger("charter.test")
    with bind_request_id("req_abc"):
        log.info("admitted")
    log.warning("outside", extra={"request_id": "req_def", "control": "team-budgets"})
    first, second = lines(stream)
    assert first["request_id"] == "req_abc" and first["message"] == "admitted"
    assert first["level"] == "info" and first["logger"] == "charter.test"
    assert second["request_id"] == "req_def" and second["control"] == "team-budgets"


def test_content_fields_and_secrets_in_text_are_redacted_by_default(stream: io.StringIO) -> None:
    log = logging.getLogger("charter.test")
    log.info(
        "user jane.doe@example.com sent Bearer sk-live-0123456789abcdef",
        extra={"prompt": "my card is 4111 1111 1111 1111", "note": "call +1 415 555 0100 x"},
    )
    (line,) = lines(stream)
    text = json.dumps(line)
    assert line["prompt"] == "[redacted]"
    assert "jane.doe" not in text and "sk-live" not in text and "4111" not in text
    assert "[redacted:email]" in str(line["message"])


def test_content_is_logged_only_when_switched_on() -> None:
    out = io.StringIO()
    setup_logging("debug", stream=out, include_content=True)
    setup_logging("debug", stream=out, include_content=True)  # idempotent: one handler
    logging.getLogger("charter.test").debug("x", extra={"prompt": "hello"})
    (line,) = lines(out)
    assert line["prompt"] == "hello"
    logging.getLogger("charter").handlers.clear()
    logging.getLogger("charter").propagate = True


def test_an_unknown_level_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="log level"):
        setup_logging("loud")


def test_the_observer_writes_one_line_per_request_without_content(stream: io.StringIO) -> None:
    observer = Observer(charter_with(), send_alerts=False)
    redact = Verdict(Action.REDACT, "pii-redaction", ("pii-stays-home",), "pii hit", Stage.INPUT)
    observer.observe(
        Outcome("req_1", "support-bot", "sim-small", [redact], sent_upstream="mail <EMAIL_1>"),
        0.0123,
    )
    (line,) = [entry for entry in lines(stream) if entry.get("event") == "request"]
    assert line["request_id"] == "req_1" and line["outcome"] == "intervened"
    assert line["fired"] == ["pii-redaction:redact"] and line["latency_ms"] == 12.3
    assert "EMAIL" not in json.dumps(line)


def test_scrub_leaves_ordinary_text_alone() -> None:
    assert scrub("order 4821 shipped on 2026-11-02") == "order 4821 shipped on 2026-11-02"
