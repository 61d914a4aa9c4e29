"""The audit record: one judgment (a verdict, approval, charter or key change, eval run) as a leaf.

A record is self-contained; the Merkle tree orders records, so no record points at the previous
one. Content appears only as a keyed hash, as redacted text, or as a keyed hash plus a reference to
content kept outside the log, so erasing personal data never changes a leaf.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring as _encode_str
from types import MappingProxyType
from typing import Any, TypeVar

from charter.audit.canonical import KEYED_HASH_PATTERN, canonical_json, keyed_hash
from charter.errors import InvalidRequest
from charter.policy.verdict import Action

RECORD_VERSION = 1
MAX_INDEX = 2**53 - 1  # the largest integer RFC 8785 (I-JSON) carries exactly

Scalar = str | int | float | bool | None
_E = TypeVar("_E", bound=StrEnum)

_RFC3339_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$")
# Detail keys are plain ASCII so canonical key order is the same under every sort (see canonical).
_DETAIL_KEY = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_FIELDS = frozenset(
    {
        "v",
        "index",
        "time",
        "kind",
        "principal",
        "request_id",
        "charter_version",
        "control_ids",
        "decision_ids",
        "action",
        "reason",
        "content",
        "details",
    }
)
_CONTENT_FIELDS = frozenset({"role", "form", "value", "ref"})


class RecordKind(StrEnum):
    """What a record is about."""

    VERDICT = "verdict"  # the verdicts of one request, response or tool call
    APPROVAL = "approval"  # a human approved or denied an action
    CHARTER_VERSION = "charter_version"  # a charter version was enforced, shadowed or retired
    KEY_CHANGE = "key_change"  # a signing or content-hashing key was created, rotated or revoked
    EVAL_RUN = "eval_run"  # an eval suite ran against a charter version
    ERASURE = "erasure"  # content kept outside the log was erased on request
    RETENTION = "retention"  # records past retention were summarised into a signed checkpoint
    DRIFT_ALERT = "drift_alert"  # a monitor control's statistic crossed its threshold


class ContentForm(StrEnum):
    """The only forms in which content may appear in a record."""

    KEYED_HASH = "keyed_hash"  # value is hmac-sha256:<hex>; the content itself is not kept
    REDACTED = "redacted"  # value is text from which the charter's redactions were removed
    EXTERNAL = "external"  # value is the keyed hash; ref says where the erasable content lives


def utc_now() -> str:
    """The current time in the form records use: RFC 3339, UTC, microseconds, ``Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def is_rfc3339_utc(text: str) -> bool:
    """True if ``text`` is an RFC 3339 timestamp in UTC with a ``Z`` suffix and a real date."""
    if not _RFC3339_UTC.match(text):
        return False
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _fail(message: str, hint: str | None = None) -> InvalidRequest:
    return InvalidRequest(message, hint=hint or "see docs/audit.md for the record fields")


def _check_text(value: object, name: str, *, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, str):
        kind = "a string or null" if optional else "a string"
        raise _fail(f"record field {name!r} must be {kind}, got {type(value).__name__}")


def _check_ids(value: object, name: str) -> None:
    if not isinstance(value, tuple) or not all(isinstance(v, str) and v for v in value):
        raise _fail(f"record field {name!r} must be a tuple of non-empty strings, got {value!r}")


@dataclass(frozen=True, slots=True)
class Content:
    """One piece of content (the prompt, the answer, a tool call) in an allowed form."""

    role: str
    form: ContentForm
    value: str
    ref: str | None = None

    def __post_init__(self) -> None:
        _check_text(self.role, "content.role", optional=False)
        if not self.role:
            raise _fail("content.role must not be empty", "e.g. 'input', 'output', 'tool_call'")
        if not isinstance(self.form, ContentForm):
            object.__setattr__(self, "form", _parse_enum(ContentForm, self.form, "content.form"))
        _check_text(self.value, "content.value", optional=False)
        _check_text(self.ref, "content.ref", optional=True)
        hashed = self.form in (ContentForm.KEYED_HASH, ContentForm.EXTERNAL)
        if hashed and not KEYED_HASH_PATTERN.match(self.value):
            raise _fail(
                f"content in form {self.form.value!r} must hold a keyed hash 'hmac-sha256:<hex>'",
                "build it with Content.hashed() or Content.external()",
            )
        if (self.form is ContentForm.EXTERNAL) != (self.ref is not None):
            raise _fail(
                "content.ref is required for the 'external' form and forbidden otherwise",
                "the ref says where erasable content is kept outside the log",
            )

    @classmethod
    def hashed(cls, role: str, key: bytes, text: str) -> Content:
        """Content kept only as its keyed hash."""
        return cls(role, ContentForm.KEYED_HASH, keyed_hash(key, text))

    @classmethod
    def redacted(cls, role: str, text: str) -> Content:
        """Content already redacted by the charter's guards; stored as given."""
        return cls(role, ContentForm.REDACTED, text)

    @classmethod
    def external(cls, role: str, key: bytes, text: str, ref: str) -> Content:
        """Content stored outside the log under ``ref``; the leaf keeps only its keyed hash."""
        return cls(role, ContentForm.EXTERNAL, keyed_hash(key, text), ref)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form inside a leaf (keys in canonical order)."""
        return {"form": self.form.value, "ref": self.ref, "role": self.role, "value": self.value}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Content:
        """Parse the JSON form; raises ``InvalidRequest`` on unknown or missing keys."""
        if not isinstance(data, Mapping):
            raise _fail(f"each content entry must be an object, got {type(data).__name__}")
        if set(data) != _CONTENT_FIELDS:
            raise _fail(
                f"content entry has keys {sorted(data)}, expected {sorted(_CONTENT_FIELDS)}"
            )
        return cls(data["role"], data["form"], data["value"], data["ref"])


def _parse_enum(enum: type[_E], value: object, name: str) -> _E:
    try:
        return enum(value)  # type: ignore[arg-type]  # a non-str value raises ValueError too
    except ValueError:
        allowed = ", ".join(e.value for e in enum)
        raise _fail(f"record field {name!r} is {value!r}; expected one of: {allowed}") from None


def _check_int(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_INDEX:
        raise _fail(f"record field {name!r} must be an integer in [0, 2**53 - 1], got {value!r}")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One audit record. ``index`` is its position in the log, assigned by the sequencer.

    ``details`` carries kind-specific scalars (the reviewer of an approval, the key id of a key
    change, the run id and pass rate of an eval run); keys are lowercase ASCII identifiers.
    """

    index: int
    time: str
    kind: RecordKind
    principal: str | None = None
    request_id: str | None = None
    charter_version: str | None = None
    control_ids: tuple[str, ...] = ()
    decision_ids: tuple[str, ...] = ()
    action: Action | None = None
    reason: str | None = None
    content: tuple[Content, ...] = ()
    details: Mapping[str, Scalar] = field(default_factory=dict)
    _plain: bool = field(default=True, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_int(self.index, "index")
        _check_text(self.time, "time", optional=False)
        if not is_rfc3339_utc(self.time):
            raise _fail(
                f"record time {self.time!r} is not an RFC 3339 UTC date and time",
                "write it like 2025-01-31T12:00:00.000000Z (see records.utc_now())",
            )
        if not isinstance(self.kind, RecordKind):
            object.__setattr__(self, "kind", _parse_enum(RecordKind, self.kind, "kind"))
        for name in ("principal", "request_id", "charter_version", "reason"):
            _check_text(getattr(self, name), name, optional=True)
        _check_ids(self.control_ids, "control_ids")
        _check_ids(self.decision_ids, "decision_ids")
        if self.action is not None and not isinstance(self.action, Action):
            object.__setattr__(self, "action", _parse_enum(Action, self.action, "action"))
        if not isinstance(self.content, tuple) or not all(
            isinstance(c, Content) for c in self.content
        ):
            raise _fail("record field 'content' must be a tuple of Content")
        object.__setattr__(self, "_plain", self._check_details())
        # A read-only copy, so the record stays a value even if the caller mutates its dict.
        object.__setattr__(self, "details", MappingProxyType(dict(sorted(self.details.items()))))

    def _check_details(self) -> bool:
        """Validate ``details``; returns False when a float forces the full RFC 8785 encoder."""
        if not isinstance(self.details, Mapping):
            raise _fail("record field 'details' must be a mapping of scalars")
        plain = True
        for key, value in self.details.items():
            if not isinstance(key, str) or not _DETAIL_KEY.match(key):
                raise _fail(
                    f"detail key {key!r} is not allowed",
                    "use lowercase ASCII: a letter, then letters, digits, '_', '.', '-'",
                )
            if isinstance(value, float):
                plain = False
            elif isinstance(value, int) and not isinstance(value, bool):
                if abs(value) > MAX_INDEX:
                    raise _fail(
                        f"detail {key!r} is an integer beyond 2**53 - 1",
                        "store large numbers as strings",
                    )
            elif value is not None and not isinstance(value, str | bool):
                raise _fail(
                    f"detail {key!r} must be a string, number, boolean or null, "
                    f"got {type(value).__name__}"
                )
        return plain

    def to_dict(self) -> dict[str, Any]:
        """The JSON form of the leaf; ``leaf_bytes`` is its canonical encoding."""
        return {
            "action": None if self.action is None else self.action.value,
            "charter_version": self.charter_version,
            "content": [c.to_dict() for c in self.content],
            "control_ids": list(self.control_ids),
            "decision_ids": list(self.decision_ids),
            "details": dict(self.details),
            "index": self.index,
            "kind": self.kind.value,
            "principal": self.principal,
            "reason": self.reason,
            "request_id": self.request_id,
            "time": self.time,
            "v": RECORD_VERSION,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AuditRecord:
        """Parse the JSON form of a leaf; raises ``InvalidRequest`` saying what is wrong."""
        if not isinstance(data, Mapping):
            raise _fail(f"a record must be a JSON object, got {type(data).__name__}")
        if set(data) != _FIELDS:
            missing = sorted(_FIELDS - set(data))
            extra = sorted(set(data) - _FIELDS)
            raise _fail(f"record has missing keys {missing} and unknown keys {extra}")
        if data["v"] != RECORD_VERSION:
            raise _fail(
                f"record version {data['v']!r} is not supported (this Charter reads "
                f"version {RECORD_VERSION})",
                "verify with the Charter release that wrote the log",
            )
        for name in ("control_ids", "decision_ids", "content"):
            if not isinstance(data[name], list):
                raise _fail(f"record field {name!r} must be a list")
        if not isinstance(data["details"], Mapping):
            raise _fail("record field 'details' must be an object")
        return cls(
            index=data["index"],
            time=data["time"],
            kind=data["kind"],
            principal=data["principal"],
            request_id=data["request_id"],
            charter_version=data["charter_version"],
            control_ids=tuple(data["control_ids"]),
            decision_ids=tuple(data["decision_ids"]),
            action=data["action"],
            reason=data["reason"],
            content=tuple(Content.from_dict(c) for c in data["content"]),
            details=dict(data["details"]),
        )


def _str(value: str | None) -> str:
    return "null" if value is None else _encode_str(value)


def _scalar(value: Scalar) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    return _encode_str(value)  # type: ignore[arg-type]  # floats never reach here (see _plain)


def _ids(values: tuple[str, ...]) -> str:
    return "[" + ",".join(map(_encode_str, values)) + "]"


def _encode_plain(r: AuditRecord) -> bytes:
    """RFC 8785 bytes of ``r.to_dict()`` for a record without floats, written field by field.

    Keys are emitted in canonical (sorted) order by construction and strings are escaped by the
    standard library's C encoder, which escapes exactly what RFC 8785 requires (``"``, ``\\`` and
    control characters, as the short forms or lowercase ``\\u00xx``). This avoids building the
    dict and sorting it, which is most of the cost of encoding a record; a hypothesis test keeps
    it byte-identical to ``rfc8785.dumps(record.to_dict())``.
    """
    content = ",".join(
        f'{{"form":"{c.form.value}","ref":{_str(c.ref)},"role":{_encode_str(c.role)},'
        f'"value":{_encode_str(c.value)}}}'
        for c in r.content
    )
    details = ",".join(f"{_encode_str(k)}:{_scalar(v)}" for k, v in r.details.items())
    action = "null" if r.action is None else f'"{r.action.value}"'
    text = (
        f'{{"action":{action},"charter_version":{_str(r.charter_version)},'
        f'"content":[{content}],"control_ids":{_ids(r.control_ids)},'
        f'"decision_ids":{_ids(r.decision_ids)},"details":{{{details}}},"index":{r.index},'
        f'"kind":"{r.kind.value}","principal":{_str(r.principal)},"reason":{_str(r.reason)},'
        f'"request_id":{_str(r.request_id)},"time":{_encode_str(r.time)},"v":{RECORD_VERSION}}}'
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(
            f"record {r.index} holds text that is not valid Unicode (a lone surrogate)",
            "decode the original bytes with errors='replace' first",
        ) from exc


def leaf_bytes(record: AuditRecord) -> bytes:
    """The exact bytes hashed into the tree: RFC 8785 canonical JSON of ``record.to_dict()``."""
    # Records without floats take the direct encoder (same bytes, about 4x faster); it is what
    # keeps verifying a million records within budget. Floats need RFC 8785's number format.
    return _encode_plain(record) if record._plain else canonical_json(record.to_dict())


def parse_leaf(data: bytes) -> AuditRecord:
    """Parse leaf bytes back into a record, insisting they are in canonical form.

    Raises ``InvalidRequest`` if the bytes are not JSON, not a valid record, or not the canonical
    encoding of the record they hold (two encodings of one record would hash differently).
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(f"leaf is not valid UTF-8 JSON: {exc}") from exc
    record = AuditRecord.from_dict(obj)
    if leaf_bytes(record) != bytes(data):
        raise _fail("leaf bytes are not the canonical (RFC 8785) encoding of the record")
    return record


def leaves_of(records: Iterable[AuditRecord]) -> list[bytes]:
    """Leaf bytes of many records."""
    return [leaf_bytes(r) for r in records]
