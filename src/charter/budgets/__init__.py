"""Budgets: spend limits per principal and period, held under concurrency.

Admission reserves the worst case a request can cost (its input upper bound and its max output
tokens at the model's price) before the upstream call, and the real cost replaces the reservation
afterwards. Spend can therefore exceed a limit only if a provider bills more than the worst case it
was asked for (e.g. it ignores max_tokens); the real cost is still recorded.
"""

from __future__ import annotations

import calendar
import datetime as dt

from charter.counters import Claim
from charter.document.model import BudgetControl, Charter, Period
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime, members
from charter.policy.verdict import Stage

MICRO = 1_000_000


def period_bounds(period: Period, now: float) -> tuple[dt.datetime, dt.datetime]:
    """The UTC calendar period containing ``now``: day, ISO week (from Monday) or month."""
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    if period is Period.DAY:
        return day, day + dt.timedelta(days=1)
    if period is Period.WEEK:
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + dt.timedelta(days=days)


def usd(micro: int) -> str:
    return f"${micro / MICRO:,.2f}" if micro >= 10_000 else f"${micro / MICRO:,.6f}"


class BudgetHandler:
    """Turns the budgets that cover the caller into period claims on the shared counters."""

    stages = frozenset({Stage.REQUEST})

    def __init__(self, control: BudgetControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.decisions = tuple(control.serves)
        self.runtime = runtime
        self._members = {
            limit.principal: members(charter, limit.principal) for limit in control.settings.limits
        }

    def claims(self, ctx: RequestContext) -> list[Claim]:
        out = []
        for limit in self.control.settings.limits:
            if limit.principal not in ctx.principals:
                continue
            cap = round(limit.usd * MICRO)
            start, end = period_bounds(limit.period, ctx.now)
            key = f"budget:{self.control.id}:{limit.principal}:{start:%Y-%m-%d}"
            out.append(
                Claim(
                    key=key,
                    amount=ctx.max_cost_micro_usd,
                    limit=cap,
                    kind="period",
                    window_s=int((end - start).total_seconds()),
                    control_id=self.control.id,
                    decision_ids=self.decisions,
                    label=f"{limit.principal} {limit.period.value}ly budget ({usd(cap)})",
                    unit="micro_usd",
                )
            )
        return out

    async def seed(self, claim: Claim) -> None:
        """Start a period counter from the durable ledger (zero without one)."""
        # The key names the principal and the period's first day; the window is its length.
        _, _, principal, first_day = claim.key.rsplit(":", 3)
        start = dt.datetime.strptime(first_day, "%Y-%m-%d").replace(tzinfo=dt.UTC)
        end = start + dt.timedelta(seconds=claim.window_s)
        ledger = self.runtime.ledger
        spent = ledger.spent(self._members[principal], start, end) if ledger else 0
        await self.runtime.counters.seed(claim.key, spent, claim.window_s)


register("budget", BudgetHandler)
