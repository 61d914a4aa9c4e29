"""The ``approval`` control kind, and how a tool call sent to review finds its approval control.

An approval control judges no request itself: it says who may approve (roles), by when (the
deadline; silence denies) and whom to notify. A ``review`` verdict is served by the first
approval control, in charter order and not ``off``, that serves one of the decisions of the
control that asked for review.
"""

from __future__ import annotations

from collections.abc import Iterable

from charter.document.model import ApprovalControl, Charter, Mode
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage, Verdict


class ApprovalHandler:
    """Registered so the engine accepts the kind; ``charter.approvals.ActionService`` does the
    work, at the moment a tool call is sent to review."""

    stages: frozenset[Stage] = frozenset()

    def __init__(self, control: ApprovalControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        return None


def approval_controls(charter: Charter) -> list[ApprovalControl]:
    """The approval controls that are switched on (enforce or shadow), in charter order."""
    return [
        c for c in charter.controls if isinstance(c, ApprovalControl) and c.mode is not Mode.OFF
    ]


def approval_serving(charter: Charter, decisions: Iterable[str]) -> ApprovalControl | None:
    """The approval control for a review asked for on behalf of ``decisions``, if any."""
    wanted = set(decisions)
    for control in approval_controls(charter):
        if wanted & set(control.serves):
            return control
    return None


register("approval", ApprovalHandler)
