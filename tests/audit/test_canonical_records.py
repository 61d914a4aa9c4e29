"""Canonical JSON, keyed content hashes and the audit record's leaf encoding."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from charter.audit.canonical import canonical_json, keyed_hash, matches_keyed_hash
from charter.audit.records import (
    AuditRecord,
    Content,
    ContentForm,
    RecordKind,
    leaf_bytes,
    parse_leaf,
    utc_now,
)
from charter.errors import InvalidRequest
from charter.policy.verdict import Action

KEY = b"k" * 32
TIME = "2025-03-01T09:30:00.000000Z"


def test_canonical_json_sorts_keys_and_drops_whitespace() -> None:
    # The example of RFC 8785 section 3.2.3 (key order by UTF-16 code units) plus number forms.
    assert canonical_json({"b": [1, 2.5, None], "a": "é", "A": True}) == (
        '{"A":true,"a":"é","b":[1,2.5,null]}'.encode()
    )
    assert canonical_json({"n": 1e21, "m": 1.0}) == b'{"m":1,"n":1e+21}'


@pytest.mark.parametrize("bad", [float("nan"), 2**60, {1: "x"}, "\ud800", object()])
def test_canonical_json_refuses_values_json_cannot_carry(bad: object) -> None:
    with pytest.raises(InvalidRequest, match="canonical JSON"):
        canonical_json({"x": bad})


def test_keyed_hash_matches_same_content_only_under_same_key() -> None:
    digest = keyed_hash(KEY, "alice@example.com")
    assert digest.startswith("hmac-sha256:") and len(digest) == 12 + 64
    assert digest == keyed_hash(KEY, "alice@example.com")
    assert digest != keyed_hash(KEY, "bob@example.com")
    assert digest != keyed_hash(b"x" * 32, "alice@example.com")
    assert matches_keyed_hash(KEY, "alice@example.com", digest)
    assert not matches_keyed_hash(KEY, "alice@example.org", digest)


def test_keyed_hash_needs_a_real_key() -> None:
    with pytest.raises(InvalidRequest, match="at least 16 bytes"):
        keyed_hash(b"short", "x")


def _record(**overrides: object) -> AuditRecord:
    fields: dict[str, object] = {
        "index": 7,
        "time": TIME,
        "kind": RecordKind.VERDICT,
        "principal": "team:support",
        "request_id": "req-1",
        "charter_version": "sha256:" + "ab" * 32,
        "control_ids": ("pii-output",),
        "decision_ids": ("D-3",),
        "action": Action.REDACT,
        "reason": "email address in the answer",
        "content": (
            Content.hashed("input", KEY, "my email is alice@example.com"),
            Content.redacted("output", "write to [EMAIL]"),
            Content.external("tool_result", KEY, "order 4821 for Alice", "blob:7f3a"),
        ),
        "details": {"stage": "output", "enforced": True, "tokens": 42},
    }
    fields.update(overrides)
    return AuditRecord(**fields)  # type: ignore[arg-type]


def test_leaf_bytes_are_rfc8785_and_round_trip() -> None:
    record = _record()
    data = leaf_bytes(record)
    assert data == rfc8785.dumps(record.to_dict())
    assert parse_leaf(data) == record
    # The leaf keeps only the keyed hash of external content, never the content itself.
    assert b"Alice" not in data and b"alice@example.com" not in data


def test_records_with_floats_use_the_full_encoder() -> None:
    record = _record(details={"pass_rate": 0.1 + 0.2, "runs": 3})
    assert leaf_bytes(record) == rfc8785.dumps(record.to_dict())
    assert parse_leaf(leaf_bytes(record)) == record


def test_a_non_canonical_leaf_is_refused() -> None:
    data = leaf_bytes(_record())
    spaced = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(InvalidRequest, match="not the canonical"):
        parse_leaf(spaced)


def test_utc_now_is_accepted_by_records() -> None:
    assert _record(time=utc_now()).time.endswith("Z")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"time": "2025-03-01 09:30:00"}, "RFC 3339"),
        ({"time": "2025-03-01T09:30:00+01:00"}, "RFC 3339"),
        ({"time": "2025-02-30T09:30:00Z"}, "RFC 3339"),
        ({"index": -1}, "index"),
        ({"index": 2**53}, "index"),
        ({"kind": "gossip"}, "expected one of"),
        ({"action": "shrug"}, "expected one of"),
        ({"control_ids": ["a"]}, "tuple"),
        ({"details": {"Bad Key": 1}}, "detail key"),
        ({"details": {"big": 2**60}}, "2\\*\\*53"),
        ({"details": {"nested": {"a": 1}}}, "string, number"),
    ],
)
def test_invalid_records_say_what_is_wrong(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        _record(**overrides)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("input", ContentForm.KEYED_HASH, "plain text"), "keyed hash"),
        (("input", ContentForm.EXTERNAL, keyed_hash(KEY, "x")), "ref is required"),
        (("input", ContentForm.REDACTED, "x", "blob:1"), "forbidden"),
        (("input", "raw", "x"), "expected one of"),
    ],
)
def test_content_only_in_allowed_forms(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        Content(*args)  # type: ignore[arg-type]


def test_from_dict_rejects_unknown_and_missing_fields() -> None:
    data = _record().to_dict()
    with pytest.raises(InvalidRequest, match="unknown keys \\['raw_prompt'\\]"):
        AuditRecord.from_dict({**data, "raw_prompt": "secret"})
    del data["reason"]
    with pytest.raises(InvalidRequest, match="missing keys \\['reason'\\]"):
        AuditRecord.from_dict(data)


def test_text_that_is_not_valid_unicode_is_refused() -> None:
    record = _record(reason="half a pair: \ud800")
    with pytest.raises(InvalidRequest, match="lone surrogate"):
        leaf_bytes(record)


def test_records_are_immutable_values() -> None:
    details = {"a": 1}
    record = _record(details=details)
    details["a"] = 2  # mutating the caller's dict does not change the record
    assert record.details["a"] == 1
    with pytest.raises(AttributeError):
        record.reason = "changed"  # type: ignore[misc]


# Any text, including control characters, quotes, non-BMP characters and U+E000..U+FFFF, which
# sort differently by UTF-16 and by code point (only matters for keys, which are ASCII here).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
ids = st.lists(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=8), max_size=3
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    texts,
)
detail_keys = st.from_regex(r"[a-z][a-z0-9_.-]{0,10}", fullmatch=True)


@st.composite
def records(draw: st.DrawFn) -> AuditRecord:
    content = draw(
        st.lists(
            st.one_of(
                st.builds(Content.redacted, st.sampled_from(["input", "output"]), texts),
                st.builds(Content.hashed, st.just("input"), st.just(KEY), texts),
                st.builds(Content.external, st.just("doc"), st.just(KEY), texts, texts),
            ),
            max_size=3,
        )
    )
    return AuditRecord(
        index=draw(st.integers(0, 2**53 - 1)),
        time=TIME,
        kind=draw(st.sampled_from(RecordKind)),
        principal=draw(st.none() | texts),
        request_id=draw(st.none() | texts),
        charter_version=draw(st.none() | texts),
        control_ids=tuple(draw(ids)),
        decision_ids=tuple(draw(ids)),
        action=draw(st.none() | st.sampled_from(Action)),
        reason=draw(st.none() | texts),
        content=tuple(content),
        details=draw(st.dictionaries(detail_keys, scalars, max_size=4)),
    )


@settings(max_examples=300)
@given(records())
def test_fast_leaf_encoding_equals_rfc8785_for_any_record(record: AuditRecord) -> None:
    # The fast encoder is only allowed because it is byte-identical to the reference one.
    data = leaf_bytes(record)
    assert data == rfc8785.dumps(record.to_dict())
    assert parse_leaf(data) == record
