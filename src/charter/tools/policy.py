"""The ``tool_policy`` handler: the stateless rules on one proposed tool call, and the rate claims
it must reserve on the shared counters before the call may run.

Rules, each named in the verdict so a refusal says which one decided: ``arguments.<name>``
(types, ranges, enums, patterns, required, max_length, unknown arguments), ``caps[i]`` (amount
over a maximum), ``ownership``, ``sequences[i]`` and ``review``. Rates (``rates[i]``) are counted
by ``charter.approvals.ActionService``, which holds them as reservations until the call is
reported executed; this module only turns them into ``Claim`` objects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

from charter.counters import Claim
from charter.document.model import (
    ArgumentSpec,
    Charter,
    RateCap,
    SequenceRule,
    ToolPolicyControl,
    Verdict3,
    duration_seconds,
)
from charter.policy.context import RequestContext, ToolCall
from charter.policy.runtime import Runtime
from charter.policy.verdict import Action, Stage, Verdict

# Sums of an argument (dollars) are counted in millionths so the integer counters stay exact.
SUM_SCALE = 1_000_000
_SEPARATORS = re.compile(r"[,;\s]+")


@dataclass(frozen=True, slots=True)
class RuleResult:
    """One rule that did not simply allow the call: which rule, deny or review, and why."""

    rule: str
    outcome: Verdict3
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "verdict": self.outcome.value, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RateClaim:
    """A rate cap of the policy as a claim on the shared counters, with what happens when over."""

    claim: Claim
    rule: str
    over: Verdict3
    scale: int  # 1 for counts, SUM_SCALE for sums

    def describe_over(self, used: int) -> str:
        """Why this claim does not fit, for people."""
        limit, amount = self.claim.limit / self.scale, self.claim.amount / self.scale
        if self.claim.unit == "calls":
            return f"{self.claim.label}: {used} already counted [rule {self.rule}]"
        return (
            f"{self.claim.label}: {used / self.scale:g} of {limit:g} already counted and this "
            f"call adds {amount:g} [rule {self.rule}]"
        )


class ToolPolicyHandler:
    """One ``tool_policy`` control, compiled once: patterns built, windows parsed."""

    stages = frozenset({Stage.TOOL_CALL})

    def __init__(self, control: ToolPolicyControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.settings = control.settings
        self.tool = control.settings.tool
        self.decisions = tuple(control.serves)
        self.hold_s = duration_seconds(control.settings.hold)
        self._patterns = {
            name: re.compile(spec.pattern)
            for name, spec in control.settings.arguments.items()
            if spec.pattern is not None
        }
        self._windows = [duration_seconds(rate.window) for rate in control.settings.rates]

    # -- the stateless verdict -----------------------------------------------------------------

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        """Allow, deny (``Action.BLOCK``) or review (``Action.ESCALATE``) one proposed call."""
        call = ctx.tool_call
        if call is None or call.name != self.tool:
            return None
        results = self.check(call, ctx)
        verdict = self.verdict(results)
        answer = ctx.ownership.get(self.control.id)
        if answer is None:
            return verdict
        note = self.ownership_note(ctx) if verdict.action is Action.ALLOW else None
        return replace(
            verdict,
            reason=f"{verdict.reason}; {note}" if note else verdict.reason,
            evidence={**verdict.evidence, "ownership": answer.to_dict()},
        )

    def verdict(self, results: Sequence[RuleResult]) -> Verdict:
        """The verdict that ``results`` add up to: any deny denies, else any review reviews."""
        denies = [r for r in results if r.outcome is Verdict3.DENY]
        reviews = [r for r in results if r.outcome is Verdict3.REVIEW]
        if denies:
            action, deciding = Action.BLOCK, denies
        elif reviews:
            action, deciding = Action.ESCALATE, reviews
        else:
            action, deciding = Action.ALLOW, []
        if deciding:
            reason = "; ".join(f"{r.reason} [rule {r.rule}]" for r in deciding)
        else:
            reason = f"{self.tool}: every rule of this policy allows the call"
        return Verdict(
            action,
            self.control.id,
            self.decisions,
            reason,
            Stage.TOOL_CALL,
            evidence={
                "tool": self.tool,
                "verdict": _VERDICT_NAME[action],
                "rules": [r.to_dict() for r in results],
            },
        )

    def check(self, call: ToolCall, ctx: RequestContext) -> list[RuleResult]:
        """Every rule that does not simply allow ``call``, in the order the policy lists them."""
        if not isinstance(call.arguments, Mapping):
            return [_deny("arguments", f"{self.tool}: arguments must be a JSON object")]
        args = call.arguments
        results = self._check_arguments(args)
        results += self._check_caps(args)
        results += self._check_rate_inputs(args, ctx)
        results += self._check_ownership(args, ctx)
        results += self._check_sequences(args, ctx)
        if self.settings.review:
            results.append(
                RuleResult(
                    "review",
                    Verdict3.REVIEW,
                    f"{self.tool} always needs a person's approval",
                )
            )
        return results

    def _check_arguments(self, args: Mapping[str, Any]) -> list[RuleResult]:
        declared = self.settings.arguments
        if not declared:
            return []  # the policy constrains no argument, so it names none as unknown
        out = []
        unknown = sorted(str(name) for name in args if name not in declared)
        if unknown:
            names = ", ".join(f"`{u}`" for u in unknown)
            takes = ", ".join(declared)
            out.append(
                _deny("arguments", f"{self.tool}: unknown argument {names} (it takes: {takes})")
            )
        for name, spec in declared.items():
            problem = self._argument_problem(name, spec, args.get(name))
            if problem is not None:
                out.append(_deny(f"arguments.{name}", f"{self.tool}: {problem}"))
        return out

    def _argument_problem(self, name: str, spec: ArgumentSpec, value: Any) -> str | None:
        if value is None:
            return f"missing required argument `{name}` ({spec.type})" if spec.required else None
        if not _has_type(value, spec.type):
            article = "an" if spec.type == "integer" else "a"
            return f"`{name}` must be {article} {spec.type}, got {value!r}"
        if spec.enum is not None and value not in spec.enum:
            allowed = ", ".join(repr(e) for e in spec.enum)
            return f"`{name}` is {value!r}, which is not one of {allowed}"
        if spec.minimum is not None and value < spec.minimum:
            return f"`{name}` is {value!r}, below the minimum {spec.minimum:g}"
        if spec.maximum is not None and value > spec.maximum:
            return f"`{name}` is {value!r}, above the maximum {spec.maximum:g}"
        if spec.max_length is not None and len(value) > spec.max_length:
            return f"`{name}` has {len(value)} characters, more than {spec.max_length}"
        pattern = self._patterns.get(name)
        # search, not fullmatch: JSON Schema's semantics; anchor the pattern to match it whole.
        if pattern is not None and not pattern.search(value):
            return f"`{name}` is {value!r}, which does not match {pattern.pattern!r}"
        return None

    def _check_caps(self, args: Mapping[str, Any]) -> list[RuleResult]:
        out = []
        for index, cap in enumerate(self.settings.caps):
            rule = f"caps[{index}]"
            value: Any = args.get(cap.argument)
            if not _has_type(value, "number"):
                out.append(_deny(rule, f"{self.tool}: `{cap.argument}` is missing or not a number"))
            elif value > cap.max:
                out.append(
                    RuleResult(
                        rule,
                        cap.over,
                        f"{self.tool}: `{cap.argument}` {value:g} is over the cap of {cap.max:g}",
                    )
                )
        return out

    def _check_rate_inputs(self, args: Mapping[str, Any], ctx: RequestContext) -> list[RuleResult]:
        """What a rate needs to be counted at all; counting itself happens on reservation."""
        out = []
        for index, rate in enumerate(self.settings.rates):
            rule = f"rates[{index}]"
            if rate.per == "subject" and not ctx.subject:
                out.append(
                    _deny(
                        rule,
                        f"{self.tool} is rate-capped per subject, but no subject was given "
                        "(say on whose behalf the call is made)",
                    )
                )
            if rate.sum_of is not None and not _has_type(args.get(rate.sum_of), "number"):
                out.append(_deny(rule, f"{self.tool}: `{rate.sum_of}` is missing or not a number"))
        return out

    def _check_ownership(self, args: Mapping[str, Any], ctx: RequestContext) -> list[RuleResult]:
        owned = self.settings.ownership
        if owned is None:
            return []
        value = args.get(owned.argument)
        if value is None:
            return [_deny("ownership", f"{self.tool}: no `{owned.argument}` to check ownership of")]
        if owned.context is None:
            return self._check_looked_up(owned.argument, value, ctx)
        listing = ctx.attributes.get(owned.context)
        if listing is None:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: the caller supplied no `{owned.context}` context, so "
                    f"ownership of {owned.argument} {value} cannot be checked (fail closed); "
                    f"pass attributes {{{owned.context!r}: [...]}}",
                )
            ]
        if isinstance(listing, str | bytes | Mapping) or not isinstance(
            listing, Sequence | set | frozenset
        ):
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: context `{owned.context}` must be a list, "
                    f"got {type(listing).__name__}",
                )
            ]
        # Compared as text: an order id may arrive as 4821 from one caller and "4821" from another.
        if str(value) not in {str(item) for item in listing}:
            who = f"subject {ctx.subject}" if ctx.subject else "the subject"
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: {owned.argument} {value} is not among the "
                    f"{owned.context} of {who}",
                )
            ]
        return []

    def _check_looked_up(self, argument: str, value: Any, ctx: RequestContext) -> list[RuleResult]:
        """Decide on the answer of the lookup the service layer ran for this control."""
        resource = resource_text(value)
        if resource is None:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: `{argument}` must be a string or a number to look up its "
                    f"owner, got {type(value).__name__}",
                )
            ]
        if not ctx.subject:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: ownership of {argument} {resource} is looked up per subject, "
                    "but no subject was given (say on whose behalf the call is made)",
                )
            ]
        answer = ctx.ownership.get(self.control.id)
        if answer is None:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: the ownership lookup of {argument} {resource} was not run "
                    "(fail closed); whoever evaluates this policy must resolve it first "
                    "(charter.ownership.OwnershipResolver)",
                )
            ]
        if answer.subject != ctx.subject or answer.resource != resource:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: the ownership answer is about subject {answer.subject} and "
                    f"{answer.resource}, not subject {ctx.subject} and {argument} {resource} "
                    "(fail closed)",
                )
            ]
        if answer.owned:
            return []
        if answer.owned is False:
            return [
                _deny(
                    "ownership",
                    f"{self.tool}: {argument} {resource} is not owned by subject {ctx.subject} "
                    f"({answer.source}: {answer.detail})",
                )
            ]
        on_error = self._ownership_on_error
        why = f"{self.tool}: the ownership lookup of {argument} {resource} failed ({answer.detail})"
        if on_error == "deny":
            return [_deny("ownership", f"{why}; on_error: deny")]
        if on_error == "review":
            return [RuleResult("ownership", Verdict3.REVIEW, f"{why}; on_error: review")]
        return []  # on_error: allow; ownership_note() says so in the verdict

    def ownership_note(self, ctx: RequestContext) -> str | None:
        """Why a call was allowed although its ownership lookup failed (``on_error: allow``)."""
        answer = ctx.ownership.get(self.control.id)
        if answer is None or not answer.failed or self._ownership_on_error != "allow":
            return None
        return (
            f"the ownership lookup of {answer.resource} failed ({answer.detail}); "
            "allowed by on_error: allow [rule ownership]"
        )

    @property
    def _ownership_on_error(self) -> str:
        owned = self.settings.ownership
        return owned.on_error if owned is not None else "deny"

    def _check_sequences(self, args: Mapping[str, Any], ctx: RequestContext) -> list[RuleResult]:
        out = []
        earlier = set(ctx.history)
        for index, rule in enumerate(self.settings.sequences):
            after = [tool for tool in rule.after if tool in earlier]
            value = args.get(rule.argument)
            if not after or value is None:
                continue
            outside = _outside_domains(value, rule)
            if outside:
                out.append(
                    RuleResult(
                        f"sequences[{index}]",
                        rule.over,
                        f"{self.tool}: `{rule.argument}` goes to {', '.join(outside)} after "
                        f"{', '.join(after)} in this conversation; only "
                        f"{', '.join(rule.allow_domains)} allowed",
                    )
                )
        return out

    # -- rates, as claims ----------------------------------------------------------------------

    def rate_claims(self, ctx: RequestContext) -> list[RateClaim]:
        """The claims ``ctx`` needs under this policy's rate caps (call after ``check`` passed).

        Named ``rate_claims``, not ``claims``: the engine treats a handler with ``claims`` as an
        admission control of every request, and these apply to tool calls only.
        """
        call = ctx.tool_call
        if call is None or call.name != self.tool:
            return []
        return [
            self._rate_claim(index, rate, call.arguments, ctx)
            for index, rate in enumerate(self.settings.rates)
        ]

    def _rate_claim(
        self, index: int, rate: RateCap, args: Mapping[str, Any], ctx: RequestContext
    ) -> RateClaim:
        scope = f"subject:{ctx.subject}" if rate.per == "subject" else "global"
        whose = f"subject {ctx.subject}" if rate.per == "subject" else "everyone"
        key = f"tool:{self.control.id}:{index}:{scope}"
        if rate.count is not None:
            return RateClaim(
                Claim(
                    key,
                    1,
                    rate.count,
                    "sliding",
                    self._windows[index],
                    self.control.id,
                    self.decisions,
                    f"{self.tool}: at most {rate.count} calls per {rate.window} for {whose}",
                    "calls",
                ),
                f"rates[{index}]",
                rate.over,
                1,
            )
        assert rate.sum_of is not None and rate.max is not None  # the format guarantees it
        value = float(args[rate.sum_of])
        return RateClaim(
            Claim(
                key,
                round(value * SUM_SCALE),
                round(rate.max * SUM_SCALE),
                "sliding",
                self._windows[index],
                self.control.id,
                self.decisions,
                f"{self.tool}: at most {rate.max:g} {rate.sum_of} per {rate.window} for {whose}",
                f"{rate.sum_of}/{SUM_SCALE}",
            ),
            f"rates[{index}]",
            rate.over,
            SUM_SCALE,
        )


_VERDICT_NAME = {Action.ALLOW: "allow", Action.BLOCK: "deny", Action.ESCALATE: "review"}


def _deny(rule: str, reason: str) -> RuleResult:
    return RuleResult(rule, Verdict3.DENY, reason)


def resource_text(value: Any) -> str | None:
    """An argument as the resource id an ownership lookup asks about (None if it cannot be one).

    Text, as the context check compares: 4821 and "4821" are the same order.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        if value.is_integer():
            return str(int(value))
    return str(value)


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    # JSON has one number type: 3.0 is an integer there, as in JSON Schema.
    return kind == "number" or isinstance(value, int) or value.is_integer()


def _outside_domains(value: Any, rule: SequenceRule) -> list[str]:
    """The domains of the addresses in ``value`` that ``rule`` does not allow."""
    if not isinstance(value, str):
        return [repr(value)]
    allowed = [d.lower().strip(".") for d in rule.allow_domains]
    outside = []
    for host in address_domains(value):
        if not any(host == d or host.endswith("." + d) for d in allowed):
            outside.append(host or repr(value))
    return outside


def address_domains(value: str) -> list[str]:
    """The domains an address argument points at: e-mail addresses, URLs or bare host names.

    ``"Ann <ann@example.com>, bob@corp.example"`` -> ``["example.com", "corp.example"]``. When no
    part looks like an address the whole value is taken as a host, so nothing escapes the check.
    """
    parts = [p.strip("<>\"'()[]") for p in _SEPARATORS.split(value.strip()) if p]
    addresses = [p for p in parts if "@" in p or "://" in p]
    if not addresses:
        addresses = [value.strip()]
    hosts = []
    for part in addresses:
        if "://" in part:
            try:
                host = urlsplit(part).hostname or ""
            except ValueError:
                host = ""
        else:
            host = part.rsplit("@", 1)[-1]
        hosts.append(host.lower().rstrip("."))
    return hosts
