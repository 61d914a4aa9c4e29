"""Scanners for answers: invisible characters, length, links, JSON Schema, and system-prompt leaks.

Each is a pure function of the text (the leak scanner also of the system prompt and the canary the
gateway planted in it), cheap enough to run on every streamed window.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

from charter.guards.base import ScanResult
from charter.guards.protected import (
    ProtectedValue,
    ShortValue,
    normalise,
    source_start_of_tail,
)
from charter.policy.verdict import Span

# Zero-width and bidirectional controls, and the Unicode tag block: the characters used to hide
# instructions from people while models still read them.
_INVISIBLE = re.compile(
    "[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\U000e0000-\U000e007f]"
)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


class UnicodeScanner:
    """Invisible and control characters (tabs and newlines are fine)."""

    name = "unicode"
    reach = 0  # one character is a hit on its own

    def scan(self, text: str) -> ScanResult:
        spans = tuple(
            Span(m.start(), m.end(), f"U+{ord(m.group()):04X} {unicodedata.name(m.group(), '?')}")
            for pattern in (_INVISIBLE, _CONTROL)
            for m in pattern.finditer(text)
        )
        return ScanResult(1.0 if spans else 0.0, spans, f"{len(spans)} hidden characters")


class LengthScanner:
    name = "length"

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars

    def scan(self, text: str) -> ScanResult:
        over = len(text) > self.max_chars
        detail = f"{len(text)} characters (at most {self.max_chars})"
        return ScanResult(1.0 if over else 0.0, (), detail)


_URL = re.compile(r"\bhttps?://([^\s/?#:'\"<>)\]]+)[^\s'\"<>)\]]*", re.IGNORECASE)


class UrlScanner:
    """Links whose host is not one of the allowed domains (or a subdomain of one)."""

    name = "urls"
    reach = 2048  # the longest link it should still see whole

    def __init__(self, allow_domains: Sequence[str]) -> None:
        self.allowed = tuple(d.lower().lstrip(".") for d in allow_domains)

    def _allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".").split("@")[-1]
        return any(host == d or host.endswith("." + d) for d in self.allowed)

    def scan(self, text: str) -> ScanResult:
        spans = tuple(
            Span(m.start(), m.end(), f"link to {m.group(1)}")
            for m in _URL.finditer(text)
            if not self._allowed(m.group(1))
        )
        return ScanResult(1.0 if spans else 0.0, spans, f"{len(spans)} links to other domains")


class JsonSchemaScanner:
    """A structured answer must be JSON that validates against the charter's schema."""

    name = "json_schema"

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema)
        self.validator = Draft202012Validator(schema)

    def scan(self, text: str) -> ScanResult:
        try:
            value = json.loads(text)
        except ValueError as exc:
            return ScanResult(1.0, (), f"not JSON: {exc}")
        errors = sorted(self.validator.iter_errors(value), key=lambda e: list(e.path))
        if errors:
            where = "/".join(str(p) for p in errors[0].path) or "(root)"
            return ScanResult(1.0, (), f"{where}: {errors[0].message}")
        return ScanResult(0.0, (), "valid")


_WORD = re.compile(r"\w+", re.UNICODE)


@functools.lru_cache(maxsize=256)
def _shingles(prompt: str, n: int) -> frozenset[tuple[str, ...]]:
    """The runs of ``n`` consecutive words of a system prompt, lower-cased (cached: a stream
    scans its answer against the same prompt at every step)."""
    words = [w.lower() for w in _WORD.findall(prompt)]
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


class LeakScanner:
    """The canary planted in the system prompt, protected values, or a long run of the system
    prompt, in an answer.

    The canary and the protected values are matched through disguises (``charter.guards.protected``:
    spacing, case, punctuation, reversal, hex, base64). Near-verbatim prompt text is found with
    word shingles: any run of ``shingle`` consecutive words of the system prompt that reappears in
    the answer, case- and punctuation-insensitively, extended to the longest such run; a hit is a
    run of at least ``min_overlap_chars`` characters.
    """

    name = "leak"

    def __init__(
        self,
        min_overlap_chars: int = 60,
        shingle: int = 6,
        protected: Sequence[ProtectedValue] = (),
    ) -> None:
        self.min_overlap_chars = min_overlap_chars
        self.shingle = shingle
        self.protected = tuple(protected)
        # A run of the system prompt that reaches into new text had, in text already scanned,
        # fewer than ``min_overlap_chars`` characters (or it would have been a hit then); the
        # margin covers the word that straddles. A canary or protected value is never split
        # across the line: the stream holds back from where its beginning shows (``hold_from``).
        self.reach = min_overlap_chars + 128

    def scan_leak(self, text: str, system_prompt: str, canary: str | None) -> ScanResult:
        values = self._values(canary)
        if values:
            folded = normalise(text)
            matches = [m for value in values for m in value.find(text, folded)]
            if matches:
                matches.sort(key=lambda m: m.start)
                spans = tuple(Span(m.start, m.end, f"{m.label} ({m.kind})") for m in matches)
                first = matches[0]
                return ScanResult(1.0, spans, f"{first.label} leaked ({first.kind})")
        elif canary and canary in text:  # a test canary too short to fold safely
            start = text.index(canary)
            return ScanResult(1.0, (Span(start, start + len(canary), "canary"),), "canary leaked")
        if not system_prompt:
            return ScanResult(0.0)
        span = self._longest_overlap(text, system_prompt)
        if span is None:
            return ScanResult(0.0)
        length = span.end - span.start
        score = min(1.0, length / self.min_overlap_chars)
        return ScanResult(
            score, (span,) if score >= 1.0 else (), f"{length} characters of the system prompt"
        )

    def hold_from(self, text: str, canary: str | None) -> int | None:
        """For streams: the offset from which ``text`` ends with the beginning of the canary or of
        a protected value (in normal form), however many characters that beginning is spread
        over; None if it does not. Releasing only text before it means no part of a value leaves
        before the guard has seen whether the rest follows."""
        values = self._values(canary)
        if not values:
            return None
        folded = normalise(text)
        tail = max(value.pending(folded) for value in values)
        return source_start_of_tail(text, tail) if tail else None

    def _values(self, canary: str | None) -> tuple[ProtectedValue, ...]:
        folded_canary = _canary(canary) if canary else None
        return (folded_canary, *self.protected) if folded_canary else self.protected

    def _longest_overlap(self, text: str, prompt: str) -> Span | None:
        n = self.shingle
        grams = _shingles(prompt, n)
        if not grams:
            return None
        matches = list(_WORD.finditer(text))
        words = [m.group().lower() for m in matches]
        best: tuple[int, int] | None = None
        i = 0
        while i <= len(words) - n:
            if tuple(words[i : i + n]) in grams:
                j = i + 1
                while j <= len(words) - n and tuple(words[j : j + n]) in grams:
                    j += 1
                start, end = matches[i].start(), matches[j + n - 2].end()
                if best is None or end - start > best[1] - best[0]:
                    best = (start, end)
                i = j
            else:
                i += 1
        return Span(best[0], best[1], "system prompt") if best else None

    def scan(self, text: str) -> ScanResult:
        """Without a system prompt there is nothing to leak; the gateway calls ``scan_leak``."""
        return ScanResult(0.0)


@functools.lru_cache(maxsize=1024)
def _canary(canary: str) -> ProtectedValue | None:
    """The canary's needles, built once per request (a stream scans many times)."""
    try:
        return ProtectedValue.build(canary, "canary")
    except ShortValue:
        return None
