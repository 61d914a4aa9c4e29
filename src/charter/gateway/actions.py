"""Tool calls on the request path, and the action and approval APIs.

The model proposes; Charter decides. Every tool call in an answer (streamed or not) is authorized
before the client sees it: allowed calls pass, denied ones are removed and replaced by an
explanation naming the decision, and calls that need a person are held with an approval id.

A chat client that receives a tool call may run it without telling Charter, so an allowed call in a
chat answer counts against its rate caps at once. Agent frameworks that run tools themselves use
the authorization API instead, where caps count only calls reported executed:

- ``POST /v1/charter/actions/authorize`` {tool, arguments, subject, conversation_id, history,
  attributes} -> {id, decision, reasons, approval_id, ...}
- ``POST /v1/charter/actions/{id}/executed`` {outcome}
- ``GET /admin/v1/approvals``, ``GET /admin/v1/approvals/{id}``,
  ``POST /admin/v1/approvals/{id}/approve|reject`` {reviewer, reason} (admin key)
- ``GET /admin/v1/actions[?status=...&limit=...]``, ``GET /admin/v1/actions/{id}``,
  ``POST /admin/v1/actions/{id}/execute``, ``POST /admin/v1/actions/{id}/revert`` {by, reason}
- ``GET /admin/v1/breakers``, ``POST /admin/v1/breakers/{tool}/trip|reset`` {by, reason}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from charter.approvals.service import ActionEvent, ActionService, Authorization, action_dict
from charter.audit.log import AuditLog, Draft
from charter.audit.records import RecordKind
from charter.document.model import Charter, Mode, ToolPolicyControl
from charter.errors import InvalidRequest, NotFound, UpstreamError
from charter.policy.verdict import Action
from charter.providers.types import ChatRequest, ToolCall
from charter.storage.base import ACTION_STATUSES, ActionRow, BreakerRow

log = logging.getLogger(__name__)
MAX_LIST = 10_000  # actions one listing returns at most


@dataclass
class Screened:
    """The tool calls that may reach the client, and what to say about the others."""

    calls: list[ToolCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)


def history_of(req: ChatRequest) -> tuple[str, ...]:
    """Tools called earlier in the conversation, oldest first (for sequence rules)."""
    return tuple(call.name for m in req.messages for call in m.tool_calls)


def note_for(call: ToolCall, auth: Authorization) -> str:
    decisions = ", ".join(sorted({d for v in auth.verdicts for d in v.decision_ids})) or "none"
    why = "; ".join(auth.reasons)
    if auth.verdict is Action.ESCALATE:
        return (
            f"[charter] `{call.name}` needs a person's approval before it runs "
            f"(approval {auth.approval_id}; {why}) [decision {decisions}]"
        )
    return f"[charter] `{call.name}` was not allowed: {why} [decision {decisions}]"


class ToolGate:
    """Authorizes the tool calls of answers through the ``ActionService``."""

    def __init__(self, service: ActionService) -> None:
        self.service = service

    async def screen(
        self,
        principal: str,
        calls: Sequence[ToolCall],
        req: ChatRequest,
        *,
        subject: str | None,
        conversation_id: str | None,
        attributes: Any,
        excerpt: str,
        verdicts: list[Any],
    ) -> Screened:
        out = Screened()
        history = history_of(req)
        for call in calls:
            auth = await self.service.authorize(
                principal,
                call.name,
                call.arguments,
                subject=subject,
                conversation_id=conversation_id,
                history=history,
                attributes=dict(attributes or {}),
                excerpt=excerpt[:500],
            )
            verdicts.extend(auth.verdicts)
            out.actions.append({"tool_call_id": call.id, **auth.to_dict()})
            if auth.verdict is Action.ALLOW:
                out.calls.append(call)
                if auth.id is not None:
                    # The client may run it without telling us: count it now (fail closed).
                    await self.service.executed(auth.id, outcome={"counted": "at proposal"})
                history = (*history, call.name)
            else:
                out.notes.append(note_for(call, auth))
        return out


def audit_listener(audit: AuditLog | None, version: str) -> Callable[[ActionEvent], None]:
    """Every step of an action's life becomes an audit record (submitted, not awaited: these
    steps are already durable in the store; the record makes them tamper-evident)."""

    def on_event(event: ActionEvent) -> None:
        if audit is None:
            return
        row = event.action
        approval_steps = {"review_requested", "approved", "rejected", "expired", "used"}
        details: dict[str, Any] = {"event": event.kind}
        reason: str | None = None
        principal: str | None = None
        if row is not None:
            details.update({"action_id": row.id, "tool": row.tool, "status": row.status})
            if row.is_content:  # what was reviewed, by digest: the content is never recorded
                facts = json.loads(row.arguments_json)
                details.update(
                    {
                        "kind": "content",
                        "approval_id": row.approval_id,
                        "stage": facts.get("stage"),
                        "digest": facts.get("digest"),
                    }
                )
            if event.request_id:
                details["used_by_request"] = event.request_id
            if row.reviewer:
                details["reviewer"] = row.reviewer
            reason = row.review_reason or row.reason or None
            principal = row.principal_id
            facts, why = _outcome_facts(event.kind, row.outcome_json)
            details.update(facts)
            reason = why or reason  # a revert's record says why it was undone
        if event.breaker is not None:
            state = event.breaker
            details.update({"tool": state.tool, "tripped": state.tripped, "by": state.by})
            reason = state.reason
        audit.submit(
            Draft(
                kind=RecordKind.APPROVAL if event.kind in approval_steps else RecordKind.VERDICT,
                principal=principal,
                request_id=row.id if row is not None else None,
                charter_version=version,
                control_ids=tuple(c for c in (row.control_id, row.approval_control_id) if c)
                if row is not None
                else (),
                decision_ids=tuple(json.loads(row.decision_ids_json)) if row is not None else (),
                reason=reason,
                details=details,
            )
        )

    return on_event


def denied_draft(principal: str, tool: str, auth: Authorization) -> Draft:
    """The audit record of a tool call the authorization API denied."""
    deciding = [v for v in auth.verdicts if v.effective is Action.BLOCK]
    return Draft(
        kind=RecordKind.VERDICT,
        principal=principal,
        charter_version=auth.charter_version,
        control_ids=tuple(dict.fromkeys(v.control_id for v in deciding)),
        decision_ids=tuple(dict.fromkeys(d for v in deciding for d in v.decision_ids)),
        action=Action.BLOCK,
        reason="; ".join(auth.reasons),
        details={"event": "denied", "tool": tool[:200]},
    )


def _outcome_facts(kind: str, outcome_json: str | None) -> tuple[dict[str, Any], str | None]:
    """The scalar facts of an execution or a revert for its audit record, and a revert's reason."""
    outcome = json.loads(outcome_json) if outcome_json else {}
    if not isinstance(outcome, dict):
        return {}, None
    delivery = outcome.get("execute")
    if kind in ("executed", "execution_failed") and isinstance(delivery, dict):
        status, attempts = delivery.get("status"), delivery.get("attempts")
        return {"webhook_status": _scalar(status), "attempts": _scalar(attempts)}, None
    revert = outcome.get("revert")
    if kind == "reverted" and isinstance(revert, dict):
        compensate = revert.get("compensate")
        status = compensate.get("status") if isinstance(compensate, dict) else None
        why = revert.get("reason")
        facts = {"by": _scalar(revert.get("by")), "webhook_status": _scalar(status)}
        return facts, why if isinstance(why, str) else None
    return {}, None


def _scalar(value: Any) -> str | int | float | bool | None:
    # A caller reports its own outcome (`executed`): whatever it sent, the record stays valid.
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, default=str)[:200]


def breaker_states(charter: Charter, rows: Sequence[BreakerRow]) -> list[dict[str, Any]]:
    """Every governed tool with its breaker: configured limit, tripped or not, by whom and why.

    A tool nobody ever tripped or reset has no row in the store; it is listed as closed.
    """
    stored = {row.tool: row for row in rows}
    configured: dict[str, dict[str, Any] | None] = {}
    for control in charter.controls:
        if isinstance(control, ToolPolicyControl) and control.mode is not Mode.OFF:
            breaker = control.settings.breaker
            if configured.get(control.settings.tool) is None:
                configured[control.settings.tool] = (
                    None
                    if breaker is None
                    else {"max_executed": breaker.max_executed, "window": breaker.window}
                )
    out = []
    for tool in sorted(configured.keys() | stored.keys()):
        row = stored.get(tool)
        out.append(
            {
                "tool": tool,
                "tripped": bool(row and row.tripped),
                "configured": configured.get(tool),
                "by": row.by if row else None,
                "reason": row.reason if row else None,
                "at": row.at.isoformat() if row else None,
            }
        )
    return out


def require_executed(row: ActionRow) -> ActionRow:
    """``row`` after ``ActionService.execute``; an ``UpstreamError`` when the webhook failed.

    The service records a failed execution and leaves the action approved (to be retried with the
    same idempotency key); the CLI and the admin API say so as an error, with what to do.
    """
    if row.status == "executed":
        return row
    outcome = json.loads(row.outcome_json) if row.outcome_json else {}
    delivery = outcome.get("execute") if isinstance(outcome, dict) else None
    said = (
        f"after {delivery.get('attempts')} attempts ({delivery.get('status')}: "
        f"{str(delivery.get('detail'))[:200]})"
        if isinstance(delivery, dict)
        else "(no outcome recorded)"
    )
    hold = row.hold_until.isoformat(timespec="seconds")
    raise UpstreamError(
        f"the execute webhook of {row.tool} failed {said}; action {row.id} is still approved",
        hint=f"fix the receiver and execute it again before {hold}: the same Idempotency-Key "
        f"({row.id}) is sent, so a receiver that honours it acts once",
    )


# --- HTTP ------------------------------------------------------------------------------------

Endpoint = Callable[[Request], Awaitable[Response]]


def routes(
    gateway: Any,
    require_admin: Callable[[Request], None],
    read_json: Callable[[Request, str], Awaitable[Any]],
    bearer: Callable[[Request], str | None],
    guarded: Callable[[Endpoint], Endpoint],
) -> list[Route]:
    """The action and approval routes of ``gateway`` (which must have an ``actions`` service)."""

    def service() -> ActionService:
        if gateway.approvals is None:
            raise InvalidRequest(
                "this charter has no approval queue",
                hint="tool policies and guards that escalate to a person need one",
            )
        return gateway.approvals  # type: ignore[no-any-return]

    async def authorize(request: Request) -> Response:
        info = await gateway.authenticate(bearer(request))
        body = await read_json(request, "authorize")
        if not isinstance(body, dict) or not isinstance(body.get("tool"), str):
            raise InvalidRequest(
                'send {"tool": "...", "arguments": {...}, "subject": "...", '
                '"conversation_id": "...", "history": [...], "attributes": {...}}'
            )
        auth = await service().authorize(
            info.principal,
            body["tool"],
            body.get("arguments", {}),
            subject=body.get("subject"),
            conversation_id=body.get("conversation_id"),
            history=tuple(body.get("history") or ()),
            attributes=body.get("attributes"),
            excerpt=str(body.get("excerpt", ""))[:500],
        )
        if auth.verdict is Action.BLOCK and gateway.audit is not None:
            # A denied call holds nothing and is not stored; the record is its only trace.
            await gateway.audit.append(denied_draft(info.principal, body["tool"], auth))
        return JSONResponse(auth.to_dict())

    async def executed(request: Request) -> Response:
        await gateway.authenticate(bearer(request))
        body = await request.body()
        outcome = json.loads(body).get("outcome") if body else None
        row = await service().executed(request.path_params["action_id"], outcome=outcome)
        return JSONResponse(action_dict(row))

    async def approvals(request: Request) -> Response:
        require_admin(request)
        rows = await service().list_pending()
        return JSONResponse({"data": [action_dict(r) for r in rows]})

    async def approval(request: Request) -> Response:
        require_admin(request)
        row = await service().get_approval(request.path_params["approval_id"])
        return JSONResponse(action_dict(row))

    async def decide(request: Request) -> Response:
        require_admin(request)
        body = await read_json(request, "approval")
        if not isinstance(body, dict) or not isinstance(body.get("reviewer"), str):
            raise InvalidRequest('send {"reviewer": "<principal id>", "reason": "..."}')
        approval_id = request.path_params["approval_id"]
        if request.path_params["verb"] not in ("approve", "reject"):
            raise NotFound("unknown approval action", hint="POST .../approve or .../reject")
        act = service().approve if request.path_params["verb"] == "approve" else service().reject
        row = await act(approval_id, body["reviewer"], str(body.get("reason", "")))
        return JSONResponse(action_dict(row))

    async def list_actions(request: Request) -> Response:
        require_admin(request)
        statuses = request.query_params.getlist("status")
        unknown = sorted(set(statuses) - set(ACTION_STATUSES))
        if unknown:
            raise InvalidRequest(
                f"unknown status {', '.join(unknown)}", hint=f"one of {', '.join(ACTION_STATUSES)}"
            )
        limit = _limit(request.query_params.get("limit", "100"))
        actions = service()
        await actions.expire_due()  # a lapsed hold is listed as what it now is
        rows = await anyio.to_thread.run_sync(
            partial(actions.store.list_actions, statuses or None, limit)
        )
        return JSONResponse({"data": [action_dict(r) for r in rows]})

    async def show_action(request: Request) -> Response:
        require_admin(request)
        row = await service().get(request.path_params["action_id"])
        return JSONResponse(action_dict(row))

    async def execute(request: Request) -> Response:
        require_admin(request)
        actions = service()
        await actions.expire_due()  # an approval whose hold lapsed is abandoned, not run late
        row = await actions.execute(request.path_params["action_id"])
        return JSONResponse(action_dict(require_executed(row)))

    async def revert(request: Request) -> Response:
        require_admin(request)
        by, reason = await _by_and_reason(request, "revert")
        row = await service().revert(request.path_params["action_id"], by, reason)
        return JSONResponse(action_dict(row))

    async def breakers(request: Request) -> Response:
        require_admin(request)
        rows = await service().breakers()
        return JSONResponse({"data": breaker_states(gateway.charter, rows)})

    async def breaker(request: Request) -> Response:
        require_admin(request)
        verb = request.path_params["verb"]
        if verb not in ("trip", "reset"):
            raise NotFound(f"unknown breaker action {verb!r}", hint="POST .../trip or .../reset")
        by, reason = await _by_and_reason(request, f"breaker {verb}")
        actions = service()
        act = actions.trip if verb == "trip" else actions.reset
        row = await act(request.path_params["tool"], by, reason)
        (state,) = [s for s in breaker_states(gateway.charter, [row]) if s["tool"] == row.tool]
        return JSONResponse(state)

    async def _by_and_reason(request: Request, what: str) -> tuple[str, str]:
        body = await read_json(request, what)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("by"), str)
            or not isinstance(body.get("reason"), str)
        ):
            raise InvalidRequest(
                f'the {what} request needs {{"by": "<principal id>", "reason": "..."}}',
                hint="by: who does it, an admin or, for a revert, a reviewer of the tool",
            )
        return body["by"], body["reason"]

    return [
        Route("/v1/charter/actions/authorize", guarded(authorize), methods=["POST"]),
        Route("/v1/charter/actions/{action_id}/executed", guarded(executed), methods=["POST"]),
        Route("/admin/v1/approvals", guarded(approvals), methods=["GET"]),
        Route("/admin/v1/approvals/{approval_id}", guarded(approval), methods=["GET"]),
        Route("/admin/v1/approvals/{approval_id}/{verb:str}", guarded(decide), methods=["POST"]),
        Route("/admin/v1/actions", guarded(list_actions), methods=["GET"]),
        Route("/admin/v1/actions/{action_id}", guarded(show_action), methods=["GET"]),
        Route("/admin/v1/actions/{action_id}/execute", guarded(execute), methods=["POST"]),
        Route("/admin/v1/actions/{action_id}/revert", guarded(revert), methods=["POST"]),
        Route("/admin/v1/breakers", guarded(breakers), methods=["GET"]),
        Route("/admin/v1/breakers/{tool}/{verb:str}", guarded(breaker), methods=["POST"]),
    ]


def _limit(raw: str) -> int:
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_LIST:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_LIST}, got {raw!r}")
    return limit
