"""The OpenAI-compatible HTTP surface of the gateway (Starlette): a thin adapter over ``Gateway``.

Errors use the OpenAI error shape (``{"error": {"message", "type", "code", ...}}``) with the
status of the ``CharterError`` behind them, so the official SDKs raise their usual exceptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from charter.audit.control import run_retention
from charter.document.version import short_version
from charter.errors import (
    AuthenticationFailed,
    CharterError,
    InternalError,
    InvalidRequest,
    NotFound,
)
from charter.gateway.keys import hash_key
from charter.gateway.messages import error_body, to_chat_request, to_events, to_message
from charter.gateway.service import Gateway, Outcome
from charter.providers.types import ChatRequest, EmbeddingRequest

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def error_response(exc: CharterError, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        exc.to_dict(), status_code=exc.status, headers={**exc.response_headers(), **(headers or {})}
    )


def presented_approvals(request: Request) -> tuple[str, ...]:
    """The approval ids of an ``X-Charter-Approval`` header, for escalated content."""
    from charter.approvals.content import parse_presented

    header = request.headers.get("x-charter-approval")
    return parse_presented(header) if header else ()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("x-api-key") or None  # Anthropic-style clients


def validate_body(body: object, what: str) -> Mapping[str, Any]:
    """The request body as a JSON object, or a 400 saying what to send."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(
            f"the {what} body must be a JSON object",
            hint="send Content-Type: application/json with an object body",
        )
    return body


async def read_json(request: Request, what: str) -> Any:
    body = await request.body()
    if not body:
        raise InvalidRequest(f"the {what} request has no body", hint="send a JSON object")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InvalidRequest(
            f"the {what} body is not valid JSON ({exc})", hint="send a JSON object"
        ) from None


def answer_headers(outcome: Outcome) -> dict[str, str]:
    """The request id, and the approval an escalated message was let past with (if any)."""
    headers = {"x-charter-request-id": outcome.request_id}
    if outcome.approval_id:
        headers["x-charter-approval"] = outcome.approval_id
    return headers


def charter_summary(outcome: Outcome) -> dict[str, Any]:
    """What Charter did to an answer, beside the OpenAI fields (clients ignore unknown keys)."""
    out: dict[str, Any] = {"request_id": outcome.request_id}
    if outcome.refused_by is not None:
        out["refused_by"] = {
            "control": outcome.refused_by.control_id,
            "decisions": list(outcome.refused_by.decision_ids),
        }
    if outcome.actions:
        out["actions"] = outcome.actions
    if outcome.approval_id:
        out["approval_id"] = outcome.approval_id  # the approval that let escalated content past
    return out


def build_app(
    gateway: Gateway,
    *,
    admin_key_hash: str | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
) -> Starlette:
    """The ASGI app serving ``gateway``; ``on_shutdown`` closes what the gateway owns."""
    version_header = {"x-charter-version": short_version(gateway.version)}

    def guarded(endpoint: Endpoint) -> Endpoint:
        async def wrapper(request: Request) -> Response:
            try:
                response = await endpoint(request)
            except CharterError as exc:
                response = error_response(exc)
            except Exception:
                log.exception("unhandled error on %s", request.url.path)
                response = error_response(
                    InternalError("Charter failed while handling this request; this is a bug")
                )
            response.headers.update(version_header)
            return response

        return wrapper

    async def chat_completions(request: Request) -> Response:
        info = await gateway.authenticate(bearer(request))
        body = validate_body(await read_json(request, "chat completion"), "chat completion")
        req = ChatRequest.from_openai(body)
        approvals = presented_approvals(request)
        if req.stream:
            chunks, outcome = await gateway.chat_stream(info, req, approvals=approvals)
            return StreamingResponse(
                chunks,
                media_type="text/event-stream",
                headers={**answer_headers(outcome), "cache-control": "no-cache"},
            )
        response, outcome = await gateway.chat(info, req, approvals=approvals)
        body = response.to_openai(model=req.model)
        if outcome.actions or outcome.refused_by is not None or outcome.approval_id:
            body["charter"] = charter_summary(outcome)
        return JSONResponse(body, headers=answer_headers(outcome))

    async def anthropic_messages(request: Request) -> Response:
        """Anthropic-style clients: the same path, their request and answer shapes, their errors."""
        try:
            info = await gateway.authenticate(bearer(request))
            req = to_chat_request(await read_json(request, "messages"))
            approvals = presented_approvals(request)
            if req.stream:
                chunks, outcome = await gateway.chat_stream(info, req, approvals=approvals)
                message_id = "msg_" + outcome.request_id.removeprefix("req_")
                return StreamingResponse(
                    to_events(chunks, req.model, message_id),
                    media_type="text/event-stream",
                    headers={"x-charter-request-id": outcome.request_id, **version_header},
                )
            response, outcome = await gateway.chat(info, req, approvals=approvals)
            return JSONResponse(
                to_message(response, req.model),
                headers={"x-charter-request-id": outcome.request_id, **version_header},
            )
        except CharterError as exc:
            return JSONResponse(
                error_body(exc),
                status_code=exc.status,
                headers={**exc.response_headers(), **version_header},
            )
        except Exception:
            log.exception("unhandled error on /v1/messages")
            failure = InternalError("Charter failed while handling this request; this is a bug")
            return JSONResponse(error_body(failure), status_code=500, headers=version_header)

    async def embeddings(request: Request) -> Response:
        info = await gateway.authenticate(bearer(request))
        body = validate_body(await read_json(request, "embeddings"), "embeddings")
        payload, outcome = await gateway.embed(info, EmbeddingRequest.from_openai(body))
        return JSONResponse(payload, headers={"x-charter-request-id": outcome.request_id})

    async def models(request: Request) -> Response:
        info = await gateway.authenticate(bearer(request))
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": gateway.charter.organization}
            for name in gateway.allowed_models(info.principal)
        ]
        return JSONResponse({"object": "list", "data": data})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "charter_version": gateway.version})

    def require_admin(request: Request) -> None:
        presented = bearer(request)
        if admin_key_hash is None:
            raise NotFound("the admin API is off", hint="set CHARTER_ADMIN_KEY to enable it")
        if presented is None or not hmac.compare_digest(hash_key(presented), admin_key_hash):
            raise AuthenticationFailed(
                "the admin API needs the admin key",
                hint="send Authorization: Bearer $CHARTER_ADMIN_KEY",
            )

    async def admin_keys(request: Request) -> Response:
        from charter.gateway import admin

        require_admin(request)
        return await admin.keys_endpoint(gateway, request)

    from charter.gateway import actions
    from charter.guards.api import routes as scan_routes

    observed = gateway.observer.routes(gateway) if gateway.observer is not None else []
    routes = [
        # Starlette tries routes in order: the model APIs first, so a request to them is matched
        # by the first pattern tried instead of after every admin and console route.
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/messages", anthropic_messages, methods=["POST"]),
        Route("/v1/embeddings", guarded(embeddings), methods=["POST"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        *observed,
        *scan_routes(gateway),
        *actions.routes(gateway, require_admin, read_json, bearer, guarded),
        Route("/healthz", guarded(health), methods=["GET"]),
        Route("/admin/v1/keys", guarded(admin_keys), methods=["GET", "POST"]),
        Route("/admin/v1/keys/{key_id}", guarded(admin_keys), methods=["DELETE"]),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = []
        if gateway.approvals is not None:  # approvals past their deadline are denied on time
            tasks.append(asyncio.create_task(gateway.approvals.run_sweeper(30.0)))
        if gateway.audit is not None:  # records past the charter's retention are summarised
            tasks.append(asyncio.create_task(run_retention(gateway.audit, gateway.charter)))
        yield
        for task in tasks:
            task.cancel()
        if on_shutdown is not None:
            await on_shutdown()

    from charter import console

    return Starlette(routes=[*routes, *console.routes(gateway)], lifespan=lifespan)
