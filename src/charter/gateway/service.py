"""The governed request path, independent of HTTP: authenticate, admit, guard, call, settle, record.

``Gateway`` is what the ASGI app (``charter.gateway.app``) calls. Every step that judges the request
goes through the policy engine, so the gateway adds no rules of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from charter.budgets.ledger import SpendWriter
from charter.counters import Reservation
from charter.document.model import Charter, ModelSpec
from charter.errors import (
    BudgetExceeded,
    CharterError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    RateLimited,
    StorageUnavailable,
)
from charter.gateway.keys import KeyInfo, KeyRing
from charter.gateway.pricing import cost_micro_usd, output_cap, worst_case
from charter.policy.context import RequestContext
from charter.policy.engine import Admission, Engine, Evaluation
from charter.policy.verdict import Action, Stage, Verdict
from charter.providers.base import ChatStream, ProviderClient
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    StreamChunk,
    Usage,
)
from charter.storage.base import SpendRow

log = logging.getLogger(__name__)


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


@dataclass
class Outcome:
    """What one request ended as, for the audit trail, metrics and the demo's narration."""

    request_id: str
    principal: str
    model: str
    verdicts: list[Verdict] = field(default_factory=list)
    usage: Usage | None = None
    cost_micro_usd: int = 0
    status: int = 200
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Routed:
    """A model the charter knows, and the client that calls its provider."""

    spec: ModelSpec
    client: ProviderClient


class Gateway:
    """One charter, enforced on every request."""

    def __init__(
        self,
        charter: Charter,
        engine: Engine,
        keys: KeyRing,
        models: Mapping[str, Routed],
        spend: SpendWriter | None = None,
    ) -> None:
        self.charter = charter
        self.engine = engine
        self.keys = keys
        self.models = dict(models)
        self.spend = spend
        self.version = engine.version
        self.recent: list[Outcome] = []  # the last few outcomes, for `charter demo` and status

    # --- helpers ---------------------------------------------------------------------------------

    async def authenticate(self, key: str | None) -> KeyInfo:
        return await self.keys.resolve(key)

    def allowed_models(self, principal: str) -> list[str]:
        """Models this principal may call, as /v1/models lists them."""
        chain = self.engine.principals_of(principal)
        out = []
        for name in self.models:
            ctx = RequestContext(Stage.REQUEST, principals=chain, model=name)
            if self.engine.evaluate(ctx).action is not Action.BLOCK:
                out.append(name)
        return out

    def _route(self, model: str, principal: str) -> Routed:
        routed = self.models.get(model)
        if routed is None:
            allowed = ", ".join(self.allowed_models(principal)) or "none"
            raise NotFound(
                f"model '{model}' does not exist in this charter",
                hint=f"models you may use: {allowed}",
                code="model_not_found",
            )
        return routed

    def _context(
        self, info: KeyInfo, request_id: str, req: ChatRequest, routed: Routed
    ) -> RequestContext:
        worst = worst_case(req, routed.spec)
        return RequestContext(
            stage=Stage.REQUEST,
            request_id=request_id,
            principals=self.engine.principals_of(info.principal),
            model=req.model,
            max_cost_micro_usd=worst.cost_micro_usd,
            max_tokens=worst.tokens,
        )

    async def _admit(self, ctx: RequestContext, outcome: Outcome) -> Admission:
        admission = await self.engine.admit(ctx)
        outcome.verdicts += admission.evaluation.verdicts
        if not admission.admitted:
            raise refusal(admission.evaluation)
        return admission

    # --- chat completions -------------------------------------------------------------------------

    async def chat(self, info: KeyInfo, req: ChatRequest) -> tuple[ChatResponse, Outcome]:
        """A non-streamed chat completion under the charter."""
        outcome = Outcome(new_request_id(), info.principal, req.model)
        async with self._finishing(outcome):
            routed = self._route(req.model, info.principal)
            ctx = self._context(info, outcome.request_id, req, routed)
            admission = await self._admit(ctx, outcome)
            upstream = replace(req, max_tokens=output_cap(req, routed.spec), stream=False)
            try:
                response = await routed.client.generate(upstream)
            except BaseException:
                await self._release(admission.reservation)
                raise
            usage = response.usage or Usage(0, 0, True)
            await self._settle(admission.reservation, routed, usage, outcome)
            response_id = "chatcmpl-" + outcome.request_id.removeprefix("req_")
            return replace(response, id=response_id), outcome
        raise AssertionError("unreachable")  # pragma: no cover - _finishing re-raises

    async def chat_stream(
        self, info: KeyInfo, req: ChatRequest
    ) -> tuple[AsyncIterator[bytes], Outcome]:
        """A streamed chat completion: admission happens before the first byte, so a refusal is
        an ordinary HTTP error; spend is settled when the stream ends, however it ends."""
        outcome = Outcome(new_request_id(), info.principal, req.model)
        async with self._finishing(outcome, streaming=True):
            routed = self._route(req.model, info.principal)
            ctx = self._context(info, outcome.request_id, req, routed)
            admission = await self._admit(ctx, outcome)
            upstream = replace(req, max_tokens=output_cap(req, routed.spec), stream=True)
            stream = routed.client.stream(upstream)
            return self._sse(stream, req, routed, admission.reservation, outcome), outcome
        raise AssertionError("unreachable")  # pragma: no cover - _finishing re-raises

    @contextlib.asynccontextmanager
    async def _finishing(self, outcome: Outcome, *, streaming: bool = False) -> AsyncIterator[None]:
        """Every request ends here, refused or answered; a stream ends in ``_sse`` instead."""
        try:
            yield
        except CharterError as exc:
            outcome.status, outcome.error = exc.status, exc.message
            await self._finish(outcome)
            raise
        except BaseException as exc:
            outcome.status, outcome.error = 500, type(exc).__name__
            await self._finish(outcome)
            raise
        if not streaming:
            await self._finish(outcome)

    async def _sse(
        self,
        stream: ChatStream,
        req: ChatRequest,
        routed: Routed,
        reservation: Reservation | None,
        outcome: Outcome,
    ) -> AsyncIterator[bytes]:
        response_id = "chatcmpl-" + outcome.request_id.removeprefix("req_")
        created = int(time.time())
        first = True
        finished = False
        try:
            async with stream:
                async for chunk in stream:
                    yield chunk.to_sse(
                        response_id,
                        req.model,
                        created,
                        first=first,
                        include_usage=req.include_usage,
                    )
                    first = False
                    if chunk.finish_reason is not None:
                        finished = True
            if not finished:
                yield StreamChunk(finish_reason="stop").to_sse(
                    response_id, req.model, created, first=first
                )
            yield b"data: [DONE]\n\n"
        except CharterError as exc:
            outcome.status, outcome.error = exc.status, exc.message
            # The status line is gone already; an error event is what a client can still read.
            yield sse_error(exc)
        finally:
            usage = stream.usage if stream.started else Usage(0, 0, True)
            await asyncio.shield(self._settle(reservation, routed, usage, outcome))
            await self._finish(outcome)

    async def _settle(
        self, reservation: Reservation | None, routed: Routed, usage: Usage, outcome: Outcome
    ) -> None:
        cost = cost_micro_usd(routed.spec, usage)
        outcome.usage, outcome.cost_micro_usd = usage, cost
        if reservation is not None:
            await self.engine.settle(
                reservation, cost_micro_usd=cost, tokens=usage.total_tokens, now=time.time()
            )
        if self.spend is not None and cost > 0:
            self.spend.add(
                SpendRow(
                    request_id=outcome.request_id,
                    principal_id=outcome.principal,
                    model=outcome.model,
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_micro_usd=cost,
                    at=_utcnow(),
                )
            )

    async def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            await self.engine.release(reservation, time.time())

    async def _finish(self, outcome: Outcome) -> None:
        """Record how the request ended (the audit trail hooks in here)."""
        self.recent.append(outcome)
        del self.recent[:-200]

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(self, info: KeyInfo, req: EmbeddingRequest) -> tuple[dict[str, Any], Outcome]:
        """Embeddings under the route, budget and rate-limit controls."""
        outcome = Outcome(new_request_id(), info.principal, req.model)
        async with self._finishing(outcome):
            routed = self._route(req.model, info.principal)
            inputs = sum(len(text.encode()) for text in req.input)
            ctx = RequestContext(
                stage=Stage.REQUEST,
                request_id=outcome.request_id,
                principals=self.engine.principals_of(info.principal),
                model=req.model,
                max_cost_micro_usd=cost_micro_usd(routed.spec, Usage(inputs, 0)),
                max_tokens=inputs,
            )
            admission = await self._admit(ctx, outcome)
            try:
                response = await routed.client.embed(req)
            except BaseException:
                await self._release(admission.reservation)
                raise
            usage = response.usage or Usage(0, 0, True)
            await self._settle(admission.reservation, routed, usage, outcome)
            return response.to_openai(model=req.model), outcome
        raise AssertionError("unreachable")  # pragma: no cover - _finishing re-raises


def refusal(evaluation: Evaluation) -> CharterError:
    """The client-facing error for a blocked request, naming the control and its decisions."""
    verdict = evaluation.deciding
    assert verdict is not None
    decisions = ", ".join(verdict.decision_ids) or "none"
    message = f"{verdict.reason} [control {verdict.control_id}; decision {decisions}]"
    charter: dict[str, Any] = {
        "control": verdict.control_id,
        "decisions": list(verdict.decision_ids),
        "version": evaluation.charter_version,
    }
    kind = verdict.evidence.get("kind")
    if kind == "budget":
        return BudgetExceeded(message, charter=charter)
    if kind == "rate_limit":
        return RateLimited(message, charter=charter)
    if verdict.evidence.get("error") == StorageUnavailable.__name__:  # fail_closed on an outage
        return StorageUnavailable(message, charter=charter)
    if verdict.stage is Stage.REQUEST and "error" not in verdict.evidence:
        return PermissionDenied(message, code="model_not_allowed", charter=charter)
    return PolicyViolation(message, charter=charter)


def sse_error(exc: CharterError) -> bytes:
    import json

    return b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\ndata: [DONE]\n\n"


def _utcnow() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def validate_body(body: object, what: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise InvalidRequest(
            f"the {what} body must be a JSON object",
            hint="send Content-Type: application/json with an object body",
        )
    return body


__all__: Sequence[str] = ["Gateway", "Outcome", "Routed", "refusal"]
