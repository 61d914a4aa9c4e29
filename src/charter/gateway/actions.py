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
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from charter.approvals.service import ActionEvent, ActionService, Authorization, action_dict
from charter.audit.log import AuditLog, Draft
from charter.audit.records import RecordKind
from charter.errors import InvalidRequest, NotFound
from charter.policy.verdict import Action
from charter.providers.types import ChatRequest, ToolCall

log = logging.getLogger(__name__)


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
        approval_steps = {"review_requested", "approved", "rejected", "expired"}
        details: dict[str, Any] = {"event": event.kind}
        if row is not None:
            details.update({"action_id": row.id, "tool": row.tool, "status": row.status})
            if row.reviewer:
                details["reviewer"] = row.reviewer
        if event.breaker is not None:
            details["tool"] = event.breaker.tool
        audit.submit(
            Draft(
                kind=RecordKind.APPROVAL if event.kind in approval_steps else RecordKind.VERDICT,
                principal=row.principal_id if row is not None else None,
                request_id=row.id if row is not None else None,
                charter_version=version,
                control_ids=tuple(c for c in (row.control_id, row.approval_control_id) if c)
                if row is not None
                else (),
                decision_ids=tuple(json.loads(row.decision_ids_json)) if row is not None else (),
                reason=(row.review_reason or row.reason) if row is not None else None,
                details=details,
            )
        )

    return on_event


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
        if gateway.actions is None:
            raise InvalidRequest("this charter has no tool policies")
        return gateway.actions.service  # type: ignore[no-any-return]

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

    return [
        Route("/v1/charter/actions/authorize", guarded(authorize), methods=["POST"]),
        Route("/v1/charter/actions/{action_id}/executed", guarded(executed), methods=["POST"]),
        Route("/admin/v1/approvals", guarded(approvals), methods=["GET"]),
        Route("/admin/v1/approvals/{approval_id}", guarded(approval), methods=["GET"]),
        Route("/admin/v1/approvals/{approval_id}/{verb:str}", guarded(decide), methods=["POST"]),
    ]
