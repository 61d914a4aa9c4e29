"""Verdicts: what one control said about one request, response, tool call or action."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Action(StrEnum):
    """What a control decided. Ordered by severity: a block outranks a redact, and so on."""

    ALLOW = "allow"
    REDACT = "redact"
    ESCALATE = "escalate"
    BLOCK = "block"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {Action.ALLOW: 0, Action.REDACT: 1, Action.ESCALATE: 2, Action.BLOCK: 3}


class Stage(StrEnum):
    """Where in the request path a control looked."""

    REQUEST = "request"  # admission: key, route, budget, rate limit
    INPUT = "input"  # content the user wrote
    UNTRUSTED = "untrusted"  # content the user did not write: tool results, documents, email
    OUTPUT = "output"  # what the model answered
    TOOL_CALL = "tool_call"  # a tool call the model proposed or an agent wants to execute


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open character range ``[start, end)`` of the scanned text, with what was found."""

    start: int
    end: int
    label: str
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """One control's judgment, carrying the decisions behind it so every block can be explained.

    ``enforced`` is False for a control in shadow mode: the verdict is recorded, never acted on.
    """

    action: Action
    control_id: str
    decision_ids: tuple[str, ...]
    reason: str
    stage: Stage
    enforced: bool = True
    score: float | None = None
    spans: tuple[Span, ...] = ()
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def effective(self) -> Action:
        """The action the gateway takes: shadow verdicts never change the outcome."""
        return self.action if self.enforced else Action.ALLOW

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the wire, the audit trail and eval reports."""
        out: dict[str, Any] = {
            "action": self.action.value,
            "control": self.control_id,
            "decisions": list(self.decision_ids),
            "reason": self.reason,
            "stage": self.stage.value,
            "enforced": self.enforced,
        }
        if self.score is not None:
            out["score"] = round(self.score, 4)
        if self.spans:
            out["spans"] = [
                {"start": s.start, "end": s.end, "label": s.label, "score": round(s.score, 4)}
                for s in self.spans
            ]
        if self.evidence:
            out["evidence"] = self.evidence
        return out
