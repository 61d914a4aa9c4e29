"""Schema migrations: numbered SQL files shipped in the package, one folder per backend.

A migration is ``migrations/<backend>/NNNN_name.sql``; its version is ``NNNN``. Versions start at 1
and have no gaps, so the version recorded in ``schema_migrations`` says exactly what was applied.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

from charter.errors import ConfigurationError, InternalError

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    """One numbered SQL file."""

    version: int
    name: str
    sql: str


@cache
def load_migrations(backend: str) -> tuple[Migration, ...]:
    """The migrations of a backend in version order; a gap or a stray file is a packaging bug."""
    folder = resources.files("charter.storage").joinpath("migrations", backend)
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.match(entry.name)
        if match is None:
            raise InternalError(f"migration file {backend}/{entry.name} is not named NNNN_name.sql")
        found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise InternalError(f"{backend} migrations are not numbered 1..N without gaps: {versions}")
    return tuple(found)


def latest_version(backend: str) -> int:
    """The schema version this build of Charter knows."""
    return len(load_migrations(backend))


def check_not_newer(current: int, backend: str) -> None:
    """Refuse a database written by a newer Charter: its schema may mean things we do not know."""
    known = latest_version(backend)
    if current > known:
        raise ConfigurationError(
            f"the {backend} database has schema version {current}, "
            f"but this Charter only knows up to version {known}",
            hint="upgrade Charter, or point it at a database it created",
        )


def split_sqlite_statements(script: str) -> list[str]:
    """Split a script into statements, so a migration can run inside our own transaction.

    ``sqlite3.executescript`` commits any open transaction first, which would release the lock
    that makes concurrent migration safe; ``complete_statement`` knows where triggers end.
    """
    statements: list[str] = []
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            statement = buffer.strip()
            if statement.rstrip(";").strip():
                statements.append(statement)
            buffer = ""
    if buffer.strip() and not _only_comments(buffer):
        raise InternalError(f"SQLite migration ends with an incomplete statement: {buffer[:80]!r}")
    return statements


def _only_comments(text: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in text.splitlines())
