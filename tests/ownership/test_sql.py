"""SQL ownership lookups on a real SQLite file and the test PostgreSQL server: a row means
owned, values are bound (never spliced), connections are read-only."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import MappingProxyType

import pytest

from charter.document.model import OwnershipSql
from charter.errors import ConfigurationError
from charter.ownership import LookupFailed, OwnershipResolver
from charter.ownership.sql import open_sql_lookup
from charter.policy.context import RequestContext, ToolCall
from charter.policy.verdict import Stage
from tests.conftest import POSTGRES_URL
from tests.ownership.conftest import charter_with, make_service

pytestmark = pytest.mark.anyio

QUERY = "SELECT 1 FROM {table} WHERE customer_id = :subject AND id = :resource"
INJECTIONS = [
    "4821' OR '1'='1",
    "4821 OR 1=1",
    "x'; DROP TABLE {table}; --",
    "' UNION SELECT 1 --",
    "4821\x00",
]


def call(order: str, subject: str = "cust-1") -> RequestContext:
    args = MappingProxyType({"order_id": order, "amount_usd": 5})
    return RequestContext(
        Stage.TOOL_CALL, tool_call=ToolCall("issue_refund", args), subject=subject
    )


def sql_setting(table: str, extra: str = "", query: str = QUERY) -> str:
    return (
        f"{{argument: order_id, sql: {{dsn_env: ORDERS_DB, "
        f"query: '{query.format(table=table)}'{extra}}}}}"
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, orders_db: Path) -> tuple[str, str]:
    """(the DSN, the orders table) on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{orders_db}", "orders"
    table = request.getfixturevalue("pg_orders")
    return POSTGRES_URL, table


async def resolve(setting: str, dsn: str, *orders: str) -> list[bool | None]:
    resolver = OwnershipResolver(charter_with(setting), env={"ORDERS_DB": dsn})
    try:
        return [(await resolver.resolve(call(o)))["refund-policy"].owned for o in orders]
    finally:
        await resolver.aclose()


async def test_a_row_means_owned(backend: tuple[str, str]) -> None:
    dsn, table = backend
    assert await resolve(sql_setting(table), dsn, "4821", "4822", "5001", "nope") == [
        True,
        True,
        False,
        False,
    ]


async def test_injection_attempts_are_values_not_sql(backend: tuple[str, str]) -> None:
    dsn, table = backend
    hostile = [i.format(table=table) for i in INJECTIONS]
    if dsn.startswith("postgresql"):
        hostile.remove("4821\x00")  # PostgreSQL refuses NUL in text: a failed lookup, below
    assert await resolve(sql_setting(table), dsn, *hostile) == [False] * len(hostile)
    assert await resolve(sql_setting(table), dsn, "4821") == [True]  # the table is still there


async def test_postgres_refuses_nul_as_a_failed_lookup(pg_orders: str) -> None:
    assert await resolve(sql_setting(pg_orders), POSTGRES_URL, "4821\x00") == [None]


async def test_a_query_that_always_returns_a_row_is_a_failure(backend: tuple[str, str]) -> None:
    dsn, table = backend
    # Passes the load-time check (the aggregate is nested), so the answer itself must catch it.
    query = "SELECT (SELECT count(*) FROM {table} WHERE customer_id = :subject AND id = :resource)"
    resolver = OwnershipResolver(
        charter_with(sql_setting(table, query=query)), env={"ORDERS_DB": dsn}
    )
    try:
        not_owned = (await resolver.resolve(call("5001")))["refund-policy"]
    finally:
        await resolver.aclose()
    assert not_owned.owned is None
    assert "answers with a row whether or not the resource is owned" in not_owned.detail
    exists = (
        "SELECT (1 = 1) AND EXISTS (SELECT 1 FROM {table} "
        "WHERE customer_id = :subject AND id = :resource)"
    )
    answers = await resolve(sql_setting(table, query=exists), dsn, "5001", "4821")
    # PostgreSQL's boolean fails either way; SQLite's true is the integer 1, as SELECT 1 is.
    assert answers == ([None, True] if dsn.startswith("sqlite") else [None, None])


async def test_connections_are_read_only(backend: tuple[str, str]) -> None:
    """The format refuses writes at load; a query that slipped past it still cannot write."""
    dsn, table = backend
    writes = OwnershipSql.model_construct(
        dsn_env="ORDERS_DB",
        query=f"UPDATE {table} SET customer_id = :subject WHERE id = :resource RETURNING 1",
        timeout_s=2.0,
        cache_ttl_s=0.0,
        max_concurrency=1,
    )
    lookup = open_sql_lookup("refund-policy", writes, {"ORDERS_DB": dsn})
    try:
        with pytest.raises(LookupFailed, match=r"read-only|readonly"):
            await lookup.owns("cust-2", "4821")
    finally:
        await lookup.aclose()
    assert await resolve(sql_setting(table), dsn, "4821") == [True]  # still cust-1's


async def test_slow_queries_time_out(backend: tuple[str, str], orders_db: Path) -> None:
    dsn, table = backend
    if dsn.startswith("sqlite"):
        slow = (
            "SELECT 1 FROM (WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 100000000) SELECT count(*) AS c FROM n) JOIN {table} "
            "WHERE customer_id = :subject AND id = :resource"
        )
    else:
        slow = (
            "SELECT 1 FROM {table}, (SELECT count(*) FROM generate_series(1, 500000000)) AS g "
            "WHERE customer_id = :subject AND id = :resource"
        )
    resolver = OwnershipResolver(
        charter_with(sql_setting(table, ", timeout_s: 0.3", query=slow)), env={"ORDERS_DB": dsn}
    )
    try:
        answer = (await resolver.resolve(call("4821")))["refund-policy"]
    finally:
        await resolver.aclose()
    assert answer.owned is None
    assert "0.3s" in answer.detail or "statement timeout" in answer.detail


@pytest.mark.parametrize(
    "on_error, decision", [("deny", "deny"), ("review", "review"), ("allow", "allow")]
)
@pytest.mark.parametrize("down", ["sqlite", "postgresql"])
async def test_a_database_that_is_down_follows_on_error(
    tmp_path: Path, on_error: str, decision: str, down: str
) -> None:
    dsn = (
        f"sqlite:///{tmp_path}/missing.db"
        if down == "sqlite"
        else "postgresql://postgres:hunter2@127.0.0.1:9/test"
    )
    setting = sql_setting("orders")[:-1] + f", on_error: {on_error}}}"
    service = make_service(charter_with(setting), tmp_path, {"ORDERS_DB": dsn})
    try:
        auth = await service.authorize(
            "support-bot", "issue_refund", {"order_id": "4821", "amount_usd": 5}, subject="cust-1"
        )
    finally:
        await service.aclose()
    assert auth.decision == decision
    detail = auth.verdicts[0].evidence["ownership"]["detail"]
    assert "could not answer" in detail and "hunter2" not in detail
    assert not (tmp_path / "missing.db").exists()  # read-only: never created


def test_the_database_url_must_be_set_and_usable() -> None:
    charter = charter_with(sql_setting("orders"))
    with pytest.raises(ConfigurationError, match=r"\$ORDERS_DB, which is not set"):
        OwnershipResolver(charter, env={})
    with pytest.raises(ConfigurationError, match="not a sqlite:/// or postgresql://"):
        OwnershipResolver(charter, env={"ORDERS_DB": "mysql://db/orders"})
    with pytest.raises(ConfigurationError, match="names no SQLite file"):
        OwnershipResolver(charter, env={"ORDERS_DB": "sqlite:///:memory:"})


async def test_the_sqlite_file_is_unchanged(orders_db: Path) -> None:
    before = orders_db.read_bytes()
    await resolve(sql_setting("orders"), f"sqlite:///{orders_db}", "4821", "x' OR 1=1 --")
    assert orders_db.read_bytes() == before
    rows = sqlite3.connect(orders_db).execute("SELECT count(*) FROM orders").fetchone()
    assert rows == (3,)
