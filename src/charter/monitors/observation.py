"""One request reduced to what statistics need, from a live gateway outcome or an audit record.

Drift monitors, metrics, `charter status` and evidence reports all read ``Observation``, so the
numbers a live monitor alerts on are the numbers a report recomputes later from the audit trail.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from charter.audit.records import AuditRecord, RecordKind
from charter.policy.verdict import Action, Verdict

if TYPE_CHECKING:
    from charter.gateway.service import Outcome

UPSTREAM_STATUSES = frozenset({502, 504})


@dataclass(frozen=True, slots=True)
class Ruling:
    """One control's verdict on the request, as statistics see it."""

    control: str
    action: Action
    enforced: bool = True
    score: float | None = None
    topic: str | None = None  # what the control found: a topic name, a PII entity type
    outcome: str | None = None  # a standard's outcome: met, repaired, flagged or blocked


@dataclass(frozen=True, slots=True)
class Observation:
    """How one request ended: who asked, what it cost, and what each control said."""

    at: float  # unix seconds
    request_id: str
    principals: tuple[str, ...]  # the caller, then the apps and teams it belongs to
    model: str
    status: int
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micro_usd: int = 0
    rulings: tuple[Ruling, ...] = ()

    @property
    def refused(self) -> bool:
        """A control blocked the request or replaced its answer (shadow verdicts never count)."""
        return any(r.action is Action.BLOCK and r.enforced for r in self.rulings)

    @property
    def escalated(self) -> bool:
        """Some control sent the request to a human (or would have, in shadow mode)."""
        return any(r.action is Action.ESCALATE for r in self.rulings)

    @property
    def intervened(self) -> bool:
        """A control changed what happened: blocked, redacted or escalated it."""
        return any(r.action is not Action.ALLOW and r.enforced for r in self.rulings)

    @property
    def answered(self) -> bool:
        """The request got a real answer (status 200 and not refused)."""
        return self.status == 200 and not self.refused

    @property
    def upstream_error(self) -> bool:
        return self.status in UPSTREAM_STATUSES

    @property
    def outcome_class(self) -> str:
        """answered (without intervention), intervened, refused or error: a bounded label."""
        if self.refused:
            return "refused"
        if self.status >= 400:
            return "error"
        return "intervened" if self.intervened else "answered"

    def ruling(self, control: str) -> Ruling | None:
        """The verdict of ``control`` on this request, if it ruled (the last one, if several)."""
        found = None
        for ruling in self.rulings:
            if ruling.control == control:
                found = ruling
        return found

    @classmethod
    def from_outcome(cls, outcome: Outcome, principals: tuple[str, ...], at: float) -> Observation:
        """From the gateway's ``Outcome`` of a request that just ended."""
        usage = outcome.usage
        return cls(
            at=at,
            request_id=outcome.request_id,
            principals=principals or (outcome.principal,),
            model=outcome.model,
            status=outcome.status,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            cost_micro_usd=outcome.cost_micro_usd,
            rulings=tuple(_ruling(v) for v in outcome.verdicts),
        )

    @classmethod
    def from_record(cls, record: AuditRecord, principals: tuple[str, ...]) -> Observation | None:
        """From a verdict record of the audit trail; None for records of other kinds."""
        if record.kind is not RecordKind.VERDICT:
            return None
        details = record.details
        return cls(
            at=datetime.fromisoformat(record.time).timestamp(),
            request_id=record.request_id or "",
            principals=principals or ((record.principal,) if record.principal else ()),
            model=str(details.get("model") or ""),
            status=_int(details.get("status"), 200),
            input_tokens=_int(details.get("input_tokens"), 0),
            output_tokens=_int(details.get("output_tokens"), 0),
            cost_micro_usd=_int(details.get("cost_micro_usd"), 0),
            rulings=_record_rulings(details.get("verdicts")),
        )


def _ruling(v: Verdict) -> Ruling:
    outcome = v.evidence.get("outcome") if "standard" in v.evidence else None
    return Ruling(
        v.control_id,
        v.action,
        v.enforced,
        v.score,
        _topic(v),
        outcome if isinstance(outcome, str) else None,
    )


def _topic(v: Verdict) -> str | None:
    topic = v.evidence.get("topic")
    if isinstance(topic, str):
        return topic
    return v.spans[0].label if v.spans else None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _record_rulings(raw: Any) -> tuple[Ruling, ...]:
    """The verdict summaries the gateway writes into ``details.verdicts`` (a JSON list)."""
    if not isinstance(raw, str):
        return ()
    try:
        items = json.loads(raw)
    except ValueError:
        return ()
    out = []
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, dict) or not isinstance(item.get("control"), str):
            continue
        try:
            action = Action(str(item.get("action")))
        except ValueError:
            continue
        score = item.get("score")
        topic = item.get("topic")
        out.append(
            Ruling(
                item["control"],
                action,
                enforced=not item.get("shadow", False),
                score=float(score) if isinstance(score, int | float) else None,
                topic=topic if isinstance(topic, str) else None,
                outcome=str(item["outcome"]) if isinstance(item.get("outcome"), str) else None,
            )
        )
    return tuple(out)
