"""The charter version: a stable hash of what the charter says, not of how the file is written.

The validated model is dumped without defaults (so writing ``mode: enforce`` explicitly or leaving
it
out gives the same version, and a later Charter release that adds a defaulted field does not change
existing versions), canonicalised as RFC 8785 JSON (so key order, comments, quoting and whitespace
do
not matter) and hashed with SHA-256.
"""

from __future__ import annotations

import hashlib
from typing import Any

import rfc8785

from charter.document.model import Charter

PREFIX = "sha256:"


def canonical_charter(charter: Charter) -> bytes:
    """The RFC 8785 canonical JSON of the charter's content."""
    data: Any = charter.model_dump(mode="json", exclude_defaults=True, by_alias=True)
    return rfc8785.dumps(data)


def charter_version(charter: Charter) -> str:
    """``sha256:<64 hex>``: carried by every verdict, audit record and eval run."""
    return PREFIX + hashlib.sha256(canonical_charter(charter)).hexdigest()


def short_version(version: str) -> str:
    """The first 12 hex digits, for people (like a short git hash)."""
    return version.removeprefix(PREFIX)[:12]
