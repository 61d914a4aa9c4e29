"""In-process counters for the embedded default: one lock, exact sliding windows, no I/O."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from charter.counters import AdmitResult, Claim


@dataclass(slots=True)
class _Entry:
    at: float
    request_id: str
    amount: int


@dataclass(slots=True)
class _Window:
    entries: deque[_Entry] = field(default_factory=deque)
    by_request: dict[str, _Entry] = field(default_factory=dict)
    total: int = 0

    def evict(self, cutoff: float) -> None:
        while self.entries and self.entries[0].at <= cutoff:
            entry = self.entries.popleft()
            self.total -= entry.amount
            self.by_request.pop(entry.request_id, None)


class MemoryCounters:
    """Counters for one process. A ``threading.Lock`` (not an asyncio one) so worker threads that
    settle spend after a stream share it safely; each operation holds it for microseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._periods: dict[str, int] = {}
        self._period_requests: dict[tuple[str, str], int] = {}
        self._windows: dict[str, _Window] = {}

    async def admit(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        return self.admit_sync(request_id, claims, now)

    def admit_sync(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        with self._lock:
            missing = tuple(
                i for i, c in enumerate(claims) if c.kind == "period" and c.key not in self._periods
            )
            if missing:
                return AdmitResult(False, needs_seed=missing)
            for index, claim in enumerate(claims):
                used = self._used(claim, now)
                if used + claim.amount > claim.limit:
                    return AdmitResult(False, failed=index, used=used)
            for claim in claims:
                self._add(request_id, claim, claim.amount, now)
            return AdmitResult(True)

    def _used(self, claim: Claim, now: float) -> int:
        if claim.kind == "period":
            return self._periods.get(claim.key, 0)
        window = self._windows.get(claim.key)
        if window is None:
            return 0
        window.evict(now - claim.window_s)
        return window.total

    def _add(self, request_id: str, claim: Claim, amount: int, now: float) -> None:
        if claim.kind == "period":
            self._periods[claim.key] = self._periods.get(claim.key, 0) + amount
            self._period_requests[(claim.key, request_id)] = amount
            return
        window = self._windows.setdefault(claim.key, _Window())
        entry = _Entry(now, request_id, amount)
        window.entries.append(entry)
        window.by_request[request_id] = entry
        window.total += amount

    async def settle(
        self, request_id: str, claims: Sequence[Claim], actual: Sequence[int], now: float
    ) -> None:
        self.settle_sync(request_id, claims, actual, now)

    def settle_sync(
        self, request_id: str, claims: Sequence[Claim], actual: Sequence[int], now: float
    ) -> None:
        with self._lock:
            for claim, amount in zip(claims, actual, strict=True):
                if claim.kind == "period":
                    reserved = self._period_requests.pop((claim.key, request_id), 0)
                    self._periods[claim.key] = self._periods.get(claim.key, 0) + amount - reserved
                    continue
                window = self._windows.get(claim.key)
                entry = window.by_request.get(request_id) if window else None
                if window is None or entry is None:
                    continue  # the window already moved past it: nothing left to adjust
                window.total += amount - entry.amount
                entry.amount = amount

    async def seed(self, key: str, value: int, ttl_s: int) -> None:
        with self._lock:
            self._periods.setdefault(key, value)

    async def usage(self, claim: Claim, now: float) -> int:
        with self._lock:
            return self._used(claim, now)

    async def aclose(self) -> None:
        return None
