"""The end of an answer, streamed or not: required elements judged, a repair appended, or the
answer refused. These are the two calls the gateway makes after its output guards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from charter.policy.verdict import Verdict
from charter.standards.library import Standards


class HeldStream(Protocol):
    """What ``finish_stream`` needs of the gateway's ``StreamGuard``."""

    text: str
    blocked: Verdict | None
    verdicts: list[Verdict]

    def finish(self) -> str: ...


def finish_answer(
    text: str,
    standards: Standards,
    principals: Sequence[str],
    model: str | None,
    question: str,
    verdicts: list[Verdict],
) -> tuple[str, Verdict | None]:
    """A non-streamed answer that passed the output guards: the text to send (repaired if a
    required element was missing) or the verdict that refuses it. Verdicts are added to
    ``verdicts`` (the request's record)."""
    finalized = standards.finalize(text, principals, model, question)
    verdicts.extend(finalized.verdicts)
    if finalized.blocked is not None:
        return "", finalized.blocked
    return text + finalized.appendix, None


def finish_stream(
    guard: HeldStream,
    standards: Standards,
    principals: Sequence[str],
    model: str | None,
    question: str,
) -> str:
    """Call instead of ``guard.finish()`` when the upstream stream ends: judges the whole answer
    before the held-back tail is released, and returns the text still to send (the tail and any
    appended element). A refusal sets ``guard.blocked``, so the gateway's usual block path sends
    the refusal and nothing more of the answer."""
    if guard.blocked is not None:
        return ""
    finalized = standards.finalize(guard.text, principals, model, question)
    guard.verdicts.extend(finalized.verdicts)
    if finalized.blocked is not None:
        guard.blocked = finalized.blocked
        return ""
    tail = guard.finish()
    if guard.blocked is not None:
        return ""
    return tail + finalized.appendix
