"""Checks on values handed to a store, shared by both backends so they refuse the same input.

A constraint violation inside the database would surface as a driver error; checking first turns
a caller's mistake into an ``InvalidRequest`` that names the field, not a 503.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from charter.errors import InternalError, InvalidRequest
from charter.storage.base import (
    ACTION_STATUSES,
    ActionChange,
    ActionRow,
    AuditLeaf,
    BreakerRow,
    KeyRow,
    SpendRow,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def aware(value: datetime, name: str) -> datetime:
    """Return ``value`` in UTC; a naive datetime is refused because its zone would be a guess."""
    if not isinstance(value, datetime):
        raise InvalidRequest(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidRequest(
            f"{name} is a naive datetime",
            hint="pass a timezone-aware datetime, e.g. datetime.now(timezone.utc)",
        )
    return value.astimezone(UTC)


def to_micros(value: datetime, name: str) -> int:
    """Microseconds since the Unix epoch: how SQLite stores a time, exactly and sortably."""
    return (aware(value, name) - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    """The UTC datetime of microseconds since the Unix epoch."""
    return EPOCH + timedelta(microseconds=value)


def integer(value: int, name: str, *, minimum: int | None = None) -> int:
    """An int (not a bool or a float), at least ``minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise InvalidRequest(f"{name} must be >= {minimum}, got {value}")
    return value


def text(value: str, name: str, *, allow_empty: bool = False) -> str:
    """A str without NUL characters, non-empty unless ``allow_empty``."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and not value:
        raise InvalidRequest(f"{name} must not be empty")
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refusing it on both backends keeps them alike.
        raise InvalidRequest(
            f"{name} contains a NUL character", hint="escape or remove NUL characters first"
        )
    return value


def blob(value: bytes, name: str) -> bytes:
    """Bytes (a hash or a signature), never a hex string passed by mistake."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidRequest(f"{name} must be bytes, got {type(value).__name__}")
    return bytes(value)


def audit_range(start: int, end: int) -> None:
    """Refuse a negative or reversed range of sequence numbers."""
    integer(start, "start")
    integer(end, "end")
    if start < 0 or end < start:
        raise InvalidRequest(f"invalid audit range [{start}, {end})", hint="pass 0 <= start <= end")


def key_row(key: KeyRow) -> None:
    """Check every field of a key before it is stored."""
    for name in ("id", "principal_id", "key_hash", "prefix"):
        text(getattr(key, name), f"key.{name}")
    text(key.description, "key.description", allow_empty=True)
    aware(key.created_at, "key.created_at")
    if key.revoked_at is not None:
        aware(key.revoked_at, "key.revoked_at")


def spend_rows(rows: Sequence[SpendRow]) -> None:
    """Check every settled-spend row before any is stored."""
    for row in rows:
        for name in ("request_id", "principal_id", "model"):
            text(getattr(row, name), f"spend.{name}")
        for name in ("input_tokens", "output_tokens", "cost_micro_usd"):
            integer(getattr(row, name), f"spend.{name}", minimum=0)
        aware(row.at, "spend.at")


def audit_leaves(leaves: Sequence[AuditLeaf]) -> None:
    """Check every leaf of a batch before any is appended."""
    for leaf in leaves:
        blob(leaf.leaf_hash, "leaf.leaf_hash")
        if leaf.record_json is None:  # only retention removes a body, never an append
            raise InvalidRequest(
                "leaf.record_json is None: an appended leaf must carry its record",
                hint="pass the record's canonical JSON",
            )
        text(leaf.record_json, "leaf.record_json")
        aware(leaf.at, "leaf.at")


def built_leaves(
    build: Callable[[int], Sequence[AuditLeaf]], first: int, count: int
) -> list[AuditLeaf]:
    """The leaves an audit builder made for numbers ``first..first+count``, checked."""
    leaves = list(build(first))
    if len(leaves) != count:
        raise InternalError(f"the audit builder made {len(leaves)} leaves for {count} numbers")
    audit_leaves(leaves)
    return leaves


def status(value: str, name: str = "status") -> str:
    """One of ``ACTION_STATUSES``."""
    if value not in ACTION_STATUSES:
        raise InvalidRequest(
            f"{name} {value!r} is not an action status", hint=f"use one of {ACTION_STATUSES}"
        )
    return value


def statuses(values: Sequence[str], name: str = "statuses") -> list[str]:
    """A non-empty list of action statuses (a bare string is refused: it would be iterated)."""
    if isinstance(values, str) or not values:
        raise InvalidRequest(f"{name} must be a non-empty list of statuses")
    return [status(value, name) for value in values]


def action_row(row: ActionRow) -> None:
    """Check every field of an action before it is stored."""
    for name in ("id", "tool", "arguments_json", "principal_id", "claims_json"):
        text(getattr(row, name), f"action.{name}")
    for name in ("decision_ids_json", "reviewer_roles_json"):
        text(getattr(row, name), f"action.{name}")
    for name in ("excerpt", "reason"):
        text(getattr(row, name), f"action.{name}", allow_empty=True)
    for name in (
        "subject",
        "conversation_id",
        "approval_id",
        "control_id",
        "approval_control_id",
        "reviewer",
        "review_reason",
        "outcome_json",
        "content_key",
    ):
        if getattr(row, name) is not None:
            text(getattr(row, name), f"action.{name}", allow_empty=name == "review_reason")
    status(row.status, "action.status")
    for name in ("created_at", "hold_until", "updated_at"):
        aware(getattr(row, name), f"action.{name}")
    for name in ("deadline", "reviewed_at", "executed_at", "settled_at"):
        if getattr(row, name) is not None:
            aware(getattr(row, name), f"action.{name}")


def action_change(change: ActionChange) -> None:
    """Check a transition before it is applied."""
    status(change.status, "change.status")
    aware(change.at, "change.at")
    if change.hold_until is not None:
        aware(change.hold_until, "change.hold_until")
    for name in ("reviewer", "outcome_json"):
        if getattr(change, name) is not None:
            text(getattr(change, name), f"change.{name}")
    if change.review_reason is not None:
        text(change.review_reason, "change.review_reason", allow_empty=True)


def breaker_row(row: BreakerRow) -> None:
    """Check a breaker state before it is stored."""
    text(row.tool, "breaker.tool")
    text(row.reason, "breaker.reason")
    text(row.by, "breaker.by")
    if not isinstance(row.tripped, bool):
        raise InvalidRequest(f"breaker.tripped must be a bool, got {type(row.tripped).__name__}")
    aware(row.at, "breaker.at")
