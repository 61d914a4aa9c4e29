"""Fixtures for ownership lookups: a real ownership service on loopback (uvicorn in a thread),
a real SQLite file and a table of its own on the test PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import psycopg
import pytest
import uvicorn
from psycopg import sql
from starlette.responses import JSONResponse, Response

from charter.approvals import ActionService
from charter.counters import MemoryCounters
from charter.document.loader import load_charter_text
from charter.document.model import Charter
from charter.policy.engine import Engine
from charter.policy.runtime import Runtime
from charter.storage import open_store
from tests.conftest import POSTGRES_URL
from tests.gateway.conftest import free_port

OWNED = {("cust-1", "4821"), ("cust-1", "4822"), ("cust-2", "5001")}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Seen:
    method: str
    raw_path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class OwnershipService:
    """What the service answers and what it saw. ``status`` forces an answer; ``delay_s`` slows
    every answer; ``answer`` replaces the JSON body."""

    port: int = 0
    owned: set[tuple[str, str]] = field(default_factory=lambda: set(OWNED))
    status: int | None = None
    delay_s: float = 0.0
    answer: Any = None
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def asked(self) -> list[tuple[str, str]]:
        """(subject, resource) of each request, decoded from the path or the body."""
        return [_asked(s) for s in self.seen]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen = Seen(
            scope["method"],
            scope["raw_path"].decode(),
            dict(parse_qsl(scope["query_string"].decode())),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            json.loads(body) if body else None,
        )
        with self.lock:
            self.seen.append(seen)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            response = self._respond(seen)
        finally:
            with self.lock:
                self.in_flight -= 1
        await response(scope, receive, send)

    def _respond(self, seen: Seen) -> Response:
        if self.status is not None:
            return JSONResponse({"error": "forced"}, status_code=self.status)
        if self.answer is not None:
            return JSONResponse(self.answer)
        owned = _asked(seen) in self.owned
        if seen.raw_path.startswith("/by-status/"):
            return JSONResponse({"owned": True}) if owned else Response(status_code=404)
        return JSONResponse({"owned": owned})


def _asked(seen: Seen) -> tuple[str, str]:
    if isinstance(seen.body, dict):
        return str(seen.body.get("subject")), str(seen.body.get("resource"))
    if seen.query:
        return seen.query.get("customer", ""), seen.query.get("order", "")
    parts = seen.raw_path.split("/")  # /{prefix}/{subject}/orders/{resource}
    return unquote(parts[2]), unquote(parts[4])


@pytest.fixture
def ownership_service() -> Iterator[OwnershipService]:
    service = OwnershipService(port=free_port())
    config = uvicorn.Config(
        service, host="127.0.0.1", port=service.port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the ownership service did not start")
        time.sleep(0.01)
    yield service
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    """A SQLite file with customers' orders (and a table the queries must never change)."""
    path = tmp_path / "orders.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL)")
    conn.executemany("INSERT INTO orders VALUES (?, ?)", [(r, s) for s, r in sorted(OWNED)])
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def pg_orders() -> Iterator[str]:
    """A uniquely named orders table on the test PostgreSQL server; dropped afterwards."""
    table = f"charter_owned_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"the PostgreSQL tests need a server at {POSTGRES_URL}: {exc}")
    ident = sql.Identifier(table)
    conn.execute(
        sql.SQL("CREATE TABLE {} (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL)").format(ident)
    )
    with conn.cursor() as cur:
        cur.executemany(
            sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(ident),
            [(r, s) for s, r in sorted(OWNED)],
        )
    try:
        yield table
    finally:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(ident))
        conn.close()


def charter_with(ownership: str, *, extra_controls: str = "") -> Charter:
    """A refund policy whose ``ownership`` setting is ``ownership`` (YAML flow mapping), with
    an approval control so ``on_error: review`` has a reviewer."""
    text = f"""\
format: 1
organization: Northwind
decisions:
  - {{id: refund-limits, statement: s, owner: o, risk: high, review_by: 2030-01-01,
     enforced_by: [refund-policy, refund-approval]}}
controls:
  - id: refund-policy
    kind: tool_policy
    serves: [refund-limits]
    settings:
      tool: issue_refund
      arguments:
        order_id: {{type: string, max_length: 64}}
        amount_usd: {{type: number, minimum: 0.01, maximum: 5000}}
      ownership: {ownership}
  - id: refund-approval
    kind: approval
    serves: [refund-limits]
    settings: {{reviewers: [reviewer], deadline: 4h}}
{extra_controls}
principals:
  - {{id: support-bot, kind: app}}
  - {{id: ravi, kind: user, roles: [reviewer]}}
"""
    return load_charter_text(text).require()


def make_service(charter: Charter, tmp_path: Path, env: dict[str, str]) -> ActionService:
    store = open_store(f"sqlite:///{tmp_path}/charter.db")
    store.migrate()
    counters = MemoryCounters()
    engine = Engine(charter, Runtime(counters=counters))
    return ActionService(engine, store, counters, env=env)
