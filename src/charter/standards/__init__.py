"""Standards: the organization's bar for answers, composed into every request in scope and
checked on every answer (see docs/standards.md).

The public API::

    Standards(charter, base_dir=...)         compiled once at start-up
      .compose(principals, model, caller_system) -> ComposedInstructions
      .finalize(answer, principals, model, question) -> Finalized
      .holds_whole_answer(principals, model) -> bool
    compose(charter, principal_chain, model, caller_system, base_dir=...) -> ComposedInstructions
    repair(text, verdicts) -> str
    with_instructions(request, composed) -> ChatRequest
    finish_answer(text, standards, principals, model, question, verdicts) -> (text, refusal)
    finish_stream(guard, standards, principals, model, question) -> str   (instead of finish())

The `standard` control kind itself (banned phrasings at the output stage) registers from
``charter.standards.control``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from charter.document.model import Charter
from charter.standards.answers import finish_answer, finish_stream
from charter.standards.library import (
    AppliedStandard,
    ComposedInstructions,
    Finalized,
    Standard,
    Standards,
    repair,
)
from charter.standards.request import with_instructions

__all__ = [
    "AppliedStandard",
    "ComposedInstructions",
    "Finalized",
    "Standard",
    "Standards",
    "compose",
    "finish_answer",
    "finish_stream",
    "repair",
    "with_instructions",
]


def compose(
    charter: Charter,
    principal_chain: Sequence[str],
    model: str | None,
    caller_system: str = "",
    *,
    base_dir: str | Path | None = None,
) -> ComposedInstructions:
    """The instructions a request from ``principal_chain`` (the caller, then its app and team,
    as ``charter.policy.runtime.principal_chain`` gives it) to ``model`` carries.

    A one-off: long-lived callers build ``Standards`` once and call its ``compose``, which is
    this same code.
    """
    base = Path(base_dir) if base_dir is not None else None
    return Standards(charter, base).compose(principal_chain, model, caller_system)
