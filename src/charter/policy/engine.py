"""The policy engine: ``evaluate(context) -> verdicts``, with no HTTP in it.

The gateway, the eval runner, replay and the scan API all call this, so what the eval suite measures
is exactly what production enforces. A control that raises is judged by its ``on_error`` setting:
``fail_closed`` (the default) turns the error into a block, ``fail_open`` into a recorded allow.

Two entry points:

- ``evaluate(ctx)``: the stateless controls of ``ctx.stage`` (routes, guards, tool policies).
- ``admit(ctx)`` / ``settle(...)``: the stateful admission controls (budgets, rate limits), whose
  claims are reserved together in one atomic step and settled with the real usage afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from charter.counters import AdmitResult, Claim, Reservation
from charter.document.model import Charter, Control, Mode, OnError
from charter.document.version import charter_version
from charter.errors import NotImplementedSetting, StorageUnavailable
from charter.policy.context import RequestContext
from charter.policy.registry import ClaimSource, Handler, spec, unimplemented
from charter.policy.runtime import Runtime, principal_chain
from charter.policy.verdict import Action, Stage, Verdict

log = logging.getLogger(__name__)

SEED_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The verdicts of every control that looked at one context, and what they add up to."""

    verdicts: tuple[Verdict, ...]
    charter_version: str

    @property
    def action(self) -> Action:
        """The most severe enforced action (shadow verdicts never count)."""
        return max(
            (v.effective for v in self.verdicts), key=lambda a: a.severity, default=Action.ALLOW
        )

    @property
    def deciding(self) -> Verdict | None:
        """The enforced verdict behind ``action``, for the error message and the audit record."""
        worst = self.action
        if worst is Action.ALLOW:
            return None
        return next(v for v in self.verdicts if v.effective is worst)


@dataclass(frozen=True, slots=True)
class Admission:
    """The outcome of admission: the verdicts, and the reservation to settle if admitted."""

    evaluation: Evaluation
    reservation: Reservation | None

    @property
    def admitted(self) -> bool:
        return self.evaluation.action is not Action.BLOCK


@dataclass(frozen=True, slots=True)
class _Compiled:
    control: Control
    handler: Handler


@dataclass(frozen=True, slots=True)
class _Admitter:
    control: Control
    source: ClaimSource


class Engine:
    """A charter compiled for enforcement: handlers are built once, here, not per request."""

    def __init__(self, charter: Charter, runtime: Runtime | None = None) -> None:
        self.charter = charter
        self.runtime = runtime or Runtime()
        self.version = charter_version(charter)
        gaps = [
            (c, message)
            for c in charter.controls
            if c.mode is not Mode.OFF
            for _, message in unimplemented(c)
        ]
        if gaps:
            listed = "; ".join(f"{c.id}: {message}" for c, message in gaps)
            raise NotImplementedSetting(
                f"the charter asks for controls this version cannot enforce ({listed})",
                hint="set `mode: off` on them or remove them; `charter check` lists each",
            )
        self._by_stage: dict[Stage, list[_Compiled]] = {stage: [] for stage in Stage}
        self._admitters: list[_Admitter] = []
        self._by_id: dict[str, _Compiled] = {}
        for control in charter.controls:
            if control.mode is Mode.OFF:
                continue
            kind = spec(control.kind)
            assert kind is not None  # guaranteed by the gap check above
            built = kind.factory(control, charter, self.runtime)
            if hasattr(built, "claims"):
                self._admitters.append(_Admitter(control, built))  # type: ignore[arg-type]
            else:
                compiled = _Compiled(control, built)
                self._by_id[control.id] = compiled
                for stage in built.stages:
                    self._by_stage[stage].append(compiled)
        self._chains = {p.id: principal_chain(charter, p.id) for p in charter.principals}

    def principals_of(self, principal: str) -> tuple[str, ...]:
        """The principal and the apps and teams it belongs to, as contexts carry them."""
        return self._chains.get(principal, (principal,))

    def handler_of(self, control_id: str) -> Handler | None:
        """The built handler of a stateless control (None when it is off or stateful): for an
        adapter that needs more of it than a verdict, e.g. the leak guard's hold on streams."""
        compiled = self._by_id.get(control_id)
        return None if compiled is None else compiled.handler

    def controls_for(self, stage: Stage) -> Iterable[Control]:
        """The controls that run at ``stage`` (enforced and shadow)."""
        if stage is Stage.REQUEST:
            yield from (a.control for a in self._admitters)
        yield from (c.control for c in self._by_stage[stage])

    # --- stateless controls ----------------------------------------------------------------------

    def evaluate(self, ctx: RequestContext) -> Evaluation:
        """Run every control of ``ctx.stage`` on ``ctx`` and collect their verdicts."""
        verdicts: list[Verdict] = []
        for compiled in self._by_stage[ctx.stage]:
            verdict = self._run(compiled, ctx)
            if verdict is not None:
                verdicts.append(verdict)
        return Evaluation(tuple(verdicts), self.version)

    def evaluate_control(self, control_id: str, ctx: RequestContext) -> Verdict | None:
        """Run one stateless control on ``ctx``, whatever stages it is set for (None when it is
        off or not stateless). For what runs beside a request, never instead of ``evaluate``:
        e.g. the PII guards on escalated content before a reviewer sees it."""
        compiled = self._by_id.get(control_id)
        return None if compiled is None else self._run(compiled, ctx)

    def _run(self, compiled: _Compiled, ctx: RequestContext) -> Verdict | None:
        control = compiled.control
        try:
            verdict = compiled.handler.evaluate(ctx)
        except Exception as exc:  # a control's failure is a verdict, decided by on_error
            log.warning("control %s failed: %s", control.id, exc, exc_info=True)
            verdict = _error_verdict(control, ctx.stage, exc)
        if verdict is not None and control.mode is Mode.SHADOW:
            verdict = replace(verdict, enforced=False)
        return verdict

    # --- admission: budgets and rate limits -----------------------------------------------------

    async def admit(self, ctx: RequestContext) -> Admission:
        """Route check, then reserve every budget and rate-limit claim atomically, or none."""
        routed = self.evaluate(replace(ctx, stage=Stage.REQUEST))
        if routed.action is Action.BLOCK:
            return Admission(routed, None)
        verdicts = list(routed.verdicts)
        enforced: list[tuple[_Admitter, list[Claim]]] = []
        shadow: list[tuple[_Admitter, list[Claim]]] = []
        for admitter in self._admitters:
            try:
                claims = admitter.source.claims(ctx)
            except Exception as exc:
                verdicts.append(_error_verdict(admitter.control, Stage.REQUEST, exc))
                continue
            if claims:
                target = shadow if admitter.control.mode is Mode.SHADOW else enforced
                target.append((admitter, claims))
        flat = [(a, c) for a, claims in enforced for c in claims]
        reservation: Reservation | None = None
        try:
            result = await self._reserve(ctx, flat)
        except StorageUnavailable as exc:
            verdicts += [_error_verdict(a.control, Stage.REQUEST, exc) for a, _ in enforced]
        else:
            verdicts += _admission_verdicts(enforced, flat, result)
            if result.ok and flat:
                reservation = Reservation(ctx.request_id, tuple(c for _, c in flat))
        verdicts += await self._shadow_verdicts(ctx, shadow)
        evaluation = Evaluation(tuple(verdicts), self.version)
        if evaluation.action is Action.BLOCK and reservation is not None:
            await self.release(reservation, ctx.now)  # a fail-closed error blocked it after all
            reservation = None
        return Admission(evaluation, reservation)

    async def _reserve(
        self, ctx: RequestContext, flat: Sequence[tuple[_Admitter, Claim]]
    ) -> AdmitResult:
        claims = [c for _, c in flat]
        if not claims:
            return AdmitResult(True)
        counters = self.runtime.counters
        for _ in range(SEED_ATTEMPTS):
            result = await counters.admit(ctx.request_id, claims, ctx.now)
            if not result.needs_seed:
                return result
            for index in result.needs_seed:
                source = flat[index][0].source
                await source.seed(claims[index])  # type: ignore[attr-defined]
        raise StorageUnavailable("budget counters could not be seeded from the spend ledger")

    async def _shadow_verdicts(
        self, ctx: RequestContext, shadow: Sequence[tuple[_Admitter, list[Claim]]]
    ) -> list[Verdict]:
        """Shadow limits never reserve; they record whether the request would have fitted."""
        out = []
        for admitter, claims in shadow:
            over = None
            for claim in claims:
                used = await self.runtime.counters.usage(claim, ctx.now)
                if used + claim.amount > claim.limit:
                    over = (claim, used)
                    break
            verdict = (
                _over_limit_verdict(admitter.control, *over)
                if over
                else _within_limits_verdict(admitter.control, claims)
            )
            out.append(replace(verdict, enforced=False))
        return out

    async def settle(
        self, reservation: Reservation, *, cost_micro_usd: int, tokens: int, now: float
    ) -> None:
        """Replace the reservation with what the request really used."""
        if reservation.settled:
            return
        reservation.settled = True
        actual = [_actual(c, cost_micro_usd, tokens) for c in reservation.claims]
        await self.runtime.counters.settle(reservation.request_id, reservation.claims, actual, now)

    async def release(self, reservation: Reservation, now: float) -> None:
        """Give the whole reservation back (the request never reached the provider)."""
        if reservation.settled:
            return
        reservation.settled = True
        zeros = [0] * len(reservation.claims)
        await self.runtime.counters.settle(reservation.request_id, reservation.claims, zeros, now)


def _actual(claim: Claim, cost_micro_usd: int, tokens: int) -> int:
    if claim.unit == "micro_usd":
        return cost_micro_usd
    if claim.unit == "tokens":
        return tokens
    return claim.amount  # a request counts once whatever it used


def _error_verdict(control: Control, stage: Stage, exc: BaseException) -> Verdict:
    fail_open = control.on_error is OnError.FAIL_OPEN
    verdict = Verdict(
        action=Action.ALLOW if fail_open else Action.BLOCK,
        control_id=control.id,
        decision_ids=tuple(control.serves),
        reason=f"control failed ({type(exc).__name__}: {exc}); "
        + ("fail_open: allowed" if fail_open else "fail_closed: blocked"),
        stage=stage,
        evidence={"error": type(exc).__name__},
    )
    return replace(verdict, enforced=False) if control.mode is Mode.SHADOW else verdict


def _admission_verdicts(
    enforced: Sequence[tuple[_Admitter, list[Claim]]],
    flat: Sequence[tuple[_Admitter, Claim]],
    result: AdmitResult,
) -> list[Verdict]:
    failed = flat[result.failed] if result.failed is not None else None
    out = []
    for admitter, claims in enforced:
        if failed is not None and failed[0] is admitter:
            out.append(_over_limit_verdict(admitter.control, failed[1], result.used))
        else:
            out.append(_within_limits_verdict(admitter.control, claims))
    return out


def _describe(claim: Claim, amount: int) -> str:
    if claim.unit == "micro_usd":
        from charter.budgets import usd

        return usd(amount)
    return f"{amount} {claim.unit}"


def _over_limit_verdict(control: Control, claim: Claim, used: int) -> Verdict:
    if claim.unit == "requests":
        why = f"{used} of {claim.limit} requests in the last {claim.window_s} s already made"
    elif claim.amount > claim.limit:
        why = f"this request alone may need {_describe(claim, claim.amount)}"
    else:
        window = f" in the last {claim.window_s} s" if claim.kind == "sliding" else ""
        why = (
            f"{_describe(claim, used)} of {_describe(claim, claim.limit)} used{window}, and this "
            f"request may need up to {_describe(claim, claim.amount)}"
        )
    return Verdict(
        Action.BLOCK,
        control.id,
        tuple(control.serves),
        f"{claim.label}: {why}",
        Stage.REQUEST,
        evidence={"kind": control.kind, "limit": claim.limit, "used": used, "unit": claim.unit},
    )


def _within_limits_verdict(control: Control, claims: Sequence[Claim]) -> Verdict:
    labels = "; ".join(c.label for c in claims)
    return Verdict(
        Action.ALLOW,
        control.id,
        tuple(control.serves),
        f"within {labels}",
        Stage.REQUEST,
        evidence={"kind": control.kind},
    )


def evaluate(ctx: RequestContext, charter: Charter) -> Evaluation:
    """One-off evaluation; build an ``Engine`` once instead when evaluating many contexts."""
    return Engine(charter).evaluate(ctx)
