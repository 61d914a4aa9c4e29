"""Evidence reports: per decision, what its controls did in a period, from the audit trail alone.

``build_report`` reads records and checkpoints, never the live gateway, so a report can be made
by anyone holding the log, for any period, and recomputed later with the same result. It lists
for each decision its owner and controls, how often each control ruled and with what verdicts,
eval runs, approvals, drift alerts; the signed checkpoints that cover the period; which items of
the frameworks the charter names have evidence and which have none; and usage per team and use
case.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from charter.audit.checkpoint import Checkpoint
from charter.audit.records import AuditRecord, RecordKind
from charter.document.model import Charter, Mode
from charter.errors import InvalidRequest
from charter.monitors.observation import Observation
from charter.policy.runtime import principal_chain
from charter.policy.verdict import Action
from charter.reports.catalog import Framework, Item, builtin_frameworks, named_items
from charter.reports.usage import UsageRow, usage_rows


@dataclass(frozen=True, slots=True)
class ControlActivity:
    """How one control ruled in the period: verdict counts by action (shadow counted apart)."""

    id: str
    kind: str
    mode: str
    verdicts: Mapping[str, int]
    shadow_verdicts: Mapping[str, int]
    outcomes: Mapping[str, int] = field(default_factory=dict)  # a standard's: met, repaired...

    @property
    def rulings(self) -> int:
        return sum(self.verdicts.values()) + sum(self.shadow_verdicts.values())

    @property
    def fired(self) -> int:
        """Rulings other than allow: what the control stopped, changed or escalated."""
        return sum(n for a, n in self.verdicts.items() if a != Action.ALLOW.value)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "mode": self.mode,
            "rulings": self.rulings,
            "fired": self.fired,
            "verdicts": dict(self.verdicts),
            "outcomes": dict(self.outcomes),
            "shadow_verdicts": dict(self.shadow_verdicts),
        }


@dataclass(frozen=True, slots=True)
class RecordRef:
    """A record cited as evidence (an eval run, an approval, a drift alert)."""

    index: int
    time: str
    action: str | None
    reason: str | None
    details: Mapping[str, Any]

    @classmethod
    def of(cls, record: AuditRecord) -> RecordRef:
        action = record.action.value if record.action is not None else None
        return cls(record.index, record.time, action, record.reason, dict(record.details))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "time": self.time,
            "action": self.action,
            "reason": self.reason,
            "details": dict(self.details),
        }


@dataclass(frozen=True, slots=True)
class DecisionEvidence:
    """One decision and the evidence of its enforcement in the period."""

    id: str
    statement: str
    owner: str
    risk: str
    review_by: str
    frameworks: tuple[str, ...]
    requests: int
    controls: tuple[ControlActivity, ...]
    eval_runs: tuple[RecordRef, ...]
    approvals: tuple[RecordRef, ...]
    drift_alerts: tuple[RecordRef, ...]
    escalations: int
    monitored: bool

    @property
    def approval_outcomes(self) -> dict[str, int]:
        return dict(
            Counter(str(a.details.get("outcome") or a.action or "unknown") for a in self.approvals)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "statement": self.statement,
            "owner": self.owner,
            "risk": self.risk,
            "review_by": self.review_by,
            "frameworks": list(self.frameworks),
            "requests": self.requests,
            "controls": [c.to_dict() for c in self.controls],
            "eval_runs": [r.to_dict() for r in self.eval_runs],
            "approvals": [r.to_dict() for r in self.approvals],
            "approval_outcomes": self.approval_outcomes,
            "drift_alerts": [r.to_dict() for r in self.drift_alerts],
            "escalations": self.escalations,
            "monitored": self.monitored,
        }


@dataclass(frozen=True, slots=True)
class CheckpointRef:
    tree_size: int
    root_hash: str
    key_id: str
    timestamp: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "tree_size": self.tree_size,
            "root_hash": self.root_hash,
            "key_id": self.key_id,
            "timestamp": self.timestamp,
        }


@dataclass(frozen=True, slots=True)
class ItemEvidence:
    """One framework item: the decisions that name it, and whether the period holds evidence."""

    framework: str
    id: str
    title: str
    decisions: tuple[str, ...]
    found: tuple[str, ...]  # the evidence kinds present
    wanted: tuple[str, ...]
    requires_all: bool

    @property
    def has_evidence(self) -> bool:
        if not self.decisions:
            return False
        if self.requires_all:
            return set(self.wanted) <= set(self.found)
        return bool(self.found)

    @property
    def status(self) -> str:
        if not self.decisions:
            return "no decision"
        return "evidence" if self.has_evidence else "no evidence"

    def to_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "item": self.id,
            "title": self.title,
            "decisions": list(self.decisions),
            "status": self.status,
            "evidence_found": list(self.found),
            "evidence_wanted": list(self.wanted),
            "requires": "all" if self.requires_all else "any",
        }


@dataclass(frozen=True, slots=True)
class FrameworkEvidence:
    id: str
    title: str
    url: str | None
    items: tuple[ItemEvidence, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "url": self.url,
            "items": [i.to_dict() for i in self.items],
        }


@dataclass(frozen=True, slots=True)
class EvidenceReport:
    """The evidence of one period, ready to render as Markdown, HTML or JSON."""

    organization: str
    charter_version: str
    start: dt.datetime
    end: dt.datetime
    generated_at: dt.datetime
    records: int
    first_index: int | None
    last_index: int | None
    charter_versions_seen: tuple[str, ...]
    decisions: tuple[DecisionEvidence, ...]
    checkpoints: tuple[CheckpointRef, ...]
    covered: bool
    frameworks: tuple[FrameworkEvidence, ...]
    unknown_framework_items: tuple[str, ...]
    usage: tuple[UsageRow, ...]
    notes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "organization": self.organization,
            "charter_version": self.charter_version,
            "period": {"from": _iso(self.start), "to": _iso(self.end)},
            "generated_at": _iso(self.generated_at),
            "records": self.records,
            "first_index": self.first_index,
            "last_index": self.last_index,
            "charter_versions_seen": list(self.charter_versions_seen),
            "decisions": [d.to_dict() for d in self.decisions],
            "checkpoints": [c.to_dict() for c in self.checkpoints],
            "covered_by_checkpoint": self.covered,
            "frameworks": [f.to_dict() for f in self.frameworks],
            "unknown_framework_items": list(self.unknown_framework_items),
            "usage": [u.to_dict() for u in self.usage],
            "notes": list(self.notes),
        }


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def _in_period(record: AuditRecord, start: dt.datetime, end: dt.datetime) -> bool:
    return start <= dt.datetime.fromisoformat(record.time) < end


def build_report(
    charter: Charter,
    charter_version: str,
    records: Iterable[AuditRecord],
    checkpoints: Sequence[Checkpoint],
    start: dt.datetime,
    end: dt.datetime,
    *,
    mapping: Mapping[str, list[str]] | None = None,
    frameworks: Mapping[str, Framework] | None = None,
    now: dt.datetime | None = None,
) -> EvidenceReport:
    """The evidence report of ``[start, end)`` (aware datetimes) from the audit records."""
    if start.tzinfo is None or end.tzinfo is None:
        raise InvalidRequest("report dates must carry a time zone", hint="use UTC")
    if end <= start:
        raise InvalidRequest(
            f"the report period is empty ({_iso(start)} to {_iso(end)})",
            hint="--to must be after --from",
        )
    known_decisions = {d.id for d in charter.decisions}
    stray = sorted(set(mapping or {}) - known_decisions)
    if stray:
        raise InvalidRequest(
            f"the framework mapping names decisions the charter does not have: {', '.join(stray)}",
            hint="map only the ids listed by `charter explain`",
        )
    period = [r for r in records if _in_period(r, start, end)]
    chains: dict[str, tuple[str, ...]] = {}
    observations = []
    for record in period:
        if record.principal and record.principal not in chains:
            chains[record.principal] = principal_chain(charter, record.principal)
        obs = Observation.from_record(record, chains.get(record.principal or "", ()))
        if obs is not None:
            observations.append((record, obs))
    decisions = tuple(
        _decision_evidence(charter, d.id, period, observations) for d in charter.decisions
    )
    covering, covered = _covering(checkpoints, period)
    catalogs = builtin_frameworks() if frameworks is None else dict(frameworks)
    named = named_items(charter, mapping)
    fw, unknown = _frameworks(catalogs, named, decisions, covered and bool(period))
    notes = []
    if period and not covered:
        notes.append(
            f"records up to index {period[-1].index} are not covered by a signed checkpoint yet: "
            "run `charter audit checkpoint` and make the report again"
        )
    if not period:
        notes.append("the audit trail holds no records in this period")
    return EvidenceReport(
        organization=charter.organization,
        charter_version=charter_version,
        start=start,
        end=end,
        generated_at=now or dt.datetime.now(dt.UTC),
        records=len(period),
        first_index=period[0].index if period else None,
        last_index=period[-1].index if period else None,
        charter_versions_seen=tuple(
            dict.fromkeys(r.charter_version for r in period if r.charter_version)
        ),
        decisions=decisions,
        checkpoints=covering,
        covered=covered,
        frameworks=fw,
        unknown_framework_items=unknown,
        usage=tuple(usage_rows(charter, (obs for _, obs in observations))),
        notes=tuple(notes),
    )


def _decision_evidence(
    charter: Charter,
    decision_id: str,
    period: Sequence[AuditRecord],
    observations: Sequence[tuple[AuditRecord, Observation]],
) -> DecisionEvidence:
    decision = charter.decision(decision_id)
    serving = [c for c in charter.controls if decision_id in c.serves]
    ids = {c.id for c in serving}
    counts: dict[str, Counter[str]] = {c.id: Counter() for c in serving}
    shadow: dict[str, Counter[str]] = {c.id: Counter() for c in serving}
    outcomes: dict[str, Counter[str]] = {c.id: Counter() for c in serving}
    requests = escalations = 0
    # An audit control rules on no request, yet every record is its work.
    everything = any(c.kind == "audit" and c.mode is not Mode.OFF for c in serving)
    for record, obs in observations:
        named = decision_id in record.decision_ids or ids & set(record.control_ids)
        if not (named or everything):
            continue
        requests += 1
        escalated = False
        for ruling in obs.rulings:
            if ruling.control in ids:
                (counts if ruling.enforced else shadow)[ruling.control][ruling.action.value] += 1
                escalated |= ruling.action is Action.ESCALATE
                if ruling.outcome is not None and ruling.outcome != "applied":
                    outcomes[ruling.control][ruling.outcome] += 1
        escalations += escalated

    def refs(kind: RecordKind) -> tuple[RecordRef, ...]:
        return tuple(
            RecordRef.of(r)
            for r in period
            if r.kind is kind and (decision_id in r.decision_ids or ids & set(r.control_ids))
        )

    controls = tuple(
        ControlActivity(
            c.id,
            c.kind,
            c.mode.value,
            dict(counts[c.id]),
            dict(shadow[c.id]),
            dict(outcomes[c.id]),
        )
        for c in serving
    )
    monitored = any(c.kind == "monitor" and c.mode is not Mode.OFF for c in serving)
    return DecisionEvidence(
        id=decision.id,
        statement=decision.statement,
        owner=decision.owner,
        risk=decision.risk.value,
        review_by=decision.review_by.isoformat(),
        frameworks=tuple(decision.frameworks),
        requests=requests,
        controls=controls,
        eval_runs=refs(RecordKind.EVAL_RUN),
        approvals=refs(RecordKind.APPROVAL),
        drift_alerts=refs(RecordKind.DRIFT_ALERT),
        escalations=escalations,
        monitored=monitored,
    )


def _covering(
    checkpoints: Sequence[Checkpoint], period: Sequence[AuditRecord]
) -> tuple[tuple[CheckpointRef, ...], bool]:
    """Checkpoints that cover part of the period, up to the first that covers all of it."""
    if not period:
        return (), False
    first, last = period[0].index, period[-1].index
    out = []
    covered = False
    for c in sorted(checkpoints, key=lambda c: c.tree_size):
        if c.tree_size <= first:
            continue
        out.append(CheckpointRef(c.tree_size, c.root_hash.hex(), c.key_id, c.timestamp))
        if c.tree_size > last:
            covered = True
            break
    return tuple(out), covered


def _kinds_found(decision: DecisionEvidence, covered: bool) -> set[str]:
    found = set()
    if decision.requests:
        found.add("verdict")
    if decision.escalations:
        found.add("escalation")
    if decision.approvals:
        found.add("approval")
    if decision.eval_runs:
        found.add("eval_run")
    if decision.drift_alerts:
        found.add("drift_alert")
    if decision.monitored and decision.requests:
        found.add("monitored")
    if covered:
        found.add("checkpoint")
    return found


def _frameworks(
    catalogs: Mapping[str, Framework],
    named: Mapping[str, list[str]],
    decisions: Sequence[DecisionEvidence],
    covered: bool,
) -> tuple[tuple[FrameworkEvidence, ...], tuple[str, ...]]:
    by_id = {d.id: d for d in decisions}
    known = {item.ref: item for f in catalogs.values() for item in f.items}
    unknown = tuple(sorted(ref for ref in named if ref not in known))
    wanted = sorted({ref.split(":", 1)[0] for ref in named if ref in known})
    out = []
    for fid in wanted:
        framework = catalogs[fid]
        items = []
        for item in framework.items:
            items.append(_item_evidence(item, named.get(item.ref, []), by_id, covered))
        out.append(FrameworkEvidence(framework.id, framework.title, framework.url, tuple(items)))
    return tuple(out), unknown


def _item_evidence(
    item: Item, decision_ids: Sequence[str], by_id: Mapping[str, DecisionEvidence], covered: bool
) -> ItemEvidence:
    found: set[str] = set()
    for decision_id in decision_ids:
        found |= _kinds_found(by_id[decision_id], covered)
    present = tuple(k for k in item.evidence if k in found)
    return ItemEvidence(
        item.framework,
        item.id,
        item.title,
        tuple(decision_ids),
        present,
        item.evidence,
        item.requires_all,
    )
