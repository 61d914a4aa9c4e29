"""The action service: authorize a tool call, hold its rate caps until it is executed, and run the
human checkpoint (approve, reject, deadlines), staged execution, reverts and circuit breakers.

Rate caps count only executed calls, exactly, across replicas: ``authorize`` reserves each cap as
a claim on the shared counters (Redis when scaled out) under the action's id; ``executed``
confirms it; a denied call reserves nothing; a rejected, expired or abandoned call gives its
reservation back. Every action lives in the store, so any replica can confirm or release it.
Holds lapse at ``hold_until`` (the policy's ``hold`` after authorization or approval, the
approval deadline while pending); ``expire_due`` (run by ``run_sweeper`` on every replica, safe
concurrently) moves lapsed actions to ``abandoned`` / ``expired`` and releases them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from types import MappingProxyType
from typing import Any, Literal, TypeVar

import anyio.to_thread

from charter.approvals.control import approval_controls, approval_serving
from charter.approvals.webhooks import Notifier, WebhookSender
from charter.counters import Claim, Counters
from charter.document.model import (
    ActionWebhook,
    ApprovalControl,
    Mode,
    OnError,
    Role,
    ToolPolicyControl,
    Verdict3,
    duration_seconds,
)
from charter.errors import (
    ConfigurationError,
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    StorageUnavailable,
    UpstreamError,
)
from charter.ownership import OwnershipResolver
from charter.policy.context import RequestContext, ToolCall
from charter.policy.engine import Engine, Evaluation
from charter.policy.verdict import Action, Stage, Verdict
from charter.storage.base import (
    LIVE_STATUSES,
    ActionChange,
    ActionRow,
    BreakerRow,
    Store,
)
from charter.tools.policy import RateClaim, ToolPolicyHandler

log = logging.getLogger(__name__)

T = TypeVar("T")

# A claim a reviewer may override (over: review) is reserved with no limit: it still counts.
UNLIMITED = 2**62
EXCERPT_CHARS = 2000
MAX_NAME_CHARS = 200
SYSTEM_PRINCIPAL = "charter"  # who trips a breaker automatically
Decision = Literal["allow", "deny", "review"]
_VERDICT_NAME: dict[Action, Decision] = {
    Action.ALLOW: "allow",
    Action.REDACT: "allow",
    Action.BLOCK: "deny",
    Action.ESCALATE: "review",
}
DEFAULT_HOLD_S = 900  # the format's default hold (15m), for calls no policy governs


@dataclass(frozen=True, slots=True)
class Authorization:
    """The answer to one proposed tool call.

    ``id`` names the action to report executed (None when denied: nothing is held).
    ``approval_id`` is set when the call waits for a person; it runs only once approved.
    """

    id: str | None
    verdict: Action
    reasons: tuple[str, ...]
    approval_id: str | None = None
    verdicts: tuple[Verdict, ...] = ()
    deadline: dt.datetime | None = None
    hold_until: dt.datetime | None = None
    charter_version: str = ""

    @property
    def decision(self) -> Decision:
        """``allow``, ``deny`` or ``review``: the charter's words for the verdict."""
        return _VERDICT_NAME[self.verdict]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form for the authorization API."""
        return {
            "id": self.id,
            "decision": self.decision,
            "reasons": list(self.reasons),
            "approval_id": self.approval_id,
            "deadline": _iso(self.deadline),
            "hold_until": _iso(self.hold_until),
            "verdicts": [v.to_dict() for v in self.verdicts],
            "charter_version": self.charter_version,
        }


@dataclass(frozen=True, slots=True)
class ActionEvent:
    """One step of an action's life, for the audit trail: what happened, to what, when."""

    kind: str  # authorized, review_requested, approved, rejected, expired, abandoned, executed,
    # execution_failed, reverted, breaker_tripped, breaker_reset, used (escalated content let past)
    at: dt.datetime
    action: ActionRow | None = None
    breaker: BreakerRow | None = None
    request_id: str | None = None  # the request that used an approval of escalated content


@dataclass(frozen=True, slots=True)
class _Policy:
    control: ToolPolicyControl
    handler: ToolPolicyHandler

    @property
    def enforced(self) -> bool:
        return self.control.mode is Mode.ENFORCE


@dataclass
class _Tool:
    """Everything the charter says about one tool, merged over its policies."""

    name: str
    policies: list[_Policy] = field(default_factory=list)

    @property
    def enforced(self) -> list[_Policy]:
        return [p for p in self.policies if p.enforced]

    def first(self, pick: Callable[[ToolPolicyControl], T | None]) -> T | None:
        for policy in self.enforced:
            value = pick(policy.control)
            if value is not None:
                return value
        return None

    @property
    def hold_s(self) -> int:
        holds = [p.handler.hold_s for p in self.enforced] or [
            p.handler.hold_s for p in self.policies
        ]
        return min(holds)

    @property
    def reversible(self) -> bool:
        return any(p.control.settings.reversible for p in self.enforced)


class ActionService:
    """Authorization, reservations and human checkpoints for tool calls; no HTTP in it.

    ``counters`` must be the counters the gateway admits with (``engine.runtime.counters``, or a
    ``RedisCounters`` on the same Redis and prefix). Pass None from a process that cannot reach
    them (the CLI next to an embedded gateway): it may review but not authorize, and leaves
    giving reservations back to the gateway's sweeper.
    """

    def __init__(
        self,
        engine: Engine,
        store: Store,
        counters: Counters | None,
        *,
        sender: WebhookSender | None = None,
        env: Mapping[str, str] | None = None,
        on_event: Callable[[ActionEvent], None] | None = None,
        clock: Callable[[], float] | None = None,
        ownership: OwnershipResolver | None = None,
    ) -> None:
        self.engine = engine
        self.charter = engine.charter
        self.store = store
        self.counters = counters
        self.sender = sender or WebhookSender()
        self.notifier = Notifier(self.sender)
        self.on_event = on_event
        self._clock = clock or time.time
        environ = os.environ if env is None else env
        self._roles = {p.id: set(p.roles) for p in self.charter.principals}
        self._tools: dict[str, _Tool] = {}
        for control in self.charter.controls:
            if isinstance(control, ToolPolicyControl) and control.mode is not Mode.OFF:
                handler = ToolPolicyHandler(control, self.charter, engine.runtime)
                tool = self._tools.setdefault(handler.tool, _Tool(handler.tool))
                tool.policies.append(_Policy(control, handler))
        self._check_reviews_have_approvals()
        self._secrets = _webhook_secrets(self._tools, approval_controls(self.charter), environ)
        # Ownership lookups run here, before the engine: it decides on their answers.
        self.ownership = ownership or OwnershipResolver(self.charter, env=environ)

    # -- set-up checks ---------------------------------------------------------------------------

    def _check_reviews_have_approvals(self) -> None:
        for tool in self._tools.values():
            for policy in tool.enforced:
                if _may_review(policy.control) and self._approval_for(policy.control) is None:
                    raise ConfigurationError(
                        f"tool_policy `{policy.control.id}` can send {tool.name} calls to "
                        "review, but no approval control serves any of its decisions "
                        f"({', '.join(policy.control.serves)})",
                        hint="add an `approval` control that serves one of them "
                        "(its reviewers are the roles who may approve)",
                    )

    def _approval_for(self, control: ToolPolicyControl | None) -> ApprovalControl | None:
        return None if control is None else approval_serving(self.charter, control.serves)

    # -- authorize -------------------------------------------------------------------------------

    async def authorize(
        self,
        principal: str,
        tool: str,
        arguments: Mapping[str, Any] | str,
        *,
        subject: str | None = None,
        conversation_id: str | None = None,
        history: Sequence[str] = (),
        attributes: Mapping[str, Any] | None = None,
        excerpt: str = "",
        now: dt.datetime | None = None,
    ) -> Authorization:
        """Decide one proposed tool call: allow (and hold its rate caps), deny, or review.

        ``arguments`` is a JSON object, or its text as OpenAI tool calls carry it. ``history``
        is the tools called earlier in the conversation; ``attributes`` is caller-supplied
        context such as ``{"customer_orders": ["4821"]}``. Raises ``InvalidRequest`` for input
        that is not a tool call at all; a call that breaks a rule is a ``deny``, not an error.
        """
        args = _arguments(arguments)
        self._check_caller(principal, tool, subject, conversation_id, history, attributes)
        when = self._now(now)
        action_id = _new_id("act_")
        ctx = RequestContext(
            Stage.TOOL_CALL,
            request_id=action_id,
            principals=self.engine.principals_of(principal),
            tool_call=ToolCall(tool, MappingProxyType(args)),
            subject=subject,
            conversation_id=conversation_id,
            history=tuple(history),
            attributes=MappingProxyType(dict(attributes or {})),
            now=when.timestamp(),
        )
        governed = self._tools.get(tool)
        if governed is None:
            return await self._pass_through(ctx, args, principal, excerpt, when)
        breaker = await self._breaker_verdict(governed)
        if breaker is not None and breaker.enforced:
            return self._denied(Evaluation((breaker,), self.engine.version))
        ctx = await self.ownership.with_answers(ctx)
        verdicts = [*self.engine.evaluate(ctx).verdicts, *([breaker] if breaker else [])]
        if Evaluation(tuple(verdicts), self.engine.version).action is Action.BLOCK:
            return self._denied(Evaluation(tuple(verdicts), self.engine.version))
        reserved, rate_verdicts = await self._reserve(ctx, governed)
        evaluation = Evaluation((*verdicts, *rate_verdicts), self.engine.version)
        if evaluation.action is Action.BLOCK:
            await self._give_back(action_id, reserved, when)
            return self._denied(evaluation)
        try:
            if evaluation.action is Action.ESCALATE:
                return await self._request_review(
                    ctx, governed, evaluation, reserved, args, principal, excerpt, when
                )
            return await self._allow(ctx, governed, evaluation, reserved, args, principal, excerpt)
        except BaseException:
            await self._give_back(action_id, reserved, when)
            raise

    def _check_caller(
        self,
        principal: str,
        tool: str,
        subject: str | None,
        conversation_id: str | None,
        history: Sequence[str],
        attributes: Mapping[str, Any] | None,
    ) -> None:
        _name(tool, "tool")
        _name(principal, "principal")
        if principal not in self._roles:
            raise InvalidRequest(
                f"unknown principal {principal!r}", hint="pass a principal of the charter"
            )
        if subject is not None:
            _name(subject, "subject")
        if conversation_id is not None:
            _name(conversation_id, "conversation_id")
        if isinstance(history, str) or not all(isinstance(h, str) for h in history):
            raise InvalidRequest(
                "history must be a list of tool names", hint='e.g. ["read_inbox", "lookup_order"]'
            )
        if attributes is not None and not isinstance(attributes, Mapping):
            raise InvalidRequest(
                "attributes must be an object", hint='e.g. {"customer_orders": ["4821"]}'
            )

    async def _pass_through(
        self,
        ctx: RequestContext,
        args: dict[str, Any],
        principal: str,
        excerpt: str,
        when: dt.datetime,
    ) -> Authorization:
        tool = ctx.tool_call.name if ctx.tool_call else ""
        reason = f"no tool_policy governs `{tool}`; tools without a policy pass through"
        hold = when + dt.timedelta(seconds=DEFAULT_HOLD_S)
        row = self._row(ctx, args, principal, excerpt, "authorized", when, hold, [])
        await self._db(self.store.create_action, row)
        self._emit("authorized", when, row)
        return Authorization(
            row.id, Action.ALLOW, (reason,), hold_until=hold, charter_version=self.engine.version
        )

    async def _breaker_verdict(self, tool: _Tool) -> Verdict | None:
        states = await self._db(self.store.breakers)
        state = next((b for b in states if b.tool == tool.name and b.tripped), None)
        if state is None:
            return None
        policy = (tool.enforced or tool.policies)[0]
        return Verdict(
            Action.BLOCK,
            policy.control.id,
            tuple(policy.control.serves),
            f"{tool.name} is paused for everyone: its circuit breaker was tripped by {state.by} "
            f"at {_iso(state.at)} ({state.reason}); an admin resets it with a reason",
            Stage.TOOL_CALL,
            enforced=policy.enforced,
            evidence={"tool": tool.name, "verdict": "deny", "rules": [{"rule": "breaker"}]},
        )

    async def _reserve(self, ctx: RequestContext, tool: _Tool) -> tuple[list[Claim], list[Verdict]]:
        """Reserve every enforced rate claim in one atomic step; shadow ones are only measured."""
        enforced = [(p, rc) for p in tool.enforced for rc in p.handler.rate_claims(ctx)]
        verdicts = await self._shadow_rates(ctx, tool)
        if not enforced:
            return [], verdicts
        counters = self._live_counters()
        forced: set[int] = set()
        while True:
            claims = [
                replace(rc.claim, limit=UNLIMITED) if i in forced else rc.claim
                for i, (_, rc) in enumerate(enforced)
            ]
            try:
                result = await counters.admit(ctx.request_id, claims, ctx.now)
            except StorageUnavailable as exc:
                controls = {p.control.id: p.control for p, _ in enforced}
                verdicts += [_error_verdict(c, exc) for c in controls.values()]
                return [], verdicts
            if result.ok:
                return claims, verdicts
            assert result.failed is not None  # sliding claims never ask for a seed
            policy, rate = enforced[result.failed]
            verdicts.append(_rate_verdict(policy, rate, result.used, enforced=True))
            if rate.over is Verdict3.DENY:
                return [], verdicts
            forced.add(result.failed)  # a person may allow it; it still counts once executed

    async def _shadow_rates(self, ctx: RequestContext, tool: _Tool) -> list[Verdict]:
        out = []
        for policy in tool.policies:
            if policy.enforced or self.counters is None:
                continue
            for rate in policy.handler.rate_claims(ctx):
                try:
                    used = await self.counters.usage(rate.claim, ctx.now)
                except StorageUnavailable:
                    log.warning("shadow rate of %s not measured", policy.control.id)
                    continue
                if used + rate.claim.amount > rate.claim.limit:
                    out.append(_rate_verdict(policy, rate, used, enforced=False))
        return out

    def _denied(self, evaluation: Evaluation) -> Authorization:
        deciding = [v for v in evaluation.verdicts if v.effective is Action.BLOCK]
        return Authorization(
            None,
            Action.BLOCK,
            tuple(v.reason for v in deciding),
            verdicts=evaluation.verdicts,
            charter_version=evaluation.charter_version,
        )

    async def _allow(
        self,
        ctx: RequestContext,
        tool: _Tool,
        evaluation: Evaluation,
        reserved: list[Claim],
        args: dict[str, Any],
        principal: str,
        excerpt: str,
    ) -> Authorization:
        when = _at(ctx.now)
        hold = when + dt.timedelta(seconds=tool.hold_s)
        row = self._row(ctx, args, principal, excerpt, "authorized", when, hold, reserved)
        await self._db(self.store.create_action, row)
        self._emit("authorized", when, row)
        reasons = tuple(v.reason for v in evaluation.verdicts if v.enforced)
        return Authorization(
            row.id,
            Action.ALLOW,
            reasons,
            verdicts=evaluation.verdicts,
            hold_until=hold,
            charter_version=evaluation.charter_version,
        )

    async def _request_review(
        self,
        ctx: RequestContext,
        tool: _Tool,
        evaluation: Evaluation,
        reserved: list[Claim],
        args: dict[str, Any],
        principal: str,
        excerpt: str,
        when: dt.datetime,
    ) -> Authorization:
        deciding = [v for v in evaluation.verdicts if v.effective is Action.ESCALATE]
        control = next(
            (p.control for p in tool.enforced if p.control.id == deciding[0].control_id), None
        )
        approval = self._approval_for(control) or approval_serving(
            self.charter, deciding[0].decision_ids
        )
        if approval is None:  # only a control of another kind could ask for review this way
            return self._denied(
                Evaluation(
                    (
                        *evaluation.verdicts,
                        replace(
                            deciding[0],
                            action=Action.BLOCK,
                            reason=f"{deciding[0].reason}; no approval control serves its "
                            "decisions, so nobody can approve it (fail closed)",
                        ),
                    ),
                    evaluation.charter_version,
                )
            )
        deadline = when + dt.timedelta(seconds=duration_seconds(approval.settings.deadline))
        row = replace(
            self._row(ctx, args, principal, excerpt, "pending", when, deadline, reserved),
            approval_id=_new_id("apr_"),
            control_id=deciding[0].control_id,
            decision_ids_json=_json(list(deciding[0].decision_ids)),
            reason="; ".join(v.reason for v in deciding),
            approval_control_id=approval.id,
            reviewer_roles_json=_json([str(r) for r in approval.settings.reviewers]),
            deadline=deadline,
        )
        await self._db(self.store.create_action, row)
        self._emit("review_requested", when, row)
        self._notify(approval, row)
        return Authorization(
            row.id,
            Action.ESCALATE,
            tuple(v.reason for v in deciding),
            approval_id=row.approval_id,
            verdicts=evaluation.verdicts,
            deadline=deadline,
            hold_until=deadline,
            charter_version=evaluation.charter_version,
        )

    def _row(
        self,
        ctx: RequestContext,
        args: dict[str, Any],
        principal: str,
        excerpt: str,
        status: str,
        when: dt.datetime,
        hold: dt.datetime,
        reserved: list[Claim],
    ) -> ActionRow:
        return ActionRow(
            id=ctx.request_id,
            tool=ctx.tool_call.name if ctx.tool_call else "",
            arguments_json=_json(args),
            principal_id=principal,
            status=status,
            created_at=when,
            hold_until=hold,
            updated_at=when,
            subject=ctx.subject,
            conversation_id=ctx.conversation_id,
            excerpt=str(excerpt)[:EXCERPT_CHARS],
            claims_json=_json([_claim_dict(c) for c in reserved]),
        )

    def _notify(self, approval: ApprovalControl, row: ActionRow) -> None:
        url = approval.settings.notify_webhook
        if url is None:
            return
        payload = {"type": "approval.pending", **action_dict(row)}
        self.notifier.send(url, payload, self._secrets[f"approval:{approval.id}"])

    def _approval_control(self, control_id: str | None) -> ApprovalControl | None:
        return next((a for a in approval_controls(self.charter) if a.id == control_id), None)

    def _use_within_s(self, row: ActionRow) -> int:
        approval = self._approval_control(row.approval_control_id)
        return duration_seconds(approval.settings.use_within if approval else "1h")

    # -- escalated content (the gateway's side; see charter.approvals.content) -------------------

    async def queue_review(self, row: ActionRow) -> ActionRow:
        """Store a new pending review of escalated content, audit it and notify its approval
        control's webhook. ``Conflict`` when a live review of the same content exists."""
        await self._db(self.store.create_action, row)
        self._emit("review_requested", row.created_at, row)
        approval = self._approval_control(row.approval_control_id)
        if approval is not None:
            self._notify(approval, row)
        return row

    async def live_review(
        self, content_key: str, now: dt.datetime | None = None
    ) -> ActionRow | None:
        """The review of this content that still stands: pending, or approved (or used) and
        still usable. A pending or approved one past its time is lapsed first, as the sweeper
        would (default deny)."""
        when = self._now(now)
        row = await self._db(self.store.find_content_review, content_key)
        if row is None:
            return None
        if row.status in ("pending", "approved") and when >= row.hold_until:
            await self._lapse(row, when)
            return None
        if row.status == "pending" or (
            row.status in ("approved", "executed") and when < row.hold_until
        ):
            return row
        return None

    async def content_approvals(self, approval_ids: Sequence[str]) -> list[ActionRow]:
        """The content reviews behind these approval ids (unknown ids and tool calls left out)."""
        rows = []
        for approval_id in approval_ids:
            row = await self._db(self.store.find_approval, approval_id)
            if row is not None and row.is_content:
                rows.append(row)
        return rows

    async def use_approval(
        self, row: ActionRow, request_id: str, *, now: dt.datetime | None = None
    ) -> ActionRow:
        """Record that an approval let its content past the guard for ``request_id``: the first
        use moves it to ``executed``; every use is an event (an audit record). ``Conflict`` when
        it is no longer usable (it lapsed between the caller's check and now)."""
        when = self._now(now)
        current = row
        if row.status == "approved":
            change = ActionChange("executed", when, settled=True)
            moved = await self._db(self.store.update_action, row.id, ["approved"], change)
            current = moved or await self._action(row.id)
        if current.status not in ("approved", "executed") or when >= current.hold_until:
            raise _status_conflict(current)
        self._emit("used", when, current, request_id=request_id)
        return current

    # -- executed, and the reviewers' side -------------------------------------------------------

    async def executed(
        self,
        action_id: str,
        *,
        outcome: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
    ) -> ActionRow:
        """Report that the caller executed an allowed or approved action: its caps now count.

        ``Conflict`` when the action is waiting for approval, was rejected, expired, lapsed or
        was already reported; ``NotFound`` for an id ``authorize`` never returned.
        """
        when = self._now(now)
        row = await self._action(action_id)
        if row.is_content:
            raise InvalidRequest(
                f"{row.id} is a review of escalated content, not a tool call",
                hint=f"once approved, the caller re-sends its request with the header "
                f"X-Charter-Approval: {row.approval_id}",
            )
        if row.status not in ("authorized", "approved"):
            raise _status_conflict(row)
        if when >= row.hold_until:
            await self._lapse(row, when)
            raise _status_conflict(await self._action(action_id))
        change = ActionChange(
            "executed",
            when,
            outcome_json=_json(dict(outcome)) if outcome is not None else None,
            settled=True,
        )
        updated = await self._db(self.store.update_action, row.id, [row.status], change)
        if updated is None:
            raise _status_conflict(await self._action(action_id))
        self._emit("executed", when, updated)
        await self._check_breaker(updated.tool, when)
        return updated

    async def approve(
        self, approval_id: str, reviewer: str, reason: str, *, now: dt.datetime | None = None
    ) -> ActionRow:
        """Approve a pending action as ``reviewer`` (a principal holding a listed role).

        When the tool's policy names an ``execute`` webhook Charter executes it at once and
        records the outcome; otherwise the caller may now execute it and report ``executed``.
        """
        when = self._now(now)
        row = await self._pending_for(approval_id, reviewer, reason, when, approving=True)
        tool = None if row.is_content else self._tools.get(row.tool)
        hold = when + dt.timedelta(
            seconds=self._use_within_s(row)
            if row.is_content
            else (tool.hold_s if tool else DEFAULT_HOLD_S)
        )
        change = ActionChange(
            "approved", when, hold_until=hold, reviewer=reviewer, review_reason=reason
        )
        updated = await self._db(self.store.update_action, row.id, ["pending"], change)
        if updated is None:
            raise _status_conflict(await self._action(row.id))
        self._emit("approved", when, updated)
        if tool is not None and tool.first(lambda c: c.settings.execute) is not None:
            return await self.execute(updated.id, now=when)
        return updated

    async def reject(
        self, approval_id: str, reviewer: str, reason: str, *, now: dt.datetime | None = None
    ) -> ActionRow:
        """Reject a pending action; its reservation is given back."""
        when = self._now(now)
        row = await self._pending_for(approval_id, reviewer, reason, when, approving=False)
        change = ActionChange("rejected", when, reviewer=reviewer, review_reason=reason)
        updated = await self._db(self.store.update_action, row.id, ["pending"], change)
        if updated is None:
            raise _status_conflict(await self._action(row.id))
        self._emit("rejected", when, updated)
        return await self._release(updated, when)

    async def _pending_for(
        self, approval_id: str, reviewer: str, reason: str, when: dt.datetime, *, approving: bool
    ) -> ActionRow:
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidRequest(
                "a review needs a reason", hint="say why, e.g. --reason 'matches the invoice'"
            )
        row = await self.get_approval(approval_id)
        roles = sorted(str(r) for r in self._roles.get(reviewer, set()))
        needed = json.loads(row.reviewer_roles_json)
        if reviewer not in self._roles:
            raise PermissionDenied(
                f"{reviewer!r} is not a principal of the charter, so cannot review",
                hint=f"a reviewer is a principal holding one of the roles {needed}",
            )
        if not set(roles) & set(needed):
            raise PermissionDenied(
                f"{reviewer} holds roles {roles or 'none'}; approval {approval_id} needs one "
                f"of {needed} (control {row.approval_control_id})",
                hint="give the reviewer one of those roles in the charter's principals",
            )
        if approving and reviewer in (row.principal_id, row.subject):
            raise PermissionDenied(
                f"{reviewer} asked for this action and cannot approve it themselves",
                hint="another reviewer must approve it",
            )
        if row.status != "pending":
            raise _status_conflict(row)
        if row.deadline is not None and when >= row.deadline:
            await self._lapse(row, when)
            raise _status_conflict(await self._action(row.id))
        return row

    async def execute(self, action_id: str, *, now: dt.datetime | None = None) -> ActionRow:
        """Execute an approved action through the policy's ``execute`` webhook.

        The action id is the ``Idempotency-Key``, so retrying (this method again, until the hold
        lapses) never executes twice at a receiver that honours it. The outcome is recorded
        either way; a failed call leaves the action approved.
        """
        when = self._now(now)
        row = await self._action(action_id)
        tool = self._tools.get(row.tool)
        hook = tool.first(lambda c: c.settings.execute) if tool else None
        if hook is None:
            raise InvalidRequest(
                f"the policy of {row.tool} names no execute webhook",
                hint="the caller executes it and reports `executed`",
            )
        if row.status != "approved":
            raise _status_conflict(row)
        delivery = await self._post(hook, row, "execute", row.id)
        outcome = _json({"execute": delivery.to_dict()})
        if delivery.ok:
            change = ActionChange("executed", when, outcome_json=outcome, settled=True)
        else:
            change = ActionChange("approved", when, outcome_json=outcome)
        updated = await self._db(self.store.update_action, row.id, ["approved"], change)
        if updated is None:
            raise _status_conflict(await self._action(row.id))
        self._emit("executed" if delivery.ok else "execution_failed", when, updated)
        if delivery.ok:
            await self._check_breaker(updated.tool, when)
        return updated

    async def revert(
        self, action_id: str, by: str, reason: str, *, now: dt.datetime | None = None
    ) -> ActionRow:
        """Revert an executed action of a ``reversible`` tool, through ``compensate`` if set.

        ``by`` must be an admin or hold a role of the approval control that serves the tool's
        policy. The caps it used stay used: a revert undoes the effect, not the attempt.
        """
        when = self._now(now)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidRequest("a revert needs a reason")
        row = await self._action(action_id)
        tool = self._tools.get(row.tool)
        if tool is None or not tool.reversible:
            raise InvalidRequest(
                f"{row.tool} is not reversible",
                hint="the charter's tool_policy must say `reversible: true`",
            )
        approval = self._approval_for(tool.enforced[0].control if tool.enforced else None)
        allowed = {Role.ADMIN} | (set(approval.settings.reviewers) if approval else set())
        if not self._roles.get(by, set()) & allowed:
            raise PermissionDenied(
                f"{by} may not revert {row.tool} actions",
                hint=f"a principal with one of the roles {sorted(map(str, allowed))} may",
            )
        if row.status != "executed":
            raise _status_conflict(row)
        previous = json.loads(row.outcome_json) if row.outcome_json else {}
        record: dict[str, Any] = {"by": by, "reason": reason}
        hook = tool.first(lambda c: c.settings.compensate)
        if hook is not None:
            delivery = await self._post(hook, row, "compensate", f"{row.id}:revert")
            record["compensate"] = delivery.to_dict()
            if not delivery.ok:
                failed = ActionChange(
                    "executed", when, outcome_json=_json({**previous, "revert": record})
                )
                await self._db(self.store.update_action, row.id, ["executed"], failed)
                raise UpstreamError(
                    f"the compensating call for {row.id} failed after {delivery.attempts} "
                    f"attempts ({delivery.status}: {delivery.detail[:200]})",
                    hint="the action is still executed; fix the receiver and revert again",
                )
        change = ActionChange("reverted", when, outcome_json=_json({**previous, "revert": record}))
        updated = await self._db(self.store.update_action, row.id, ["executed"], change)
        if updated is None:
            raise _status_conflict(await self._action(row.id))
        self._emit("reverted", when, updated)
        return updated

    async def _post(self, hook: ActionWebhook, row: ActionRow, what: str, key: str) -> Any:
        payload = {"type": f"action.{what}", **action_dict(row)}
        return await self.sender.post(
            hook.url,
            payload,
            self._secrets[f"{what}:{hook.url}"],
            attempts=hook.max_attempts,
            timeout_s=hook.timeout_s,
            idempotency_key=key,
        )

    # -- reading ---------------------------------------------------------------------------------

    async def get(self, action_id: str) -> ActionRow:
        """The action with this id (``NotFound`` otherwise)."""
        return await self._action(action_id)

    async def get_approval(self, approval_id: str) -> ActionRow:
        """The action behind an approval id (``NotFound`` otherwise)."""
        if not isinstance(approval_id, str) or not approval_id:
            raise InvalidRequest("approval id must be a non-empty string")
        row = await self._db(self.store.find_approval, approval_id)
        if row is None:
            raise NotFound(
                f"no approval {approval_id!r}",
                hint="list pending approvals with `charter approvals list`",
            )
        return row

    async def list_pending(self, *, now: dt.datetime | None = None) -> list[ActionRow]:
        """Approvals still waiting for a decision, newest first (lapsed ones are expired first)."""
        await self.expire_due(now)
        return await self._db(self.store.list_actions, ["pending"], 1000)

    async def _action(self, action_id: str) -> ActionRow:
        if not isinstance(action_id, str) or not action_id:
            raise InvalidRequest("action id must be a non-empty string")
        row = await self._db(self.store.get_action, action_id)
        if row is None:
            raise NotFound(
                f"no action {action_id!r}",
                hint="use the id `authorize` returned; a denied call has none",
            )
        return row

    # -- holds that lapse ------------------------------------------------------------------------

    async def expire_due(self, now: dt.datetime | None = None) -> list[ActionRow]:
        """Expire overdue approvals (default deny), abandon holds nobody confirmed in time, and
        give their reservations back. Safe on every replica at once; returns what it moved."""
        when = self._now(now)
        moved = []
        for row in await self._db(self.store.due_actions, when, 500):
            if row.status in LIVE_STATUSES:
                updated = await self._lapse(row, when)
                if updated is not None:  # else another replica (or a reviewer) moved it first
                    moved.append(updated)
            else:
                await self._release(row, when)  # finished where the counters were out of reach
        return moved

    async def _lapse(self, row: ActionRow, when: dt.datetime) -> ActionRow | None:
        target = "expired" if row.status == "pending" else "abandoned"
        updated = await self._db(
            self.store.update_action, row.id, [row.status], ActionChange(target, when)
        )
        if updated is None:
            return None
        self._emit(target, when, updated)
        return await self._release(updated, when)

    async def run_sweeper(self, interval_s: float = 30.0) -> None:
        """Call ``expire_due`` every ``interval_s`` seconds until cancelled (a gateway task)."""
        while True:
            try:
                await self.expire_due()
            except StorageUnavailable as exc:
                log.warning("approval sweep failed, will retry: %s", exc)
            await asyncio.sleep(interval_s)

    async def _release(self, row: ActionRow, when: dt.datetime) -> ActionRow:
        """Give a finished action's reservation back; the row as it is now."""
        if self.counters is None:
            return row  # the gateway's sweeper holds the live counters and will give it back
        await self._give_back(row.id, _claims(row.claims_json), when)
        if await self._db(self.store.mark_settled, row.id, when):
            return replace(row, settled_at=when)
        return await self._action(row.id)

    async def _give_back(self, action_id: str, claims: list[Claim], when: dt.datetime) -> None:
        if claims:
            counters = self._live_counters()
            await counters.settle(action_id, claims, [0] * len(claims), when.timestamp())

    # -- circuit breakers ------------------------------------------------------------------------

    async def breakers(self) -> list[BreakerRow]:
        """The breaker state of every tool that has one."""
        return await self._db(self.store.breakers)

    async def trip(
        self, tool: str, by: str, reason: str, *, now: dt.datetime | None = None
    ) -> BreakerRow:
        """Pause ``tool`` for everyone (``by`` must be an admin) until it is reset."""
        return await self._set_breaker(tool, True, by, reason, self._now(now))

    async def reset(
        self, tool: str, by: str, reason: str, *, now: dt.datetime | None = None
    ) -> BreakerRow:
        """Let ``tool`` run again (``by`` must be an admin)."""
        return await self._set_breaker(tool, False, by, reason, self._now(now))

    async def _set_breaker(
        self, tool: str, tripped: bool, by: str, reason: str, when: dt.datetime
    ) -> BreakerRow:
        if tool not in self._tools:
            raise NotFound(
                f"no tool_policy governs {tool!r}",
                hint=f"governed tools: {', '.join(sorted(self._tools)) or 'none'}",
            )
        if Role.ADMIN not in self._roles.get(by, set()):
            raise PermissionDenied(f"{by} is not an admin", hint="an admin trips and resets")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidRequest("tripping or resetting a breaker needs a reason")
        row = BreakerRow(tool, tripped, reason, by, when)
        await self._db(self.store.save_breaker, row)
        self._emit("breaker_tripped" if tripped else "breaker_reset", when, breaker=row)
        return row

    async def _check_breaker(self, tool_name: str, when: dt.datetime) -> None:
        tool = self._tools.get(tool_name)
        config = tool.first(lambda c: c.settings.breaker) if tool else None
        if config is None:
            return
        since = when - dt.timedelta(seconds=duration_seconds(config.window))
        count = await self._db(self.store.count_executed, tool_name, since)
        if count <= config.max_executed:
            return
        states = await self._db(self.store.breakers)
        if any(b.tool == tool_name and b.tripped for b in states):
            return
        reason = (
            f"{count} {tool_name} calls executed in the last {config.window}, more than "
            f"{config.max_executed}"
        )
        row = BreakerRow(tool_name, True, reason, SYSTEM_PRINCIPAL, when)
        await self._db(self.store.save_breaker, row)
        self._emit("breaker_tripped", when, breaker=row)

    # -- plumbing --------------------------------------------------------------------------------

    def _live_counters(self) -> Counters:
        if self.counters is None:
            raise ConfigurationError(
                "this action service has no access to the live counters",
                hint="authorize through the gateway, or pass the counters it uses (--redis)",
            )
        return self.counters

    def _now(self, now: dt.datetime | None) -> dt.datetime:
        if now is None:
            return _at(self._clock())
        if now.tzinfo is None:
            raise InvalidRequest("now must be timezone-aware")
        return now.astimezone(dt.UTC)

    def _emit(
        self,
        kind: str,
        when: dt.datetime,
        action: ActionRow | None = None,
        *,
        breaker: BreakerRow | None = None,
        request_id: str | None = None,
    ) -> None:
        if self.on_event is not None:
            try:
                self.on_event(ActionEvent(kind, when, action, breaker, request_id))
            except Exception:  # a listener's failure must not undo a committed transition
                log.exception("action event listener failed on %s", kind)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call on a worker thread, off the event loop."""
        return await anyio.to_thread.run_sync(partial(fn, *args))

    async def aclose(self) -> None:
        """Wait for notifications in flight, then close the HTTP client and lookups."""
        await self.notifier.drain()
        await self.sender.aclose()
        await self.ownership.aclose()


# -- helpers -------------------------------------------------------------------------------------


def action_dict(row: ActionRow) -> dict[str, Any]:
    """A JSON-ready view of an action for the admin API, the CLI and webhooks (no claims).

    ``kind`` is ``tool_call`` or ``content``; a content review has ``content`` (stage, model,
    request id, digest, length, escalating controls, scanner scores) and no arguments.
    """
    content = row.is_content
    facts = json.loads(row.arguments_json)
    return {
        "id": row.id,
        "kind": "content" if content else "tool_call",
        "approval_id": row.approval_id,
        "status": row.status,
        "tool": row.tool,
        "arguments": {} if content else facts,
        "content": facts if content else None,
        "principal": row.principal_id,
        "subject": row.subject,
        "conversation_id": row.conversation_id,
        "excerpt": row.excerpt,
        "control": row.control_id,
        "decisions": json.loads(row.decision_ids_json),
        "reason": row.reason,
        "approval_control": row.approval_control_id,
        "reviewer_roles": json.loads(row.reviewer_roles_json),
        "created_at": _iso(row.created_at),
        "deadline": _iso(row.deadline),
        "hold_until": _iso(row.hold_until),
        "reviewer": row.reviewer,
        "review_reason": row.review_reason,
        "reviewed_at": _iso(row.reviewed_at),
        "executed_at": _iso(row.executed_at),
        "outcome": json.loads(row.outcome_json) if row.outcome_json else None,
    }


def _status_conflict(row: ActionRow) -> Conflict:
    when = {
        "approved": row.reviewed_at,
        "rejected": row.reviewed_at,
        "executed": row.executed_at,
    }.get(row.status, row.updated_at)
    said = {
        "pending": f"is waiting for approval {row.approval_id} (deadline {_iso(row.deadline)}); "
        "it may run only after a reviewer approves it",
        "authorized": "is authorized and not yet executed",
        "approved": f"was already approved by {row.reviewer} at {_iso(when)}",
        "rejected": f"was rejected by {row.reviewer} at {_iso(when)}: {row.review_reason}",
        "expired": f"expired at {_iso(row.deadline)} without a decision (default deny)",
        "executed": f"was already executed at {_iso(when)}",
        "abandoned": f"lapsed at {_iso(row.hold_until)}: it was not executed in time",
        "failed": "failed",
        "reverted": f"was reverted at {_iso(when)}",
    }[row.status]
    return Conflict(
        f"action {row.id} ({row.tool}) {said}",
        hint="nothing was changed; propose the call again to start over",
        status_now=row.status,
    )


def _may_review(control: ToolPolicyControl) -> bool:
    s = control.settings
    overs = [c.over for c in s.caps] + [r.over for r in s.rates] + [q.over for q in s.sequences]
    failed_lookup_reviews = s.ownership is not None and s.ownership.on_error == "review"
    return s.review or failed_lookup_reviews or Verdict3.REVIEW in overs


def _rate_verdict(policy: _Policy, rate: RateClaim, used: int, *, enforced: bool) -> Verdict:
    action = Action.BLOCK if rate.over is Verdict3.DENY else Action.ESCALATE
    reason = rate.describe_over(used)
    return Verdict(
        action,
        policy.control.id,
        tuple(policy.control.serves),
        reason,
        Stage.TOOL_CALL,
        enforced=enforced,
        evidence={
            "tool": policy.handler.tool,
            "verdict": _VERDICT_NAME[action],
            "rules": [{"rule": rate.rule, "verdict": rate.over.value, "reason": reason}],
            "limit": rate.claim.limit,
            "used": used,
            "unit": rate.claim.unit,
        },
    )


def _error_verdict(control: ToolPolicyControl, exc: BaseException) -> Verdict:
    fail_open = control.on_error is OnError.FAIL_OPEN
    return Verdict(
        Action.ALLOW if fail_open else Action.BLOCK,
        control.id,
        tuple(control.serves),
        f"rate caps could not be counted ({exc}); "
        + ("fail_open: allowed uncounted" if fail_open else "fail_closed: denied"),
        Stage.TOOL_CALL,
        enforced=control.mode is Mode.ENFORCE,
        evidence={"error": type(exc).__name__},
    )


def _webhook_secrets(
    tools: Mapping[str, _Tool], approvals: Sequence[ApprovalControl], env: Mapping[str, str]
) -> dict[str, bytes]:
    """Every webhook secret, read once at start: a missing one is an operator error, now."""
    wanted: dict[str, tuple[str, str]] = {}
    for approval in approvals:
        if approval.settings.notify_webhook and approval.settings.webhook_secret_env:
            wanted[f"approval:{approval.id}"] = (approval.settings.webhook_secret_env, approval.id)
    for tool in tools.values():
        for policy in tool.policies:
            for what in ("execute", "compensate"):
                hook: ActionWebhook | None = getattr(policy.control.settings, what)
                if hook is not None:
                    wanted[f"{what}:{hook.url}"] = (hook.secret_env, policy.control.id)
    out = {}
    for key, (name, control_id) in wanted.items():
        value = env.get(name)
        if not value:
            raise ConfigurationError(
                f"control `{control_id}` signs its webhook with ${name}, which is not set",
                hint=f"export {name}=<a long random secret shared with the receiver>",
            )
        out[key] = value.encode()
    return out


def _arguments(arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError as exc:
            raise InvalidRequest(
                f"tool call arguments are not valid JSON ({exc.msg} at {exc.pos})",
                hint='send a JSON object, e.g. {"order_id": "4821", "amount_usd": 30}',
            ) from None
    if not isinstance(arguments, Mapping) or not all(isinstance(k, str) for k in arguments):
        raise InvalidRequest(
            f"tool call arguments must be a JSON object, got {type(arguments).__name__}",
            hint='e.g. {"order_id": "4821", "amount_usd": 30}',
        )
    out = dict(arguments)
    try:
        json.dumps(out, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"tool call arguments are not JSON data ({exc})") from None
    return out


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_NAME_CHARS or any(ord(ch) < 32 for ch in value):
        raise InvalidRequest(
            f"{what} must be at most {MAX_NAME_CHARS} printable characters",
            hint=f"got {value[:40]!r}...",
        )
    return value


def _new_id(prefix: str) -> str:
    # 144 random bits: an id cannot be guessed, so holding one is not an authorization.
    return prefix + secrets.token_urlsafe(18)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _claim_dict(claim: Claim) -> dict[str, Any]:
    return {
        "key": claim.key,
        "amount": claim.amount,
        "limit": claim.limit,
        "kind": claim.kind,
        "window_s": claim.window_s,
    }


def _claims(text: str) -> list[Claim]:
    return [
        Claim(c["key"], c["amount"], c["limit"], c["kind"], c["window_s"]) for c in json.loads(text)
    ]


def _at(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()
