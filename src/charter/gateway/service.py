"""The governed request path, independent of HTTP: authenticate, admit, guard, call, settle, record.

``Gateway`` is what the ASGI app (``charter.gateway.app``) calls. Every step that judges the request
goes through the policy engine, so the gateway adds no rules of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from charter.audit.log import AuditLog, Draft
from charter.audit.records import Content, RecordKind
from charter.budgets.ledger import SpendWriter
from charter.counters import Reservation
from charter.document.model import Charter, ModelSpec
from charter.errors import (
    BudgetExceeded,
    CharterError,
    InternalError,
    NotFound,
    PermissionDenied,
    PolicyViolation,
    RateLimited,
    ReviewRequired,
    StorageUnavailable,
)
from charter.gateway.actions import ToolGate
from charter.gateway.guarding import (
    Extension,
    Guarding,
    Inbound,
    StreamGuard,
    refusal_text,
    split_extension,
)
from charter.gateway.keys import KeyInfo, KeyRing
from charter.gateway.pricing import cost_micro_usd, output_cap, worst_case
from charter.observability import Observer
from charter.policy.context import RequestContext
from charter.policy.engine import Admission, Engine, Evaluation
from charter.policy.verdict import Action, Stage, Verdict
from charter.providers.base import ChatStream, ProviderClient
from charter.providers.types import (
    ChatRequest,
    ChatResponse,
    EmbeddingRequest,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from charter.standards import Standards
from charter.standards.answers import finish_answer, finish_stream
from charter.standards.request import with_instructions
from charter.storage.base import SpendRow

if TYPE_CHECKING:
    from charter.approvals.content import ContentReviews, Grants
    from charter.approvals.service import ActionService

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
    refused_by: Verdict | None = None  # the guard verdict that replaced the answer
    sent_upstream: str = ""  # the last user message as the provider received it (redacted)
    audit_index: int | None = None  # the request's record in the audit log, once committed
    actions: list[dict[str, Any]] = field(default_factory=list)  # tool calls and their fate
    started: float = field(default_factory=time.perf_counter)
    operation: str = "chat"
    approval_id: str | None = None  # the review it was queued as, or the approval it used


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A request ready for the upstream (or refused by an input guard: ``inbound.refusal``)."""

    request: ChatRequest  # as the caller sent it, without the charter options
    ext: Extension
    routed: Routed
    ctx: RequestContext
    admission: Admission
    inbound: Inbound
    upstream: ChatRequest  # with standards composed in, redacted, fenced, max_tokens capped


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
        audit: AuditLog | None = None,
        actions: ToolGate | None = None,
        standards: Standards | None = None,
        approvals: ActionService | None = None,
    ) -> None:
        self.charter = charter
        self.engine = engine
        self.keys = keys
        self.models = dict(models)
        self.spend = spend
        self.audit = audit
        self.actions = actions
        self.standards = standards or Standards(charter, base_dir=None)
        self.observer: Observer | None = None  # metrics, traces, drift; set by the factory
        self.audit_content = audit_content_form(charter)
        self.version = engine.version
        self.guarding = Guarding(engine)
        # The approval queue: tool calls sent to review, and content a guard escalated.
        self.approvals = approvals or (actions.service if actions is not None else None)
        self.reviews: ContentReviews | None = None
        if self.approvals is not None:
            from charter.approvals.content import ContentReviews, escalating_guards

            if escalating_guards(charter.controls):
                self.reviews = ContentReviews(self.approvals)
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
        self, info: KeyInfo, request_id: str, req: ChatRequest, routed: Routed, ext: Extension
    ) -> RequestContext:
        worst = worst_case(req, routed.spec)
        return RequestContext(
            stage=Stage.REQUEST,
            request_id=request_id,
            principals=self.engine.principals_of(info.principal),
            model=req.model,
            subject=ext.subject,
            conversation_id=ext.conversation_id,
            attributes=ext.attributes,
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

    async def chat(
        self, info: KeyInfo, req: ChatRequest, *, approvals: Sequence[str] = ()
    ) -> tuple[ChatResponse, Outcome]:
        """A non-streamed chat completion under the charter.

        ``approvals`` are the approval ids the caller presented (``X-Charter-Approval``) for
        content a guard escalated before; they are read only if a guard escalates again.
        """
        outcome = Outcome(new_request_id(), info.principal, req.model)
        async with self._finishing(outcome):
            prep = await self._prepare(info, req, outcome, stream=False, approvals=approvals)
            req, ext, routed, ctx, admission, inbound = (
                prep.request,
                prep.ext,
                prep.routed,
                prep.ctx,
                prep.admission,
                prep.inbound,
            )
            if inbound.refusal is not None:
                return self._refused(outcome, req, inbound.refusal), outcome
            upstream = prep.upstream
            try:
                response = await routed.client.generate(upstream)
            except BaseException:
                await self._release(admission.reservation)
                raise
            usage = response.usage or Usage(0, 0, True)
            await self._settle(admission.reservation, routed, usage, outcome)
            judged = len(outcome.verdicts)
            content, blocked = self.guarding.check_output(
                response.content or "", inbound, ctx, outcome.verdicts
            )
            if inbound.escalation is not None and self.reviews is not None:
                content, blocked = await self._review_output(
                    response.content or "", inbound, ctx, outcome, approvals, judged
                )
            response_id = "chatcmpl-" + outcome.request_id.removeprefix("req_")
            if blocked is not None:
                outcome.refused_by = blocked
                response = replace(
                    response, content=content, tool_calls=(), finish_reason="content_filter"
                )
            else:
                content, refused = finish_answer(
                    content,
                    self.standards,
                    ctx.principals,
                    req.model,
                    last_user_text(req),
                    outcome.verdicts,
                )
                if refused is not None:
                    outcome.refused_by = refused
                    return replace(
                        response,
                        id=response_id,
                        content=refusal_text(refused),
                        tool_calls=(),
                        finish_reason="content_filter",
                    ), outcome
                if response.content is not None or content:
                    response = replace(response, content=content)
                if response.tool_calls and self.actions is not None:
                    response = await self._screen_calls(response, req, ext, outcome)
            return replace(response, id=response_id), outcome
        raise AssertionError("unreachable")  # pragma: no cover - _finishing re-raises

    def _compose(
        self, inbound: Inbound, ctx: RequestContext, req: ChatRequest, outcome: Outcome
    ) -> None:
        """Put the organization's standards into the request, in the charter's precedence."""
        composed = self.standards.compose(ctx.principals, req.model, inbound.request.system_prompt)
        inbound.request = with_instructions(inbound.request, composed)
        outcome.verdicts += composed.verdicts()  # the audit record names the standards applied

    def _finish_text(self, guard: StreamGuard, req: ChatRequest, outcome: Outcome) -> str:
        """The end of a stream: guards and standards judge the whole answer, then the held-back
        tail (and any element a standard repairs in) is released."""
        principals = self.engine.principals_of(outcome.principal)
        return finish_stream(guard, self.standards, principals, req.model, last_user_text(req))

    async def _screen_calls(
        self, response: ChatResponse, req: ChatRequest, ext: Extension, outcome: Outcome
    ) -> ChatResponse:
        """Keep the tool calls the charter allows; explain the ones it denied or holds."""
        assert self.actions is not None
        screened = await self.actions.screen(
            outcome.principal,
            response.tool_calls,
            req,
            subject=ext.subject,
            conversation_id=ext.conversation_id,
            attributes=ext.attributes,
            excerpt=outcome.sent_upstream,
            verdicts=outcome.verdicts,
        )
        outcome.actions = screened.actions
        if not screened.notes:
            return response
        text = "\n".join(filter(None, [response.content or "", *screened.notes]))
        finish = response.finish_reason if screened.calls else "stop"
        return replace(
            response, content=text, tool_calls=tuple(screened.calls), finish_reason=finish
        )

    async def _prepare(
        self,
        info: KeyInfo,
        req: ChatRequest,
        outcome: Outcome,
        *,
        stream: bool,
        approvals: Sequence[str] = (),
    ) -> _Prepared:
        """Everything before the upstream call, the same for streamed and whole answers: route,
        admission, input guards, standards. A guard's refusal releases the reservation."""
        req, ext = split_extension(req)
        routed = self._route(req.model, info.principal)
        ctx = self._context(info, outcome.request_id, req, routed, ext)
        admission = await self._admit(ctx, outcome)
        judged = len(outcome.verdicts)
        inbound = self.guarding.inbound(req, ext, ctx, outcome.verdicts)
        if inbound.escalation is not None and self.reviews is not None:
            try:
                inbound = await self._review_inbound(
                    inbound, req, ext, ctx, outcome, approvals, judged
                )
            except BaseException:
                await self._release(admission.reservation)
                raise
        if inbound.refusal is not None:
            await self._release(admission.reservation)
            return _Prepared(req, ext, routed, ctx, admission, inbound, req)
        self._compose(inbound, ctx, req, outcome)
        upstream = replace(inbound.request, max_tokens=output_cap(req, routed.spec), stream=stream)
        outcome.sent_upstream = last_user_text(upstream)
        return _Prepared(req, ext, routed, ctx, admission, inbound, upstream)

    # --- escalated content: the human checkpoint -------------------------------------------------

    async def _grants(self, outcome: Outcome, approvals: Sequence[str]) -> Grants | None:
        assert self.reviews is not None
        return await self.reviews.grants(outcome.principal, approvals) if approvals else None

    async def _review_inbound(
        self,
        inbound: Inbound,
        req: ChatRequest,
        ext: Extension,
        ctx: RequestContext,
        outcome: Outcome,
        approvals: Sequence[str],
        judged: int,
    ) -> Inbound:
        """A guard escalated inbound content: judge it again with the caller's approvals, then
        either let it go on (recording each approval used) or queue it and refuse."""
        assert self.reviews is not None
        grants = await self._grants(outcome, approvals)
        if grants is not None and grants.rows:
            del outcome.verdicts[judged:]
            inbound = self.guarding.inbound(req, ext, ctx, outcome.verdicts, grants)
        if inbound.escalation is not None:
            outcome.refused_by = inbound.refusal
            raise await self._held(inbound, ctx, outcome, grants)
        if inbound.refusal is None and grants is not None:
            await self._used(grants, outcome)
        return inbound

    async def _review_output(
        self,
        text: str,
        inbound: Inbound,
        ctx: RequestContext,
        outcome: Outcome,
        approvals: Sequence[str],
        judged: int,
    ) -> tuple[str, Verdict | None]:
        """An output guard escalated the answer: the same, for the whole answer."""
        assert self.reviews is not None
        grants = await self._grants(outcome, approvals)
        if grants is not None and grants.rows:
            del outcome.verdicts[judged:]
            inbound.escalation = None
            content, blocked = self.guarding.check_output(
                text, inbound, ctx, outcome.verdicts, grants
            )
            if inbound.escalation is None:
                if blocked is None:
                    await self._used(grants, outcome)
                return content, blocked
        outcome.refused_by = next(
            (v for v in outcome.verdicts[judged:] if v.effective is Action.ESCALATE), None
        )
        raise await self._held(inbound, ctx, outcome, grants)

    async def _held(
        self, inbound: Inbound, ctx: RequestContext, outcome: Outcome, grants: Grants | None
    ) -> ReviewRequired:
        assert self.reviews is not None and inbound.escalation is not None
        error = await self.reviews.hold(inbound.escalation, ctx, grants)
        approval = error.details.get("approval") or {}
        outcome.approval_id = approval.get("id")
        return error

    async def _used(self, grants: Grants, outcome: Outcome) -> None:
        assert self.reviews is not None
        if grants.used:
            await self.reviews.use(grants, outcome.request_id)
            outcome.approval_id = ",".join(grants.used)

    def _refused(self, outcome: Outcome, req: ChatRequest, verdict: Verdict) -> ChatResponse:
        """The answer a client gets when a guard refused its request: the control's message."""
        outcome.refused_by = verdict
        return ChatResponse(
            id="chatcmpl-" + outcome.request_id.removeprefix("req_"),
            model=req.model,
            content=refusal_text(verdict),
            finish_reason="content_filter",
            usage=Usage(0, 0),
            created=int(time.time()),
        )

    async def chat_stream(
        self, info: KeyInfo, req: ChatRequest, *, approvals: Sequence[str] = ()
    ) -> tuple[AsyncIterator[bytes], Outcome]:
        """A streamed chat completion: admission, and the wait for the upstream's first chunk,
        happen before the status line, so a refusal (escalated input included), and an upstream
        that fails or times out before answering, are ordinary HTTP errors (403, 429, 502,
        504...); spend is settled when the stream ends, however it ends. With ``approvals`` and an
        output guard that can escalate, the answer is held whole, so an approval of an answer is
        checked against all of it."""
        outcome = Outcome(new_request_id(), info.principal, req.model)
        async with self._finishing(outcome, streaming=True):
            prep = await self._prepare(info, req, outcome, stream=True, approvals=approvals)
            req, ext, routed, ctx, admission, inbound = (
                prep.request,
                prep.ext,
                prep.routed,
                prep.ctx,
                prep.admission,
                prep.inbound,
            )
            if inbound.refusal is not None:
                refused = self._refused(outcome, req, inbound.refusal)
                return self._sse_refusal(refused, req, outcome), outcome
            stream = routed.client.stream(prep.upstream)
            try:
                head: StreamChunk | None = await anext(stream)
            except StopAsyncIteration:
                head = None
            except BaseException:
                await stream.aclose()
                await self._release(admission.reservation)
                raise
            guard = self.guarding.stream_guard(inbound, ctx, outcome.verdicts)
            guard.whole_answer = guard.whole_answer or self.standards.holds_whole_answer(
                ctx.principals, req.model
            )
            review = None
            if self.reviews is not None and self.guarding.output_escalates:
                review = _StreamReview(inbound, ctx, tuple(approvals))
                guard.whole_answer = guard.whole_answer or bool(approvals)
            sse = self._sse(
                stream, head, guard, req, ext, routed, admission.reservation, outcome, review
            )
            return sse, outcome
        raise AssertionError("unreachable")  # pragma: no cover - _finishing re-raises

    async def _sse_refusal(
        self, refused: ChatResponse, req: ChatRequest, outcome: Outcome
    ) -> AsyncIterator[bytes]:
        chunk = StreamChunk(
            text=refused.content or "", finish_reason="content_filter", usage=refused.usage
        )
        yield chunk.to_sse(
            refused.id, req.model, refused.created, first=True, include_usage=req.include_usage
        )
        await self._finish(outcome)  # the record is committed before the stream says [DONE]
        yield SSE_DONE

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
        head: StreamChunk | None,
        guard: StreamGuard,
        req: ChatRequest,
        ext: Extension,
        routed: Routed,
        reservation: Reservation | None,
        outcome: Outcome,
        review: _StreamReview | None = None,
    ) -> AsyncIterator[bytes]:
        """Relay the upstream stream (``head``, its first chunk, already read) through the output
        guard's hold-back window.

        Spend is settled and the audit record committed before the last event, so a client that
        saw [DONE] knows its request is on record; a client that disconnects early still gets
        both, in ``finally``. An answer an output guard escalates is read to its end (not sent)
        so the review names all of it; the client gets the refusal and a ``review_required``
        error event carrying the approval id.
        """
        response_id = "chatcmpl-" + outcome.request_id.removeprefix("req_")
        created = int(time.time())
        first = True
        finish: StreamChunk | None = None
        closed = False
        calls = _CallAssembler()  # tool calls are held whole until the charter has ruled on them

        async def close() -> None:
            nonlocal closed
            if not closed:
                closed = True
                usage = stream.usage if stream.started else Usage(0, 0, True)
                await asyncio.shield(self._settle(reservation, routed, usage, outcome))
                await asyncio.shield(self._finish(outcome))

        async def chunks() -> AsyncGenerator[StreamChunk, None]:
            if head is not None:
                yield head
            async for chunk in stream:
                yield chunk

        try:
            async with stream, contextlib.aclosing(chunks()) as relayed:
                async for chunk in relayed:
                    if review is not None:
                        review.raw.append(chunk.text)
                        if review.draining:
                            continue
                    text = guard.feed(chunk.text)
                    if guard.blocked is not None:
                        if review is not None and _escalated(guard):
                            review.draining = True
                            continue
                        break
                    if chunk.finish_reason is not None:
                        finish = chunk
                        text += await self._stream_tail(guard, req, outcome, review)
                        if guard.blocked is not None:
                            break
                    calls.add(chunk.tool_calls)
                    if text:
                        yield StreamChunk(text=text).to_sse(
                            response_id, req.model, created, first=first
                        )
                        first = False
            if guard.blocked is None and finish is None:
                tail = await self._stream_tail(guard, req, outcome, review)
                if tail:
                    yield StreamChunk(text=tail).to_sse(
                        response_id, req.model, created, first=first
                    )
                    first = False
            if guard.blocked is not None:
                outcome.refused_by = guard.blocked
                error: CharterError = PolicyViolation(
                    f"the answer was stopped: {guard.blocked.reason}",
                    charter={
                        "control": guard.blocked.control_id,
                        "decisions": list(guard.blocked.decision_ids),
                    },
                )
                said = refusal_text(guard.blocked)
                if review is not None and _escalated(guard):
                    error = await self._held_answer(review, outcome)
                    outcome.status, outcome.error = error.status, error.message
                    said = f"{said} (approval {outcome.approval_id})"
                # End cleanly: the refusal as the last text, a content_filter finish, an error
                # event the client can read, then [DONE].
                refusal = StreamChunk(text=said, finish_reason="content_filter", usage=stream.usage)
                yield refusal.to_sse(
                    response_id, req.model, created, first=first, include_usage=req.include_usage
                )
                await close()
                yield sse_error(error)
                return
            finish_reason = finish.finish_reason if finish else "stop"
            proposed = calls.calls()
            if proposed:
                released, notes = proposed, []
                if self.actions is not None:
                    screened = await self.actions.screen(
                        outcome.principal,
                        proposed,
                        req,
                        subject=ext.subject,
                        conversation_id=ext.conversation_id,
                        attributes=ext.attributes,
                        excerpt=outcome.sent_upstream,
                        verdicts=outcome.verdicts,
                    )
                    outcome.actions = screened.actions
                    released, notes = screened.calls, screened.notes
                if notes:
                    yield StreamChunk(text="\n" + "\n".join(notes)).to_sse(
                        response_id, req.model, created, first=first
                    )
                    first = False
                if released:
                    deltas = tuple(
                        ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(released)
                    )
                    yield StreamChunk(tool_calls=deltas).to_sse(
                        response_id, req.model, created, first=first
                    )
                    first = False
                elif finish_reason == "tool_calls":
                    finish_reason = "stop"
            last = StreamChunk(finish_reason=finish_reason, usage=stream.usage)
            yield last.to_sse(
                response_id, req.model, created, first=first, include_usage=req.include_usage
            )
            await close()
            yield SSE_DONE
        except CharterError as exc:
            outcome.status, outcome.error = exc.status, exc.message
            await close()
            # The status line is gone already (the stream had begun): an error event is what a
            # client can still read.
            yield sse_error(exc)
        finally:
            await close()

    async def _stream_tail(
        self, guard: StreamGuard, req: ChatRequest, outcome: Outcome, review: _StreamReview | None
    ) -> str:
        """The end of a stream (``_finish_text``); an answer escalated at the end is judged
        again with the caller's approvals, which may clear it."""
        judged = len(outcome.verdicts)
        text = self._finish_text(guard, req, outcome)
        if review is None or not review.approvals or not _escalated(guard):
            return text
        grants = await self._grants(outcome, review.approvals)
        if grants is None or not grants.rows:
            return text
        review.grants = guard.grants = grants
        del outcome.verdicts[judged:]
        guard.blocked = None
        text = self._finish_text(guard, req, outcome)
        if guard.blocked is None:
            await self._used(grants, outcome)
        return text

    async def _held_answer(self, review: _StreamReview, outcome: Outcome) -> ReviewRequired:
        """Queue an escalated streamed answer, judged whole (as its retry will be)."""
        from charter.approvals.content import Escalation

        answer = "".join(review.raw)
        evaluation = self.guarding.evaluate_output(answer, review.inbound, review.ctx)
        review.inbound.escalation = Escalation(Stage.OUTPUT, answer, evaluation)
        return await self._held(review.inbound, review.ctx, outcome, review.grants)

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
                    at=dt.datetime.now(dt.UTC),
                )
            )

    async def _release(self, reservation: Reservation | None) -> None:
        if reservation is not None:
            await self.engine.release(reservation, time.time())

    async def _finish(self, outcome: Outcome) -> None:
        """Record how the request ended; returns once the audit record is committed."""
        self.recent.append(outcome)
        del self.recent[:-200]
        if self.audit is not None:
            outcome.audit_index = await self.audit.append(self._draft(outcome))
        if self.observer is not None:
            # Metrics and drift statistics are not part of the answer: they run on the loop's
            # next turn, after the response has been written (observe never raises).
            latency = time.perf_counter() - outcome.started
            asyncio.get_running_loop().call_soon(self.observer.observe, outcome, latency)

    def _draft(self, outcome: Outcome) -> Draft:
        """The audit record of one request, holding content only in the form the charter allows."""
        ruled = outcome.verdicts
        worst = max((v.effective for v in ruled), key=lambda a: a.severity, default=Action.ALLOW)
        deciding = outcome.refused_by or next(
            (v for v in ruled if v.effective is worst and worst is not Action.ALLOW), None
        )
        if outcome.status >= 400 and deciding is None:
            worst = Action.BLOCK
        reason = deciding.reason if deciding else (outcome.error or "answered")
        content: tuple[Content, ...] = ()
        if outcome.sent_upstream:
            if self.audit_content == "redacted":
                content = (Content.redacted("input", outcome.sent_upstream),)
            elif self.audit_content == "hashed" and self.audit is not None:
                content = (Content.hashed("input", self.audit.keys.content, outcome.sent_upstream),)
        usage = outcome.usage
        return Draft(
            kind=RecordKind.VERDICT,
            principal=outcome.principal,
            request_id=outcome.request_id,
            charter_version=self.version,
            control_ids=tuple(dict.fromkeys(v.control_id for v in ruled)),
            decision_ids=tuple(dict.fromkeys(d for v in ruled for d in v.decision_ids)),
            action=worst,
            reason=reason,
            content=content,
            details={
                "model": outcome.model,
                "status": outcome.status,
                "input_tokens": usage.input_tokens if usage else 0,
                "output_tokens": usage.output_tokens if usage else 0,
                "cost_micro_usd": outcome.cost_micro_usd,
                "verdicts": json.dumps([_verdict_summary(v) for v in ruled], separators=(",", ":")),
                **({"approval_id": outcome.approval_id} if outcome.approval_id else {}),
            },
        )

    # --- embeddings ------------------------------------------------------------------------------

    async def embed(self, info: KeyInfo, req: EmbeddingRequest) -> tuple[dict[str, Any], Outcome]:
        """Embeddings under the route, budget and rate-limit controls."""
        outcome = Outcome(new_request_id(), info.principal, req.model, operation="embeddings")
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


SSE_DONE = b"data: [DONE]\n\n"


@dataclass
class _StreamReview:
    """What a stream needs to queue an escalated answer: the raw answer read so far."""

    inbound: Inbound
    ctx: RequestContext
    approvals: tuple[str, ...]
    raw: list[str] = field(default_factory=list)
    draining: bool = False  # escalated mid-stream: read to the end, send nothing more
    grants: Grants | None = None


def _escalated(guard: StreamGuard) -> bool:
    return guard.blocked is not None and guard.blocked.effective is Action.ESCALATE


class _CallAssembler:
    """Puts streamed tool-call fragments back together by index."""

    def __init__(self) -> None:
        self._parts: dict[int, list[str]] = {}
        self._meta: dict[int, tuple[str, str]] = {}

    def add(self, deltas: Sequence[ToolCallDelta]) -> None:
        for delta in deltas:
            self._parts.setdefault(delta.index, []).append(delta.arguments)
            call_id, name = self._meta.get(delta.index, ("", ""))
            self._meta[delta.index] = (delta.id or call_id, delta.name or name)

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(self._meta[i][0], self._meta[i][1], "".join(self._parts[i]))
            for i in sorted(self._parts)
        ]


def _verdict_summary(v: Verdict) -> dict[str, Any]:
    out: dict[str, Any] = {"control": v.control_id, "action": v.action.value}
    if not v.enforced:
        out["shadow"] = True
    if v.score is not None:
        out["score"] = round(v.score, 4)
    outcome = v.evidence.get("outcome")
    if "standard" in v.evidence and isinstance(outcome, str):
        out["outcome"] = outcome  # met, repaired, flagged, blocked: per-standard evidence
    return out


def audit_flushes(charter: Charter) -> bool:
    """Whether each audit commit must reach the disk before the request is answered."""
    for control in charter.controls:
        if control.kind == "audit" and control.mode != "off":
            return control.settings.durability == "flush"
    return True


def audit_content_form(charter: Charter) -> str:
    """What the audit trail may keep of content: the charter's audit control says; hashed by
    default, so content can be matched later without being stored."""
    for control in charter.controls:
        if control.kind == "audit" and control.mode != "off":
            return str(control.settings.content)
    return "hashed"


def last_user_text(req: ChatRequest) -> str:
    return next((m.text for m in reversed(req.messages) if m.role == "user"), "")


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
    failure = verdict.evidence.get("error")
    if failure is not None:
        # A control could not decide and its on_error said fail closed: say so, with the cause,
        # rather than pretend the content broke a rule.
        if failure == "StorageUnavailable":
            return StorageUnavailable(message, charter=charter)
        return InternalError(message, charter=charter)
    kind = verdict.evidence.get("kind")
    if kind == "budget":
        return BudgetExceeded(message, charter=charter)
    if kind == "rate_limit":
        return RateLimited(message, charter=charter)
    if verdict.stage is Stage.REQUEST:
        return PermissionDenied(message, code="model_not_allowed", charter=charter)
    return PolicyViolation(message, charter=charter)


def sse_error(exc: CharterError) -> bytes:
    """An OpenAI-style error event, then the end of the stream."""
    return b"data: " + json.dumps(exc.to_dict()).encode() + b"\n\ndata: [DONE]\n\n"
