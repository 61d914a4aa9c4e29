"""Structured logs: one JSON object per line, with the request id, redacted by default.

``setup_logging`` puts a ``JsonFormatter`` on the ``charter`` logger. Fields that hold content
(prompts, answers, messages) are replaced by ``[redacted]`` unless content logging is switched on,
and whatever text remains (messages, tracebacks) is scrubbed of e-mail addresses, bearer tokens,
API keys and card-like numbers, because a log line is the easiest place for a secret to leak.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from charter.errors import ConfigurationError

REDACTED = "[redacted]"
# Fields whose value is content someone wrote or a model generated.
CONTENT_FIELDS = frozenset(
    {"prompt", "prompts", "content", "messages", "text", "completion", "answer", "input",
     "output", "sent_upstream", "body"}
)  # fmt: skip
_PATTERNS = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[redacted:email]"),
    (re.compile(r"(?i)\bbearer\s+[\w\-.~+/=]{8,}"), "Bearer [redacted:token]"),
    (re.compile(r"\b(?:sk|pk|rk|ghp|gho|xox[abpr])[-_][\w\-]{8,}"), "[redacted:key]"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "[redacted:key]"),
    (re.compile(r"\b(?:\d[ -]?){13,19}\b"), "[redacted:number]"),
)
# Attributes every LogRecord has; anything else was passed in ``extra=`` and is logged as a field.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "charter_request_id", default=None
)


@contextlib.contextmanager
def bind_request_id(request_id: str) -> Iterator[None]:
    """Every log line written inside the block carries ``request_id``."""
    token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(token)


def scrub(text: str) -> str:
    """``text`` with e-mail addresses, tokens, keys and long numbers replaced."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line: time, level, logger, message, request_id, extras."""

    def __init__(self, *, include_content: bool = False) -> None:
        super().__init__()
        self.include_content = include_content

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self._text(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            out["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key in _STANDARD or key == "request_id" or key.startswith("_"):
                continue
            out[key] = self._field(key, value)
        if record.exc_info:
            out["exception"] = self._text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)

    def _text(self, text: str) -> str:
        return text if self.include_content else scrub(text)

    def _field(self, key: str, value: Any) -> Any:
        if key in CONTENT_FIELDS and not self.include_content:
            return REDACTED
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, dict):
            return {str(k): self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._field(key, v) for v in value]
        return value


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}  # fmt: skip


def setup_logging(
    level: str = "info",
    *,
    stream: IO[str] | None = None,
    include_content: bool = False,
    logger: str = "charter",
) -> logging.Handler:
    """Log ``logger`` (and its children) as JSON lines to ``stream`` (stderr by default).

    Calling it again replaces the handler it installed before, so it is safe at every start.
    """
    if level not in _LEVELS:
        raise ConfigurationError(
            f"unknown log level {level!r}", hint="use debug, info, warning or error"
        )
    target = logging.getLogger(logger)
    for handler in list(target.handlers):
        if getattr(handler, "_charter_json", False):
            target.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(include_content=include_content))
    handler._charter_json = True  # type: ignore[attr-defined]
    target.addHandler(handler)
    target.setLevel(_LEVELS[level])
    target.propagate = False
    return handler


REQUEST_LOGGER = "charter.requests"
