"""Run a suite: against the policy engine alone (fast, no model) or end to end through the gateway.

Both modes judge a case by the verdicts production would give: the policy run builds the contexts
per stage exactly as the gateway does (it reuses the gateway's ``Guarding``), and the gateway run
sends real HTTP requests to the ASGI app in-process. Each case runs in its own counter scope, so
a rate-limit case cannot starve the next case of the same principal, and ``setup.spent_usd`` is the
spend the case's budget counters start from.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import secrets
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from charter.counters import AdmitResult, Claim, Counters
from charter.document.model import Charter, Mode, ModelSpec
from charter.document.version import charter_version
from charter.errors import InvalidRequest
from charter.evals.assertions import check
from charter.evals.grading import Grader
from charter.evals.suite import Case, Category, Expected, Suite
from charter.ownership import OwnershipResolver
from charter.policy.context import RequestContext, ToolCall
from charter.policy.engine import Engine
from charter.policy.runtime import Runtime, SpendLedger
from charter.policy.verdict import Action, Stage, Verdict

_ACTION_TO_EXPECTED = {
    Action.ALLOW: Expected.ALLOWED,
    Action.REDACT: Expected.REDACTED,
    Action.ESCALATE: Expected.ESCALATED,
    Action.BLOCK: Expected.BLOCKED,
}

Progress = Callable[["CaseResult"], None]


@dataclass(frozen=True, slots=True)
class CaseResult:
    """What one case ended as, and whether that is what the suite expected."""

    case_id: str
    category: Category
    decisions: tuple[str, ...]
    expected: Expected
    actual: Expected
    passed: bool
    failures: tuple[str, ...] = ()
    deciding_control: str | None = None
    measured: bool = True  # False: no enforced control serves the case's decisions
    latency_ms: float = 0.0
    cost_micro_usd: int = 0
    answer: str | None = None
    advisory: tuple[str, ...] = ()  # grader findings not counted (grader not trusted)
    verdicts: tuple[tuple[str, str, str, bool], ...] = ()  # control, action, stage, enforced
    tags: tuple[str, ...] = ()

    @property
    def refused(self) -> bool:
        return self.actual.refused

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.case_id,
            "category": self.category.value,
            "decisions": list(self.decisions),
            "expected": self.expected.value,
            "actual": self.actual.value,
            "passed": self.passed,
            "failures": list(self.failures),
            "deciding_control": self.deciding_control,
            "measured": self.measured,
            "latency_ms": round(self.latency_ms, 3),
            "cost_micro_usd": self.cost_micro_usd,
            "answer": self.answer,
            "advisory": list(self.advisory),
            "verdicts": [
                {"control": c, "action": a, "stage": s, "enforced": e}
                for c, a, s, e in self.verdicts
            ],
            "tags": list(self.tags),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CaseResult:
        return cls(
            case_id=data["id"],
            category=Category(data["category"]),
            decisions=tuple(data["decisions"]),
            expected=Expected(data["expected"]),
            actual=Expected(data["actual"]),
            passed=bool(data["passed"]),
            failures=tuple(data.get("failures", ())),
            deciding_control=data.get("deciding_control"),
            measured=bool(data.get("measured", True)),
            latency_ms=float(data.get("latency_ms", 0.0)),
            cost_micro_usd=int(data.get("cost_micro_usd", 0)),
            answer=data.get("answer"),
            advisory=tuple(data.get("advisory", ())),
            verdicts=tuple(
                (v["control"], v["action"], v["stage"], v["enforced"])
                for v in data.get("verdicts", ())
            ),
            tags=tuple(data.get("tags", ())),
        )


@dataclass(frozen=True, slots=True)
class Run:
    """One run of a suite against one charter version."""

    run_id: str
    suite: str
    mode: str  # "policy" or "gateway"
    charter_version: str
    models: tuple[str, ...]
    started_at: str
    results: tuple[CaseResult, ...]
    grader: dict[str, Any] | None = None  # agreement with labels, and whether it is trusted
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "mode": self.mode,
            "charter_version": self.charter_version,
            "models": list(self.models),
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "grader": self.grader,
            "results": [r.to_dict() for r in self.results],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Run:
        try:
            return cls(
                run_id=data["run_id"],
                suite=data["suite"],
                mode=data["mode"],
                charter_version=data["charter_version"],
                models=tuple(data["models"]),
                started_at=data["started_at"],
                results=tuple(CaseResult.from_dict(r) for r in data["results"]),
                grader=data.get("grader"),
                duration_s=float(data.get("duration_s", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidRequest(
                f"not an eval run ({type(exc).__name__}: {exc})",
                hint="a baseline is the JSON that `charter eval --json FILE` writes",
            ) from None


# --- per-case isolation of counters ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scope:
    name: str
    spent_micro_usd: Mapping[str, int] = field(default_factory=dict)


_SCOPE: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("eval_scope", default=None)


class ScopedCounters:
    """Counters whose keys are prefixed with the running case, so cases never share a window.

    The scope is a context variable: asyncio tasks copy it, so concurrent cases each see their own.
    """

    def __init__(self, inner: Counters) -> None:
        self.inner = inner

    def _key(self, key: str) -> str:
        scope = _SCOPE.get()
        return f"eval:{scope.name}:{key}" if scope is not None else key

    def _claims(self, claims: Sequence[Claim]) -> list[Claim]:
        return [replace(c, key=self._key(c.key)) for c in claims]

    async def admit(self, request_id: str, claims: Sequence[Claim], now: float) -> AdmitResult:
        return await self.inner.admit(request_id, self._claims(claims), now)

    async def settle(
        self, request_id: str, claims: Sequence[Claim], actual: Sequence[int], now: float
    ) -> None:
        await self.inner.settle(request_id, self._claims(claims), actual, now)

    async def seed(self, key: str, value: int, ttl_s: int) -> None:
        await self.inner.seed(self._key(key), value, ttl_s)

    async def usage(self, claim: Claim, now: float) -> int:
        return await self.inner.usage(replace(claim, key=self._key(claim.key)), now)

    async def aclose(self) -> None:
        await self.inner.aclose()


class ScopedLedger:
    """The spend a case says was already made (``setup.spent_usd``), on top of the real ledger."""

    def __init__(self, inner: SpendLedger | None = None) -> None:
        self.inner = inner

    def spent(self, principals: Sequence[str], start: dt.datetime, end: dt.datetime) -> int:
        scope = _SCOPE.get()
        extra = sum(scope.spent_micro_usd.get(p, 0) for p in principals) if scope else 0
        return extra + (self.inner.spent(principals, start, end) if self.inner else 0)


def _scope_for(case: Case, run_id: str) -> _Scope:
    spent = {p: round(usd * 1_000_000) for p, usd in case.setup.spent_usd.items()}
    return _Scope(f"{run_id}:{case.id}", spent)


# --- what a case is measured against --------------------------------------------------------------


# Kinds that judge no request: a case cannot measure the decisions only they serve.
NON_JUDGING_KINDS = frozenset({"audit", "eval_gate", "monitor", "approval"})


def enforced_decisions(charter: Charter) -> frozenset[str]:
    """Decisions with an enforced control that judges requests; cases on the others measure
    nothing yet (their controls are off, or never give a verdict on a request)."""
    return frozenset(
        d
        for c in charter.controls
        if c.mode is Mode.ENFORCE and c.kind not in NON_JUDGING_KINDS
        for d in c.serves
    )


def model_spec(charter: Charter, name: str) -> ModelSpec | None:
    for provider in charter.providers:
        for spec in provider.models:
            if spec.name == name:
                return spec
    return None


def request_body(suite: Suite, case: Case) -> dict[str, Any]:
    """The OpenAI chat-completions body of a case, with its ``charter`` options."""
    body: dict[str, Any] = {
        "model": suite.model_of(case),
        "messages": [m.model_dump(exclude_none=True) for m in case.messages],
    }
    if case.max_tokens is not None:
        body["max_tokens"] = case.max_tokens
    options: dict[str, Any] = {}
    if case.untrusted:
        options["untrusted_messages"] = list(case.untrusted)
    if case.subject is not None:
        options["subject"] = case.subject
    if case.attributes:
        options["attributes"] = dict(case.attributes)
    if options:
        body["charter"] = options
    if case.tool_call is not None:
        body["tools"] = [_tool_schema(case.tool_call.name, case.tool_call.arguments)]
        body["tool_choice"] = {"type": "function", "function": {"name": case.tool_call.name}}
    return body


def _tool_schema(name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    def json_type(value: Any) -> str:
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int | float):
            return "number"
        return "string"

    return {
        "type": "function",
        "function": {
            "name": name,
            "parameters": {
                "type": "object",
                "properties": {k: {"type": json_type(v)} for k, v in arguments.items()},
            },
        },
    }


def _summaries(verdicts: Iterable[Verdict]) -> tuple[tuple[str, str, str, bool], ...]:
    return tuple((v.control_id, v.action.value, v.stage.value, v.enforced) for v in verdicts)


def _worst(verdicts: Sequence[Verdict]) -> tuple[Action, Verdict | None]:
    worst = max((v.effective for v in verdicts), key=lambda a: a.severity, default=Action.ALLOW)
    if worst is Action.ALLOW:
        return worst, None
    return worst, next(v for v in verdicts if v.effective is worst)


def _verdict_failures(case: Case, actual: Expected, deciding: str | None) -> list[str]:
    failures = []
    if actual is not case.expect.verdict:
        by = f" by {deciding}" if deciding else ""
        failures.append(f"expected {case.expect.verdict.value}, got {actual.value}{by}")
    elif (
        case.expect.control is not None
        and actual is not Expected.ALLOWED
        and deciding != case.expect.control
    ):
        failures.append(f"expected control {case.expect.control} to decide, got {deciding}")
    return failures


# --- the policy run -------------------------------------------------------------------------------


class PolicyRunner:
    """Runs cases through the policy engine with the gateway's guard steps; no model is called."""

    def __init__(self, charter: Charter, suite: Suite) -> None:
        from charter.counters import MemoryCounters
        from charter.gateway.guarding import Guarding

        self.charter = charter
        self.suite = suite
        self.engine = Engine(
            charter, Runtime(counters=ScopedCounters(MemoryCounters()), ledger=ScopedLedger())
        )
        self.guarding = Guarding(self.engine)
        # Tool calls get their ownership lookups run as in the gateway (the engine never asks).
        self.ownership = OwnershipResolver(charter)
        self.enforced = enforced_decisions(charter)
        self.run_id = "run_" + secrets.token_hex(6)

    async def aclose(self) -> None:
        await self.ownership.aclose()

    async def run_case(self, case: Case) -> CaseResult:
        token = _SCOPE.set(_scope_for(case, self.run_id))
        started = time.perf_counter()
        try:
            verdicts, missing = await self._judge(case)
        finally:
            _SCOPE.reset(token)
        latency = (time.perf_counter() - started) * 1000
        worst, deciding = _worst(verdicts)
        actual = Expected.BLOCKED if missing else _ACTION_TO_EXPECTED[worst]
        deciding_id = missing or (deciding.control_id if deciding else None)
        failures = _verdict_failures(case, actual, deciding_id)
        return CaseResult(
            case_id=case.id,
            category=case.category,
            decisions=tuple(case.decisions),
            expected=case.expect.verdict,
            actual=actual,
            passed=not failures,
            failures=tuple(failures),
            deciding_control=deciding_id,
            measured=any(d in self.enforced for d in case.decisions),
            latency_ms=latency,
            verdicts=_summaries(verdicts),
            tags=tuple(case.tags),
        )

    async def _judge(self, case: Case) -> tuple[list[Verdict], str | None]:
        """The verdicts on the case, stage by stage as the gateway would reach them."""
        from charter.gateway.guarding import Extension
        from charter.gateway.pricing import worst_case
        from charter.providers.types import ChatRequest

        model = self.suite.model_of(case)
        spec = model_spec(self.charter, model)
        if spec is None:
            return [], "(unknown model)"  # the gateway answers 404 before any control runs
        body = request_body(self.suite, case)
        body.pop("charter", None)
        req = ChatRequest.from_openai(body)
        ext = Extension(
            untrusted=frozenset(case.untrusted),
            subject=case.subject,
            attributes=MappingProxyType(dict(case.attributes)),
        )
        worst = worst_case(req, spec)
        base = RequestContext(
            stage=Stage.REQUEST,
            principals=self.engine.principals_of(self.suite.principal_of(case)),
            model=model,
            subject=case.subject,
            attributes=ext.attributes,
            max_cost_micro_usd=worst.cost_micro_usd,
            max_tokens=worst.tokens,
        )
        verdicts: list[Verdict] = []
        for attempt in range(case.setup.repeat):
            ctx = replace(base, request_id=f"{self.run_id}-{case.id}-{attempt}", now=time.time())
            admission = await self.engine.admit(ctx)
            if admission.reservation is not None:
                # No model is called: requests count, spend does not.
                await self.engine.settle(
                    admission.reservation, cost_micro_usd=0, tokens=0, now=time.time()
                )
            verdicts = list(admission.evaluation.verdicts)
        if any(v.effective is Action.BLOCK for v in verdicts):
            return verdicts, None
        inbound = self.guarding.inbound(req, ext, base, verdicts)
        if inbound.refusal is not None:
            return verdicts, None
        if case.tool_call is not None:
            call = ToolCall(case.tool_call.name, MappingProxyType(dict(case.tool_call.arguments)))
            ctx = await self.ownership.with_answers(
                replace(base, stage=Stage.TOOL_CALL, tool_call=call)
            )
            verdicts += self.engine.evaluate(ctx).verdicts
        if case.output is not None:
            self.guarding.check_output(case.output, inbound, base, verdicts)
        return verdicts, None


# --- the gateway run ------------------------------------------------------------------------------


class GatewayRunner:
    """Runs cases as HTTP requests to the gateway's ASGI app, on a throwaway database."""

    def __init__(
        self,
        charter_path: str,
        suite: Suite,
        *,
        grader: Grader | None = None,
        grader_trusted: bool = False,
    ) -> None:
        self.charter_path = charter_path
        self.suite = suite
        self.grader = grader
        self.grader_trusted = grader_trusted
        self.run_id = "run_" + secrets.token_hex(6)
        self._keys: dict[str, str] = {}
        self.services: Any = None
        self.http: Any = None

    @contextlib.asynccontextmanager
    async def started(self) -> AsyncIterator[GatewayRunner]:
        import httpx

        from charter.gateway.admin import create_key
        from charter.gateway.app import build_app
        from charter.gateway.factory import build_services
        from charter.settings import resolve

        with tempfile.TemporaryDirectory(prefix="charter-eval-") as tmp:
            settings = resolve(
                {
                    "charter": self.charter_path,
                    "database": f"sqlite:///{tmp}/eval.db",
                    "data_dir": f"{tmp}/state",
                },
                environ={},
            )
            self.services = build_services(settings)
            try:
                runtime = self.services.gateway.engine.runtime
                # Why mutate: each case needs its own counter windows and starting spend, and the
                # engine reads its runtime on every admission, so wrapping it here scopes them all.
                runtime.counters = ScopedCounters(runtime.counters)
                runtime.ledger = ScopedLedger(runtime.ledger)
                charter = self.services.gateway.charter
                self.suite.check_against(charter)
                self.enforced = enforced_decisions(charter)
                for case in self.suite.cases:
                    principal = self.suite.principal_of(case)
                    if principal not in self._keys:
                        key, _ = create_key(self.services.store, charter, principal, "eval run")
                        self._keys[principal] = key
                app = build_app(self.services.gateway)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://charter-eval", timeout=60
                ) as http:
                    self.http = http
                    yield self
            finally:
                await self.services.aclose()

    def _outcome(self, request_id: str | None) -> Any:
        for outcome in reversed(self.services.gateway.recent):
            if outcome.request_id == request_id:
                return outcome
        return None

    async def run_case(self, case: Case) -> CaseResult:
        token = _SCOPE.set(_scope_for(case, self.run_id))
        started = time.perf_counter()
        try:
            body = request_body(self.suite, case)
            headers = {"authorization": f"Bearer {self._keys[self.suite.principal_of(case)]}"}
            for _ in range(case.setup.repeat):
                response = await self.http.post("/v1/chat/completions", json=body, headers=headers)
        finally:
            _SCOPE.reset(token)
        latency = (time.perf_counter() - started) * 1000
        outcome = self._outcome(response.headers.get("x-charter-request-id"))
        verdicts: list[Verdict] = list(outcome.verdicts) if outcome is not None else []
        answer = None
        if response.status_code >= 400:
            error = response.json().get("error", {})
            # Escalated content is refused with 403 review_required while a person reviews it.
            review = error.get("type") == "review_required"
            actual = Expected.ESCALATED if review else Expected.BLOCKED
            _, deciding = _worst(verdicts)
            deciding_id = (
                deciding.control_id
                if deciding
                else (error.get("charter") or {}).get("control") or f"http {response.status_code}"
            )
        else:
            message = response.json()["choices"][0]["message"]
            answer = message.get("content") or ""
            refused = outcome.refused_by if outcome is not None else None
            if refused is not None:
                actual, deciding_id = _ACTION_TO_EXPECTED[refused.action], refused.control_id
            else:
                worst, deciding = _worst(verdicts)
                actual = _ACTION_TO_EXPECTED[worst]
                deciding_id = deciding.control_id if deciding else None
        failures = _verdict_failures(case, actual, deciding_id)
        advisory: list[str] = []
        if answer is not None:
            failures += await self._check_answer(case, answer, advisory, verdicts)
        return CaseResult(
            case_id=case.id,
            category=case.category,
            decisions=tuple(case.decisions),
            expected=case.expect.verdict,
            actual=actual,
            passed=not failures,
            failures=tuple(failures),
            deciding_control=deciding_id,
            measured=any(d in self.enforced for d in case.decisions),
            latency_ms=latency,
            cost_micro_usd=outcome.cost_micro_usd if outcome is not None else 0,
            answer=answer,
            advisory=tuple(advisory),
            verdicts=_summaries(verdicts),
            tags=tuple(case.tags),
        )

    async def _check_answer(
        self, case: Case, answer: str, advisory: list[str], verdicts: Sequence[Verdict] = ()
    ) -> list[str]:
        failures = []
        system = "\n".join(m.content for m in case.messages if m.role == "system")
        prompt = next((m.content for m in reversed(case.messages) if m.role == "user"), "")
        for assertion in case.expect.answer:
            score = None
            if assertion.grader is not None and self.grader is not None:
                score = await self.grader.score(prompt, answer)
            problem = check(
                assertion, answer, system_prompt=system, grader_score=score, verdicts=verdicts
            )
            if problem is None:
                continue
            if assertion.grader is not None and not self.grader_trusted:
                # An untrusted grader is never evidence: its finding is shown, not counted.
                advisory.append(problem)
            else:
                failures.append(problem)
        return failures


# --- driving a run --------------------------------------------------------------------------------


async def _gather(
    cases: Sequence[Case],
    run_case: Callable[[Case], Any],
    concurrency: int,
    progress: Progress | None,
) -> list[CaseResult]:
    semaphore = asyncio.Semaphore(max(1, concurrency))
    results: list[CaseResult | None] = [None] * len(cases)

    async def one(index: int, case: Case) -> None:
        async with semaphore:
            result = await run_case(case)
        results[index] = result
        if progress is not None:
            progress(result)

    await asyncio.gather(*(one(i, c) for i, c in enumerate(cases)))
    return [r for r in results if r is not None]


def _started() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


async def run_policy(
    charter: Charter,
    suite: Suite,
    *,
    cases: Sequence[Case] | None = None,
    progress: Progress | None = None,
) -> Run:
    """Run ``suite`` against the policy engine alone: no model and no database of Charter's.

    The one outside call is what the charter itself configures: ownership lookups
    (``ownership.http`` / ``ownership.sql``) of tool-call cases ask their source, as in the
    gateway; an unreachable source is decided by the policy's ``on_error``.
    """
    suite.check_against(charter)
    runner = PolicyRunner(charter, suite)
    chosen = [c for c in (cases or suite.cases) if "policy" in c.modes]
    started_at, clock = _started(), time.perf_counter()
    # The engine is CPU-bound and in-process: cases run one after another.
    try:
        results = await _gather(chosen, runner.run_case, 1, progress)
    finally:
        await runner.aclose()
    return Run(
        run_id=runner.run_id,
        suite=suite.name,
        mode="policy",
        charter_version=charter_version(charter),
        models=tuple(sorted({suite.model_of(c) for c in chosen})),
        started_at=started_at,
        results=tuple(results),
        duration_s=time.perf_counter() - clock,
    )


async def run_gateway(
    charter_path: str | Path,
    suite: Suite,
    *,
    cases: Sequence[Case] | None = None,
    concurrency: int = 4,
    grader: Grader | None = None,
    grader_trusted: bool = False,
    progress: Progress | None = None,
) -> Run:
    """Run ``suite`` end to end through the gateway (in-process ASGI, the charter's providers)."""
    runner = GatewayRunner(str(charter_path), suite, grader=grader, grader_trusted=grader_trusted)
    chosen = [c for c in (cases or suite.cases) if "gateway" in c.modes]
    started_at, clock = _started(), time.perf_counter()
    async with runner.started():
        results = await _gather(chosen, runner.run_case, concurrency, progress)
        version = runner.services.gateway.version
    return Run(
        run_id=runner.run_id,
        suite=suite.name,
        mode="gateway",
        charter_version=version,
        models=tuple(sorted({suite.model_of(c) for c in chosen})),
        started_at=started_at,
        results=tuple(results),
        duration_s=time.perf_counter() - clock,
    )
