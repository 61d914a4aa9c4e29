"""Prometheus metrics of the gateway: requests, latency, tokens, cost, verdicts, budgets, drift.

Every label value comes from the charter (principal ids, model names, control and decision ids) or
from a small fixed set (outcome, action, token type, status); anything else, such as a model name a
client made up, is counted as ``other``. No label ever carries user content, and a label's distinct
values are capped at ``MAX_LABEL_VALUES``, so the series count is bounded by the charter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from charter.budgets import MICRO, period_bounds
from charter.document.model import BudgetControl, Charter, Mode, Period
from charter.monitors.drift import DriftAlert, Reading
from charter.monitors.observation import Observation
from charter.policy.runtime import members, principal_chain
from charter.policy.verdict import Verdict
from charter.storage.base import Store

OTHER = "other"
NONE = "none"
MAX_LABEL_VALUES = 1000
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
STATUSES = frozenset({"400", "401", "403", "404", "409", "422", "429", "500", "502", "503", "504"})


class Bounded:
    """The values one label may take: those the charter names, the rest folded into ``other``."""

    def __init__(self, allowed: Iterable[str], limit: int = MAX_LABEL_VALUES) -> None:
        self.allowed = frozenset(list(dict.fromkeys(allowed))[:limit])

    def __call__(self, value: str | None) -> str:
        if value is None or value == "":
            return NONE
        return value if value in self.allowed else OTHER


@dataclass(frozen=True, slots=True)
class _BudgetLine:
    control: str
    principal: str
    period: str
    members: tuple[str, ...]
    limit_micro_usd: int
    label: tuple[str, str, str]


class Metrics:
    """The metric families, in their own registry (so tests and several gateways never collide)."""

    def __init__(self, charter: Charter, *, registry: CollectorRegistry | None = None) -> None:
        self.charter = charter
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.principal = Bounded(p.id for p in charter.principals)
        self.model = Bounded(m.name for p in charter.providers for m in p.models)
        self.control = Bounded(c.id for c in charter.controls)
        self.decision = Bounded(d.id for d in charter.decisions)
        kinds = {p.id: p.kind for p in charter.principals}
        self._team = {
            p.id: next((q for q in principal_chain(charter, p.id) if kinds.get(q) == "team"), NONE)
            for p in charter.principals
        }
        r = self.registry
        self.requests = Counter(
            "charter_requests",
            "Requests by principal, team, model and how they ended: answered (without "
            "intervention), intervened (redacted or escalated), refused, error.",
            ["principal", "team", "model", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            "charter_request_duration_seconds",
            "Time from the request's arrival to its audit record being committed.",
            ["model", "outcome"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "charter_tokens",
            "Tokens by principal, model and type (input or output).",
            ["principal", "model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "charter_cost_usd",
            "Settled spend in US dollars.",
            ["principal", "team", "model"],
            registry=r,
        )
        self.verdicts = Counter(
            "charter_verdicts",
            "Verdicts by control, the decision it serves, action, and whether enforced "
            "(false: shadow mode).",
            ["control", "decision", "action", "enforced"],
            registry=r,
        )
        self.escalations = Counter(
            "charter_escalations",
            "Verdicts that sent a request or an action to a human.",
            ["control"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "charter_upstream_errors",
            "Requests that failed at the model provider, by model and HTTP status.",
            ["model", "status"],
            registry=r,
        )
        self.approvals_pending = Gauge(
            "charter_approvals_pending",
            "Actions waiting for a human decision.",
            registry=r,
        )
        self.budget_used = Gauge(
            "charter_budget_used_usd",
            "Spend in the current period of each budget limit.",
            ["control", "principal", "period"],
            registry=r,
        )
        self.budget_limit = Gauge(
            "charter_budget_limit_usd",
            "The limit of each budget for its period.",
            ["control", "principal", "period"],
            registry=r,
        )
        self.drift_alerts = Counter(
            "charter_drift_alerts",
            "Drift alerts raised by monitor controls.",
            ["monitor", "statistic"],
            registry=r,
        )
        self.drift_value = Gauge(
            "charter_drift_value",
            "The latest value of each monitor's statistic (compare with its threshold).",
            ["monitor", "series"],
            registry=r,
        )
        self.drift_threshold = Gauge(
            "charter_drift_threshold",
            "The threshold of each monitor.",
            ["monitor"],
            registry=r,
        )
        self.info = Gauge(
            "charter_info",
            "The charter version this process enforces (value 1).",
            ["charter_version"],
            registry=r,
        )
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._budgets = [
            _BudgetLine(
                c.id,
                limit.principal,
                limit.period.value,
                members(charter, limit.principal),
                round(limit.usd * MICRO),
                (self.control(c.id), self.principal(limit.principal), limit.period.value),
            )
            for c in charter.controls
            if isinstance(c, BudgetControl) and c.mode is not Mode.OFF
            for limit in c.settings.limits
        ]
        for line in self._budgets:
            self.budget_limit.labels(*line.label).set(line.limit_micro_usd / MICRO)
        for c in charter.controls:
            if c.kind == "monitor" and c.mode is not Mode.OFF:
                self.drift_threshold.labels(self.control(c.id)).set(c.settings.threshold)

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: the children are few (bounded labels) and looking
        one up in the client takes a lock and builds a key on every call."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def set_version(self, version: str) -> None:
        self.info.labels(version).set(1)

    def observe(self, obs: Observation, verdicts: Iterable[Verdict], latency_s: float) -> None:
        """Count one finished request."""
        principal = self.principal(obs.principals[0] if obs.principals else None)
        team = self._team.get(principal, NONE)
        model = self.model(obs.model)
        outcome = obs.outcome_class
        child = self._child
        child(self.requests, principal, team, model, outcome).inc()
        child(self.latency, model, outcome).observe(max(0.0, latency_s))
        if obs.input_tokens:
            child(self.tokens, principal, model, "input").inc(obs.input_tokens)
        if obs.output_tokens:
            child(self.tokens, principal, model, "output").inc(obs.output_tokens)
        if obs.cost_micro_usd:
            child(self.cost, principal, team, model).inc(obs.cost_micro_usd / MICRO)
        for v in verdicts:
            control = self.control(v.control_id)
            enforced = "true" if v.enforced else "false"
            for decision in v.decision_ids or (NONE,):
                decision_label = self.decision(decision)
                child(self.verdicts, control, decision_label, v.action.value, enforced).inc()
            if v.action.value == "escalate":
                child(self.escalations, control).inc()
        if obs.upstream_error:
            status = str(obs.status)
            child(self.upstream_errors, model, status if status in STATUSES else OTHER).inc()

    def alert(self, alert: DriftAlert) -> None:
        """Count a drift alert (an ``AlertSink``)."""
        self.drift_alerts.labels(self.control(alert.monitor), alert.reading.statistic).inc()

    def readings(self, readings: Iterable[Reading]) -> None:
        for reading in readings:
            if reading.value is not None:
                series = self.principal(reading.series)
                self.drift_value.labels(self.control(reading.monitor), series).set(reading.value)

    def set_approvals_source(self, callback: Callable[[], float]) -> None:
        """Read the number of pending approvals from ``callback`` at each scrape."""
        self.approvals_pending.set_function(callback)

    def refresh_budgets(self, store: Store, now: float | None = None) -> None:
        """Set each budget's spend in its current period from the durable spend ledger.

        Blocking (it queries the store): call it off the event loop, once per scrape.
        """
        at = time.time() if now is None else now
        for line in self._budgets:
            start, end = period_bounds(Period(line.period), at)
            spent = sum(store.spend_between(p, start, end) for p in line.members)
            self.budget_used.labels(*line.label).set(spent / MICRO)

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def sample_names(self) -> set[str]:
        """Every sample name this registry can expose (``_total``, ``_bucket``... included)."""
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
            "summary": ("_sum", "_count", "_created"),
            "info": ("_info",),
        }
        names = set()
        for family in self.registry.collect():
            for suffix in suffixes.get(family.type, ("",)):
                names.add(family.name + suffix)
        return names
