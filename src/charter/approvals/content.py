"""Escalated content as a human checkpoint: a guard whose score falls in its escalate band (or
whose hit action is ``escalate``) on what the user wrote, content the user did not write, or an
answer, queues that content in the approval queue instead of answering it.

The review item is an action row (``ActionRow.is_content``) beside the tool calls, so the same
store, sweeper, CLI, admin API, console and audit records serve both. It keeps what a reviewer
needs and no more: the controls, decisions and scanner scores, the stage, principal, model and
request id, a SHA-256 digest of the content, and an excerpt in which every span the charter's
``pii`` and ``secrets`` guards find is replaced by its label (``<EMAIL_ADDRESS>``), truncated
around the flagged span. The content itself is never stored.

Once a reviewer approves it, the caller re-sends the request with ``X-Charter-Approval: <id>``:
the same principal's identical content (same digest, same stage, same escalating controls) then
passes those guards until the approval control's ``use_within`` runs out (every use audited);
other guards still judge it. Nothing here runs for a request no guard escalated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from charter.approvals.control import approval_serving
from charter.approvals.service import EXCERPT_CHARS, ActionService
from charter.document.model import (
    ApprovalControl,
    GuardAction,
    GuardControl,
    Mode,
    duration_seconds,
)
from charter.errors import ConfigurationError, Conflict, ReviewRequired, StorageUnavailable
from charter.policy.context import RequestContext
from charter.policy.engine import Evaluation
from charter.policy.verdict import Action, Span, Stage, Verdict
from charter.storage.base import ActionRow

APPROVAL_HEADER = "x-charter-approval"
MAX_PRESENTED = 8  # approval ids one request may carry (comma-separated)
CONTENT_STAGES = frozenset({Stage.INPUT, Stage.UNTRUSTED, Stage.OUTPUT})
PRIVATE_SCANNERS = frozenset({"pii", "secrets"})  # their spans never reach a reviewer's screen
USABLE = ("approved", "executed")  # executed: used at least once, still within use_within
_STAGE_WORDS = {
    Stage.INPUT: "message",
    Stage.UNTRUSTED: "untrusted content (a document or tool result)",
    Stage.OUTPUT: "answer",
}


def content_digest(text: str) -> str:
    """The digest a review item keeps instead of the content."""
    return "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def review_key(principal: str, stage: Stage, controls: Sequence[str], digest: str) -> str:
    """What makes two escalations the same review: who, where, which controls, what content."""
    canonical = json.dumps([principal, stage.value, sorted(controls), digest])
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_presented(header: str | None) -> tuple[str, ...]:
    """The approval ids of an ``X-Charter-Approval`` header (comma-separated, at most 8)."""
    if not header:
        return ()
    ids = tuple(dict.fromkeys(part.strip() for part in header.split(",") if part.strip()))
    return ids[:MAX_PRESENTED]


@dataclass(frozen=True, slots=True)
class Escalation:
    """One piece of content an enforced guard escalated, with every verdict on it."""

    stage: Stage
    text: str
    evaluation: Evaluation

    @property
    def escalating(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.evaluation.verdicts if v.effective is Action.ESCALATE)

    @property
    def controls(self) -> tuple[str, ...]:
        return tuple(sorted({v.control_id for v in self.escalating}))

    @property
    def digest(self) -> str:
        return content_digest(self.text)

    def key(self, principal: str) -> str:
        return review_key(principal, self.stage, self.controls, self.digest)


@dataclass
class Grants:
    """The approvals a request presented, read from the store once a guard escalated."""

    principal: str
    rows: dict[str, ActionRow] = field(default_factory=dict)  # by approval id
    now: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    presented: tuple[str, ...] = ()  # the ids as the caller sent them, found or not
    used: dict[str, ActionRow] = field(default_factory=dict)  # approvals that cleared content

    def match(self, escalation: Escalation) -> ActionRow | None:
        """The presented approval granted for exactly this content, usable or not."""
        key = escalation.key(self.principal)
        return next(
            (
                r
                for r in self.rows.values()
                if r.content_key == key and r.principal_id == self.principal
            ),
            None,
        )

    def usable(self, row: ActionRow) -> bool:
        return row.status in USABLE and self.now < row.hold_until

    def clear(self, escalation: Escalation) -> Evaluation | None:
        """The evaluation with the escalations an approval covers turned into allows, or None
        when no presented approval may be used for this content now."""
        row = self.match(escalation)
        if row is None or not self.usable(row):
            return None
        assert row.approval_id is not None
        self.used[row.approval_id] = row
        who = f"approved by {row.reviewer} ({row.approval_id})"
        verdicts = tuple(
            replace(
                v,
                action=Action.ALLOW,
                reason=f"{v.reason}; {who}",
                evidence={**v.evidence, "approval_id": row.approval_id},
            )
            if v.effective is Action.ESCALATE
            else v
            for v in escalation.evaluation.verdicts
        )
        return Evaluation(verdicts, escalation.evaluation.charter_version)


def escalating_guards(controls: Iterable[object]) -> list[GuardControl]:
    """Enforced guards that can escalate content: an escalate band, or ``action: escalate``."""
    return [
        c
        for c in controls
        if isinstance(c, GuardControl)
        and c.mode is Mode.ENFORCE
        and (c.settings.escalate_band is not None or c.settings.action is GuardAction.ESCALATE)
    ]


class ContentReviews:
    """Queues escalated content for a person and checks the approvals a caller presents.

    Built on the ``ActionService`` (its store, audit events, notifications); refuses to start
    when an enforced guard can escalate but no approval control serves any of its decisions, as
    the service does for tool policies: an escalation nobody can approve would be a silent block.
    """

    def __init__(self, service: ActionService) -> None:
        self.service = service
        self.engine = service.engine
        charter = service.charter
        for guard in escalating_guards(charter.controls):
            if approval_serving(charter, guard.serves) is None:
                raise ConfigurationError(
                    f"guard `{guard.id}` can escalate content to a person, but no approval "
                    f"control serves any of its decisions ({', '.join(guard.serves)})",
                    hint="add an `approval` control that serves one of them (its reviewers "
                    "are the roles who may approve), or remove the escalate band",
                )
        self._private = [
            c.id
            for c in charter.controls
            if isinstance(c, GuardControl)
            and c.mode is not Mode.OFF
            and c.settings.scanner in PRIVATE_SCANNERS
        ]

    # -- the caller's approvals ------------------------------------------------------------------

    async def grants(self, principal: str, presented: Sequence[str]) -> Grants:
        """The presented approvals that exist (one store read each); unknown ids are left out,
        so they simply cover nothing."""
        rows = await self.service.content_approvals(presented)
        return Grants(
            principal,
            {r.approval_id: r for r in rows if r.approval_id is not None},
            presented=tuple(presented),
        )

    async def use(self, grants: Grants, request_id: str) -> None:
        """Record each approval that let content past its guard (``ActionService.use_approval``);
        one that lapsed since the check refuses the request after all."""
        for row in grants.used.values():
            try:
                await self.service.use_approval(row, request_id, now=grants.now)
            except Conflict:
                raise self._refusal(await self.service.get(row.id), None) from None

    # -- queueing --------------------------------------------------------------------------------

    async def hold(
        self,
        escalation: Escalation,
        ctx: RequestContext,
        grants: Grants | None,
    ) -> ReviewRequired:
        """Queue the content (or find it queued already) and return the error to raise.

        A presented approval for exactly this content that is pending, rejected or lapsed is
        refused as such and queues nothing new.
        """
        presented = grants.match(escalation) if grants is not None else None
        if presented is not None:
            return self._refusal(presented, escalation)
        key = escalation.key(ctx.principal or "")
        row = await self.service.live_review(key)
        if row is None:
            row = self._row(escalation, ctx, key, dt.datetime.now(dt.UTC))
            try:
                await self.service.queue_review(row)
            except Conflict:  # another request (or replica) queued the same content just now
                found = await self.service.live_review(key)
                if found is None:
                    raise StorageUnavailable(
                        "the review of this content could not be queued or found",
                        hint="retry the request",
                    ) from None
                row = found
        note = ""
        if grants is not None and grants.presented:
            note = (
                f" (the approval you sent, {', '.join(grants.presented)}, is not for this content)"
            )
        return self._queued(row, escalation, note)

    def _row(
        self, escalation: Escalation, ctx: RequestContext, key: str, when: dt.datetime
    ) -> ActionRow:
        deciding = escalation.escalating
        approval = self._approval_for(deciding)
        deadline = when + dt.timedelta(seconds=duration_seconds(approval.settings.deadline))
        facts = {
            "stage": escalation.stage.value,
            "model": ctx.model,
            "request_id": ctx.request_id,
            "digest": escalation.digest,
            "chars": len(escalation.text),
            "controls": list(escalation.controls),
            "scores": {
                v.control_id: round(v.score, 4)
                for v in escalation.evaluation.verdicts
                if v.score is not None
            },
        }
        return ActionRow(
            id="rev_" + secrets.token_urlsafe(18),
            tool=f"({escalation.stage.value} content)",
            arguments_json=_canonical(facts),
            principal_id=ctx.principal or "",
            status="pending",
            created_at=when,
            hold_until=deadline,
            updated_at=when,
            subject=ctx.subject,
            conversation_id=ctx.conversation_id,
            excerpt=self.excerpt(escalation, ctx),
            approval_id="apr_" + secrets.token_urlsafe(18),
            control_id=deciding[0].control_id,
            decision_ids_json=_canonical(sorted({d for v in deciding for d in v.decision_ids})),
            reason="; ".join(v.reason for v in deciding),
            approval_control_id=approval.id,
            reviewer_roles_json=_canonical([str(r) for r in approval.settings.reviewers]),
            deadline=deadline,
            content_key=key,
        )

    def _approval_for(self, deciding: Sequence[Verdict]) -> ApprovalControl:
        for verdict in deciding:
            approval = approval_serving(self.service.charter, verdict.decision_ids)
            if approval is not None:
                return approval
        # Only a guard the start-up check let through (none) could get here: fail closed.
        raise ConfigurationError(
            f"no approval control serves the decisions of `{deciding[0].control_id}`",
            hint="add an `approval` control that serves one of them",
        )

    # -- what the reviewer sees ------------------------------------------------------------------

    def excerpt(self, escalation: Escalation, ctx: RequestContext) -> str:
        """The content as a reviewer may see it: the charter's pii and secrets guards' spans
        replaced by their labels, at most ``EXCERPT_CHARS`` around the flagged span."""
        text = escalation.text
        verdicts = list(escalation.evaluation.verdicts)
        seen = {v.control_id for v in verdicts}
        probe = replace(ctx, stage=escalation.stage, text=text)
        for control_id in self._private:
            if control_id not in seen:  # a guard not set for this stage still protects it here
                verdict = self.engine.evaluate_control(control_id, probe)
                if verdict is not None:
                    verdicts.append(verdict)
        private = _resolve(
            s
            for v in verdicts
            if v.evidence.get("scanner") in PRIVATE_SCANNERS and v.action is not Action.ALLOW
            for s in v.spans
        )
        if any(v.evidence.get("error") for v in verdicts if v.control_id in self._private):
            return "(not shown: the PII guard could not scan this content)"
        flagged = next((s for v in escalation.escalating for s in v.spans), None)
        start = 0
        if flagged is not None and len(text) > EXCERPT_CHARS:
            start = max(0, min(flagged.start - EXCERPT_CHARS // 4, len(text) - EXCERPT_CHARS))
        end = min(len(text), start + EXCERPT_CHARS)
        out, at = [], start
        for span in private:
            if span.end <= start or span.start >= end:
                continue
            out.append(text[at : max(at, span.start)])
            out.append(f"<{span.label}>")
            at = max(at, span.end)
        out.append(text[at:end] if at < end else "")
        shown = "".join(out)
        return ("…" if start > 0 else "") + shown + ("…" if end < len(text) else "")

    # -- what the caller is told -----------------------------------------------------------------

    def _queued(self, row: ActionRow, escalation: Escalation, note: str) -> ReviewRequired:
        what = _STAGE_WORDS[escalation.stage]
        controls = f"[control {row.control_id}; decision {', '.join(_decisions(row))}]"
        header = f"X-Charter-Approval: {row.approval_id}"
        if row.status == "pending":
            message = (
                f"This {what} needs a person's review before it is answered: {row.reason} "
                f"{controls}. It is queued as approval {row.approval_id} (a reviewer decides by "
                f"{_when(row.deadline)}; no decision by then denies it){note}."
            )
            hint = f"once it is approved, send the same request again with the header {header}"
            code = "review_pending"
        else:
            message = (
                f"This {what} needs a person's review: {row.reason} {controls}. "
                f"{row.reviewer} approved it as {row.approval_id}{note}."
            )
            hint = f"send the same request again with the header {header} before " + str(
                _when(row.hold_until)
            )
            code = "review_approved"
        return self._error(message, hint, code, row, escalation.stage)

    def _refusal(self, row: ActionRow, escalation: Escalation | None) -> ReviewRequired:
        stage = escalation.stage if escalation else Stage(json.loads(row.arguments_json)["stage"])
        said = {
            "pending": (
                f"approval {row.approval_id} is still waiting for a reviewer (deadline "
                f"{_when(row.deadline)})",
                "send the request again once it is approved",
                "review_pending",
            ),
            "rejected": (
                f"approval {row.approval_id} was rejected by {row.reviewer} at "
                f"{_when(row.reviewed_at)}: {row.review_reason}",
                "this content will not be answered; change the request, or send it without "
                "the header to ask a person again",
                "review_rejected",
            ),
        }.get(
            row.status,
            (
                f"approval {row.approval_id} has lapsed ({row.status} at "
                f"{_when(row.deadline if row.status == 'expired' else row.hold_until)})",
                "send the request again without the header to ask a person again",
                "review_expired",
            ),
        )
        message, hint, code = said
        if row.status in USABLE:  # used up its window between the check and the use
            message = (
                f"approval {row.approval_id} is no longer usable (until {_when(row.hold_until)})"
            )
            hint, code = "send the request again without the header to ask again", "review_expired"
        controls = f"[control {row.control_id}; decision {', '.join(_decisions(row))}]"
        return self._error(
            f"This content was not answered: {message} {controls}.", hint, code, row, stage
        )

    def _error(
        self, message: str, hint: str, code: str, row: ActionRow, stage: Stage
    ) -> ReviewRequired:
        return ReviewRequired(
            message,
            hint=hint,
            code=code,
            approval={
                "id": row.approval_id,
                "status": row.status,
                "stage": stage.value,
                "deadline": _when(row.deadline),
                "usable_until": _when(row.hold_until) if row.status in USABLE else None,
            },
            charter={
                "control": row.control_id,
                "decisions": _decisions(row),
                "version": self.engine.version,
            },
        )


def _decisions(row: ActionRow) -> list[str]:
    return list(json.loads(row.decision_ids_json))


def _resolve(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans by start (the longer one wins an overlap)."""
    kept: list[Span] = []
    for span in sorted(spans, key=lambda s: (s.start - s.end, s.start)):
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds")
