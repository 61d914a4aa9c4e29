"""The resolver: run the ownership lookups a tool call needs, before the policy engine sees it.

The engine is pure, so it never asks anyone; ``OwnershipResolver.resolve`` asks, and the answers
travel to the engine in ``RequestContext.ownership`` keyed by control id and bound to the subject
and resource they are about. Each lookup has its own bounded cache (``cache_ttl_s``; definite
answers only, never failures) and its own limit on lookups in flight (``max_concurrency``). A
lookup that waits longer than its ``timeout_s`` for a free slot fails like one that timed out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from charter.document.model import (
    Charter,
    Mode,
    OwnershipHttp,
    OwnershipSql,
    ToolPolicyControl,
)
from charter.ownership.lookup import Lookup, LookupFailed
from charter.policy.context import OwnershipAnswer, RequestContext
from charter.tools.policy import resource_text

log = logging.getLogger(__name__)

CACHE_ENTRIES = 10_000
"""Answers one lookup keeps at most; the least recently used go first."""


class AnswerCache:
    """Definite answers for ``ttl_s`` seconds, at most ``size`` of them (least recently used go)."""

    def __init__(self, ttl_s: float, size: int = CACHE_ENTRIES) -> None:
        self.ttl_s = ttl_s
        self.size = size
        self._entries: OrderedDict[tuple[str, str], tuple[float, bool, str]] = OrderedDict()

    def get(self, key: tuple[str, str], now: float) -> tuple[bool, str] | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, owned, detail = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return owned, detail

    def put(self, key: tuple[str, str], owned: bool, detail: str, now: float) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[key] = (now + self.ttl_s, owned, detail)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass
class ConfiguredLookup:
    """One control's lookup with its cache and its limit on lookups in flight."""

    control_id: str
    tool: str
    argument: str
    lookup: Lookup
    cache: AnswerCache
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)

    def slots(self) -> asyncio.Semaphore:
        """The semaphore of the running loop (a semaphore belongs to one loop)."""
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            self._slots, self._loop = asyncio.Semaphore(self.lookup.max_concurrency), loop
        return self._slots


class OwnershipResolver:
    """Every ``ownership.http`` / ``ownership.sql`` lookup of a charter, ready to run.

    Reads the environment (headers, database URLs) once, here: a missing variable is a
    ``ConfigurationError`` at start, never a surprise per request. Policies that are ``off`` or
    read a caller-supplied ``context`` need nothing.
    """

    def __init__(
        self,
        charter: Charter,
        *,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        environ = os.environ if env is None else env
        self._clock = clock
        self._by_tool: dict[str, list[ConfiguredLookup]] = {}
        self.lookups: dict[str, ConfiguredLookup] = {}
        for control in charter.controls:
            if not isinstance(control, ToolPolicyControl) or control.mode is Mode.OFF:
                continue
            owned = control.settings.ownership
            if owned is None or owned.lookup is None:
                continue
            lookup = _open(control.id, owned.lookup, environ)
            configured = ConfiguredLookup(
                control.id,
                control.settings.tool,
                owned.argument,
                lookup,
                AnswerCache(lookup.cache_ttl_s),
            )
            self.lookups[control.id] = configured
            self._by_tool.setdefault(configured.tool, []).append(configured)

    def __bool__(self) -> bool:
        return bool(self.lookups)

    async def resolve(self, ctx: RequestContext) -> dict[str, OwnershipAnswer]:
        """The answers ``ctx``'s tool call needs, by control id (run concurrently).

        A call with no subject, or whose argument is missing or not a string or number, is not
        looked up: the engine denies it with the precise reason.
        """
        call = ctx.tool_call
        if call is None or not ctx.subject or not isinstance(call.arguments, Mapping):
            return {}
        jobs = {}
        for configured in self._by_tool.get(call.name, ()):
            resource = resource_text(call.arguments.get(configured.argument))
            if resource is not None:
                jobs[configured.control_id] = self._answer(configured, ctx.subject, resource)
        if not jobs:
            return {}
        answers = await asyncio.gather(*jobs.values())
        return dict(zip(jobs, answers, strict=True))

    async def with_answers(self, ctx: RequestContext) -> RequestContext:
        """``ctx`` with the answers of its lookups in ``ownership`` (``ctx`` itself if none)."""
        if not self.lookups:
            return ctx
        answers = await self.resolve(ctx)
        return replace(ctx, ownership=MappingProxyType(answers)) if answers else ctx

    async def _answer(
        self, configured: ConfiguredLookup, subject: str, resource: str
    ) -> OwnershipAnswer:
        lookup = configured.lookup
        key = (subject, resource)
        hit = configured.cache.get(key, self._clock())
        if hit is not None:
            return OwnershipAnswer(subject, resource, hit[0], lookup.source, hit[1], cached=True)
        try:
            owned, detail = await self._ask(configured, subject, resource)
        except LookupFailed as exc:
            log.warning("ownership lookup of %s failed: %s", configured.control_id, exc)
            return OwnershipAnswer(subject, resource, None, lookup.source, str(exc))
        except Exception as exc:  # anything else is a failed lookup too: decided by on_error
            log.exception("ownership lookup of %s failed", configured.control_id)
            detail = f"{type(exc).__name__}: {exc}"[:300]
            return OwnershipAnswer(subject, resource, None, lookup.source, detail)
        configured.cache.put(key, owned, detail, self._clock())
        return OwnershipAnswer(subject, resource, owned, lookup.source, detail)

    async def _ask(
        self, configured: ConfiguredLookup, subject: str, resource: str
    ) -> tuple[bool, str]:
        lookup = configured.lookup
        slots = configured.slots()
        try:
            async with asyncio.timeout(lookup.timeout_s):
                await slots.acquire()
        except TimeoutError:
            raise LookupFailed(
                f"{lookup.max_concurrency} lookups were already in flight for "
                f"{lookup.timeout_s:g}s (max_concurrency)"
            ) from None
        try:
            return await lookup.owns(subject, resource)
        finally:
            slots.release()

    async def aclose(self) -> None:
        """Close every lookup's connections."""
        for configured in self.lookups.values():
            await configured.lookup.aclose()


def _open(
    control_id: str, settings: OwnershipHttp | OwnershipSql, env: Mapping[str, str]
) -> Lookup:
    if isinstance(settings, OwnershipHttp):
        from charter.ownership.http import HttpLookup

        return HttpLookup(control_id, settings, env)
    from charter.ownership.sql import open_sql_lookup  # drivers are imported only when used

    return open_sql_lookup(control_id, settings, env)
