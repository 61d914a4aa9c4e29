"""What stateful controls share at run time: counters, the spend ledger and the principal tree."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from charter.counters import Counters, MemoryCounters
from charter.document.model import Charter


class SpendLedger(Protocol):
    """The durable record of spend; period counters are seeded from it."""

    def spent(self, principals: Sequence[str], start: dt.datetime, end: dt.datetime) -> int:
        """Micro-dollars spent by these principals in ``[start, end)``."""
        ...


@dataclass
class Runtime:
    """Shared state handed to every control factory. The defaults suit tests and evals: in-process
    counters and no ledger (a fresh process starts every period at zero)."""

    counters: Counters = field(default_factory=MemoryCounters)
    ledger: SpendLedger | None = None


def principal_chain(charter: Charter, principal: str) -> tuple[str, ...]:
    """The principal followed by the app and team it belongs to (nearest first)."""
    parents = {p.id: p.member_of for p in charter.principals}
    chain = [principal]
    while (parent := parents.get(chain[-1])) is not None and parent not in chain:
        chain.append(parent)
    return tuple(chain)


def members(charter: Charter, principal: str) -> tuple[str, ...]:
    """The principal and every principal that belongs to it, directly or not."""
    return tuple(p.id for p in charter.principals if principal in principal_chain(charter, p.id))
