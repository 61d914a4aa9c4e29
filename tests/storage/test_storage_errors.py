"""URLs, failures and migrations: every error is a Charter error that says what to check."""

from __future__ import annotations

import sqlite3
import sys
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import psycopg
import pytest

from charter.errors import (
    CharterError,
    ConfigurationError,
    MissingDependency,
    StorageUnavailable,
)
from charter.storage import Store, open_store, redact_url
from charter.storage.schema import latest_version, load_migrations, split_sqlite_statements
from charter.storage.sqlite import SQLiteStore

PASSWORD = "hunter2-Secret"
NOW = datetime(2025, 3, 1, tzinfo=UTC)


def with_password_and_app(url: str, password: str, app: str) -> str:
    """``url`` with a password in its userinfo and an application_name to find its sessions by."""
    parts = urlsplit(url)
    netloc = parts.netloc.replace("@", f":{password}@", 1)
    query = f"{parts.query}&{urlencode({'application_name': app})}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def everything_shown(error: BaseException) -> str:
    """Every text a log could show for an error: message, repr, wire shape, full traceback."""
    parts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    if isinstance(error, CharterError):
        parts.append(str(error.to_dict()))
    return "\n".join(parts)


# -- URLs ----------------------------------------------------------------------------------------


def test_bare_path_and_sqlite_urls_open_sqlite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for url, file in [
        (str(tmp_path / "bare.db"), tmp_path / "bare.db"),
        (f"sqlite:///{tmp_path}/absolute.db", tmp_path / "absolute.db"),
        ("sqlite:///relative.db", tmp_path / "relative.db"),
    ]:
        with open_store(url) as store:
            assert store.backend == "sqlite"
            store.migrate()
        assert file.exists(), url


@pytest.mark.parametrize("url", ["", "   ", ":memory:", "sqlite://", "sqlite:///:memory:"])
def test_urls_naming_no_file_are_refused(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert caught.value.hint


def test_unknown_scheme_is_refused_without_showing_the_password() -> None:
    with pytest.raises(
        ConfigurationError, match="unsupported storage URL scheme 'mysql'"
    ) as caught:
        open_store(f"mysql://app:{PASSWORD}@db.internal/charter")
    assert PASSWORD not in everything_shown(caught.value)
    assert "postgresql://" in str(caught.value)


@pytest.mark.parametrize(
    "url", [f"postgresql:app:{PASSWORD}@db.internal/charter", "sqlite:charter.db"]
)
def test_scheme_without_slashes_is_refused_without_showing_the_password(url: str) -> None:
    with pytest.raises(ConfigurationError, match="is not understood") as caught:
        open_store(url)
    assert PASSWORD not in everything_shown(caught.value)


def test_postgres_scheme_alias_opens_postgresql(postgres_url: str) -> None:
    with open_store(postgres_url.replace("postgresql://", "postgres://", 1)) as store:
        assert store.backend == "postgresql"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw%40x@h:5432/db", "postgresql://u:***@h:5432/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        ("postgresql://h/db", "postgresql://h/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# -- PostgreSQL unreachable, or lost -------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://postgres:{PASSWORD}@127.0.0.1:1/test",
        f"postgresql://postgres@127.0.0.1:1/test?password={PASSWORD}",
    ],
)
def test_closed_port_is_unavailable_and_never_shows_the_password(url: str) -> None:
    with pytest.raises(StorageUnavailable) as caught:
        open_store(url)
    error = caught.value
    assert "127.0.0.1:1" in str(error)
    assert "check that PostgreSQL is running" in str(error)
    assert error.status == 503
    assert PASSWORD not in everything_shown(error)


def test_bad_port_in_url_never_shows_the_password() -> None:
    with pytest.raises(CharterError) as caught:
        open_store(f"postgresql://postgres:{PASSWORD}@127.0.0.1:notaport/test")
    assert PASSWORD not in everything_shown(caught.value)


def test_lost_connection_is_replaced_before_use(
    postgres_url: str, postgres_admin: psycopg.Connection[tuple[object, ...]]
) -> None:
    """Pins: a server-side disconnect (restart, failover) failed the next call that drew the dead
    connection; the pool now checks connections at checkout and replaces dropped ones."""
    app = f"charter_test_{uuid.uuid4().hex[:12]}"
    url = with_password_and_app(postgres_url, PASSWORD, app)
    with open_store(url) as store:
        store.migrate()
        store.add_counter("k", NOW, 1)
        killed = postgres_admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = %s",
            (app,),
        ).fetchone()
        assert killed is not None and killed[0] >= 1
        assert store.add_counter("k", NOW, 1) == 2
        assert store.add_counter("k", NOW, 1) == 3


@pytest.mark.parametrize("module", ["psycopg", "psycopg_pool"])
def test_missing_driver_names_the_pip_line(module: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(MissingDependency) as caught:
        open_store("postgresql://postgres@127.0.0.1:5432/test")
    assert "pip install 'charter[scale]'" in str(caught.value)
    assert module.replace("_", "-") in str(caught.value)


# -- SQLite failures -----------------------------------------------------------------------------


def test_sqlite_missing_directory_says_to_check_it(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match="directory exists"):
        open_store(str(tmp_path / "no" / "such" / "dir" / "charter.db"))


def test_sqlite_write_lock_held_too_long_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "charter.db"
    with SQLiteStore(path, busy_timeout=0.1) as store:
        store.migrate()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer, stuck mid-transaction
        try:
            with pytest.raises(StorageUnavailable, match="held the write lock") as caught:
                store.add_counter("k", NOW, 1)
            assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
            assert store.get_counter("k", NOW) == 0  # reads are not blocked by the writer
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert store.add_counter("k", NOW, 1) == 1


def test_sqlite_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "charter.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StorageUnavailable, match="not a healthy SQLite database"):
        open_store(str(path))


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "charter.db")) as store:
        store.migrate()
    conn = sqlite3.connect(tmp_path / "charter.db")
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


# -- migrations ----------------------------------------------------------------------------------


def query_raw(store_url: str, statement: str) -> Any:
    """Run one statement on the database behind a store URL, outside the Store; first value."""
    if store_url.startswith("sqlite"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        try:
            with conn:
                row = conn.execute(statement).fetchone()
        finally:
            conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            row = pg.execute(statement.encode()).fetchone()
    return None if row is None else row[0]


def test_migrate_twice_applies_each_migration_once(store: Store, store_url: str) -> None:
    assert store.migrate() == store.migrate() == latest_version(store.backend)
    recorded = query_raw(store_url, "SELECT count(*) FROM schema_migrations")
    assert recorded == len(load_migrations(store.backend)) == store.schema_version()


def test_database_from_a_newer_charter_is_refused(store: Store, store_url: str) -> None:
    column = "applied_us" if store.backend == "sqlite" else "applied_at"
    value = "0" if store.backend == "sqlite" else "now()"
    query_raw(
        store_url,
        f"INSERT INTO schema_migrations (version, name, {column})"
        f" VALUES (999, 'future', {value}) RETURNING version",
    )
    with pytest.raises(ConfigurationError, match="schema version 999") as caught:
        store.migrate()
    assert "upgrade Charter" in str(caught.value)
    assert store.schema_version() == 999


def test_both_backends_have_the_same_migrations() -> None:
    sqlite_side = [(m.version, m.name) for m in load_migrations("sqlite")]
    postgres_side = [(m.version, m.name) for m in load_migrations("postgresql")]
    assert sqlite_side == postgres_side
    assert sqlite_side[0] == (1, "initial")


def test_sqlite_statement_splitter_keeps_triggers_whole() -> None:
    script = """
    -- a comment
    CREATE TABLE a (x INTEGER);
    CREATE TRIGGER t AFTER INSERT ON a BEGIN
        UPDATE a SET x = x + 1; DELETE FROM a WHERE x > 9;
    END;
    """
    statements = split_sqlite_statements(script)
    assert len(statements) == 2
    assert statements[1].startswith("CREATE TRIGGER") and statements[1].endswith("END;")


# -- docs ----------------------------------------------------------------------------------------


def test_every_store_method_is_documented() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "storage.md").read_text("utf-8")
    public = [name for name in dir(Store) if not name.startswith("_")]
    missing = [name for name in public if f"`{name}" not in docs]
    assert not missing, f"docs/storage.md does not describe: {missing}"
