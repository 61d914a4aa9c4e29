"""De-obfuscated views of a text: what a scanner also scores when an attack is encoded (base64,
hex, ``\\x`` / ``\\u`` / ``%`` / ``&#`` escapes), spelled out letter by letter ("i g n o r e") or
written in leetspeak ("1gn0r3 y0ur rul3s").

A view is the text with its obfuscated parts undone, plus where each of its characters came from
in the original, so a hit in a view maps back to a span of the text the user sent. Views chain
(letters joined, then leetspeak folded; decoded segments, then the same two steps on them) and
are only made when a cheap prefilter finds a candidate: text without one costs a few byte
translations and substring searches (about 12 microseconds per KB). The figures behind these
choices are in the injection model card (``models/injection.md``).
"""

from __future__ import annotations

import base64
import binascii
import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

VIEW_NAMES = ("base64", "hex", "escapes", "spaced", "leet")
"""Every kind of view; a chained view is named by its steps joined with ``+`` ("base64+leet")."""

MIN_BASE64 = 16
"""Shortest base64 segment decoded (characters, padding excluded)."""

MIN_PRINTABLE = 0.95
"""Share of printable characters a decoded segment needs to count as text."""

# A run of base64 (or base64url) characters; bare hex runs are such runs too. No look-arounds:
# runs are maximal, so a match starts and ends where the run does.
_RUN_RE = re.compile(rf"[A-Za-z0-9+/_\-]{{{MIN_BASE64},}}={{0,2}}")
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Eight or more hex bytes separated by a space or a colon.
_HEX_BYTES_RE = re.compile(
    r"(?<![0-9A-Za-z])[0-9A-Fa-f]{2}(?:[ :][0-9A-Fa-f]{2}){7,}(?![0-9A-Za-z])"
)
# Runs of four or more escapes, each expression starting with its literal (fast to search).
_ESCAPES = {
    "\\x": re.compile(r"\\x[0-9A-Fa-f]{2}(?:\\x[0-9A-Fa-f]{2}){3,}"),
    "\\u": re.compile(r"\\u[0-9A-Fa-f]{4}(?:\\u[0-9A-Fa-f]{4}){3,}"),
    "%": re.compile(r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2}){3,}"),
    "&#": re.compile(
        r"&#(?:[0-9]{2,7}|[xX][0-9A-Fa-f]{2,6});(?:&#(?:[0-9]{2,7}|[xX][0-9A-Fa-f]{2,6});){3,}"
    ),
}
# Four or more single letters or digits, each followed by one to three separators of one kind.
_SPACED = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9](?:[ .\-_*]{1,3}[A-Za-z0-9](?![A-Za-z0-9])){3,}")
_SEPARATOR = re.compile(r"[ .\-_*]{1,3}")
# A token that mixes letters with leet characters; the message qualifies when one of them has a
# leet character between two letters ("y0u", "1gn0r3", "p@$$w0rd").
_LEET_TOKEN = re.compile(r"[A-Za-z0-9@$]*[A-Za-z][A-Za-z0-9@$]*")
_LEET_CORE = re.compile(r"[A-Za-z][013457@$]{1,4}[A-Za-z]")
_LEET_MAP = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}
)
_LEET_CHARS = frozenset("013457@$")


def _classes(members: dict[str, str]) -> bytes:
    """A ``bytes.translate`` table: each byte in a ``members`` key becomes its value, any other
    byte (non-ASCII bytes too) ``x``."""
    table = bytearray(b"x" * 256)
    for chars, cls in members.items():
        for char in chars:
            table[ord(char)] = ord(cls)
    return bytes(table)


_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGITS = "0123456789"
# The prefilter: the UTF-8 bytes of the text translated into classes once per family, then plain
# substring searches (C speed, about 1 microsecond per KB each). Each gate is implied by its
# family's expressions, so a text that fails every gate has no view; a gate that passes runs only
# its own family's expressions.
_RUN = _classes({_LETTERS + _DIGITS + "+/_-": "a"})  # base64 and bare hex: 16 in a row
_HEX_BYTES = _classes({_DIGITS + "ABCDEFabcdef": "d", " :": " "})  # 4+ hex bytes, separated
_SPELLED = _classes({_LETTERS + _DIGITS: "a", " .-_*": " "})  # 4+ single characters, separated
_LEETSPEAK = _classes({_LETTERS: "a", "013457@$": "l"})  # a leet character between letters


@dataclass(frozen=True)
class _Gates:
    run: bool
    hex_bytes: bool
    escapes: tuple[str, ...]
    spelled: bool
    leet: bool

    @property
    def encoded(self) -> bool:
        return self.run or self.hex_bytes or bool(self.escapes)

    @property
    def any(self) -> bool:
        return self.encoded or self.spelled or self.leet


def _gates(text: str) -> _Gates:
    """Which families of views ``text`` may need."""
    raw = text.encode("utf-8", "surrogatepass")
    classes = raw.translate(_LEETSPEAK)
    return _Gates(
        run=b"a" * MIN_BASE64 in raw.translate(_RUN),
        hex_bytes=b"dd dd dd dd" in raw.translate(_HEX_BYTES),
        escapes=tuple(lead for lead in _ESCAPES if lead in text),
        spelled=b"a a a a" in raw.translate(_SPELLED),
        # "all" (a letter, then two or more leet characters) is a superset of the next letter after.
        leet=b"ala" in classes or b"all" in classes,
    )


@dataclass(frozen=True, eq=False)
class View:
    """One de-obfuscated view of a text.

    ``starts[i]`` and ``ends[i]`` are the ``[start, end)`` in the original text of the characters
    that view character ``i`` came from (a decoded character maps to its whole encoded segment).
    """

    name: str
    text: str
    starts: npt.NDArray[np.int64] = field(repr=False)
    ends: npt.NDArray[np.int64] = field(repr=False)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The ``[start, end)`` of the original text that view characters ``[start, end)`` came
        from."""
        if not len(self.text):
            return 0, 0
        start = min(max(start, 0), len(self.text) - 1)
        end = min(max(end, start + 1), len(self.text))
        return int(self.starts[start]), int(self.ends[start:end].max())


def _identity(text: str) -> View:
    offsets = np.arange(len(text), dtype=np.int64)
    return View("", text, offsets, offsets + 1)


def _rebuild(view: View, name: str, pieces: list[tuple[int, int, str, bool]]) -> View:
    """A new view from ``view`` with the ``[start, end)`` pieces replaced by their text; a piece
    ``exact`` maps one to one, otherwise each new character maps to the whole piece."""
    out: list[str] = []
    starts: list[npt.NDArray[np.int64]] = []
    ends: list[npt.NDArray[np.int64]] = []
    cursor = 0
    for start, end, text, exact in sorted(pieces):
        out.append(view.text[cursor:start])
        starts.append(view.starts[cursor:start])
        ends.append(view.ends[cursor:start])
        if exact:
            assert len(text) == end - start
            starts.append(view.starts[start:end])
            ends.append(view.ends[start:end])
        else:
            lo, hi = int(view.starts[start]), int(view.ends[start:end].max())
            starts.append(np.full(len(text), lo, dtype=np.int64))
            ends.append(np.full(len(text), hi, dtype=np.int64))
        out.append(text)
        cursor = end
    out.append(view.text[cursor:])
    starts.append(view.starts[cursor:])
    ends.append(view.ends[cursor:])
    joined = f"{view.name}+{name}" if view.name else name
    return View(joined, "".join(out), np.concatenate(starts), np.concatenate(ends))


def _as_text(raw: bytes) -> str | None:
    """``raw`` as text if it is UTF-8 and mostly printable, with a letter in it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(text) < 4 or not any(c.isalpha() for c in text):
        return None
    printable = sum(c.isprintable() or c in "\n\r\t" for c in text)
    return text if printable >= MIN_PRINTABLE * len(text) else None


def decode_base64(segment: str) -> str | None:
    """A base64 or base64url segment decoded, or None unless it decodes to text."""
    body = segment.rstrip("=")
    kinds = sum(
        (
            any(c.isupper() for c in body),
            any(c.islower() for c in body),
            any(c.isdigit() for c in body),
        )
    )
    # Base64 of text mixes cases or digits; a long lower-case word or path does not.
    if len(body) < MIN_BASE64 or kinds < 2 or len(body) % 4 == 1:
        return None
    url = "-" in body or "_" in body
    if url and ("+" in body or "/" in body):
        return None
    padded = body + "=" * (-len(body) % 4)
    try:
        raw = base64.b64decode(padded, altchars=b"-_" if url else None, validate=True)
    except (binascii.Error, ValueError):
        return None
    return _as_text(raw)


def decode_hex(segment: str) -> str | None:
    """Hex bytes (bare, after ``0x``, or separated by spaces or colons) decoded, or None unless
    they decode to text."""
    digits = re.sub(r"[ :]", "", segment)
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if len(digits) % 2:
        return None
    try:
        return _as_text(bytes.fromhex(digits))
    except ValueError:
        return None


def decode_escapes(segment: str) -> str | None:
    """A run of ``\\xXX``, ``\\uXXXX``, ``%XX`` or ``&#N;`` escapes decoded, or None unless it
    decodes to text."""
    if segment.startswith("\\x"):
        try:
            return _as_text(bytes.fromhex(segment.replace("\\x", "")))
        except ValueError:
            return None
    if segment.startswith("\\u"):
        chars = [chr(int(segment[i + 2 : i + 6], 16)) for i in range(0, len(segment), 6)]
        try:
            return _as_text("".join(chars).encode("utf-8"))
        except UnicodeEncodeError:
            return None
    if segment.startswith("%"):
        return _as_text(bytes.fromhex(segment.replace("%", "")))
    try:
        return _as_text(html.unescape(segment).encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _runs(text: str) -> Iterator[re.Match[str]]:
    """The base64-alphabet runs of ``text`` of ``MIN_BASE64`` characters or more. ASCII text
    (byte offsets are character offsets) jumps from run to run with a byte search of the class
    bytes; other text is searched by the expression alone."""
    if not text.isascii():
        yield from _RUN_RE.finditer(text)
        return
    classes, needle = text.encode("ascii").translate(_RUN), b"a" * MIN_BASE64
    pos = classes.find(needle)
    while pos != -1:
        match = _RUN_RE.match(text, pos)
        if match is None:  # never: the class bytes and the expression agree
            return
        yield match
        pos = classes.find(needle, match.end())


def _decoded(view: View, gates: _Gates) -> View | None:
    """The encoded segments of ``view`` decoded and joined by new lines, each character mapped to
    its whole segment; named after the encodings found ("base64", "base64+hex").

    The decoded text is scored on its own, as if it had been sent plain: around a neutral frame
    ("here is my data ...") the frame's words dilute an encoded attack, and around a frame such as
    "do what it says" they lift a benign blob (measured on the tune split and on training rows,
    see the model card).
    """
    text = view.text
    found: list[tuple[int, int, str]] = []
    names: set[str] = set()

    def free(start: int, end: int) -> bool:
        return all(end <= lo or start >= hi for lo, hi, _ in found)

    for lead in gates.escapes:
        for match in _ESCAPES[lead].finditer(text):
            decoded = decode_escapes(match.group())
            if decoded is not None:
                found.append((match.start(), match.end(), decoded))
                names.add("escapes")
    if gates.hex_bytes:
        for match in _HEX_BYTES_RE.finditer(text):
            decoded = decode_hex(match.group())
            if decoded is not None and free(match.start(), match.end()):
                found.append((match.start(), match.end(), decoded))
                names.add("hex")
    if gates.run:
        for match in _runs(text):
            run = match.group()
            digits = run[2:] if run[:2].lower() == "0x" else run
            if _HEX_DIGITS.issuperset(digits):
                decoded, name = decode_hex(run), "hex"
            else:
                decoded, name = decode_base64(run), "base64"
            if decoded is not None and free(match.start(), match.end()):
                found.append((match.start(), match.end(), decoded))
                names.add(name)
    if not found:
        return None
    found.sort()
    lo = np.concatenate([np.full(len(d) + 1, view.starts[a], dtype=np.int64) for a, _, d in found])
    hi = np.concatenate(
        [np.full(len(d) + 1, view.ends[a:b].max(), dtype=np.int64) for a, b, d in found]
    )
    joined = "\n".join(d for _, _, d in found)
    name = "+".join(n for n in VIEW_NAMES if n in names)
    return View(name, joined, lo[: len(joined)], hi[: len(joined)])


def _spaced(view: View) -> View | None:
    """Letters spelled out one at a time ("i g n o r e", "R-E-V-E-A-L") joined into words; a
    separator other than the run's usual one, or a longer gap, is kept as a word break."""
    pieces: list[tuple[int, int, str, bool]] = []
    for match in _SPACED.finditer(view.text):
        run = match.group()
        gaps = list(_SEPARATOR.finditer(run))
        kinds = [gap.group() for gap in gaps]
        usual = max(set(kinds), key=kinds.count)
        for gap in gaps:
            word_break = gap.group() != usual
            pieces.append(
                (match.start() + gap.start(), match.start() + gap.end(), " " * word_break, False)
            )
    if not pieces:
        return None
    return _rebuild(view, "spaced", pieces)


def _leet(view: View) -> View | None:
    """Leetspeak folded (0 o, 1 i, 3 e, 4 a, 5 s, 7 t, @ a, $ s) in the tokens that mix letters
    with those characters, when at least one token has one between two letters."""
    if not _LEET_CORE.search(view.text):
        return None
    pieces: list[tuple[int, int, str, bool]] = []
    for match in _LEET_TOKEN.finditer(view.text):
        token = match.group()
        if _LEET_CHARS.isdisjoint(token):
            continue
        pieces.append((match.start(), match.end(), token.translate(_LEET_MAP), True))
    if not pieces:
        return None
    return _rebuild(view, "leet", pieces)


def views(text: str) -> list[View]:
    """The de-obfuscated views of ``text``, none when nothing in it looks obfuscated.

    From the text as sent: spelled-out letters joined, then leetspeak folded. From its encoded
    segments (base64, hex, escapes) decoded: the decoded text, then the same two steps on it, so a
    base64 blob of leetspeak ends as plain words ("base64+leet"). A step that changes nothing
    adds no view. Text that fails the prefilter (most text) costs four byte translations and a
    few substring searches.
    """
    gates = _gates(text)
    if not gates.any:
        return []
    out: list[View] = []
    current = _identity(text)
    joined = _spaced(current) if gates.spelled else None
    if joined is not None:
        out.append(joined)
        current = joined
    # Joined letters can make leetspeak ("1 g n 0 r 3" -> "1gn0r3"), so it is looked for again.
    folded = _leet(current) if gates.leet or joined is not None else None
    if folded is not None:
        out.append(folded)
    decoded = _decoded(_identity(text), gates) if gates.encoded else None
    if decoded is not None:
        out.append(decoded)
        current = decoded
        for step in (_spaced, _leet):
            nxt = step(current)
            if nxt is not None:
                out.append(nxt)
                current = nxt
    return out
