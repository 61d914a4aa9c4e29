"""The scanner interface every guard implements: text in, a score and the spans that matter out."""

from __future__ import annotations

from dataclasses import dataclass
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


@runtime_checkable
class Scanner(Protocol):
    """A pure function of the text: no I/O, no global state, safe to call from any thread."""

    name: str

    def scan(self, text: str) -> ScanResult:
        """Return the score and spans for ``text``."""
        ...
