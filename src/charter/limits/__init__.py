"""Rate limits: requests and tokens per minute, per principal and model, over an exact sliding
60-second window (at most N in any 60 seconds, not per calendar minute)."""

from __future__ import annotations

from charter.counters import Claim
from charter.document.model import Charter, RateLimitControl
from charter.policy.context import RequestContext
from charter.policy.registry import register
from charter.policy.runtime import Runtime
from charter.policy.verdict import Stage

WINDOW_S = 60


class RateLimitHandler:
    """Turns the rate limits that cover the caller into sliding-window claims."""

    stages = frozenset({Stage.REQUEST})

    def __init__(self, control: RateLimitControl, charter: Charter, runtime: Runtime) -> None:
        self.control = control
        self.decisions = tuple(control.serves)

    def claims(self, ctx: RequestContext) -> list[Claim]:
        out = []
        for index, limit in enumerate(self.control.settings.limits):
            if limit.principal != "*" and limit.principal not in ctx.principals:
                continue
            if limit.model is not None and limit.model != ctx.model:
                continue
            # '*' means each principal separately, so the key names the caller itself.
            who = ctx.principal if limit.principal == "*" else limit.principal
            scope = f"{who} on {limit.model}" if limit.model else str(who)
            base = f"rate:{self.control.id}:{index}:{who}"
            if limit.requests_per_minute is not None:
                out.append(
                    Claim(
                        f"{base}:req",
                        1,
                        limit.requests_per_minute,
                        "sliding",
                        WINDOW_S,
                        self.control.id,
                        self.decisions,
                        f"{scope}: {limit.requests_per_minute} requests per minute",
                        "requests",
                    )
                )
            if limit.tokens_per_minute is not None:
                out.append(
                    Claim(
                        f"{base}:tok",
                        ctx.max_tokens,
                        limit.tokens_per_minute,
                        "sliding",
                        WINDOW_S,
                        self.control.id,
                        self.decisions,
                        f"{scope}: {limit.tokens_per_minute} tokens per minute",
                        "tokens",
                    )
                )
        return out


register("rate_limit", RateLimitHandler)
