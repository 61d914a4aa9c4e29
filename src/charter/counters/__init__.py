"""Shared counters behind budgets, rate limits and tool-call caps.

Admission is all-or-nothing: a request presents every ``Claim`` it needs (a budget reservation, one
request and N tokens against each rate limit) and either all are reserved together or none is. This
is
what keeps 200 concurrent requests against a nearly spent budget from overspending: the check and
the
reservation are one atomic step, in-process under a lock (``MemoryCounters``) or in one Redis script
(``RedisCounters``) shared by every replica.

Two kinds of counter:

- ``period``: a total for a calendar period (a budget month). Its key names the period. When the key
  is absent (a fresh process, or Redis restarted) admission answers ``needs_seed`` and the caller
  seeds
  it from the durable spend ledger, so no spend is forgotten.
- ``sliding``: amounts in the last ``window_s`` seconds, exactly (a log of entries, not an
  approximation), so N requests per minute means at most N in any 60 seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

CounterKind = Literal["period", "sliding"]


@dataclass(frozen=True, slots=True)
class Claim:
    """One amount a request needs under one limit."""

    key: str
    amount: int
    limit: int
    kind: CounterKind
    window_s: int  # sliding: window length; period: time to live of the key
    control_id: str = ""
    decision_ids: tuple[str, ...] = ()
    label: str = ""  # for people: "support monthly budget ($500.00)"
    unit: str = ""  # "micro_usd", "requests", "tokens", "calls"


@dataclass(frozen=True, slots=True)
class AdmitResult:
    """``ok`` when every claim was reserved; otherwise which claim failed and how full it was."""

    ok: bool
    failed: int | None = None  # index of the first claim that did not fit
    used: int = 0  # how much of that claim's limit was already used
    needs_seed: tuple[int, ...] = ()  # period claims whose key is absent: seed, then retry


@dataclass(slots=True)
class Reservation:
    """What one request holds; settle it with the real amounts, or release it."""

    request_id: str
    claims: tuple[Claim, ...]
    settled: bool = field(default=False)


class Counters(Protocol):
    """The counter backend. Implementations: ``MemoryCounters``, ``RedisCounters``."""

    async def admit(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        """Reserve every claim, or none; never blocks waiting for capacity."""
        ...

    async def settle(
        self, request_id: str, claims: Sequence[Claim], actual: Sequence[int], now: float
    ) -> None:
        """Replace each reserved amount with the actual one (0 releases it)."""
        ...

    async def seed(self, key: str, value: int, ttl_s: int) -> None:
        """Set a period counter from the durable ledger, unless another process already did."""
        ...

    async def usage(self, claim: Claim, now: float) -> int:
        """How much of the claim's limit is used now (reservations included)."""
        ...

    async def aclose(self) -> None: ...


from charter.counters.memory import MemoryCounters  # noqa: E402

__all__ = ["AdmitResult", "Claim", "Counters", "MemoryCounters", "Reservation"]
