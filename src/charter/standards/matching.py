"""How standards recognise text: banned phrasings, required elements and their conditions.

One module, so `charter check` (which refuses a required element that a banned phrasing would
match) and the request path judge text exactly the same way.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from charter.document.model import Fragment
from charter.errors import ConfigurationError

_SPACE = re.compile(r"\s+")


_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Matcher:
    """A compiled test on text, in any case.

    Python's ``re`` is slow on case-insensitive alternatives behind a look-behind (about 100 us
    per KB here), and most answers contain none of the phrases. So phrases carry ``words`` (each
    phrase's case-folded words: a substring test skips the pattern unless all of one phrase's
    words occur) and ``lowered``, a case-sensitive pattern without the look-behind that runs on
    the lower-cased text (about 4x faster), the left word boundary checked in Python.
    """

    pattern: re.Pattern[str]  # case-insensitive, with both word boundaries
    words: tuple[tuple[str, ...], ...] | None = None  # None: no prefilter
    lowered: re.Pattern[str] | None = None  # phrases, lower-case, right boundary only

    def _worth_running(self, folded: str) -> bool:
        if self.words is None:
            return True
        return any(all(word in folded for word in phrase) for phrase in self.words)

    def search(self, text: str, folded: str | None = None) -> bool:
        """Whether the text matches anywhere."""
        return bool(self.spans(text, folded, first=True))

    def spans(
        self, text: str, folded: str | None = None, *, first: bool = False
    ) -> list[tuple[int, int]]:
        """The ``[start, end)`` ranges it matches, without empty matches."""
        if not self._worth_running(text.casefold() if folded is None else folded):
            return []
        lower = text.lower()
        if self.lowered is None or len(lower) != len(text):
            # Lower-casing changed the length (e.g. U+0130), so offsets would not carry over.
            found = ((m.start(), m.end()) for m in self.pattern.finditer(text))
            every = [(a, b) for a, b in found if b > a]
            return every[:1] if first else every
        spans: list[tuple[int, int]] = []
        pos = 0
        while (m := self.lowered.search(lower, pos)) is not None:
            start, end = m.span()
            if start > 0 and (lower[start - 1].isalnum() or lower[start - 1] == "_"):
                pos = start + 1  # not at a word start; a later alternative may still be
                continue
            spans.append((start, end))
            if first:
                break
            pos = end
        return spans


def phrase_matcher(phrases: Sequence[str]) -> Matcher | None:
    """Any of ``phrases`` as whole words, in any case and spacing, either apostrophe."""
    kept = [p.strip() for p in phrases if _WORD.search(p)]
    if not kept:
        return None
    words = tuple(tuple(w.casefold() for w in _WORD.findall(p)) for p in kept)
    return Matcher(
        re.compile(r"(?<!\w)" + _alternatives(kept), re.IGNORECASE),
        words,
        re.compile(_alternatives([p.lower() for p in kept])),
    )


def _alternatives(phrases: Sequence[str]) -> str:
    parts = [
        _SPACE.sub(r"\\s+", re.escape(p).replace(r"\ ", " ")).replace("'", "['’]") for p in phrases
    ]
    # Longest first, so "we guarantee" wins over "we" when both are listed.
    parts.sort(key=len, reverse=True)
    return "(?:" + "|".join(parts) + r")(?!\w)"


def pattern_matcher(pattern: str | None) -> Matcher | None:
    """A regular expression from the charter, in any case (validated when the charter loaded)."""
    return Matcher(re.compile(pattern, re.IGNORECASE)) if pattern is not None else None


def normalize(text: str) -> str:
    """Case- and spacing-insensitive form, for finding a required element in an answer."""
    return _SPACE.sub(" ", text).strip().casefold()


def find_all(matchers: Iterable[Matcher | None], text: str) -> list[tuple[int, int]]:
    """The ``[start, end)`` ranges where any matcher matches, in order."""
    folded = text.casefold()
    found = {span for m in matchers if m is not None for span in m.spans(text, folded)}
    return sorted(found)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fragment_problem(base_dir: Path, fragment: Fragment) -> str | None:
    """What is wrong with a file fragment (missing, not UTF-8, empty, not the pinned content)."""
    if fragment.file is None:
        return None
    try:
        read_fragment(base_dir, fragment)
    except ConfigurationError as exc:
        return exc.message
    return None


def read_fragment(base_dir: Path | None, fragment: Fragment) -> str:
    """The text of a fragment; files are read relative to the charter's directory."""
    if fragment.text is not None:
        return fragment.text
    assert fragment.file is not None  # the model requires one of the two
    if base_dir is None:
        raise ConfigurationError(
            f"instructions file {fragment.file} needs the charter's directory to be found",
            hint="pass base_dir (the folder of the charter file) to Standards",
        )
    path = base_dir / fragment.file
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read instructions file {fragment.file} ({exc.strerror})",
            hint=f"the path is relative to the charter file's folder, {base_dir}",
        ) from None
    if fragment.sha256 is not None and sha256_hex(raw) != fragment.sha256:
        raise ConfigurationError(
            f"instructions file {fragment.file} is not the pinned content "
            f"(its sha256 is {sha256_hex(raw)})",
            hint="if the change is intended, put that digest in `sha256`",
        )
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise ConfigurationError(
            f"instructions file {fragment.file} is not UTF-8 (byte {exc.start})",
            hint="save it as UTF-8",
        ) from None
    if not text:
        raise ConfigurationError(
            f"instructions file {fragment.file} is empty", hint="write the instructions in it"
        )
    return text
