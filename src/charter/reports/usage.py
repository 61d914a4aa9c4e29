"""Usage value: per team and use case, how much is asked, what it costs, how often it just works.

A use case is the app a request came through (or the principal itself when it belongs to no app);
a team is the nearest team above it. "Answered without intervention" means the request got an
answer and no control redacted, escalated or blocked anything, so the organization sees where
its AI is used and where its controls are doing the work.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from charter.document.model import Charter
from charter.monitors.observation import Observation
from charter.policy.runtime import principal_chain

NONE = "none"


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One team and use case over a period."""

    team: str
    use_case: str
    requests: int
    answered_clean: int
    intervened: int
    refused: int
    errors: int
    cost_micro_usd: int
    input_tokens: int
    output_tokens: int

    @property
    def clean_share(self) -> float:
        """The share of requests answered without intervention."""
        return self.answered_clean / self.requests if self.requests else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "team": self.team,
            "use_case": self.use_case,
            "requests": self.requests,
            "answered_without_intervention": self.answered_clean,
            "intervened": self.intervened,
            "refused": self.refused,
            "errors": self.errors,
            "clean_share": round(self.clean_share, 4),
            "cost_usd": self.cost_micro_usd / 1e6,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
        }


def team_and_use_case(charter: Charter, principal: str) -> tuple[str, str]:
    """The team and the use case (app) a principal's requests count under."""
    kinds = {p.id: p.kind for p in charter.principals}
    chain = principal_chain(charter, principal)
    team = next((p for p in chain if kinds.get(p) == "team"), NONE)
    app = next((p for p in chain if kinds.get(p) == "app"), None)
    if app is None:
        app = principal if kinds.get(principal) != "team" else NONE
    return team, app


def usage_rows(charter: Charter, observations: Iterable[Observation]) -> list[UsageRow]:
    """Usage per (team, use case), the busiest first."""
    totals: dict[tuple[str, str], list[int]] = {}
    for obs in observations:
        principal = obs.principals[0] if obs.principals else NONE
        key = team_and_use_case(charter, principal)
        row = totals.setdefault(key, [0] * 8)
        outcome = obs.outcome_class
        row[0] += 1
        row[1] += outcome == "answered"
        row[2] += outcome == "intervened"
        row[3] += outcome == "refused"
        row[4] += outcome == "error"
        row[5] += obs.cost_micro_usd
        row[6] += obs.input_tokens
        row[7] += obs.output_tokens
    rows = [UsageRow(team, case, *values) for (team, case), values in totals.items()]
    return sorted(rows, key=lambda r: (-r.requests, r.team, r.use_case))
