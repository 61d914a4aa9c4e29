"""Route controls: which principal may call which model (the model allowlist)."""

from __future__ import annotations

from charter.document.model import Charter, RouteControl
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Action, Stage, Verdict


class RouteHandler:
    """Allows a model only when some rule lists both one of the caller's principals and the model.

    Principals with no rule at all are denied every model: an allowlist fails closed.
    """

    stages = frozenset({Stage.REQUEST})

    def __init__(self, control: RouteControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.decisions = tuple(control.serves)
        self._allowed: dict[str, frozenset[str]] = {}
        for rule in control.settings.rules:
            for principal in rule.principals:
                self._allowed[principal] = self._allowed.get(principal, frozenset()) | set(
                    rule.models
                )

    def allowed_models(self, principals: tuple[str, ...]) -> frozenset[str]:
        """Every model any of these principals (or '*') may call."""
        models = self._allowed.get("*", frozenset())
        for principal in principals:
            models |= self._allowed.get(principal, frozenset())
        return models

    def evaluate(self, ctx: RequestContext) -> Verdict | None:
        if ctx.model is None:
            return None
        allowed = self.allowed_models(ctx.principals)
        if ctx.model in allowed or "*" in allowed:
            return Verdict(
                Action.ALLOW,
                self.control.id,
                self.decisions,
                f"model {ctx.model} is allowed for {ctx.principal}",
                Stage.REQUEST,
            )
        listing = ", ".join(sorted(allowed)) or "none"
        return Verdict(
            Action.BLOCK,
            self.control.id,
            self.decisions,
            f"model {ctx.model} is not allowed for {ctx.principal} (allowed: {listing})",
            Stage.REQUEST,
        )


register("route", RouteHandler)
