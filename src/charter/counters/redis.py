"""Counters in Redis, shared by every gateway replica: one Lua script per operation, so the check
and the reservation are a single atomic step on the server whatever the number of replicas.

Keys per counter ``K``: ``K`` (a period total), ``K:res`` (hash: request id -> reserved amount);
for sliding windows ``K:log`` (sorted set: request id by time), ``K:amt`` (hash: request id ->
amount) and ``K:sum`` (the running total of the window). All keys expire on their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from charter.counters import AdmitResult, Claim
from charter.errors import MissingDependency, StorageUnavailable

_EVICT = """
local function evict(k, cutoff)
  local old = redis.call('ZRANGEBYSCORE', k .. ':log', '-inf', cutoff)
  if #old == 0 then return end
  local dropped = 0
  for _, rid in ipairs(old) do
    dropped = dropped + tonumber(redis.call('HGET', k .. ':amt', rid) or '0')
    redis.call('HDEL', k .. ':amt', rid)
  end
  redis.call('ZREMRANGEBYSCORE', k .. ':log', '-inf', cutoff)
  redis.call('DECRBY', k .. ':sum', dropped)
end
"""

ADMIT = (
    _EVICT
    + """
local rid, now, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local missing = {}
for i = 1, n do
  local base = 3 + (i - 1) * 4
  if ARGV[base + 1] == 'period' and redis.call('EXISTS', KEYS[i]) == 0 then
    table.insert(missing, i - 1)
  end
end
if #missing > 0 then return {-2, 0, unpack(missing)} end
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind, amount, limit = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3])
  local window = tonumber(ARGV[base + 4])
  local used
  if kind == 'period' then
    used = tonumber(redis.call('GET', KEYS[i]))
  else
    evict(KEYS[i], now - window)
    used = tonumber(redis.call('GET', KEYS[i] .. ':sum') or '0')
  end
  if used + amount > limit then return {-1, used, i - 1} end
end
for i = 1, n do
  local base = 3 + (i - 1) * 4
  local kind, amount = ARGV[base + 1], tonumber(ARGV[base + 2])
  local ttl = tonumber(ARGV[base + 4]) * 1000 + 60000
  if kind == 'period' then
    redis.call('INCRBY', KEYS[i], amount)
    redis.call('HSET', KEYS[i] .. ':res', rid, amount)
    redis.call('PEXPIRE', KEYS[i] .. ':res', ttl)
  else
    redis.call('ZADD', KEYS[i] .. ':log', now, rid)
    redis.call('HSET', KEYS[i] .. ':amt', rid, amount)
    redis.call('INCRBY', KEYS[i] .. ':sum', amount)
    for _, suffix in ipairs({':log', ':amt', ':sum'}) do
      redis.call('PEXPIRE', KEYS[i] .. suffix, ttl)
    end
  end
end
return {0, 0}
"""
)

SETTLE = """
local rid, n = ARGV[1], tonumber(ARGV[2])
for i = 1, n do
  local kind, actual = ARGV[2 + (i - 1) * 2 + 1], tonumber(ARGV[2 + (i - 1) * 2 + 2])
  if kind == 'period' then
    local reserved = tonumber(redis.call('HGET', KEYS[i] .. ':res', rid) or '0')
    redis.call('HDEL', KEYS[i] .. ':res', rid)
    redis.call('INCRBY', KEYS[i], actual - reserved)
  elseif redis.call('HEXISTS', KEYS[i] .. ':amt', rid) == 1 then
    local reserved = tonumber(redis.call('HGET', KEYS[i] .. ':amt', rid))
    redis.call('HSET', KEYS[i] .. ':amt', rid, actual)
    redis.call('INCRBY', KEYS[i] .. ':sum', actual - reserved)
  end
end
return 0
"""

USAGE = (
    _EVICT
    + """
if ARGV[1] == 'period' then return tonumber(redis.call('GET', KEYS[1]) or '0') end
evict(KEYS[1], tonumber(ARGV[2]) - tonumber(ARGV[3]))
return tonumber(redis.call('GET', KEYS[1] .. ':sum') or '0')
"""
)


class RedisCounters:
    """Counters shared through Redis (``charter[scale]``)."""

    def __init__(self, url: str, *, prefix: str = "charter:") -> None:
        try:
            import redis.asyncio as aioredis
        except ImportError:  # pragma: no cover - exercised only without the extra
            raise MissingDependency("redis", "scale", "Redis counters") from None
        self._errors: tuple[type[BaseException], ...] = (
            __import__("redis").exceptions.RedisError,
            OSError,
        )
        self.url = url
        self.prefix = prefix
        self._client: Any = aioredis.Redis.from_url(url, socket_timeout=5)
        self._admit = self._client.register_script(ADMIT)
        self._settle = self._client.register_script(SETTLE)
        self._usage = self._client.register_script(USAGE)

    def _key(self, key: str) -> str:
        return self.prefix + key

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except self._errors as exc:
            safe = self.url.split("@")[-1]
            raise StorageUnavailable(
                f"Redis at {safe} is unreachable or refused the counter script ({exc})",
                hint="check that Redis is running and --redis points at it",
            ) from None

    async def admit(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        args: list[Any] = [request_id, repr(now), len(claims)]
        for claim in claims:
            args += [claim.kind, claim.amount, claim.limit, claim.window_s]
        reply = await self._call(self._admit, [self._key(c.key) for c in claims], args)
        status = int(reply[0])
        if status == 0:
            return AdmitResult(True)
        if status == -2:
            return AdmitResult(False, needs_seed=tuple(int(i) for i in reply[2:]))
        return AdmitResult(False, failed=int(reply[2]), used=int(reply[1]))

    async def settle(
        self, request_id: str, claims: Sequence[Claim], actual: Sequence[int], now: float
    ) -> None:
        args: list[Any] = [request_id, len(claims)]
        for claim, amount in zip(claims, actual, strict=True):
            args += [claim.kind, amount]
        await self._call(self._settle, [self._key(c.key) for c in claims], args)

    async def seed(self, key: str, value: int, ttl_s: int) -> None:
        try:
            await self._client.set(self._key(key), value, nx=True, ex=ttl_s + 60)
        except self._errors as exc:
            raise StorageUnavailable(f"Redis is unreachable ({exc})") from None

    async def usage(self, claim: Claim, now: float) -> int:
        reply = await self._call(
            self._usage, [self._key(claim.key)], [claim.kind, repr(now), claim.window_s]
        )
        return int(reply)

    async def aclose(self) -> None:
        await self._client.aclose()
