"""Open a store from a URL, and keep passwords in such URLs out of every message.

``sqlite:///path/to/file.db`` (SQLAlchemy's spelling: three slashes then the path, so an absolute
path has four), a bare file path, or ``postgresql://user:password@host:5432/dbname``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from charter.errors import ConfigurationError
from charter.storage.base import Store

_POSTGRES_SCHEMES = ("postgresql", "postgres")
# "postgresql:host/db" or "sqlite:x.db" (no "//") is a typo, not a file name; a Windows drive
# letter ("C:\\data\\charter.db") is a single character, so it is still a path.
_LOOKS_LIKE_A_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
_EXAMPLES = "sqlite:///charter.db, a file path, or postgresql://user@host:5432/dbname"


def open_store(url: str) -> Store:
    """Open the store a URL names. Call ``migrate()`` on it before first use.

    Raises ``ConfigurationError`` for a URL Charter cannot use, ``MissingDependency`` when the
    PostgreSQL driver is not installed, and ``StorageUnavailable`` when the database cannot be
    reached. No message ever contains the URL's password.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigurationError("the storage URL is empty", hint=f"use {_EXAMPLES}")
    url = url.strip()
    if "://" not in url and _LOOKS_LIKE_A_SCHEME.match(url):
        raise ConfigurationError(
            # Shown by its scheme only: without "//" nothing says where a password would be.
            f"storage URL starting {url.split(':', 1)[0]!r}: is not understood",
            hint=f"use {_EXAMPLES}",
        )
    if "://" not in url:
        from charter.storage.sqlite import SQLiteStore

        return SQLiteStore(url)
    scheme = url.split("://", 1)[0].lower()
    if scheme == "sqlite":
        from charter.storage.sqlite import SQLiteStore

        return SQLiteStore(_sqlite_path(url))
    if scheme in _POSTGRES_SCHEMES:
        from charter.storage.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigurationError(
        f"unsupported storage URL scheme {scheme!r} in {redact_url(url)}",
        hint=f"use {_EXAMPLES}",
    )


def _sqlite_path(url: str) -> str:
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ConfigurationError(
            f"SQLite URL {url!r} names no file",
            hint="write sqlite:///relative/path.db or sqlite:////absolute/path.db",
        )
    path = unquote(rest[1:].split("?", 1)[0])
    if path in ("", ":memory:"):
        raise ConfigurationError(
            f"SQLite URL {url!r} names no file",
            hint="an in-memory database cannot be shared across connections; name a file",
        )
    return path


def url_secrets(url: str) -> list[str]:
    """Every spelling of the password a URL carries (userinfo or ``?password=``)."""
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
        raw_userinfo = parts.netloc.rpartition("@")[0]
        if ":" in raw_userinfo:
            secrets.append(raw_userinfo.split(":", 1)[1])
        secrets.extend(value for key, value in parse_qsl(parts.query) if key == "password")
    except ValueError:
        pass
    spelled = {s for s in secrets if s} | {unquote(s) for s in secrets if s}
    # Longest first, so a password that contains another is replaced whole.
    return sorted(spelled, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def redact_url(url: str) -> str:
    """The URL as it can be shown: the password (wherever it is) replaced by ``***``.

    A URL too malformed to parse is not shown at all, since we cannot tell where its password is.
    """
    try:
        parts = urlsplit(url)
        userinfo, at, host = parts.netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}{at}{host}"
        shown = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        return "<unparseable URL>"
    return scrub(shown, url_secrets(url))
