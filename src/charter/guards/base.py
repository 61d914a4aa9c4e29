"""The scanner interface every guard implements: text in, a score and the spans that matter out."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

from charter.policy.verdict import Span


@dataclass(frozen=True, slots=True)
class ScanResult:
    """What a scanner found in one text.

    ``score`` is in [0, 1]: the scanner's confidence that the text is a hit. The guard control, not
    the scanner, turns the score into a verdict with the thresholds the charter sets.
    """

    score: float
    spans: tuple[Span, ...] = ()
    detail: str = ""

    def shifted(self, offset: int) -> ScanResult:
        """The result of scanning ``text[offset:]``, with its spans moved onto ``text``."""
        if not offset or not self.spans:
            return self
        spans = tuple(replace(s, start=s.start + offset, end=s.end + offset) for s in self.spans)
        return replace(self, spans=spans)


@runtime_checkable
class Scanner(Protocol):
    """A pure function of the text: no I/O, no global state, safe to call from any thread."""

    name: str

    def scan(self, text: str) -> ScanResult:
        """Return the score and spans for ``text``."""
        ...


def reach_of(scanner: object) -> int | None:
    """How many characters before new text a hit that includes new text can start, for scanners
    whose hits are local (a pattern, a window); None for one that must see the whole text (a
    length, a JSON document). A stream's guard then rescans only ``reach`` characters before
    what it has not released yet, instead of the whole answer at every step."""
    reach = getattr(scanner, "reach", None)
    return reach if isinstance(reach, int) and reach >= 0 else None
