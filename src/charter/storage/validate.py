"""Checks on values handed to a store, shared by both backends so they refuse the same input.

A constraint violation inside the database would surface as a driver error; checking first turns
a caller's mistake into an ``InvalidRequest`` that names the field, not a 503.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from charter.errors import InternalError, InvalidRequest
from charter.storage.base import AuditLeaf, KeyRow, SpendRow

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
