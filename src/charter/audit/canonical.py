"""Canonical JSON (RFC 8785) and keyed content hashes: the byte-exact forms the audit log hashes.

Two parties that serialise the same record must get the same bytes, or verification breaks; RFC 8785
fixes key order, number formatting and string escaping. Content is never stored raw in a leaf: a
keyed hash lets the same content be matched later without anyone reading it back.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

import rfc8785

from charter.errors import InvalidRequest

KEYED_HASH_PREFIX = "hmac-sha256:"
KEYED_HASH_PATTERN = re.compile(r"^hmac-sha256:[0-9a-f]{64}$")
_MIN_KEY_BYTES = 16


def canonical_json(obj: Any) -> bytes:
    """RFC 8785 canonical JSON of ``obj`` (dicts, lists, tuples, str, int, float, bool, None).

    Raises ``InvalidRequest`` for values JSON cannot carry exactly: integers beyond +-(2**53 - 1),
    NaN and infinities, non-string keys, lone surrogates and other types.
    """
    try:
        return rfc8785.dumps(obj)
    except rfc8785.CanonicalizationError as exc:
        raise InvalidRequest(
            f"value cannot be written as canonical JSON (RFC 8785): {exc}",
            hint="use strings for large integers and identifiers; no NaN or infinity; "
            "only str keys",
        ) from exc


def keyed_hash(key: bytes, content: str) -> str:
    """HMAC-SHA256 of ``content`` (UTF-8) under ``key``, as ``"hmac-sha256:" + hex``.

    The key is a secret of the deployment: without it nobody can test guesses against the hash
    (a plain SHA-256 of a short message or an email address is easy to brute-force), with it the
    operator can check whether some content appears in the log. Rotate it and old hashes stop
    matching; that is the point when content must become unmatchable.
    """
    if not isinstance(key, bytes) or len(key) < _MIN_KEY_BYTES:
        raise InvalidRequest(
            f"the content hashing key must be at least {_MIN_KEY_BYTES} bytes",
            hint="generate one with secrets.token_bytes(32) and keep it out of the audit log",
        )
    if not isinstance(content, str):
        raise InvalidRequest(
            f"content to hash must be str, got {type(content).__name__}",
            hint="decode bytes to text first",
        )
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(
            "content is not valid Unicode (it contains a lone surrogate)",
            hint="decode the original bytes with errors='replace' first",
        ) from exc
    return KEYED_HASH_PREFIX + hmac.new(key, data, hashlib.sha256).hexdigest()


def matches_keyed_hash(key: bytes, content: str, digest: str) -> bool:
    """True if ``content`` hashes to ``digest`` under ``key`` (compared in constant time)."""
    return hmac.compare_digest(keyed_hash(key, content), digest)
