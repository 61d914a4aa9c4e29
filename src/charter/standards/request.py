"""Putting composed instructions into a chat request, the one way the gateway does it."""

from __future__ import annotations

from dataclasses import replace

from charter.errors import InternalError
from charter.providers.types import ChatRequest, Message
from charter.standards.library import ComposedInstructions

_SYSTEM_ROLES = ("system", "developer")


def with_instructions(request: ChatRequest, composed: ComposedInstructions) -> ChatRequest:
    """``request`` with its system and developer messages replaced by one leading system
    message holding ``composed.text`` (which already contains the caller's own system prompt,
    in its place of precedence). Unchanged when no standard applies.

    The caller's system prompt must be ``request.system_prompt`` as composed; anything else
    would silently drop or duplicate the caller's instructions.
    """
    if not composed.changed:
        return request
    if composed.caller_system != request.system_prompt:
        raise InternalError(
            "instructions were composed for a different system prompt than the request's",
            hint="compose with request.system_prompt of the same request",
        )
    rest = tuple(m for m in request.messages if m.role not in _SYSTEM_ROLES)
    return replace(request, messages=(Message(role="system", content=composed.text), *rest))
