"""Values an answer must never contain, found through the disguises a model uses to leak them.

A value (the canary, an access code read from the environment, an internal codename) is folded to
its *normal form*: NFKD compatibility folding, case folding, and only letters and digits kept, so
``TRAM-32``, ``t r a m = 3 2`` and ``ｔｒａｍ＝３２`` all read ``tram32``. At build time each value
gets a few needles in that form: itself, reversed, its bytes in hexadecimal (plain, ``\\x``- and
``0x``-separated) and in decimal (character codes such as ``116 114 97``, also zero-padded), and
base64 (the fragments that do not depend on where the value sits in a longer encoded string). A
scan folds the answer once and looks for each needle with ``str.find``, so its cost is linear in
the answer for a fixed set of values. Spans are mapped back to the answer's own
characters, so evidence points at what the model wrote.
"""

from __future__ import annotations

import base64
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

MIN_CHARS = 4
"""A protected value must have at least this many letters and digits: shorter ones hit by chance."""

MIN_ENCODED_CHARS = 6
"""Hex, decimal and base64 needles shorter than this (in normal form) are not looked for."""

_ASCII_DROP = re.compile(r"[^0-9A-Za-z]+")
_DROP = re.compile(r"[\W_]+")  # \w is str.isalnum() plus "_" in Python's re


def normalise(text: str) -> str:
    """The normal form: compatibility- and case-folded, letters and digits only."""
    if text.isascii():
        return _ASCII_DROP.sub("", text).lower()
    return _DROP.sub("", unicodedata.normalize("NFKD", text).casefold())


def _folded_length(char: str) -> int:
    return len(normalise(char))


def source_offsets(text: str) -> list[int]:
    """For each character of ``normalise(text)``, the index of the character of ``text`` it came
    from (folding is per character, so the two line up)."""
    if text.isascii():
        return [i for i, c in enumerate(text) if c.isalnum()]
    return [i for i, c in enumerate(text) for _ in range(_folded_length(c))]


def source_start_of_tail(text: str, tail: int) -> int:
    """The index in ``text`` of the character that produced the last ``tail`` normal-form
    characters' first one (walks back from the end only as far as needed)."""
    seen = 0
    i = len(text)
    while seen < tail and i > 0:
        i -= 1
        seen += _folded_length(text[i])
    return i


@dataclass(frozen=True, slots=True)
class Needle:
    """One normal-form string whose presence in an answer means the value leaked."""

    text: str
    kind: str  # normalised, reversed, hex, decimal, base64


@dataclass(frozen=True, slots=True)
class Match:
    """Where a protected value was found: ``[start, end)`` of the answer as written."""

    label: str
    kind: str  # verbatim, normalised, reversed, hex, decimal, base64
    start: int
    end: int


class ShortValue(ValueError):
    """A value with fewer than ``MIN_CHARS`` letters and digits."""


@dataclass(frozen=True, slots=True)
class ProtectedValue:
    """A value and its needles; ``label`` names it in verdicts (never the value itself)."""

    label: str
    raw: str
    needles: tuple[Needle, ...]

    @classmethod
    def build(cls, value: str, label: str) -> ProtectedValue:
        """Precompute the needles; ``ShortValue`` if the value is too short to protect safely."""
        folded = normalise(value)
        if len(folded) < MIN_CHARS:
            raise ShortValue(
                f"{label} has {len(folded)} letters and digits; a protected value needs at least "
                f"{MIN_CHARS}, or it would match ordinary answers by chance"
            )
        return cls(label, value, tuple(_needles(value, folded)))

    def find(self, text: str, folded: str) -> list[Match]:
        """Every place ``text`` (whose normal form is ``folded``) carries this value."""
        matches: list[Match] = []
        start = text.find(self.raw)
        while start != -1:
            matches.append(Match(self.label, "verbatim", start, start + len(self.raw)))
            start = text.find(self.raw, start + 1)
        verbatim = tuple(matches)
        offsets: list[int] | None = None
        for needle in self.needles:
            at = folded.find(needle.text)
            while at != -1:
                offsets = offsets if offsets is not None else source_offsets(text)
                end = at + len(needle.text)
                start = offsets[at]
                # a verbatim hit is also a normalised one: report the place once, said precisely
                if not any(v.start <= start < v.end for v in verbatim):
                    matches.append(Match(self.label, needle.kind, start, offsets[end - 1] + 1))
                at = folded.find(needle.text, end)
        return matches

    def pending(self, folded: str) -> int:
        """How many normal-form characters at the end of ``folded`` begin one of the needles
        (0 if none): text a stream must hold until it knows whether the rest follows."""
        longest = 0
        for needle in self.needles:
            text = needle.text
            tail = folded[-(len(text) - 1) :] if len(text) > 1 else ""
            i = tail.find(text[0])
            while i != -1:
                if text.startswith(tail[i:]):
                    longest = max(longest, len(tail) - i)
                    break
                i = tail.find(text[0], i + 1)
        return longest


def _needles(value: str, folded: str) -> Iterable[Needle]:
    seen: set[str] = set()

    def needle(text: str, kind: str, minimum: int) -> Iterable[Needle]:
        text = normalise(text)
        if len(text) >= minimum and text not in seen:
            seen.add(text)
            yield Needle(text, kind)

    yield from needle(folded, "normalised", MIN_CHARS)
    yield from needle(folded[::-1], "reversed", MIN_CHARS)
    for source in dict.fromkeys((value, folded)):  # as written, and as folded
        data = source.encode()
        yield from needle(data.hex(), "hex", MIN_ENCODED_CHARS)
        yield from needle("".join(f"\\x{b:02x}" for b in data), "hex", MIN_ENCODED_CHARS)
        yield from needle("".join(f"0x{b:02x}" for b in data), "hex", MIN_ENCODED_CHARS)
        yield from needle("".join(str(b) for b in data), "decimal", MIN_ENCODED_CHARS)
        yield from needle("".join(f"{b:03d}" for b in data), "decimal", MIN_ENCODED_CHARS)
        for fragment in _base64_fragments(data):
            yield from needle(fragment, "base64", MIN_ENCODED_CHARS)


def _base64_fragments(data: bytes) -> Iterable[str]:
    """The base64 characters that encode only ``data``, for each of the three alignments it can
    have inside a longer encoded string (bits of a neighbour's byte change the edge characters)."""
    for shift in range(3):
        encoded = base64.b64encode(b"\0" * shift + data).decode()
        first = -(-8 * shift // 6)  # ceil: the first character made only of data's bits
        last = 8 * (shift + len(data)) // 6  # floor: one past the last such character
        yield encoded[first:last]
