"""Replay recorded traffic against a candidate charter: what would it block that is allowed today,
and what would it let through that is refused today, per decision, with examples.

Records hold content only in the form the charter's audit control allows; replay uses what is
stored (``content: redacted`` keeps the text as the guards redacted it). Both the current charter
and the candidate judge the same stored text, so the comparison is like for like: the route check
and the input guards, exactly as the gateway runs them. Budgets and rate limits depend on the
traffic of the moment and are not replayed; records with no stored text (hashed content, or
requests refused before the provider) are counted, not guessed at.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from charter.audit.records import AuditRecord, ContentForm, RecordKind
from charter.document.model import Charter
from charter.document.version import charter_version
from charter.policy.context import RequestContext
from charter.policy.engine import Engine
from charter.policy.verdict import Action, Stage, Verdict
from charter.storage.base import Store

EXCERPT_CHARS = 160


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded request the candidate would judge differently."""

    kind: str  # "newly_blocked" or "newly_allowed"
    record_index: int
    time: str
    principal: str | None
    model: str | None
    text: str
    current: Action
    candidate: Action
    control: str | None  # the control behind the new refusal, or behind the old one
    decisions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "record_index": self.record_index,
            "time": self.time,
            "principal": self.principal,
            "model": self.model,
            "text": self.text,
            "current": self.current.value,
            "candidate": self.candidate.value,
            "control": self.control,
            "decisions": list(self.decisions),
        }


@dataclass
class DecisionChanges:
    newly_blocked: int = 0
    newly_allowed: int = 0
    examples: list[Change] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplayReport:
    """What would change, per decision."""

    considered: int  # verdict records in the window
    replayed: int
    no_content: int  # hashed, none, or refused before the provider
    other_version: int  # replayed, but recorded under a charter version other than current
    current_version: str
    candidate_version: str
    by_decision: dict[str, DecisionChanges]
    changes: tuple[Change, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "considered": self.considered,
            "replayed": self.replayed,
            "no_content": self.no_content,
            "other_version": self.other_version,
            "current_version": self.current_version,
            "candidate_version": self.candidate_version,
            "by_decision": {
                d: {
                    "newly_blocked": c.newly_blocked,
                    "newly_allowed": c.newly_allowed,
                    "examples": [e.to_dict() for e in c.examples],
                }
                for d, c in self.by_decision.items()
            },
        }


class _Judge:
    """The stateless part of the gateway's request path for one charter: route, input guards."""

    def __init__(self, charter: Charter) -> None:
        from charter.gateway.guarding import Guarding

        self.engine = Engine(charter)
        self.guarding = Guarding(self.engine)

    def judge(self, principal: str, model: str, text: str) -> tuple[Action, Verdict | None]:
        from charter.gateway.guarding import Extension
        from charter.providers.types import ChatRequest, Message

        base = RequestContext(
            Stage.REQUEST, principals=self.engine.principals_of(principal), model=model
        )
        verdicts = list(self.engine.evaluate(base).verdicts)
        if not any(v.effective is Action.BLOCK for v in verdicts):
            request = ChatRequest(model=model, messages=(Message(role="user", content=text),))
            self.guarding.inbound(request, Extension(), base, verdicts)
        worst = max((v.effective for v in verdicts), key=lambda a: a.severity, default=Action.ALLOW)
        deciding = next((v for v in verdicts if v.effective is worst), None)
        return worst, (deciding if worst is not Action.ALLOW else None)


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _records(store: Store, start: dt.datetime, end: dt.datetime) -> list[AuditRecord]:
    size = store.audit_size()
    out = []
    for first in range(0, size, 10_000):
        for leaf in store.audit_leaves(first, min(size, first + 10_000)):
            if leaf.record_json is None:  # summarised by audit retention
                continue
            data = json.loads(leaf.record_json)
            if data.get("kind") != RecordKind.VERDICT:
                continue
            if start <= _parse_time(data["time"]) < end:
                out.append(AuditRecord.from_dict(data))
    return out


def _refused(action: Action) -> bool:
    return action in (Action.BLOCK, Action.ESCALATE)


def replay(
    store: Store,
    current: Charter,
    candidate: Charter,
    start: dt.datetime,
    end: dt.datetime,
    *,
    examples: int = 3,
) -> ReplayReport:
    """Judge the recorded requests in ``[start, end)`` under ``current`` and ``candidate``."""
    now, then = _Judge(candidate), _Judge(current)
    version = charter_version(current)
    records = _records(store, start, end)
    replayed = no_content = other = 0
    by_decision: dict[str, DecisionChanges] = {}
    changes: list[Change] = []
    for record in records:
        text = next(
            (c.value for c in record.content if c.form is ContentForm.REDACTED and c.value), None
        )
        model = record.details.get("model")
        if text is None or record.principal is None or not isinstance(model, str):
            no_content += 1
            continue
        replayed += 1
        other += record.charter_version != version
        was, was_by = then.judge(record.principal, model, text)
        will, will_by = now.judge(record.principal, model, text)
        if _refused(will) and not _refused(was):
            kind, by = "newly_blocked", will_by
        elif _refused(was) and not _refused(will):
            kind, by = "newly_allowed", was_by
        else:
            continue
        change = Change(
            kind=kind,
            record_index=record.index,
            time=record.time,
            principal=record.principal,
            model=model,
            text=text[:EXCERPT_CHARS],
            current=was,
            candidate=will,
            control=by.control_id if by else None,
            decisions=tuple(by.decision_ids) if by else (),
        )
        changes.append(change)
        for decision in change.decisions or ("(none)",):
            entry = by_decision.setdefault(decision, DecisionChanges())
            if kind == "newly_blocked":
                entry.newly_blocked += 1
            else:
                entry.newly_allowed += 1
            if len(entry.examples) < examples:
                entry.examples.append(change)
    return ReplayReport(
        considered=len(records),
        replayed=replayed,
        no_content=no_content,
        other_version=other,
        current_version=version,
        candidate_version=charter_version(candidate),
        by_decision=by_decision,
        changes=tuple(changes),
    )
