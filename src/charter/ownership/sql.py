"""Ownership asked of a database: one validated SELECT, bound parameters, read-only connections.

The answer is "a row exists": a row means owned, no row means not owned. A row holding a single
boolean, 0 or NULL is refused as a failed lookup, because such a query (``SELECT EXISTS(...)``,
``SELECT count(*) ...``) returns a row whatever the data says, and treating it as owned would
allow every call. The values are only ever bound as parameters, never spliced into the SQL.

Connections are read-only twice over: SQLite is opened with ``mode=ro`` and ``query_only``;
PostgreSQL sessions start with ``default_transaction_read_only=on`` and every transaction is
``BEGIN READ ONLY``. The query is bounded by ``timeout_s`` (SQLite's progress handler,
PostgreSQL's ``statement_timeout`` plus a client-side deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import queue
import sqlite3
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import anyio.to_thread

from charter.document.model import OwnershipSql
from charter.document.sqlquery import to_pyformat
from charter.errors import ConfigurationError, MissingDependency
from charter.ownership.lookup import Lookup, LookupFailed
from charter.storage.connect import scrub, url_secrets

if TYPE_CHECKING:
    import psycopg

_EXAMPLES = "sqlite:///path/to/orders.db or postgresql://user@host:5432/dbname"


def open_sql_lookup(control_id: str, settings: OwnershipSql, env: Mapping[str, str]) -> Lookup:
    """The lookup for ``settings``, with its database URL read from the environment now."""
    dsn = env.get(settings.dsn_env, "").strip()
    if not dsn:
        raise ConfigurationError(
            f"control `{control_id}` looks up ownership in the database named by "
            f"${settings.dsn_env}, which is not set",
            hint=f"export {settings.dsn_env}={_EXAMPLES}",
        )
    scheme = dsn.split("://", 1)[0].lower() if "://" in dsn else ""
    if scheme == "sqlite":
        return SqliteLookup(settings, _sqlite_path(control_id, settings.dsn_env, dsn))
    if scheme in ("postgresql", "postgres"):
        return PostgresLookup(settings, dsn)
    raise ConfigurationError(
        f"control `{control_id}`: ${settings.dsn_env} is not a sqlite:/// or postgresql:// URL",
        hint=f"use {_EXAMPLES}",
    )


def row_answer(row: Sequence[Any] | None) -> tuple[bool, str]:
    """Owned when there is a row; a lone boolean, 0 or NULL is a misconfigured query."""
    if row is None:
        return False, "no row"
    if len(row) == 1 and (isinstance(row[0], bool) or row[0] is None or row[0] == 0):
        raise LookupFailed(
            f"the query returned one row holding only {row[0]!r}, so it answers with a row "
            "whether or not the resource is owned (like SELECT EXISTS(...) or count(*)); "
            "make it return a row only when owned, e.g. SELECT 1 FROM orders WHERE "
            "customer_id = :subject AND id = :resource"
        )
    return True, "a row"


def _sqlite_path(control_id: str, env_name: str, dsn: str) -> str:
    rest = dsn.split("://", 1)[1]
    path = unquote(rest[1:].split("?", 1)[0]) if rest.startswith("/") else ""
    if path in ("", ":memory:"):
        raise ConfigurationError(
            f"control `{control_id}`: ${env_name} names no SQLite file",
            hint="write sqlite:///relative/path.db or sqlite:////absolute/path.db",
        )
    return path


class SqliteLookup:
    """A SQLite file opened read-only; queries run on worker threads, one connection each."""

    def __init__(self, settings: OwnershipSql, path: str) -> None:
        self.source = f"sql ${settings.dsn_env}"
        self.timeout_s = settings.timeout_s
        self.cache_ttl_s = settings.cache_ttl_s
        self.max_concurrency = settings.max_concurrency
        self._query = settings.query
        self._uri = f"file:{quote(path)}?mode=ro"
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()

    async def owns(self, subject: str, resource: str) -> tuple[bool, str]:
        # Not abandoned on cancel: the progress handler ends the query by its deadline anyway.
        row = await anyio.to_thread.run_sync(self._select, subject, resource)
        return row_answer(row)

    def _select(self, subject: str, resource: str) -> Sequence[Any] | None:
        deadline = time.monotonic() + self.timeout_s
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = None
        try:
            if conn is None:
                conn = self._connect()
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 1000)
            row: Sequence[Any] | None = conn.execute(
                self._query, {"subject": subject, "resource": resource}
            ).fetchone()
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, sqlite3.OperationalError) and "interrupted" in str(exc):
                raise LookupFailed(f"the query took longer than {self.timeout_s:g}s") from None
            raise LookupFailed(f"the database could not answer ({exc})") from None
        self._idle.put(conn)
        return row

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._uri, uri=True, timeout=self.timeout_s, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
        return conn

    async def aclose(self) -> None:
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return


class PostgresLookup:
    """PostgreSQL through psycopg's async driver: a few idle connections, read-only sessions."""

    def __init__(self, settings: OwnershipSql, dsn: str) -> None:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict, make_conninfo
        except ImportError:
            raise MissingDependency("psycopg", "scale", "PostgreSQL ownership lookups") from None
        self.source = f"sql ${settings.dsn_env}"
        self.timeout_s = settings.timeout_s
        self.cache_ttl_s = settings.cache_ttl_s
        self.max_concurrency = settings.max_concurrency
        self._secrets = url_secrets(dsn)
        self._query = to_pyformat(settings.query)
        self._driver_error: type[Exception] = psycopg.Error
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            said = scrub(str(exc), self._secrets)
            raise ConfigurationError(
                f"${settings.dsn_env} is not a valid PostgreSQL URL: {said}",
                hint="use postgresql://user@host:5432/dbname",
            ) from None
        # Added to whatever options the URL carries (e.g. a search_path), not instead of them.
        ms = max(1, math.ceil(self.timeout_s * 1000))
        ours = f"-c default_transaction_read_only=on -c statement_timeout={ms}"
        params["options"] = f"{params.get('options') or ''} {ours}".strip()
        params["connect_timeout"] = max(2, math.ceil(self.timeout_s))
        self._conninfo = make_conninfo("", **params)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def owns(self, subject: str, resource: str) -> tuple[bool, str]:
        conn = self._take()
        try:
            # A little past the server's own statement_timeout, so its clearer error wins.
            async with asyncio.timeout(self.timeout_s + 0.5):
                if conn is None:
                    conn = await self._connect()
                async with conn.cursor() as cursor:
                    await cursor.execute(self._query, {"subject": subject, "resource": resource})
                    row = await cursor.fetchone()
                await conn.rollback()
        except TimeoutError:
            await self._discard(conn)
            raise LookupFailed(f"no answer within {self.timeout_s:g}s") from None
        except self._driver_error as exc:
            await self._discard(conn)
            message = scrub(str(exc).strip().splitlines()[0] if str(exc) else "", self._secrets)
            raise LookupFailed(f"the database could not answer ({message})") from None
        except BaseException:
            await self._discard(conn)
            raise
        self._idle.append(conn)
        return row_answer(row)

    def _take(self) -> psycopg.AsyncConnection[Any] | None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # connections belong to the loop that made them
            self._idle, self._loop = [], loop
        return self._idle.pop() if self._idle else None

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(self._conninfo)
        await conn.set_read_only(True)  # every transaction is BEGIN READ ONLY
        return conn

    async def _discard(self, conn: psycopg.AsyncConnection[Any] | None) -> None:
        if conn is not None:
            # Closing a broken connection may fail too; it is gone either way.
            with contextlib.suppress(Exception):
                await conn.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        if self._loop is not asyncio.get_running_loop():
            return
        for conn in idle:
            await self._discard(conn)
