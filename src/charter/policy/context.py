"""What the policy engine is asked about: one request, response, tool call or action."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from charter.policy.verdict import Stage

_EMPTY: Mapping[str, Any] = MappingProxyType({})
_NO_ANSWERS: Mapping[str, OwnershipAnswer] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model proposed, or an agent asks to execute."""

    name: str
    arguments: Mapping[str, Any]
    call_id: str | None = None


@dataclass(frozen=True, slots=True)
class OwnershipAnswer:
    """What an ownership lookup said about one subject and one resource.

    ``owned`` is None when the lookup failed (timeout, 5xx, database down, a misconfigured
    query); ``detail`` says what was seen, ``source`` what was asked (never a secret).
    """

    subject: str
    resource: str
    owned: bool | None
    source: str
    detail: str
    cached: bool = False

    @property
    def failed(self) -> bool:
        return self.owned is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "resource": self.resource,
            "owned": self.owned,
            "source": self.source,
            "detail": self.detail,
            "cached": self.cached,
        }


@dataclass(frozen=True, slots=True)
class RequestContext:
    """Everything a control may look at, and nothing it may not.

    ``principals`` is the calling principal followed by the teams and apps it belongs to, so a rule
    written for a team covers its apps and users. ``attributes`` is context the caller supplies
    (e.g. the orders a customer owns) that ``context`` ownership checks read. ``ownership`` holds
    the answers of the ownership lookups Charter ran itself (``charter.ownership``), keyed by
    control id; the engine never runs a lookup, and denies a call whose lookup is missing.
    """

    stage: Stage
    request_id: str = ""
    principals: tuple[str, ...] = ()
    model: str | None = None
    text: str = ""
    # A stream's answer so far: everything before ``scan_from`` was judged clean and released, so
    # a guard whose hits are local need only look from a margin before it (``GuardHandler``).
    scan_from: int = 0
    system_prompt: str = ""  # the request's system prompt, for leak checks on the answer
    tool_call: ToolCall | None = None
    subject: str | None = None
    conversation_id: str | None = None
    history: tuple[str, ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    ownership: Mapping[str, OwnershipAnswer] = field(default_factory=lambda: _NO_ANSWERS)
    max_cost_micro_usd: int = 0  # worst-case cost of the request, reserved against budgets
    max_tokens: int = 0  # worst-case tokens (input upper bound + max output), for token rates
    now: float = field(default_factory=time.time)

    @property
    def principal(self) -> str | None:
        """The calling principal itself (not its teams)."""
        return self.principals[0] if self.principals else None
