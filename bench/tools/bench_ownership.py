"""Ownership lookups: the latency ``OwnershipResolver.resolve`` adds to one tool call.

Four cases, each resolving one refund call at a time (serial, one event loop), reported as
p50/p99 in microseconds: a cache hit, SQLite (a 10,000-row file, opened read-only), PostgreSQL
(a temporary table on the local server, read-only sessions) and HTTP (an aiohttp service on
loopback answering {"owned": true}). Caches are off (``cache_ttl_s: 0``) except in the first.

    python bench/tools/bench_ownership.py                  # 2,000 lookups per case
    python bench/tools/bench_ownership.py --calls 10000 --postgres postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import MappingProxyType

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from aiohttp import web

from charter.document.loader import load_charter_text
from charter.document.model import Charter
from charter.ownership import OwnershipResolver
from charter.policy.context import RequestContext, ToolCall
from charter.policy.verdict import Stage

ROWS = 10_000


def charter(ownership: str) -> Charter:
    text = f"""\
format: 1
organization: Bench
decisions:
  - {{id: d, statement: s, owner: o, risk: low, review_by: 2030-01-01, enforced_by: [p]}}
controls:
  - id: p
    kind: tool_policy
    serves: [d]
    settings:
      tool: issue_refund
      ownership: {ownership}
"""
    return load_charter_text(text).require()


def call(i: int) -> RequestContext:
    args = MappingProxyType({"order_id": str(i % ROWS), "amount_usd": 5})
    return RequestContext(
        Stage.TOOL_CALL, tool_call=ToolCall("issue_refund", args), subject=f"cust-{i % ROWS}"
    )


async def measure(name: str, resolver: OwnershipResolver, calls: int) -> None:
    for i in range(50):  # warm: connections open, code paths hot
        await resolver.resolve(call(i))
    times = []
    for i in range(calls):
        started = time.perf_counter()
        answers = await resolver.resolve(call(i))
        times.append(time.perf_counter() - started)
        if answers["p"].owned is not True:
            raise SystemExit(f"{name}: unexpected answer {answers['p']}")
    times.sort()
    p50 = statistics.median(times) * 1e6
    p99 = times[int(len(times) * 0.99) - 1] * 1e6
    print(f"{name:<22} p50 {p50:8.0f} us   p99 {p99:8.0f} us   ({calls} lookups)")
    await resolver.aclose()


def sqlite_file(folder: Path) -> Path:
    path = folder / "orders.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE orders (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL)")
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?)", [(str(i), f"cust-{i}") for i in range(ROWS)]
    )
    conn.commit()
    conn.close()
    return path


def query(table: str) -> str:
    return f"SELECT 1 FROM {table} WHERE customer_id = :subject AND id = :resource"


def sql(table: str, ttl_s: float = 0) -> str:
    setting = f"dsn_env: ORDERS_DB, cache_ttl_s: {ttl_s}, query: '{query(table)}'"
    return f"{{argument: order_id, sql: {{{setting}}}}}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()

    # HTTP: an aiohttp service on a free loopback port.
    async def owns(request: web.Request) -> web.Response:
        return web.json_response({"owned": True})

    app = web.Application()
    app.router.add_get("/owners/{subject}/orders/{resource}", owns)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    url = f"http://127.0.0.1:{port}/owners/{{subject}}/orders/{{resource}}"

    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite_file(Path(tmp))
        env = {"ORDERS_DB": f"sqlite:///{db}"}
        cached = OwnershipResolver(
            charter(sql("orders", ttl_s=3600)),
            env=env,
        )
        for i in range(ROWS):  # every later lookup is a hit
            await cached.resolve(call(i))
        await measure("cached (any source)", cached, args.calls)
        await measure("sqlite", OwnershipResolver(charter(sql("orders")), env=env), args.calls)

    import psycopg

    table = f"bench_owned_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.postgres, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id TEXT PRIMARY KEY, customer_id TEXT NOT NULL)")
        with conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO {table} VALUES (%s, %s)", [(str(i), f"cust-{i}") for i in range(ROWS)]
            )
        try:
            resolver = OwnershipResolver(charter(sql(table)), env={"ORDERS_DB": args.postgres})
            await measure("postgresql", resolver, args.calls)
        finally:
            conn.execute(f"DROP TABLE {table}")

    http = f"{{argument: order_id, http: {{url: '{url}', cache_ttl_s: 0}}}}"
    await measure("http (loopback)", OwnershipResolver(charter(http), env={}), args.calls)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
