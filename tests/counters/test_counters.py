"""Both counter backends behave the same; Redis runs against the real server on 127.0.0.1:6379."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest

from charter.counters import Claim, Counters, MemoryCounters
from charter.counters.redis import RedisCounters
from charter.errors import StorageUnavailable

REDIS_URL = "redis://127.0.0.1:6379/0"
NOW = 1_700_000_000.0


def make(kind: str) -> Callable[[], Counters]:
    prefix = f"charter-test-{uuid.uuid4().hex}:"
    if kind == "memory":
        shared = MemoryCounters()
        return lambda: shared  # replicas of an embedded gateway share one process
    return lambda: RedisCounters(REDIS_URL, prefix=prefix)


@pytest.fixture(params=["memory", "redis"])
def factory(request: pytest.FixtureRequest) -> Callable[[], Counters]:
    return make(request.param)


def sliding(limit: int, key: str = "k", amount: int = 1) -> Claim:
    return Claim(key, amount, limit, "sliding", 60)


def period(limit: int, key: str = "p", amount: int = 1) -> Claim:
    return Claim(key, amount, limit, "period", 3600)


def test_period_needs_seed_then_enforces(factory: Callable[[], Counters]) -> None:
    async def go() -> None:
        counters = factory()
        first = await counters.admit("r0", [period(10, amount=3)], NOW)
        assert first.needs_seed == (0,)
        await counters.seed("p", 5, 3600)
        await counters.seed("p", 0, 3600)  # a second seeder does not overwrite
        assert (await counters.admit("r1", [period(10, amount=3)], NOW)).ok
        over = await counters.admit("r2", [period(10, amount=3)], NOW)
        assert not over.ok and over.failed == 0 and over.used == 8
        await counters.settle("r1", [period(10)], [1], NOW)  # real use was 1, not 3
        assert await counters.usage(period(10), NOW) == 6
        await counters.aclose()

    asyncio.run(go())


def test_all_or_nothing(factory: Callable[[], Counters]) -> None:
    async def go() -> None:
        counters = factory()
        claims = [sliding(100, "a"), sliding(1, "b")]
        assert (await counters.admit("r1", claims, NOW)).ok
        result = await counters.admit("r2", claims, NOW)
        assert not result.ok and result.failed == 1
        assert await counters.usage(sliding(100, "a"), NOW) == 1  # r2 reserved nothing on a
        await counters.aclose()

    asyncio.run(go())


def test_sliding_window_exact(factory: Callable[[], Counters]) -> None:
    async def go() -> None:
        counters = factory()
        for i in range(3):
            assert (await counters.admit(f"r{i}", [sliding(3)], NOW + i)).ok
        assert not (await counters.admit("x", [sliding(3)], NOW + 59)).ok
        assert (await counters.admit("y", [sliding(3)], NOW + 60.01)).ok
        assert not (await counters.admit("z", [sliding(3)], NOW + 60.02)).ok
        await counters.aclose()

    asyncio.run(go())


def test_settle_tokens_in_window(factory: Callable[[], Counters]) -> None:
    async def go() -> None:
        counters = factory()
        claim = sliding(1000, "tok", amount=800)
        assert (await counters.admit("r1", [claim], NOW)).ok
        assert not (await counters.admit("r2", [claim], NOW)).ok
        await counters.settle("r1", [claim], [100], NOW)
        assert (await counters.admit("r3", [claim], NOW)).ok
        assert await counters.usage(claim, NOW) == 900
        await counters.aclose()

    asyncio.run(go())


def test_two_replicas_200_concurrent_exactly_fill_the_limit(
    factory: Callable[[], Counters],
) -> None:
    async def go() -> int:
        replicas = [factory(), factory()]
        await replicas[0].seed("budget", 0, 3600)

        async def one(i: int) -> bool:
            counters = replicas[i % 2]
            claims = [period(50, "budget", amount=1), sliding(10_000, "rate")]
            return (await counters.admit(f"r{i}", claims, NOW)).ok

        results = await asyncio.gather(*(one(i) for i in range(200)))
        for counters in replicas:
            await counters.aclose()
        return sum(results)

    assert asyncio.run(go()) == 50


def test_redis_unreachable_is_storage_unavailable() -> None:
    async def go() -> None:
        counters = RedisCounters("redis://127.0.0.1:1/0")
        with pytest.raises(StorageUnavailable, match="unreachable"):
            await counters.admit("r", [sliding(1)], NOW)
        await counters.aclose()

    asyncio.run(go())
