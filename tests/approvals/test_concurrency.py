"""100 simultaneous authorizations against a cap of 3 let exactly 3 through: in one process, and
across two service instances sharing PostgreSQL and Redis (the real servers on loopback)."""

from __future__ import annotations

import asyncio
import uuid

from charter.approvals import ActionService, Authorization, WebhookSender
from charter.counters.redis import RedisCounters
from charter.policy.engine import Engine
from charter.policy.runtime import Runtime
from charter.storage import Store, open_store

from .conftest import ORDERS, at, example_charter, make_service

REDIS_URL = "redis://127.0.0.1:6379/0"
ATTEMPTS = 100


async def attempt(service: ActionService, n: int) -> Authorization:
    return await service.authorize(
        "support-bot",
        "issue_refund",
        {"order_id": "4821", "amount_usd": 5},
        subject="cust-1",
        attributes=ORDERS,
        now=at(n / 1000),
    )


def test_100_at_once_in_process_let_exactly_3_through(store: Store) -> None:
    service = make_service(example_charter(), store)

    async def go() -> list[Authorization]:
        return await asyncio.gather(*(attempt(service, n) for n in range(ATTEMPTS)))

    results = asyncio.run(go())
    allowed = [r for r in results if r.decision == "allow"]
    assert len(allowed) == 3
    assert all("3 already counted [rule rates[0]]" in r.reasons[0] for r in results if r.id is None)
    assert len(store.list_actions(["authorized"])) == 3


def test_100_at_once_across_two_replicas_sharing_postgres_and_redis(postgres_url: str) -> None:
    prefix = f"charter-test-{uuid.uuid4().hex}:"
    charter = example_charter()
    stores = [open_store(postgres_url), open_store(postgres_url)]
    stores[0].migrate()

    async def go() -> None:
        services = []
        for store in stores:
            counters = RedisCounters(REDIS_URL, prefix=prefix)
            engine = Engine(charter, Runtime(counters=counters))
            services.append(ActionService(engine, store, counters, sender=WebhookSender()))
        try:
            results = await asyncio.gather(*(attempt(services[n % 2], n) for n in range(ATTEMPTS)))
            assert len([r for r in results if r.decision == "allow"]) == 3
            assert len(stores[1].list_actions(["authorized"])) == 3
            # Holds taken on both replicas lapse and are given back by one replica's sweeper;
            # then either replica may allow a refund again.
            assert (await attempt(services[0], 500_000)).decision == "deny"
            moved = await services[1].expire_due(at(901))
            assert len(moved) == 3 and {m.status for m in moved} == {"abandoned"}
            assert (await attempt(services[0], 902_000)).decision == "allow"
        finally:
            for service in services:
                assert service.counters is not None
                await service.counters.aclose()

    try:
        asyncio.run(go())
    finally:
        for store in stores:
            store.close()
